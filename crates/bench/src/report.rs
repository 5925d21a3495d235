//! The printed table of a [`Report`].

use std::collections::BTreeMap;

use super::*;

/// The table.
pub(super) fn print_report(r: &Report) {
    let s = &r.setup;
    println!(
        "\nlvb-bench: {} bookings over {} trainers ({} with expired access tokens), \
         {} ms simulated latency per call, service {}",
        s.bookings, s.trainers, s.expired_trainers, s.latency_ms, s.service
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
        "  Lark's limits allow {:.2} s at best: {:.0} % of that; busiest minute {} applies; {} answered 429",
        b.limit_bound_wall_secs, b.percent_of_limit_bound, b.busiest_minute_applies, b.lark_rate_limited
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
    println!(
        "  Salesforce calls {} = {:.4}/booking (REST data {:.4}/booking): {:?}",
        b.salesforce_calls_total,
        b.salesforce_calls_per_booking,
        b.salesforce_rest_calls_per_booking,
        b.salesforce_calls
    );
    println!("  Lark calls per booking {:?}", b.lark_calls_per_booking);
    println!(
        "  refreshes: {} expired trainers refreshed {:?} (count → trainers); valid trainers {}; chained {}",
        b.refreshes.expired_trainers, b.refreshes.per_expired_trainer, b.refreshes.of_valid_trainers, b.refreshes.chained
    );
    let m = &r.resources;
    println!("\nResources ({})", m.scope);
    println!(
        "  peak RSS {:.1} MB{}{}",
        m.peak_rss_mb,
        m.rss_at_ready_mb
            .map(|r| format!(" (when ready, before any work: {r:.1} MB)"))
            .unwrap_or_default(),
        m.rss_before_service_mb
            .map(|b| format!(" (simulators + bench before the service: {b:.1} MB)"))
            .unwrap_or_default()
    );
    println!(
        "  service CPU {:.2} s (burst {:.2} s); process {:.2} s{}{}",
        m.service_cpu_secs,
        m.service_cpu_secs_burst,
        m.process_cpu_secs,
        m.simulators_cpu_secs
            .map(|c| format!(", simulators {c:.2} s"))
            .unwrap_or_default(),
        m.bench_cpu_secs
            .map(|c| format!(", bench driver {c:.2} s"))
            .unwrap_or_default()
    );
    println!("\nTargets (issue 7)");
    for t in &r.targets {
        let mark = match t.met {
            Some(true) => "met ",
            Some(false) => "MISS",
            None => " -- ",
        };
        println!("  [{mark}] {:<64} {}", t.target, t.measured);
    }
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
