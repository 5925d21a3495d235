//! When things happened in the burst: the simulators' request logs carry no times, so the
//! burst thread stamps them as it watches them grow, and this module turns those stamps
//! into the pacing figures (issue 22: the head before the first apply, the applies' rate
//! against Lark's sliding windows, the tail after the last apply).
//!
//! It only reads what the burst thread recorded and the simulators kept; it changes
//! nothing and decides nothing about the service.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use lvb_simulators::RecordedRequest;

use super::*;

/// When a request log grew, as seen by a poller: `(time since the burst started, entries
/// logged by then)`, one stamp per change. A request is logged once it was answered, so
/// the stamp of entry `k` is when its answer was given, late by at most one poll.
#[derive(Debug, Clone, Default)]
pub(super) struct LogClock {
    stamps: Vec<(Duration, usize)>,
}

impl LogClock {
    /// Records that the log held `len` entries at `at` (ignored unless it grew).
    pub(super) fn observe(&mut self, at: Duration, len: usize) {
        if self.stamps.last().is_none_or(|&(_, l)| len > l) {
            self.stamps.push((at, len));
        }
    }

    /// When entry `index` (0-based, absolute in the log) was first seen, None when it
    /// was logged after the last observation.
    pub(super) fn time_of(&self, index: usize) -> Option<Duration> {
        let i = self.stamps.partition_point(|&(_, len)| len <= index);
        self.stamps.get(i).map(|&(at, _)| at)
    }
}

/// A request of the burst with the time its answer was seen.
#[derive(Debug, Clone)]
pub(super) struct Timed<'a> {
    pub(super) at: Option<Duration>,
    pub(super) request: &'a RecordedRequest,
}

/// Pairs each request logged from `mark` on with its time.
pub(super) fn timed<'a>(
    log: &'a [RecordedRequest],
    mark: usize,
    clock: &LogClock,
) -> Vec<Timed<'a>> {
    log.iter()
        .enumerate()
        .map(|(i, request)| Timed {
            at: clock.time_of(mark + i),
            request,
        })
        .collect()
}

/// The burst's head, its applies' pace and its tail (seconds from the first insert,
/// answer times; a call was sent about one simulated latency before).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Pacing {
    /// How the times are taken.
    pub method: String,
    /// Inserting every booking (each raises a change event) took this long.
    pub inserts_secs: f64,
    /// The first streaming long-poll answered after the first insert: the first change
    /// event on its way to the service.
    pub first_event_delivered_secs: Option<f64>,
    /// The service's first booking query answered.
    pub first_query_secs: Option<f64>,
    /// The first reservation Lark accepted (simulator clock).
    pub first_apply_secs: Option<f64>,
    /// The first calendar event created.
    pub first_event_create_secs: Option<f64>,
    /// The first link written back (the first booking settled).
    pub first_link_secs: f64,
    /// The last reservation Lark accepted.
    pub last_apply_secs: Option<f64>,
    /// The last calendar event created.
    pub last_event_create_secs: Option<f64>,
    /// The last booking settled (the burst's wall time).
    pub last_link_secs: f64,
    /// First apply → last apply.
    pub apply_span_secs: f64,
    /// The shortest span Lark's windows (50/s, 1000/min) allow for these applies after
    /// the first, counting the applies of the minute before.
    pub apply_span_ideal_secs: f64,
    /// The same with windows padded by [`PACER_MARGIN`] (1.1 s and 60.1 s), as the
    /// service's apply pacer pads them: the best it can do as measured.
    pub apply_span_pacer_bound_secs: f64,
    /// Head: first insert → first apply.
    pub head_secs: f64,
    /// Tail: last apply → last link written.
    pub tail_secs: f64,
    /// The applies in runs of 1,000 (one minute window's worth each): how long each run
    /// took against the ideal and the pacer's bound. The first runs' slowness is hidden
    /// by the minute window's wait; the last run's adds to the wall time.
    pub apply_blocks: Vec<ApplyBlock>,
    /// Checkpoints along the applies: when apply `index` happened and when the ideal
    /// schedule (from the first apply) would have had it.
    pub apply_checkpoints: Vec<ApplyCheckpoint>,
    /// Most applies in any 1.0 s window.
    pub busiest_second_applies: usize,
    /// Most applies in any 60 s window.
    pub busiest_minute_applies: usize,
    /// The service's booking queries (one per batch it reads): answer times.
    pub booking_queries_secs: Vec<f64>,
    /// The write-back calls: answer times and records written.
    pub write_backs: Vec<WriteBackCall>,
    /// Per booking: its apply answered → its event create answered.
    pub apply_to_event_ms: Spread,
    /// Per booking: its event create answered → its link seen written.
    pub event_to_link_ms: Spread,
}

/// One write-back call of the burst.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WriteBackCall {
    /// When it was answered, from the first insert.
    pub at_secs: f64,
    /// Records it wrote.
    pub records: usize,
}

/// A distribution in milliseconds.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Spread {
    /// How many values.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (milliseconds, any order).
    pub(super) fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        Spread {
            samples: values.len(),
            p50: round2(percentile(&values, 0.50)),
            p90: round2(percentile(&values, 0.90)),
            p99: round2(percentile(&values, 0.99)),
            max: round2(values.last().copied().unwrap_or_default()),
        }
    }
}

/// The burst's booking index an apply or event create was for: the bench names each
/// booking's merchant `Merchant {index}`, which the topic template puts in the
/// reservation's topic and the event's summary.
pub(super) fn booking_index(r: &RecordedRequest) -> Option<usize> {
    let body: Value = serde_json::from_str(&r.body).ok()?;
    let text = body
        .pointer("/meeting_settings/topic")
        .or_else(|| body.get("summary"))?
        .as_str()?;
    text.rsplit_once("Merchant ")?.1.parse().ok()
}

/// Per booking, the time from one kind of call's answer to another's (None for either
/// missing), in milliseconds.
pub(super) fn gaps(from: &[Option<Duration>], to: &[Option<Duration>]) -> Vec<f64> {
    from.iter()
        .zip(to)
        .filter_map(|(a, b)| Some(b.as_ref()?.as_secs_f64() - a.as_ref()?.as_secs_f64()))
        .map(|s| s * 1000.0)
        .collect()
}

/// When each booking's call of `kind` was answered, by booking index.
pub(super) fn per_booking(calls: &[Timed<'_>], kind: &str, n: usize) -> Vec<Option<Duration>> {
    let mut out = vec![None; n];
    for t in calls
        .iter()
        .filter(|t| lark_kind(t.request) == kind && t.request.status == 200)
    {
        if let Some(i) = booking_index(t.request).filter(|&i| i < n) {
            out[i] = out[i].or(t.at);
        }
    }
    out
}

/// One run of up to 1,000 consecutive applies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApplyBlock {
    /// Index of its first apply in the burst.
    pub first: usize,
    /// Index of its last apply.
    pub last: usize,
    /// When its first apply was, from the burst's first apply.
    pub start_secs: f64,
    /// First → last apply of the run.
    pub span_secs: f64,
    /// The same under Lark's windows (50/s).
    pub ideal_span_secs: f64,
    /// The same under the pacer's padded windows (50 per 1.1 s).
    pub pacer_bound_span_secs: f64,
}

/// Where one apply was against the ideal schedule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApplyCheckpoint {
    /// Which apply of the burst.
    pub index: usize,
    /// When it was, from the first apply.
    pub actual_secs: f64,
    /// When the ideal schedule has it.
    pub ideal_secs: f64,
}

/// The ideal start of each of `n` applies (from 0) under windows of `per_second` and
/// `per_minute` seconds, after `prior` applies (negative seconds, ascending).
pub(super) fn ideal_schedule(prior: &[f64], n: usize, second: f64, minute: f64) -> Vec<f64> {
    let mut starts: Vec<f64> = prior.to_vec();
    for _ in 0..n {
        let k = starts.len();
        let mut at = starts.last().copied().unwrap_or(0.0).max(0.0);
        if k >= LARK_APPLY_PER_SECOND {
            at = at.max(starts[k - LARK_APPLY_PER_SECOND] + second);
        }
        if k >= LARK_APPLY_PER_MINUTE {
            at = at.max(starts[k - LARK_APPLY_PER_MINUTE] + minute);
        }
        starts.push(at);
    }
    starts.split_off(prior.len())
}

/// Compares the applies (seconds from the first apply, ascending) with the ideal
/// schedule: checkpoints at the window boundaries, and each run of 1,000.
pub(super) fn apply_lateness(
    applies: &[f64],
    prior: &[f64],
    margin: f64,
) -> (Vec<ApplyCheckpoint>, Vec<ApplyBlock>) {
    let ideal = ideal_schedule(prior, applies.len(), 1.0, 60.0);
    let n = applies.len();
    let mut wanted: Vec<usize> = vec![0, 49, 50, 99, 499];
    for k in (LARK_APPLY_PER_MINUTE..=n).step_by(LARK_APPLY_PER_MINUTE) {
        wanted.extend([k - 1, k]);
    }
    wanted.push(n.saturating_sub(1));
    wanted.retain(|&k| k < n);
    wanted.sort_unstable();
    wanted.dedup();
    let checkpoints = wanted
        .into_iter()
        .map(|k| ApplyCheckpoint {
            index: k,
            actual_secs: round3(applies[k]),
            ideal_secs: round3(ideal[k]),
        })
        .collect();
    let span = |k: usize, second: f64, minute: f64| {
        ideal_schedule(&[], k, second, minute)
            .last()
            .copied()
            .unwrap_or_default()
    };
    let blocks = (0..n)
        .step_by(LARK_APPLY_PER_MINUTE)
        .map(|first| {
            let last = (first + LARK_APPLY_PER_MINUTE).min(n) - 1;
            let k = last - first + 1;
            ApplyBlock {
                first,
                last,
                start_secs: round3(applies[first]),
                span_secs: round3(applies[last] - applies[first]),
                ideal_span_secs: round3(span(k, 1.0, 60.0)),
                pacer_bound_span_secs: round3(span(k, 1.0 + margin, 60.0 + margin)),
            }
        })
        .collect();
    (checkpoints, blocks)
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// First and last answer time of the requests of one kind.
pub(super) fn first_last<'a>(
    calls: impl Iterator<Item = &'a Timed<'a>>,
) -> (Option<Duration>, Option<Duration>) {
    let times: Vec<Duration> = calls.filter_map(|t| t.at).collect();
    (times.iter().min().copied(), times.iter().max().copied())
}
