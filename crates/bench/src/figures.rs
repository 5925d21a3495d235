//! The figures: the report's types, and turning what the burst saw, the simulators'
//! request logs and `/proc` into numbers, checked against the targets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use serde::Serialize;
use serde_json::Value;

use lvb_simulators::common::MAX_LOGGED_BODY;
use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::{RecordedRequest, RequestLog};

use super::*;

/// Every figure the bench measures (written as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub lone: LoneFigures,
    pub burst: BurstFigures,
    pub resources: Resources,
    pub targets: Vec<TargetRow>,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub bookings: usize,
    pub trainers: usize,
    /// The order the burst's bookings were inserted in.
    pub order: BurstOrder,
    pub expired_trainers: usize,
    pub latency_ms: u64,
    pub lone_bookings: usize,
    /// `in-process` or `child-process`.
    pub service: String,
    /// Whether the service puts meetings on calendars (`LVB__CALENDAR__ENABLED`).
    pub calendar_enabled: bool,
    pub started_at: String,
    /// `/proc/loadavg` when the bench started and when the burst ended: the machine is
    /// shared, so a figure is only as good as the load it was measured under.
    pub load_at_start: String,
    pub load_after_burst: String,
}

/// Lone-booking latency: from the insert (which raises the CDC event) to the write-back
/// landing in the Salesforce simulator.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LoneFigures {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Measured minus (calls on the path × simulated latency), per sample.
    pub overhead_p50_ms: f64,
    pub overhead_p99_ms: f64,
    /// What one simulated call really adds (median round trip with the latency minus
    /// without, measured before the service starts): tokio's timer rounds sleeps up.
    pub simulated_latency_effective_ms: f64,
    /// Overhead against the effective latency instead of the nominal one.
    pub overhead_effective_p50_ms: f64,
    pub overhead_effective_p99_ms: f64,
    /// Non-streaming Salesforce calls made for one lone booking (mean and worst).
    pub salesforce_calls_mean: f64,
    pub salesforce_calls_max: usize,
    /// Lark calls made for one lone booking (mean).
    pub lark_calls_mean: f64,
    /// Calls on the path by kind, summed over every sample.
    pub salesforce_calls_by_kind: BTreeMap<String, usize>,
    pub lark_calls_by_kind: BTreeMap<String, usize>,
    /// Calls on a lone booking's path that the link waits for, one after another:
    /// query, apply, (event create when the calendar is on,) write-back.
    pub path_calls: usize,
    /// p50 latency beyond `path_calls` × the simulated latency (issue 22's measure:
    /// "link time p50 beyond 4 × 30 ms", the simulators' own time included).
    pub link_p50_beyond_path_ms: f64,
    /// How "overhead" is computed.
    pub method: String,
}

/// The burst.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BurstFigures {
    pub bookings: usize,
    /// First insert → last booking with its link (or a final status).
    pub wall_secs: f64,
    pub first_link_secs: f64,
    /// Bookings / wall minutes.
    pub reservations_per_minute: f64,
    pub lark_limit_per_minute: usize,
    pub percent_of_lark_limit: f64,
    /// The shortest wall time Lark's limits allow for this many applies (50/s and
    /// 1000/min sliding windows) plus one booking's call path after its apply slot
    /// (apply, event create, write-back: [`PATH_AFTER_APPLY_CALLS`] × latency): the ideal.
    pub limit_bound_wall_secs: f64,
    /// limit_bound_wall_secs / wall_secs, in percent.
    pub percent_of_limit_bound: f64,
    /// limit_bound_wall_secs / wall_secs (issue 22 asks for ≥ 0.98).
    pub ratio_to_ideal: f64,
    /// Most reservations applied in any 60 s window of the burst (Lark allows 1000).
    pub busiest_minute_applies: usize,
    /// Reservations Lark accepted in each 5-second slice of the burst.
    pub applies_per_5s: Vec<usize>,
    /// Bookings settled (link written back, or a final status) in each 5-second slice.
    pub settled_per_5s: Vec<usize>,
    /// The service's own counters at the end (`/metrics`, `lvb_*` samples).
    pub service_metrics: BTreeMap<String, f64>,
    pub statuses: BTreeMap<String, usize>,
    pub linked: usize,
    pub failed: usize,
    pub salesforce_calls: BTreeMap<String, usize>,
    pub salesforce_calls_total: usize,
    pub salesforce_calls_per_booking: f64,
    /// Without streaming long-polls and auth (REST data calls only).
    pub salesforce_rest_calls_per_booking: f64,
    /// Every Salesforce call of the burst in order: when its answer was seen and what it
    /// was, so the batching behind `salesforce_calls` can be read.
    pub salesforce_timeline: Vec<SalesforceCall>,
    pub lark_calls: BTreeMap<String, usize>,
    pub lark_calls_per_booking: BTreeMap<String, f64>,
    /// Every Lark call of the burst but the app token, per booking.
    pub lark_calls_per_booking_total: f64,
    /// Lark answers with HTTP 429 (the pacer let a call through too early).
    pub lark_rate_limited: usize,
    /// Per Lark method (apply, calendar event create, primary-calendar lookup, refresh,
    /// bot message, …): calls, per booking, 429s and the busiest windows.
    pub lark_methods: BTreeMap<String, MethodFigures>,
    /// Calendar calls of every method (issue 22: ≤ bookings + one lookup per trainer).
    pub calendar_calls: usize,
    pub primary_lookups: PrimaryLookups,
    pub pacing: Pacing,
    pub refreshes: RefreshFigures,
}

/// One Lark method in the burst.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct MethodFigures {
    /// Calls of the burst.
    pub calls: usize,
    /// calls / bookings.
    pub per_booking: f64,
    /// Answered HTTP 429.
    pub rate_limited: usize,
    /// Most calls in any 1 s window by the simulator's clock (Lark allows 50 per method).
    pub busiest_second: usize,
    /// Most calls in any 60 s window by the simulator's clock (Lark allows 1000 per
    /// method).
    pub busiest_minute: usize,
}

/// Primary-calendar lookups of the burst. The request log does not say whose token a
/// lookup carried, so they are counted against the trainers whose calendar got events.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PrimaryLookups {
    /// `POST …/calendars/primary` calls of the burst.
    pub lookups: usize,
    /// Trainers with an event created on their calendar in the burst.
    pub trainers: usize,
    /// lookups / trainers (1.0 when each trainer's calendar is looked up once).
    pub per_trainer: f64,
    /// Lookups answered in each second of the burst (from the first insert), up to the
    /// last one.
    pub per_second: Vec<usize>,
    /// Event creates answered by the time the last lookup was.
    pub creates_before_last_lookup: usize,
}

/// Refresh-token grants seen by the Lark simulator during the burst.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RefreshFigures {
    pub expired_trainers: usize,
    /// How many expired trainers were refreshed 0, 1, 2… times.
    pub per_expired_trainer: BTreeMap<usize, usize>,
    pub min_per_expired_trainer: usize,
    pub max_per_expired_trainer: usize,
    /// Refreshes of trainers whose token was still valid (should be 0).
    pub of_valid_trainers: usize,
    /// Refresh grants with a token issued during the burst (a second refresh).
    pub chained: usize,
    pub total: usize,
}

/// Memory and CPU.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Resources {
    /// What the figures cover.
    pub scope: String,
    pub peak_rss_mb: f64,
    /// In-process only: RSS of simulators + bench before the service started.
    pub rss_before_service_mb: Option<f64>,
    /// RSS once the service was ready, before any trainer or booking (in-process: the
    /// whole process).
    pub rss_at_ready_mb: Option<f64>,
    /// CPU seconds of the service over the whole run (estimated in-process: process
    /// total minus the simulators' and the bench's threads).
    pub service_cpu_secs: f64,
    pub service_cpu_secs_burst: f64,
    /// service_cpu_secs_burst per booking of the burst, in milliseconds.
    pub service_cpu_ms_per_booking: f64,
    /// Peak RSS of the bench's own process (simulators, their logs, the driver); with
    /// `--service-process` it does not hold the service, whose figure is `peak_rss_mb`.
    pub bench_peak_rss_mb: f64,
    pub process_cpu_secs: f64,
    pub simulators_cpu_secs: Option<f64>,
    pub bench_cpu_secs: Option<f64>,
}

/// One target (of issue 7 or issue 22) and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    /// The issue that set it.
    pub issue: u32,
    pub target: String,
    pub measured: String,
    /// None when this run cannot judge it.
    pub met: Option<bool>,
}

/// Requests logged from position `mark` on (cloning only those).
pub(super) fn since(log: &RequestLog, mark: usize) -> Vec<RecordedRequest> {
    let i = AtomicUsize::new(0);
    log.matching(|_| i.fetch_add(1, Ordering::Relaxed) >= mark)
}

/// Kind of a Salesforce call, by path.
/// One Salesforce call of the burst's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct SalesforceCall {
    /// When its answer was seen, seconds from the first insert (None: after the last look).
    pub secs: Option<f64>,
    pub kind: &'static str,
    /// Records a collection call carried (`"id"` keys in its body), or ids a query named
    /// (quoted values in it); None for other calls, and for a body the log cut short
    /// (past 64 KB: the burst's write of 20 rotated token pairs counted 14).
    pub records: Option<usize>,
    /// For a query, the object it reads (`FROM …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl SalesforceCall {
    fn of(t: &Timed<'_>) -> SalesforceCall {
        let kind = sf_kind(t.request);
        let soql = (kind == "query").then(|| {
            url::form_urlencoded::parse(t.request.query.as_bytes())
                .find(|(k, _)| k == "q")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        });
        let records = match kind {
            "composite" if t.request.body.len() < MAX_LOGGED_BODY => {
                Some(t.request.body.matches("\"id\"").count())
            }
            "query" => soql.as_ref().map(|q| q.matches('\'').count() / 2),
            _ => None,
        };
        let object = soql.and_then(|q| {
            let from = q.find(" FROM ")? + 6;
            q[from..].split_whitespace().next().map(str::to_string)
        });
        SalesforceCall {
            secs: t.at.map(|d| round3(d.as_secs_f64())),
            kind,
            records,
            object,
        }
    }
}

pub(super) fn sf_kind(r: &RecordedRequest) -> &'static str {
    let p = r.path.as_str();
    if p.contains("/services/oauth2/token") {
        "auth"
    } else if p.contains("/cometd/") {
        "streaming"
    } else if p.contains("/composite/sobjects") {
        "composite"
    } else if p.contains("/describe") {
        "describe"
    } else if p.contains("/query") {
        "query"
    } else if r.method == Method::PATCH && p.contains("/sobjects/") {
        "update"
    } else if r.method == Method::POST && p.contains("/sobjects/") {
        "create"
    } else {
        "other"
    }
}

/// Kind of a Lark call, by path (and grant type for the token endpoints).
pub(super) fn lark_kind(r: &RecordedRequest) -> &'static str {
    let p = r.path.as_str();
    if p.contains("/auth/v3/") {
        "app_token"
    } else if p.contains("/authen/v2/oauth/token") || p.contains("/authen/v1/oidc/") {
        if refresh_token_of(r).is_some() {
            "refresh"
        } else {
            "code_exchange"
        }
    } else if p.contains("/authen/v1/user_info") {
        "user_info"
    } else if p.contains("/authen/v1/authorize") {
        "authorize_page"
    } else if p.contains("/vc/v1/reserves/apply") {
        "apply"
    } else if p.contains("/vc/v1/reserves/") {
        match r.method {
            Method::PUT => "reserve_update",
            Method::DELETE => "reserve_delete",
            _ => "reserve_get",
        }
    } else if p.contains("/im/v1/messages") {
        "message"
    } else if p.ends_with("/calendar/v4/calendars/primary") {
        "calendar_primary"
    } else if p.contains("/calendar/v4/calendars/") && p.contains("/attendees") {
        "calendar_attendees"
    } else if p.contains("/calendar/v4/calendars/") && p.contains("/events") {
        match r.method {
            Method::POST => "calendar_event_create",
            Method::PATCH => "calendar_event_patch",
            Method::DELETE => "calendar_event_delete",
            _ => "calendar_event_get",
        }
    } else if p.contains("/contact/v3/users/batch_get_id") {
        "contact_lookup"
    } else {
        "other"
    }
}

/// The refresh token a refresh grant spends (v2 and v1 bodies alike).
pub(super) fn refresh_token_of(r: &RecordedRequest) -> Option<String> {
    let body: Value = serde_json::from_str(&r.body).ok()?;
    if body.get("grant_type")?.as_str()? != "refresh_token" {
        return None;
    }
    Some(body.get("refresh_token")?.as_str()?.to_string())
}

/// The shortest time Lark's apply limits (50 per second, 1000 per minute, sliding
/// windows) allow from 0 to the last of `n` applies, when `prior` applies (seconds,
/// negative, ascending: the lone bookings just before the burst) still count.
pub(super) fn limit_bound_secs(prior: &[f64], n: usize) -> f64 {
    ideal_schedule(prior, n, 1.0, 60.0)
        .last()
        .copied()
        .unwrap_or_default()
}

/// Most entries of a sorted list within any `window`.
pub(super) fn busiest_window(sorted: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// How many of `times` fall in each consecutive `slice` from zero.
pub(super) fn per_slice(times: &[Duration], slice: Duration) -> Vec<usize> {
    let mut out = Vec::new();
    for t in times {
        let i = (t.as_secs_f64() / slice.as_secs_f64()) as usize;
        if out.len() <= i {
            out.resize(i + 1, 0);
        }
        out[i] += 1;
    }
    out
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Turns what the burst thread saw and the simulators' logs into figures.
pub(super) fn burst_figures(
    args: &BenchArgs,
    sf: &SalesforceSim,
    lark: &LarkSim,
    trainers: &[BenchTrainer],
    refresh_owner: &HashMap<String, usize>,
    raw: &BurstRaw,
    latency: Duration,
) -> BurstFigures {
    let n = args.bookings;
    let wall = raw.wall.as_secs_f64().max(1e-9);
    let started = tokio::time::Instant::from_std(raw.started);
    let reserves = lark.reserves();
    let mut applied: Vec<Duration> = reserves
        .iter()
        .filter(|r| r.applied_at >= started)
        .map(|r| r.applied_at - started)
        .collect();
    applied.sort();
    // Lone bookings of the last minute still fill Lark's minute window.
    let mut prior: Vec<f64> = reserves
        .iter()
        .filter(|r| r.applied_at < started)
        .map(|r| -(started - r.applied_at).as_secs_f64())
        .filter(|&t| t > -60.0)
        .collect();
    prior.sort_by(f64::total_cmp);
    let bound = limit_bound_secs(&prior, n) + PATH_AFTER_APPLY_CALLS * latency.as_secs_f64();

    let sf_log = since(sf.requests(), raw.sf_mark);
    let lark_log = since(lark.requests(), raw.lark_mark);
    let sf_timed = timed(&sf_log, raw.sf_mark, &raw.sf_clock);
    let lark_timed = timed(&lark_log, raw.lark_mark, &raw.lark_clock);
    let lark_methods = method_figures(&lark_log, started, n);
    let pacing = pacing_figures(raw, &applied, &prior, &sf_timed, &lark_timed);
    let primary_lookups = primary_lookups(&lark_timed);
    let mut salesforce_calls: BTreeMap<String, usize> = BTreeMap::new();
    for r in &sf_log {
        *salesforce_calls.entry(sf_kind(r).into()).or_default() += 1;
    }
    let rest = sf_log
        .iter()
        .filter(|r| !matches!(sf_kind(r), "streaming" | "auth"))
        .count();
    let mut lark_calls: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_trainer = vec![0usize; trainers.len()];
    let mut chained = 0;
    for r in &lark_log {
        *lark_calls.entry(lark_kind(r).into()).or_default() += 1;
        if let Some(token) = refresh_token_of(r) {
            match refresh_owner.get(&token) {
                Some(&i) => per_trainer[i] += 1,
                None => chained += 1,
            }
        }
    }
    let mut refreshes = RefreshFigures {
        chained,
        total: per_trainer.iter().sum::<usize>() + chained,
        ..RefreshFigures::default()
    };
    for (t, &count) in trainers.iter().zip(&per_trainer) {
        if t.expired {
            refreshes.expired_trainers += 1;
            *refreshes.per_expired_trainer.entry(count).or_default() += 1;
        } else {
            refreshes.of_valid_trainers += count;
        }
    }
    refreshes.min_per_expired_trainer = refreshes
        .per_expired_trainer
        .keys()
        .next()
        .copied()
        .unwrap_or(0);
    refreshes.max_per_expired_trainer = refreshes
        .per_expired_trainer
        .keys()
        .last()
        .copied()
        .unwrap_or(0);

    let linked = raw.statuses.get("Created").copied().unwrap_or(0);
    let failed = raw.statuses.get("Failed").copied().unwrap_or(0);
    let rate = n as f64 / (wall / 60.0);
    BurstFigures {
        bookings: n,
        wall_secs: round2(wall),
        first_link_secs: round2(raw.first_link.as_secs_f64()),
        reservations_per_minute: round2(rate),
        lark_limit_per_minute: LARK_APPLY_PER_MINUTE,
        percent_of_lark_limit: round2(100.0 * rate / LARK_APPLY_PER_MINUTE as f64),
        limit_bound_wall_secs: round2(bound),
        percent_of_limit_bound: round2(100.0 * bound / wall),
        ratio_to_ideal: round3(bound / wall),
        busiest_minute_applies: busiest_window(&applied, Duration::from_secs(60)),
        applies_per_5s: per_slice(&applied, Duration::from_secs(5)),
        settled_per_5s: per_slice(&raw.settled_at, Duration::from_secs(5)),
        service_metrics: BTreeMap::new(),
        statuses: raw.statuses.clone(),
        linked,
        failed,
        salesforce_calls_total: sf_log.len(),
        salesforce_calls_per_booking: round4(sf_log.len() as f64 / n as f64),
        salesforce_rest_calls_per_booking: round4(rest as f64 / n as f64),
        salesforce_timeline: sf_timed.iter().map(SalesforceCall::of).collect(),
        salesforce_calls,
        lark_calls_per_booking: lark_calls
            .iter()
            .map(|(k, &v)| (k.clone(), round4(v as f64 / n as f64)))
            .collect(),
        lark_calls_per_booking_total: round4(
            lark_calls
                .iter()
                .filter(|(k, _)| k.as_str() != "app_token")
                .map(|(_, &v)| v)
                .sum::<usize>() as f64
                / n as f64,
        ),
        lark_rate_limited: lark_log.iter().filter(|r| r.status == 429).count(),
        calendar_calls: lark_calls
            .iter()
            .filter(|(k, _)| k.starts_with("calendar_"))
            .map(|(_, &v)| v)
            .sum(),
        lark_calls,
        lark_methods,
        primary_lookups,
        pacing,
        refreshes,
    }
}

/// Calls, 429s and busiest windows per Lark method. The windows are counted by the Lark
/// simulator's own clock (when it took each call in, as its limits count them), not by
/// the burst's polls of its log: a poll that falls behind stamps a late second's calls
/// together with the next one's.
pub(super) fn method_figures(
    calls: &[RecordedRequest],
    started: tokio::time::Instant,
    bookings: usize,
) -> BTreeMap<String, MethodFigures> {
    let mut times: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut out: BTreeMap<String, MethodFigures> = BTreeMap::new();
    for r in calls {
        let kind = lark_kind(r);
        let m = out.entry(kind.to_string()).or_default();
        m.calls += 1;
        if r.status == 429 {
            m.rate_limited += 1;
        }
        times
            .entry(kind)
            .or_default()
            .push(r.at.saturating_duration_since(started));
    }
    for (kind, m) in out.iter_mut() {
        m.per_booking = round4(m.calls as f64 / bookings.max(1) as f64);
        if let Some(t) = times.get_mut(kind.as_str()) {
            t.sort();
            m.busiest_second = busiest_window(t, Duration::from_secs(1));
            m.busiest_minute = busiest_window(t, Duration::from_secs(60));
        }
    }
    out
}

/// The calendar id of an event create's path (`…/calendars/{id}/events`).
pub(super) fn calendar_of(r: &RecordedRequest) -> Option<&str> {
    let rest = r.path.strip_prefix("/open-apis/calendar/v4/calendars/")?;
    let (calendar, tail) = rest.split_once('/')?;
    (tail == "events").then_some(calendar)
}

/// Primary-calendar lookups against the trainers whose calendars got events.
pub(super) fn primary_lookups(calls: &[Timed<'_>]) -> PrimaryLookups {
    let lookups: Vec<Option<Duration>> = calls
        .iter()
        .filter(|t| lark_kind(t.request) == "calendar_primary")
        .map(|t| t.at)
        .collect();
    let creates: Vec<&Timed<'_>> = calls
        .iter()
        .filter(|t| lark_kind(t.request) == "calendar_event_create")
        .collect();
    let trainers: std::collections::HashSet<&str> = creates
        .iter()
        .filter_map(|t| calendar_of(t.request))
        .collect();
    let last_lookup = lookups.iter().flatten().max().copied();
    let seconds: Vec<Duration> = lookups.iter().flatten().copied().collect();
    PrimaryLookups {
        lookups: lookups.len(),
        trainers: trainers.len(),
        per_trainer: round2(lookups.len() as f64 / trainers.len().max(1) as f64),
        per_second: per_slice(&seconds, Duration::from_secs(1)),
        creates_before_last_lookup: last_lookup.map_or(0, |last| {
            creates
                .iter()
                .filter(|t| t.at.is_some_and(|at| at <= last))
                .count()
        }),
    }
}

/// The head, the applies' pace and the tail of the burst.
pub(super) fn pacing_figures(
    raw: &BurstRaw,
    applied: &[Duration],
    prior: &[f64],
    sf: &[Timed<'_>],
    lark: &[Timed<'_>],
) -> Pacing {
    let secs = |d: Option<Duration>| d.map(|d| round3(d.as_secs_f64()));
    let inserts = raw.inserts;
    // The long-poll that carried the first event: the first one answered after the
    // inserts began (a poll parked before them answers when the first event comes).
    let (first_event, _) = first_last(sf.iter().filter(|t| sf_kind(t.request) == "streaming"));
    let (first_query, _) = first_last(sf.iter().filter(|t| sf_kind(t.request) == "query"));
    let (first_create, last_create) = first_last(
        lark.iter()
            .filter(|t| lark_kind(t.request) == "calendar_event_create"),
    );
    let first_apply = applied.first().copied();
    let last_apply = applied.last().copied();
    // Prior applies, seen from the first apply of the burst.
    let offset = first_apply.map_or(0.0, |d| d.as_secs_f64());
    let prior_from_first: Vec<f64> = prior.iter().map(|p| p - offset).collect();
    let from_first: Vec<f64> = applied.iter().map(|d| d.as_secs_f64() - offset).collect();
    let margin = PACER_MARGIN.as_secs_f64();
    let (apply_checkpoints, apply_blocks) = apply_lateness(&from_first, &prior_from_first, margin);
    let ideal = ideal_schedule(&prior_from_first, applied.len(), 1.0, 60.0);
    let padded = ideal_schedule(
        &prior_from_first,
        applied.len(),
        1.0 + margin,
        60.0 + margin,
    );
    let wall = raw.wall.as_secs_f64();
    let n = raw.settled_by_index.len();
    let applies_at = per_booking(lark, "apply", n);
    let events_at = per_booking(lark, "calendar_event_create", n);
    let write_backs = sf
        .iter()
        .filter(|t| sf_kind(t.request) == "composite")
        .map(|t| WriteBackCall {
            at_secs: round3(t.at.unwrap_or(raw.wall).as_secs_f64()),
            records: written_ids(t.request).map_or(0, |ids| ids.len()),
        })
        .collect();
    Pacing {
        method: format!(
            "answer times, seen by polling the simulators' request logs every {} ms (a call \
             is answered one simulated latency after it is sent); applies by the Lark \
             simulator's own clock",
            BURST_POLL.as_millis()
        ),
        inserts_secs: round3(inserts.as_secs_f64()),
        first_event_delivered_secs: secs(first_event),
        first_query_secs: secs(first_query),
        first_apply_secs: secs(first_apply),
        first_event_create_secs: secs(first_create),
        first_link_secs: round3(raw.first_link.as_secs_f64()),
        last_apply_secs: secs(last_apply),
        last_event_create_secs: secs(last_create),
        last_link_secs: round3(wall),
        apply_span_secs: round3(from_first.last().copied().unwrap_or_default()),
        apply_span_ideal_secs: round3(ideal.last().copied().unwrap_or_default()),
        apply_span_pacer_bound_secs: round3(padded.last().copied().unwrap_or_default()),
        head_secs: round3(first_apply.unwrap_or_default().as_secs_f64()),
        tail_secs: round3(wall - last_apply.unwrap_or_default().as_secs_f64()),
        apply_blocks,
        apply_checkpoints,
        busiest_second_applies: busiest_window(applied, Duration::from_secs(1)),
        busiest_minute_applies: busiest_window(applied, Duration::from_secs(60)),
        booking_queries_secs: sf
            .iter()
            .filter(|t| sf_kind(t.request) == "query")
            .filter_map(|t| t.at.map(|at| round3(at.as_secs_f64())))
            .collect(),
        write_backs,
        apply_to_event_ms: Spread::of(gaps(&applies_at, &events_at)),
        event_to_link_ms: Spread::of(gaps(&events_at, &raw.settled_by_index)),
    }
}

pub(super) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Peak RSS and CPU of the service (or, in-process, of the whole process with the
/// simulators' and the bench's threads told apart).
pub(super) fn resources(
    bookings: usize,
    service: &Service,
    rss_before_service: Option<u64>,
    rss_at_ready: Option<u64>,
    cpu_before_service: CpuSplit,
    finished_bench_cpu: f64,
    service_cpu_burst: f64,
) -> Resources {
    let mb = |kb: u64| round2(kb as f64 / 1024.0);
    let per_booking_ms = 1000.0 * service_cpu_burst / bookings.max(1) as f64;
    match service {
        Service::Child { child, .. } => {
            let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
            let cpu = cpu_secs_of(&format!("/proc/{pid}/stat")).unwrap_or_default();
            Resources {
                scope: "the service process alone (child process `lark-vc-bridge run`)".into(),
                peak_rss_mb: read_memory(&pid).map(|m| mb(m.hwm_kb)).unwrap_or_default(),
                rss_before_service_mb: None,
                rss_at_ready_mb: rss_at_ready.map(mb),
                service_cpu_secs: round2(cpu),
                service_cpu_secs_burst: round2(service_cpu_burst),
                service_cpu_ms_per_booking: round4(per_booking_ms),
                bench_peak_rss_mb: read_memory("self")
                    .map(|m| mb(m.hwm_kb))
                    .unwrap_or_default(),
                process_cpu_secs: round2(cpu),
                simulators_cpu_secs: None,
                bench_cpu_secs: None,
            }
        }
        Service::InProcess { .. } => {
            let now = CpuSplit::read_self();
            Resources {
                scope: "the whole bench process: service + both simulators (their state and \
                        request logs) + the bench driver; run with --service-process for the \
                        service alone"
                    .into(),
                peak_rss_mb: read_memory("self")
                    .map(|m| mb(m.hwm_kb))
                    .unwrap_or_default(),
                rss_before_service_mb: rss_before_service.map(mb),
                rss_at_ready_mb: rss_at_ready.map(mb),
                service_cpu_secs: round2(
                    now.service() - cpu_before_service.service() - finished_bench_cpu,
                ),
                service_cpu_secs_burst: round2(service_cpu_burst),
                service_cpu_ms_per_booking: round4(per_booking_ms),
                bench_peak_rss_mb: read_memory("self")
                    .map(|m| mb(m.hwm_kb))
                    .unwrap_or_default(),
                process_cpu_secs: round2(now.process),
                simulators_cpu_secs: Some(round2(now.sims)),
                bench_cpu_secs: Some(round2(now.bench + finished_bench_cpu)),
            }
        }
    }
}

/// The targets of issues 7 and 22 against the figures.
pub(super) fn targets(
    lone: &LoneFigures,
    burst: &BurstFigures,
    res: &Resources,
    separate_process: bool,
) -> Vec<TargetRow> {
    let unsettled: usize = burst
        .statuses
        .iter()
        .filter(|(k, _)| k.as_str() != "Created" && k.as_str() != "Failed")
        .map(|(_, v)| v)
        .sum();
    let mut rows = vec![
        TargetRow {
            issue: 7,
            // Judged against the fastest the limits allow for this many bookings (50/s
            // and 1000/min together), not against 1000/min alone: a 2000-booking burst
            // can average 1500/min, and one that needs a third minute window still
            // "averages" ~1000/min while running well below the limits.
            target: "≥ 90 % of Lark's limits sustained (vs limit-bound), zero failed".into(),
            measured: format!(
                "{:.0} % of the limit-bound {:.1} s ({:.1} s); {:.0}/min = {:.0} % of 1000/min; failed {}, not linked {}",
                burst.percent_of_limit_bound,
                burst.limit_bound_wall_secs,
                burst.wall_secs,
                burst.reservations_per_minute,
                burst.percent_of_lark_limit,
                burst.failed,
                unsettled
            ),
            met: Some(burst.percent_of_limit_bound >= 90.0 && burst.failed == 0 && unsettled == 0),
        },
        TargetRow {
            issue: 7,
            target: "≤ 0.05 Salesforce calls per booking in the burst".into(),
            measured: format!(
                "{:.4} ({} calls; REST data calls only: {:.4})",
                burst.salesforce_calls_per_booking,
                burst.salesforce_calls_total,
                burst.salesforce_rest_calls_per_booking
            ),
            met: Some(burst.salesforce_calls_per_booking <= 0.05),
        },
    ];
    // Issue 13: the calendar adds Lark calls per booking. Lark limits each method on its
    // own (50/s and 1000/min, sliding windows) and the service paces each method to
    // those; the request log has no times, so the busiest method's average rate over the
    // burst is shown (a burst spanning two minute windows averages above 1000/min while
    // no window holds more), and a 429 from any method is what misses the target.
    let minutes = (burst.wall_secs / 60.0).max(f64::EPSILON);
    let busiest_kind = burst
        .lark_calls
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "app_token" | "other"))
        .map(|(k, &v)| (k.clone(), v as f64 / minutes))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let per_booking: f64 = burst
        .lark_calls_per_booking
        .iter()
        .filter(|(k, _)| k.as_str() != "app_token")
        .map(|(_, v)| v)
        .sum();
    rows.push(TargetRow {
            issue: 7,
        target: "Lark calls per booking reported; each method paced under Lark's limits, no 429"
            .into(),
        measured: format!(
            "{:.2} Lark calls per booking {:?}; busiest method {} averaging {:.0}/min over the burst (apply's busiest minute: {}); {} answered 429",
            per_booking,
            burst.lark_calls_per_booking,
            busiest_kind.as_ref().map_or("none", |(k, _)| k.as_str()),
            busiest_kind.as_ref().map_or(0.0, |(_, r)| *r),
            burst.busiest_minute_applies,
            burst.lark_rate_limited
        ),
        met: Some(burst.lark_rate_limited == 0),
    });
    rows.push(TargetRow {
        issue: 7,
        target: "≤ 4 Salesforce calls for a lone booking".into(),
        measured: format!(
            "max {} (mean {:.2}; streaming long-polls not counted)",
            lone.salesforce_calls_max, lone.salesforce_calls_mean
        ),
        met: (lone.samples > 0).then_some(lone.salesforce_calls_max <= 4),
    });
    rows.push(TargetRow {
        issue: 7,
        target: "p50 overhead ≤ 10 ms for a lone booking".into(),
        measured: format!(
            "{:.2} ms (p99 {:.2} ms; latency p50 {:.2} ms)",
            lone.overhead_p50_ms, lone.overhead_p99_ms, lone.p50_ms
        ),
        met: (lone.samples > 0).then_some(lone.overhead_p50_ms <= 10.0),
    });
    rows.push(TargetRow {
        issue: 7,
        target: "Peak RSS ≤ 64 MB".into(),
        measured: if separate_process {
            format!("{:.1} MB (service process)", res.peak_rss_mb)
        } else {
            format!(
                "{:.1} MB for service + simulators (not judged: use --service-process)",
                res.peak_rss_mb
            )
        },
        met: separate_process.then_some(res.peak_rss_mb <= 64.0),
    });
    let r = &burst.refreshes;
    rows.push(TargetRow {
        issue: 7,
        target: "Exactly one refresh per trainer whose token had expired".into(),
        measured: format!(
            "{} expired trainers: min {} max {} each; valid trainers refreshed {}; chained {}",
            r.expired_trainers,
            r.min_per_expired_trainer,
            r.max_per_expired_trainer,
            r.of_valid_trainers,
            r.chained
        ),
        met: (r.expired_trainers > 0).then_some(
            r.min_per_expired_trainer == 1
                && r.max_per_expired_trainer == 1
                && r.of_valid_trainers == 0
                && r.chained == 0,
        ),
    });
    rows.extend(issue_22_targets(lone, burst, res, separate_process));
    rows
}

/// Issue 22's "done when", as far as one run can judge it (the 10,000 run's memory
/// against the 2,000 run's is for whoever compares the two reports).
fn issue_22_targets(
    lone: &LoneFigures,
    burst: &BurstFigures,
    res: &Resources,
    separate_process: bool,
) -> Vec<TargetRow> {
    let row = |target: &str, measured: String, met: Option<bool>| TargetRow {
        issue: 22,
        target: target.into(),
        measured,
        met,
    };
    let p = &burst.primary_lookups;
    let allowed = burst.bookings + p.trainers;
    let limited: BTreeMap<&str, usize> = burst
        .lark_methods
        .iter()
        .filter(|(_, m)| m.rate_limited > 0)
        .map(|(k, m)| (k.as_str(), m.rate_limited))
        .collect();
    vec![
        row(
            "Calendar calls ≤ creates + one primary lookup per trainer",
            format!(
                "{} calendar calls (≤ {allowed} allowed); {} primary lookups for {} trainers = {:.2} each",
                burst.calendar_calls, p.lookups, p.trainers, p.per_trainer
            ),
            Some(burst.calendar_calls <= allowed),
        ),
        row(
            "0 × 429 from every Lark method",
            format!("429s by method: {limited:?}"),
            Some(limited.is_empty()),
        ),
        row(
            "Wall time ≥ 98 % of the sliding-window ideal",
            format!(
                "{:.2} s against the ideal {:.2} s = {:.3}",
                burst.wall_secs, burst.limit_bound_wall_secs, burst.ratio_to_ideal
            ),
            Some(burst.ratio_to_ideal >= 0.98),
        ),
        row(
            "Peak RSS of the service ≤ 32 MiB",
            format!("{:.1} MiB", res.peak_rss_mb),
            separate_process.then_some(res.peak_rss_mb <= 32.0),
        ),
        row(
            "Service CPU ≤ 0.4 ms per booking in the burst",
            format!(
                "{:.3} ms ({:.2} s for {})",
                res.service_cpu_ms_per_booking, res.service_cpu_secs_burst, burst.bookings
            ),
            separate_process.then_some(res.service_cpu_ms_per_booking <= 0.4),
        ),
        row(
            "Salesforce ≤ 0.02 calls per booking in the burst",
            format!("{:.4}", burst.salesforce_calls_per_booking),
            Some(burst.salesforce_calls_per_booking <= 0.02),
        ),
        row(
            "Lone booking: link time p50 beyond the path's calls × latency ≤ 8 ms",
            format!(
                "{:.2} ms beyond {} × latency",
                lone.link_p50_beyond_path_ms, lone.path_calls
            ),
            (lone.samples > 0).then_some(lone.link_p50_beyond_path_ms <= 8.0),
        ),
    ]
}
