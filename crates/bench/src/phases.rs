//! The phases: seeding and connecting trainers, lone bookings one at a time, then the
//! burst — each observed only through the simulators.

use std::collections::{BTreeMap, HashMap};
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
    let cpu_burst_start = service.cpu_secs();
    let (raw, burst_bench_cpu) = {
        let (sf2, lark2) = (sf.clone(), lark.clone());
        let ids: Vec<String> = trainers.iter().map(|t| t.id.clone()).collect();
        let n = args.bookings;
        on_bench_thread(move || burst_phase(&sf2, &lark2, &ids, n, latency)).await?
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
    let resources = resources(
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
        expired_trainers: expired_count,
        latency_ms: args.latency_ms,
        lone_bookings: lone.samples,
        service: if args.service_process {
            "child-process"
        } else {
            "in-process"
        }
        .into(),
        started_at,
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

/// Measures `n` lone bookings, one after the other, for the given trainers in turn.
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
             path run one after another. One untimed warm-up booking first; {} ms idle between \
             samples so the streaming long-poll is parked when the booking is inserted.",
            gap.as_millis()
        ),
        ..LoneFigures::default()
    };
    let mut measured = Vec::new();
    let mut overheads = Vec::new();
    let mut overheads_effective = Vec::new();
    let effective_ms = effective_latency.as_secs_f64() * 1000.0;
    let (mut sf_total, mut lark_total) = (0usize, 0usize);
    for i in 0..=n {
        std::thread::sleep(gap);
        let trainer = &trainers[i % trainers.len()];
        let start_at = Utc::now() + chrono::Duration::days(1 + (i % 20) as i64);
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
        if i == 0 {
            continue; // warm-up
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
    figures.salesforce_calls_mean = round2(sf_total as f64 / n as f64);
    figures.lark_calls_mean = round2(lark_total as f64 / n as f64);
    Ok(figures)
}

/// What the burst thread saw.
pub(super) struct BurstRaw {
    pub(super) started: Instant,
    pub(super) settled_at: Vec<Duration>,
    pub(super) wall: Duration,
    pub(super) first_link: Duration,
    pub(super) statuses: BTreeMap<String, usize>,
    pub(super) sf_mark: usize,
    pub(super) lark_mark: usize,
}

/// Inserts `n` bookings at once (round-robin over the trainers, starting within the next
/// 20 days) and waits until every one has settled.
pub(super) fn burst_phase(
    sf: &SalesforceSim,
    lark: &LarkSim,
    trainers: &[String],
    n: usize,
    latency: Duration,
) -> anyhow::Result<BurstRaw> {
    let deadline = Duration::from_secs_f64(limit_bound_secs(&[], n) * 2.0 + 120.0) + latency * 10;
    let (sf_mark, lark_mark) = (sf.requests().len(), lark.requests().len());
    let now = Utc::now();
    let horizon = 20 * 86_400 - 7_200;
    let started = Instant::now();
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let offset = 3_600 + (i as i64 * horizon) / n as i64;
            let trainer = &trainers[i % trainers.len()];
            let fields = booking_fields(trainer, now + chrono::Duration::seconds(offset), i);
            sf.insert(BOOKING, fields, SF_HUMAN_USER_ID)
        })
        .collect();
    let mut pending: Vec<usize> = (0..n).collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = i64::MIN;
    let mut first_link = None;
    let mut wall = Duration::ZERO;
    let mut last_settled = None;
    let mut settled_at = Vec::with_capacity(n);
    while !pending.is_empty() {
        let replay = sf.hub().last_replay_id();
        if replay != seen {
            seen = replay;
            let at = started.elapsed();
            pending.retain(|&i| match settled_status(sf, &ids[i]) {
                Some(status) => {
                    if status == "Created" {
                        first_link.get_or_insert(at);
                    }
                    *statuses.entry(status).or_default() += 1;
                    wall = at;
                    settled_at.push(at);
                    last_settled = Some(i);
                    false
                }
                None => true,
            });
        }
        if started.elapsed() > deadline {
            *statuses
                .entry("(none after the deadline)".into())
                .or_default() += pending.len();
            wall = started.elapsed();
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(i) = last_settled {
        wait_for_write_logged(sf.requests(), sf_mark, &ids[i])?;
    }
    Ok(BurstRaw {
        started,
        settled_at,
        wall,
        first_link: first_link.unwrap_or(wall),
        statuses,
        sf_mark,
        lark_mark,
    })
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
