//! The phases: seeding and connecting trainers, lone bookings one at a time, then the
//! burst — each observed only through the simulators.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::http::Method;
use chrono::Utc;
use serde_json::{json, Value};

use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::{RecordedRequest, RequestLog, SF_HUMAN_USER_ID};

use super::*;

/// A seeded trainer.
#[derive(Debug, Clone)]
pub(super) struct BenchTrainer {
    pub(super) id: String,
    pub(super) email: String,
    pub(super) open_id: String,
    /// Connected with an access token that has expired by the burst.
    pub(super) expired: bool,
}

/// Connect, lone bookings, burst, resources: everything that needs the service up.
#[allow(clippy::too_many_arguments)]
pub(super) async fn phases(
    args: &BenchArgs,
    started_at: String,
    load_at_start: String,
    effective_latency: Duration,
    service: &mut Service,
    sf: &SalesforceSim,
    lark: &LarkSim,
    trainers: &[BenchTrainer],
    expired_count: usize,
    rss_before_service: Option<u64>,
    cpu_before_service: CpuSplit,
) -> anyhow::Result<Report> {
    let latency = Duration::from_millis(args.latency_ms);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(STEP_DEADLINE)
        .build()?;
    wait_ready(&http, service).await?;
    // Progress on stderr, with the child's pid, so a profiler can be attached to the
    // service for the burst alone.
    if let Service::Child { child, .. } = service {
        eprintln!("service ready: process {}", child.id().unwrap_or_default());
    }
    let url = service.url().to_string();
    let rss_at_ready = service.memory().map(|m| m.rss_kb);

    // Trainers with valid tokens connect with Lark's default lifetimes; the others get an
    // access token that lives less than `refresh.access_token_skew` (5 min), so the
    // service, which decides by the expiry it stored, counts it expired from the start.
    // Just before the burst Lark is told to treat those tokens as expired too.
    let (expired, fresh): (Vec<&BenchTrainer>, Vec<&BenchTrainer>) =
        trainers.iter().partition(|t| t.expired);
    connect_all(&http, &url, &fresh).await?;
    lark.set_token_lifetimes(
        SHORT_ACCESS_SECS,
        lvb_simulators::lark::DEFAULT_REFRESH_SECS,
    );
    connect_all(&http, &url, &expired).await?;
    lark.set_token_lifetimes(
        lvb_simulators::lark::DEFAULT_ACCESS_SECS,
        lvb_simulators::lark::DEFAULT_REFRESH_SECS,
    );
    // Every trainer record shows the connection. The processor may still be running its
    // per-trainer "connected" queries; the lone phase's untimed warm-up absorbs them.
    wait_connected(sf, trainers).await?;

    // 1. Lone bookings, with no burst going on.
    let (lone, lone_bench_cpu) = if args.lone == 0 {
        (LoneFigures::default(), 0.0)
    } else if fresh.is_empty() {
        eprintln!("no trainer with a valid token (--expired-share 1): lone bookings skipped");
        (LoneFigures::default(), 0.0)
    } else {
        let (sf2, lark2) = (sf.clone(), lark.clone());
        let fresh_ids: Vec<String> = fresh.iter().map(|t| t.id.clone()).collect();
        let n = args.lone;
        on_bench_thread(move || lone_phase(&sf2, &lark2, &fresh_ids, n, latency, effective_latency))
            .await?
    };

    // 2. The burst, as a bulk import would meet it: with Lark's minute window clear of
    // the lone bookings' reservations when they would lengthen the burst (a sliding
    // window: even a few applies in the minute before push the burst's tail into the
    // next window). Expired trainers' access tokens have lapsed at Lark too.
    wait_for_clear_minute(lark, args.bookings).await;
    for t in &expired {
        lark.expire_access_tokens(&t.open_id);
    }
    let refresh_owner: HashMap<String, usize> = trainers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| lark.current_tokens(&t.open_id)?.1.map(|r| (r, i)))
        .collect();
    eprintln!("burst: inserting {} bookings", args.bookings);
    let cpu_burst_start = service.cpu_secs();
    let (raw, burst_bench_cpu) = {
        let (sf2, lark2) = (sf.clone(), lark.clone());
        let ids: Vec<String> = trainers.iter().map(|t| t.id.clone()).collect();
        let (n, order) = (args.bookings, args.order);
        on_bench_thread(move || burst_phase(&sf2, &lark2, &ids, order, n, latency)).await?
    };
    // In-process, the burst thread's own time is in the process total: not the service's.
    let cpu_burst_end = service.cpu_secs()
        - match service {
            Service::InProcess { .. } => burst_bench_cpu,
            Service::Child { .. } => 0.0,
        };
    let mut burst = burst_figures(args, sf, lark, trainers, &refresh_owner, &raw, latency);
    burst.service_metrics = service_metrics(&http, &url).await;

    // 3. Resources, while the service still runs.
    let load_after_burst = load_average();
    eprintln!("burst done after {:.2} s", raw.wall.as_secs_f64());
    let resources = resources(
        args.bookings,
        service,
        rss_before_service,
        rss_at_ready,
        cpu_before_service,
        lone_bench_cpu + burst_bench_cpu,
        cpu_burst_end - cpu_burst_start,
    );
    service.check_alive()?;

    let setup = Setup {
        bookings: args.bookings,
        trainers: trainers.len(),
        order: args.order,
        expired_trainers: expired_count,
        latency_ms: args.latency_ms,
        lone_bookings: lone.samples,
        service: if args.service_process {
            "child-process"
        } else {
            "in-process"
        }
        .into(),
        calendar_enabled: calendar_enabled(),
        started_at,
        load_at_start,
        load_after_burst,
    };
    let targets = targets(&lone, &burst, &resources, args.service_process);
    Ok(Report {
        setup,
        lone,
        burst,
        resources,
        targets,
    })
}

/// Seeds trainers with matching Lark users; the last `expired_share` of them are the
/// ones whose access token will have expired.
pub(super) fn seed_trainers(
    sf: &SalesforceSim,
    lark: &LarkSim,
    args: &BenchArgs,
) -> Vec<BenchTrainer> {
    let expired = ((args.trainers as f64) * args.expired_share).round() as usize;
    let first_expired = args.trainers - expired.min(args.trainers);
    (0..args.trainers)
        .map(|i| {
            let name = format!("Bench Trainer {i:03}");
            let email = format!("trainer{i:03}@bench.example.com");
            let open_id = lark.add_user(&email, &name);
            let id = sf.insert(
                TRAINER,
                json!({ "Name": name, "Email__c": email }),
                SF_HUMAN_USER_ID,
            );
            BenchTrainer {
                id,
                email,
                open_id,
                expired: i >= first_expired,
            }
        })
        .collect()
}

/// A remote booking for `trainer` starting at `start`, one hour long.
pub(super) fn booking_fields(trainer: &str, start: chrono::DateTime<Utc>, n: usize) -> Value {
    json!({
        "Name": format!("Bench booking {n}"),
        "Trainer__c": trainer,
        "Training_Start__c": start.to_rfc3339(),
        "Training_End__c": (start + chrono::Duration::hours(1)).to_rfc3339(),
        "Service_Type__c": "Remote",
        "Status__c": "Scheduled",
        "Merchant_Name__c": format!("Merchant {n}"),
    })
}

/// The booking's meeting status once the service has decided (a link for `Created`),
/// None while it has not.
pub(super) fn settled_status(sf: &SalesforceSim, id: &str) -> Option<String> {
    let record = sf.get(BOOKING, id)?;
    let status = record.get(STATUS_FIELD)?.as_str()?.to_string();
    if status == "Created"
        && record
            .get(LINK_FIELD)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return None;
    }
    Some(status)
}

/// Trainers the lone bookings take turns over (each warmed up by one untimed booking).
pub(super) const LONE_TRAINERS: usize = 5;

/// Measures `n` lone bookings, one after the other, for the first [`LONE_TRAINERS`] of
/// the given trainers in turn.
pub(super) fn lone_phase(
    sf: &SalesforceSim,
    lark: &LarkSim,
    trainers: &[String],
    n: usize,
    latency: Duration,
    effective_latency: Duration,
) -> anyhow::Result<LoneFigures> {
    // Idle between samples: the previous write-back's own CDC event wakes the
    // subscriber, whose next long-poll first waits out the simulated latency. A booking
    // inserted in that gap would measure the reconnect, not the pipeline.
    let gap = (latency * 4).max(Duration::from_millis(100));
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let mut figures = LoneFigures {
        method: format!(
            "per booking: insert → write-back visible in the Salesforce simulator (polled every \
             0.1 ms on each new change event), minus (Salesforce calls other than streaming + \
             Lark calls logged in that window) × {latency_ms} ms; the calls on a lone booking's \
             path run one after another. The samples take turns over {} trainers, each of \
             whom first had one untimed warm-up booking (a trainer's first booking also looks \
             up their primary calendar: a lone booking in steady state does not); {} ms idle between \
             samples so the streaming long-poll is parked when the booking is inserted.",
            trainers.len().min(LONE_TRAINERS),
            gap.as_millis()
        ),
        ..LoneFigures::default()
    };
    let mut measured = Vec::new();
    let mut overheads = Vec::new();
    let mut overheads_effective = Vec::new();
    let effective_ms = effective_latency.as_secs_f64() * 1000.0;
    let (mut sf_total, mut lark_total) = (0usize, 0usize);
    let trainers = &trainers[..trainers.len().min(LONE_TRAINERS)];
    let warm_ups = trainers.len();
    for i in 0..warm_ups + n {
        std::thread::sleep(gap);
        let trainer = &trainers[i % trainers.len()];
        // No two of one trainer's lone bookings at the same time.
        let start_at = Utc::now()
            + chrono::Duration::days(1 + (i % 20) as i64)
            + chrono::Duration::hours(2 * (i / 20) as i64);
        let (sf_mark, lark_mark) = (sf.requests().len(), lark.requests().len());
        let mut seen = sf.hub().last_replay_id();
        let t0 = Instant::now();
        let id = sf.insert(
            BOOKING,
            booking_fields(trainer, start_at, i),
            SF_HUMAN_USER_ID,
        );
        let (elapsed, status) = loop {
            let replay = sf.hub().last_replay_id();
            if replay != seen {
                seen = replay;
                if let Some(status) = settled_status(sf, &id) {
                    break (t0.elapsed(), status);
                }
            }
            if t0.elapsed() > STEP_DEADLINE {
                bail!("lone booking {id} had no meeting after {STEP_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        if status != "Created" {
            bail!("lone booking {id} ended {status:?}, not Created");
        }
        wait_for_write_logged(sf.requests(), sf_mark, &id)?;
        if i < warm_ups {
            continue;
        }
        let sf_path: Vec<RecordedRequest> = since(sf.requests(), sf_mark)
            .into_iter()
            .filter(|r| sf_kind(r) != "streaming")
            .collect();
        let lark_path = since(lark.requests(), lark_mark);
        for r in &sf_path {
            *figures
                .salesforce_calls_by_kind
                .entry(sf_kind(r).into())
                .or_default() += 1;
        }
        for r in &lark_path {
            *figures
                .lark_calls_by_kind
                .entry(lark_kind(r).into())
                .or_default() += 1;
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        measured.push(ms);
        let calls = (sf_path.len() + lark_path.len()) as f64;
        overheads.push(ms - calls * latency_ms);
        overheads_effective.push(ms - calls * effective_ms);
        figures.salesforce_calls_max = figures.salesforce_calls_max.max(sf_path.len());
        sf_total += sf_path.len();
        lark_total += lark_path.len();
    }
    measured.sort_by(f64::total_cmp);
    overheads.sort_by(f64::total_cmp);
    overheads_effective.sort_by(f64::total_cmp);
    figures.simulated_latency_effective_ms = round2(effective_ms);
    figures.overhead_effective_p50_ms = round2(percentile(&overheads_effective, 0.50));
    figures.overhead_effective_p99_ms = round2(percentile(&overheads_effective, 0.99));
    figures.samples = measured.len();
    figures.p50_ms = round2(percentile(&measured, 0.50));
    figures.p99_ms = round2(percentile(&measured, 0.99));
    figures.max_ms = round2(measured.last().copied().unwrap_or_default());
    figures.overhead_p50_ms = round2(percentile(&overheads, 0.50));
    figures.overhead_p99_ms = round2(percentile(&overheads, 0.99));
    // Query, apply, write-back, and the event create when the calendar is on; the
    // primary-calendar lookup of a trainer's first booking is not on every path.
    figures.path_calls = if calendar_enabled() { 4 } else { 3 };
    figures.link_p50_beyond_path_ms =
        round2(figures.p50_ms - figures.path_calls as f64 * latency_ms);
    figures.salesforce_calls_mean = round2(sf_total as f64 / n as f64);
    figures.lark_calls_mean = round2(lark_total as f64 / n as f64);
    Ok(figures)
}

/// What the burst thread saw.
pub(super) struct BurstRaw {
    pub(super) started: Instant,
    /// Inserting the bookings took this long (each raises its change event).
    pub(super) inserts: Duration,
    pub(super) settled_at: Vec<Duration>,
    /// When each booking (by insert index) settled.
    pub(super) settled_by_index: Vec<Option<Duration>>,
    pub(super) wall: Duration,
    pub(super) first_link: Duration,
    pub(super) statuses: BTreeMap<String, usize>,
    pub(super) sf_mark: usize,
    pub(super) lark_mark: usize,
    /// When the simulators' request logs grew.
    pub(super) sf_clock: LogClock,
    pub(super) lark_clock: LogClock,
}

/// How often the burst thread looks at the simulators' logs: the resolution of every
/// time the pacing figures give.
pub(super) const BURST_POLL: Duration = Duration::from_millis(1);
/// Even without a write-back seen in the log, every pending booking is looked at this
/// often (a safety net; a write the log did not show in full is looked for at once).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(2);

/// Inserts `n` bookings at once (round-robin over the trainers, starting within the next
/// [`BURST_HORIZON_SECS`]) and waits until every one has settled. Only the bookings a new
/// write-back in the Salesforce log names are looked at, so watching 10,000 costs the
/// bench next to nothing while the service works.
pub(super) fn burst_phase(
    sf: &SalesforceSim,
    lark: &LarkSim,
    trainers: &[String],
    order: BurstOrder,
    n: usize,
    latency: Duration,
) -> anyhow::Result<BurstRaw> {
    let deadline = Duration::from_secs_f64(limit_bound_secs(&[], n) * 2.0 + 120.0) + latency * 10;
    let (sf_mark, lark_mark) = (sf.requests().len(), lark.requests().len());
    let now = Utc::now();
    let (mut sf_clock, mut lark_clock) = (LogClock::default(), LogClock::default());
    let started = Instant::now();
    // The service starts on the first events while the rest are inserted: the logs are
    // stamped along the way.
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let (trainer, slot) = burst_slot(order, i, n, trainers.len());
            let fields = booking_fields(&trainers[trainer], now + burst_offset(slot, n), i);
            let id = sf.insert(BOOKING, fields, SF_HUMAN_USER_ID);
            let at = started.elapsed();
            sf_clock.observe(at, sf.requests().len());
            lark_clock.observe(at, lark.requests().len());
            id
        })
        .collect();
    let inserts = started.elapsed();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut pending: HashSet<usize> = (0..n).collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_link = None;
    let mut wall = Duration::ZERO;
    let mut last_settled = None;
    let mut settled_at = Vec::with_capacity(n);
    let mut settled_by_index = vec![None; n];
    let mut read_to = sf_mark;
    let mut last_full_scan = Duration::ZERO;
    loop {
        let at = started.elapsed();
        let sf_len = sf.requests().len();
        sf_clock.observe(at, sf_len);
        lark_clock.observe(at, lark.requests().len());
        let mut candidates: Vec<usize> = Vec::new();
        let mut full_scan = at >= last_full_scan + FULL_SCAN_EVERY;
        if sf_len > read_to {
            for r in since(sf.requests(), read_to) {
                match written_ids(&r) {
                    Some(written) => candidates.extend(
                        written
                            .iter()
                            .filter_map(|id| index.get(id.as_str()).copied()),
                    ),
                    None => full_scan = true,
                }
            }
            read_to = sf_len;
        }
        if full_scan {
            last_full_scan = at;
            candidates = pending.iter().copied().collect();
        }
        candidates.sort_unstable();
        candidates.dedup();
        for i in candidates {
            if !pending.contains(&i) {
                continue;
            }
            if let Some(status) = settled_status(sf, &ids[i]) {
                if status == "Created" {
                    first_link.get_or_insert(at);
                }
                *statuses.entry(status).or_default() += 1;
                pending.remove(&i);
                wall = at;
                settled_at.push(at);
                settled_by_index[i] = Some(at);
                last_settled = Some(i);
            }
        }
        if pending.is_empty() {
            break;
        }
        if at > deadline {
            *statuses
                .entry("(none after the deadline)".into())
                .or_default() += pending.len();
            wall = at;
            break;
        }
        std::thread::sleep(BURST_POLL);
    }
    if let Some(i) = last_settled {
        wait_for_write_logged(sf.requests(), sf_mark, &ids[i])?;
    }
    // Requests answered while the last write-back was found still get a time.
    let at = started.elapsed();
    sf_clock.observe(at, sf.requests().len());
    lark_clock.observe(at, lark.requests().len());
    Ok(BurstRaw {
        started,
        inserts,
        settled_at,
        settled_by_index,
        wall,
        first_link: first_link.unwrap_or(wall),
        statuses,
        sf_mark,
        lark_mark,
        sf_clock,
        lark_clock,
    })
}

/// Bookings of the burst start within this many seconds from an hour ahead, spread evenly.
pub(super) const BURST_HORIZON_SECS: i64 = 20 * 86_400 - 7_200;

/// The trainer of the burst's `i`-th insert and its time slot (for [`burst_offset`]).
/// In both orders trainer `t` has the slots `t`, `t + trainers`, `t + 2 × trainers`, …:
/// only the order of the inserts differs.
pub(super) fn burst_slot(order: BurstOrder, i: usize, n: usize, trainers: usize) -> (usize, usize) {
    match order {
        BurstOrder::RoundRobin => (i % trainers, i),
        BurstOrder::ByTrainer => {
            // Trainer t holds the slots ≡ t (mod trainers) below n: the first `n mod
            // trainers` trainers one more than the others.
            let (base, extra) = (n / trainers, n % trainers);
            let big = extra * (base + 1);
            let (t, j) = if i < big {
                (i / (base + 1), i % (base + 1))
            } else {
                (extra + (i - big) / base.max(1), (i - big) % base.max(1))
            };
            (t, t + j * trainers)
        }
    }
}

/// When the burst's booking `i` of `n` starts, from now.
pub(super) fn burst_offset(i: usize, n: usize) -> chrono::Duration {
    chrono::Duration::seconds(3_600 + (i as i64 * BURST_HORIZON_SECS) / n as i64)
}

/// The booking ids a logged Salesforce write names (a collection update's records, or
/// one record's path); an empty list for any other request, None when the body could
/// not be read in full (the log truncates long bodies).
pub(super) fn written_ids(r: &RecordedRequest) -> Option<Vec<String>> {
    if r.method != Method::PATCH {
        return Some(Vec::new());
    }
    if sf_kind(r) == "update" {
        let id = r.path.rsplit('/').next().unwrap_or_default();
        return Some(vec![id.to_string()]);
    }
    let body: Value = serde_json::from_str(&r.body).ok()?;
    Some(
        body.get("records")?
            .as_array()?
            .iter()
            .filter_map(|rec| rec.get("id").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

/// Waits until a write-back naming `id` is in the log: a request is logged only after
/// its response, so the record can show the write a moment before the log does.
pub(super) fn wait_for_write_logged(log: &RequestLog, mark: usize, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let i = AtomicUsize::new(0);
        let found = log.matching(|r| {
            i.fetch_add(1, Ordering::Relaxed) >= mark
                && r.method == Method::PATCH
                && r.body.contains(id)
        });
        if !found.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the write-back of {id} never showed in the Salesforce request log");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
