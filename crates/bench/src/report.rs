//! The printed table of a [`Report`].

use std::collections::BTreeMap;

use super::*;

/// The table.
pub(super) fn print_report(r: &Report) {
    let s = &r.setup;
    println!(
        "\nlvb-bench: {} bookings over {} trainers ({:?} order; {} with expired access \
         tokens), {} ms simulated latency per call, service {}, calendar {}",
        s.bookings,
        s.trainers,
        s.order,
        s.expired_trainers,
        s.latency_ms,
        s.service,
        if s.calendar_enabled { "on" } else { "off" }
    );
    println!(
        "  load average at start {}, after the burst {}",
        s.load_at_start, s.load_after_burst
    );
    let l = &r.lone;
    println!(
        "\nLone booking (insert → write-back), {} samples",
        l.samples
    );
    println!(
        "  latency   p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        l.p50_ms, l.p99_ms, l.max_ms
    );
    println!(
        "  overhead  p50 {:>8.2} ms   p99 {:>8.2} ms   (against the {:.2} ms a simulated call \
         really takes: p50 {:.2} ms, p99 {:.2} ms)",
        l.overhead_p50_ms,
        l.overhead_p99_ms,
        l.simulated_latency_effective_ms,
        l.overhead_effective_p50_ms,
        l.overhead_effective_p99_ms
    );
    println!(
        "  link time p50 beyond {} × {} ms: {:.2} ms",
        l.path_calls, s.latency_ms, l.link_p50_beyond_path_ms
    );
    println!(
        "  calls per booking: Salesforce {:.2} (max {}) {:?}; Lark {:.2} {:?}",
        l.salesforce_calls_mean,
        l.salesforce_calls_max,
        per_sample(&l.salesforce_calls_by_kind, l.samples),
        l.lark_calls_mean,
        per_sample(&l.lark_calls_by_kind, l.samples)
    );
    let b = &r.burst;
    println!("\nBurst of {} bookings", b.bookings);
    println!(
        "  wall {:.2} s (first link after {:.2} s); {:.0} reservations/min = {:.0} % of Lark's {}/min",
        b.wall_secs, b.first_link_secs, b.reservations_per_minute, b.percent_of_lark_limit, b.lark_limit_per_minute
    );
    println!(
        "  ideal under Lark's sliding windows (50/s, 1000/min) {:.2} s: ratio {:.3}; busiest minute {} applies; {} answered 429",
        b.limit_bound_wall_secs, b.ratio_to_ideal, b.busiest_minute_applies, b.lark_rate_limited
    );
    println!("  statuses {:?}", b.statuses);
    println!("  applies per 5 s {:?}", b.applies_per_5s);
    let failures: BTreeMap<&str, f64> = b
        .service_metrics
        .iter()
        .filter(|(k, _)| k.starts_with(lark_vc_bridge::metrics::names::FAILURES))
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    println!("  service failure counters {failures:?}");
    if let Some(commits) = b
        .service_metrics
        .get(lark_vc_bridge::metrics::names::STORE_INTENT_COMMITS)
    {
        let applies = b.lark_methods.get("apply").map_or(0, |m| m.calls);
        println!(
            "  durable commits of apply intents (rule 23; whole run, lone bookings too): {commits} for {applies} applies in the burst"
        );
    }
    println!(
        "  Salesforce calls {} = {:.4}/booking (REST data {:.4}/booking): {:?}",
        b.salesforce_calls_total,
        b.salesforce_calls_per_booking,
        b.salesforce_rest_calls_per_booking,
        b.salesforce_calls
    );
    println!(
        "  Lark calls {:.4}/booking; by method (calls, per booking, 429s, busiest 1 s / 60 s):",
        b.lark_calls_per_booking_total
    );
    for (method, m) in &b.lark_methods {
        println!(
            "    {method:<24} {:>7} {:>9.4} {:>5} × 429 {:>5} {:>6}",
            m.calls, m.per_booking, m.rate_limited, m.busiest_second, m.busiest_minute
        );
    }
    let p = &b.primary_lookups;
    println!(
        "  calendar calls {}; primary-calendar lookups {} for {} trainers = {:.2} per trainer \
         (per second of the burst {:?}; {} event creates answered before the last lookup)",
        b.calendar_calls,
        p.lookups,
        p.trainers,
        p.per_trainer,
        p.per_second,
        p.creates_before_last_lookup
    );
    print_pacing(&b.pacing);
    println!(
        "  refreshes: {} expired trainers refreshed {:?} (count → trainers); valid trainers {}; chained {}",
        b.refreshes.expired_trainers, b.refreshes.per_expired_trainer, b.refreshes.of_valid_trainers, b.refreshes.chained
    );
    let m = &r.resources;
    println!("\nResources ({})", m.scope);
    println!(
        "  peak RSS {:.1} MiB{}{}; the bench's own process {:.1} MiB",
        m.peak_rss_mb,
        m.rss_at_ready_mb
            .map(|r| format!(" (when ready, before any work: {r:.1} MB)"))
            .unwrap_or_default(),
        m.rss_before_service_mb
            .map(|b| format!(" (simulators + bench before the service: {b:.1} MB)"))
            .unwrap_or_default(),
        m.bench_peak_rss_mb
    );
    println!(
        "  service CPU {:.2} s (burst {:.2} s = {:.3} ms per booking); process {:.2} s{}{}",
        m.service_cpu_secs,
        m.service_cpu_secs_burst,
        m.service_cpu_ms_per_booking,
        m.process_cpu_secs,
        m.simulators_cpu_secs
            .map(|c| format!(", simulators {c:.2} s"))
            .unwrap_or_default(),
        m.bench_cpu_secs
            .map(|c| format!(", bench driver {c:.2} s"))
            .unwrap_or_default()
    );
    let mut issue = 0;
    for t in &r.targets {
        if t.issue != issue {
            issue = t.issue;
            println!("\nTargets (issue {issue})");
        }
        let mark = match t.met {
            Some(true) => "met ",
            Some(false) => "MISS",
            None => " -- ",
        };
        println!("  [{mark}] {:<64} {}", t.target, t.measured);
    }
}

/// The burst's head, applies and tail.
fn print_pacing(p: &Pacing) {
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!("  pacing (seconds from the first insert; {})", p.method);
    println!(
        "    head: inserts done {:.3}, first event delivered {}, first query {}, first apply {}, \
         first event create {}, first link {:.3}",
        p.inserts_secs,
        s(p.first_event_delivered_secs),
        s(p.first_query_secs),
        s(p.first_apply_secs),
        s(p.first_event_create_secs),
        p.first_link_secs
    );
    println!(
        "    applies: span {:.3} s against the ideal {:.3} s (with the pacer's {} ms margins: \
         {:.3} s); busiest second {}, busiest minute {}",
        p.apply_span_secs,
        p.apply_span_ideal_secs,
        PACER_MARGIN.as_millis(),
        p.apply_span_pacer_bound_secs,
        p.busiest_second_applies,
        p.busiest_minute_applies
    );
    let checkpoints: Vec<String> = p
        .apply_checkpoints
        .iter()
        .map(|c| format!("#{} {:.2}/{:.2}", c.index, c.actual_secs, c.ideal_secs))
        .collect();
    println!(
        "    apply #k actual/ideal from the first apply: {}",
        checkpoints.join(", ")
    );
    for b in &p.apply_blocks {
        println!(
            "    applies #{}–#{} from {:.2} s: took {:.2} s (ideal {:.2} s, the pacer's bound {:.2} s)",
            b.first, b.last, b.start_secs, b.span_secs, b.ideal_span_secs, b.pacer_bound_span_secs
        );
    }
    let spread = |s: &Spread| {
        format!(
            "p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            s.p50, s.p90, s.p99, s.max
        )
    };
    println!(
        "    per booking: apply → event create {}; event create → link {}",
        spread(&p.apply_to_event_ms),
        spread(&p.event_to_link_ms)
    );
    println!(
        "    booking queries answered at {:?}",
        p.booking_queries_secs
    );
    let writes: Vec<String> = p
        .write_backs
        .iter()
        .map(|w| format!("{:.2}:{}", w.at_secs, w.records))
        .collect();
    println!("    write-backs (s:records) {}", writes.join(" "));
    println!(
        "    tail: last apply {}, last event create {}, last link {:.3} (tail {:.3} s; head {:.3} s)",
        s(p.last_apply_secs),
        s(p.last_event_create_secs),
        p.last_link_secs,
        p.tail_secs,
        p.head_secs
    );
}

pub(super) fn per_sample(
    by_kind: &BTreeMap<String, usize>,
    samples: usize,
) -> BTreeMap<String, f64> {
    by_kind
        .iter()
        .map(|(k, &v)| (k.clone(), round2(v as f64 / samples.max(1) as f64)))
        .collect()
}
