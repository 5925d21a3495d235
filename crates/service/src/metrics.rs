//! The metrics of `/metrics`: counters, gauges and histograms registered in one
//! `prometheus-client` registry and rendered in the OpenMetrics text format, plus the
//! process metrics (`process_*`, read from `/proc` on Linux) and `lvb_build_info`.
//!
//! Every metric name is a constant in [`names`]; call sites name metrics only through
//! them. Labels carry kinds (an action, an outcome, an operation), never ids. This module
//! measures nothing itself except the process; it does not log and knows no booking.

mod process;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::ids::BookingId;

/// The kinds of [`names::FAILURES`] (its `kind` label): every failure the service counts,
/// named once here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A booking's work failed and waits on the retry list (rule 14).
    BookingRetry,
    /// A booking's retries are spent (or its session started): it is `Failed`.
    RetriesExhausted,
    /// A failed batch of stream events is tried again.
    BatchRetry,
    /// A booking's data cannot get a meeting (times, trainer, template).
    BookingInvalid,
    /// Lark refused a reservation (parameters, permission).
    LarkRefused,
    /// Lark could not be reached or failed for a booking; tried again.
    LarkUnavailable,
    /// Lark refused to delete a reservation; it lapses on its own.
    LarkDeleteRefused,
    /// The answer to a reserve apply was lost (rule 13).
    ApplyAnswerLost,
    /// A booking is `Failed` after its applies in doubt.
    ApplyInDoubt,
    /// The app lacks a permission app-hosted meetings need (rule 21).
    AppPermissionMissing,
    /// The calendar step failed; the meeting stands (rule 20).
    CalendarFailed,
    /// Salesforce refused a booking's write-back.
    SalesforceWriteRejected,
    /// Salesforce refused even the `Failed` status of a booking given up on.
    FailedStatusRefused,
}

impl Failure {
    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::BookingRetry => "booking_retry",
            Failure::RetriesExhausted => "retries_exhausted",
            Failure::BatchRetry => "batch_retry",
            Failure::BookingInvalid => "booking_invalid",
            Failure::LarkRefused => "lark_refused",
            Failure::LarkUnavailable => "lark_unavailable",
            Failure::LarkDeleteRefused => "lark_delete_refused",
            Failure::ApplyAnswerLost => "apply_answer_lost",
            Failure::ApplyInDoubt => "apply_in_doubt",
            Failure::AppPermissionMissing => "app_permission_missing",
            Failure::CalendarFailed => "calendar_failed",
            Failure::SalesforceWriteRejected => "salesforce_write_rejected",
            Failure::FailedStatusRefused => "failed_status_refused",
        }
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name the service exposes, as it appears on `/metrics` (counters with
/// their `_total`, units in the name). Dashboards rely on these: change one only with a
/// line in the README's metrics section.
pub mod names {
    /// Counter: streaming events received.
    pub const EVENTS_RECEIVED: &str = "lvb_events_received_total";
    /// Counter: streaming events whose work is done.
    pub const EVENTS_PROCESSED: &str = "lvb_events_processed_total";
    /// Counter: streaming events skipped, by `reason`.
    pub const EVENTS_SKIPPED: &str = "lvb_events_skipped_total";
    /// Counter: Lark reservations changed, by `action`.
    pub const MEETINGS: &str = "lvb_meetings_total";
    /// Counter: failures, by `kind`.
    pub const FAILURES: &str = "lvb_failures_total";
    /// Counter: trainer token refreshes, by `outcome`.
    pub const TOKEN_REFRESHES: &str = "lvb_token_refreshes_total";
    /// Counter: OAuth callbacks, by `outcome`.
    pub const OAUTH_CONNECTIONS: &str = "lvb_oauth_connections_total";
    /// Gauge: seconds between the last event's commit and its intake.
    pub const STREAMING_LAG: &str = "lvb_streaming_lag_seconds";
    /// Histogram: a booking change's commit (`commitTimestamp`) → its link written.
    pub const BOOKING_LATENCY: &str = "lvb_booking_latency_seconds";
    /// Histogram: one HTTP request to Lark, by `operation`.
    pub const LARK_REQUEST_DURATION: &str = "lvb_lark_request_duration_seconds";
    /// Histogram: one HTTP request to Salesforce REST, by `operation`.
    pub const SALESFORCE_REQUEST_DURATION: &str = "lvb_salesforce_request_duration_seconds";
    // Issue 14: admin alerts and the success measures (gauges set on each sweep).
    /// Counter: admin alerts (rule 22), by `subject` (disconnected, failed, pending, no_show) and
    /// `outcome` (sent, failed).
    pub const ALERTS: &str = "lvb_alerts_total";
    /// Gauge: trainers with upcoming remote bookings, by `connected` (true, false).
    pub const TRAINERS_WITH_UPCOMING_BOOKINGS: &str = "lvb_trainers_with_upcoming_bookings";
    /// Gauge: upcoming remote bookings, by `meeting_status` (the picklist value, or `none`).
    pub const UPCOMING_BOOKINGS: &str = "lvb_upcoming_bookings";
    /// Info: `version` of the running binary (sample `lvb_build_info{version=…} 1`).
    pub const BUILD_INFO: &str = "lvb_build_info";
    // App-hosted meetings (rule 21).
    /// Counter: meetings reserved, by `host`: `trainer` (with the trainer's own token) or
    /// `app` (with the app's tenant token on behalf of a trainer who has not connected).
    pub const MEETINGS_BY_HOST: &str = "lvb_meetings_reserved_total";
    // Lark events over the long connection (rule 28).
    /// Gauge: 1 while the long connection to Lark is open, else 0.
    pub const LARK_EVENTS_CONNECTED: &str = "lvb_lark_events_connected";
    /// Counter: Lark events received, by `type` (`meeting_started`, `join_meeting`,
    /// `leave_meeting`, `meeting_ended`, `recording_ready`, `vc_without_meeting_no`,
    /// `other`, or `unknown` when the envelope does not say) and `outcome` (`recorded`:
    /// acknowledged; `sink_failed`: not recorded, answered 500 for Lark to push again;
    /// `invalid`: not an event envelope, answered 500).
    pub const LARK_EVENTS: &str = "lvb_lark_events_total";
    /// Counter: long connections lost (each is reopened with a fresh endpoint URL).
    pub const LARK_EVENTS_RECONNECTS: &str = "lvb_lark_events_reconnects_total";
    /// Counter: frames from Lark dropped without an event, by `reason`
    /// (`undecodable_frame`, `unknown_type`, `fragment_expired`, `fragment_invalid`,
    /// `fragment_too_large`, `overloaded`, `bad_client_config`).
    pub const LARK_EVENT_FRAMES_DROPPED: &str = "lvb_lark_event_frames_dropped_total";
    // The store (rule 23).
    /// Gauge: 1 while the store can be written, 0 while it cannot (the pipeline pauses).
    pub const STORE_WRITABLE: &str = "lvb_store_writable";
    /// Counter: times the pipeline paused because the store could not be written.
    pub const STORE_PAUSES: &str = "lvb_store_pauses_total";
    /// Counter: durable commits that recorded reserve applies about to leave; applies that
    /// leave together share one (`bookings::intents`).
    pub const STORE_INTENT_COMMITS: &str = "lvb_store_intent_commits_total";
    // Attendance and the no-show alert (rules 29 and 30).
    /// Counter: Lark events as attendance took them, by `outcome` (`applied`,
    /// `before_session`, `not_ours`: no booking's reservation has the meeting number,
    /// `cancelled`: the booking has no meeting any more, `duplicate`: redelivered,
    /// `other_type`, `no_meeting_no`, `unused`: attendance and the no-show alert are off,
    /// `undecodable`).
    pub const ATTENDANCE_EVENTS: &str = "lvb_attendance_events_total";
    /// Counter: attendance write-backs, by `outcome` (`written`, `refused`: Salesforce
    /// refused the record, `failed`: the call failed; both are tried again).
    pub const ATTENDANCE_WRITES: &str = "lvb_attendance_writes_total";
    /// Counter: Lark look-ups for attendance, by `kind` (`details`: the participants call
    /// after an end, `post_end`: the lookup of a session whose end was not heard of,
    /// `presence`: the no-show check's) and `outcome` (`completed`, `in_progress`,
    /// `no_show`, `not_found`, `done`, `failed`, `given_up`).
    pub const ATTENDANCE_LOOKUPS: &str = "lvb_attendance_lookups_total";
    /// Counter: no-show checks (rule 30), by `outcome` (`alerted`, `host_present`,
    /// `not_relevant`: no meeting or cancelled or over, `message_failed`,
    /// `alert_failed`).
    pub const NO_SHOWS: &str = "lvb_no_shows_total";
}

/// Counters: name and help.
const COUNTERS: &[(&str, &str)] = &[
    (names::EVENTS_RECEIVED, "Streaming events received"),
    (
        names::EVENTS_PROCESSED,
        "Streaming events whose work is done",
    ),
    (names::EVENTS_SKIPPED, "Streaming events skipped, by reason"),
    (names::MEETINGS, "Lark reservations changed, by action"),
    (names::FAILURES, "Failures, by kind"),
    (
        names::TOKEN_REFRESHES,
        "Trainer token refreshes, by outcome",
    ),
    (names::OAUTH_CONNECTIONS, "OAuth callbacks, by outcome"),
    (names::ALERTS, "Admin alerts, by subject and outcome"),
    // App-hosted meetings (rule 21).
    (
        names::MEETINGS_BY_HOST,
        "Meetings reserved, by host: trainer (their own token) or app (tenant token on their behalf)",
    ),
    // Lark events (rule 28).
    (
        names::LARK_EVENTS,
        "Lark events received over the long connection, by type and outcome",
    ),
    (
        names::LARK_EVENTS_RECONNECTS,
        "Long connections to Lark lost and reopened",
    ),
    (
        names::LARK_EVENT_FRAMES_DROPPED,
        "Frames from Lark's long connection dropped without an event, by reason",
    ),
    (
        names::STORE_PAUSES,
        "Times the pipeline paused because the store could not be written",
    ),
    (
        names::STORE_INTENT_COMMITS,
        "Durable commits that recorded reserve applies about to leave (one fsync each; applies leaving together share one)",
    ),
    // Attendance (rules 29 and 30).
    (
        names::ATTENDANCE_EVENTS,
        "Lark meeting events as attendance took them, by outcome",
    ),
    (
        names::ATTENDANCE_WRITES,
        "Attendance write-backs to bookings, by outcome",
    ),
    (
        names::ATTENDANCE_LOOKUPS,
        "Lark look-ups for attendance, by kind and outcome",
    ),
    (names::NO_SHOWS, "No-show checks of hosts, by outcome"),
];

/// Counters shown as 0 before their first event (they have no labels).
const UNLABELLED_COUNTERS: &[&str] = &[
    names::EVENTS_RECEIVED,
    names::EVENTS_PROCESSED,
    names::LARK_EVENTS_RECONNECTS,
    names::STORE_PAUSES,
    names::STORE_INTENT_COMMITS,
];

/// Gauges: name and help.
const GAUGES: &[(&str, &str)] = &[
    (
        names::STREAMING_LAG,
        "Seconds between an event's commit and its processing",
    ),
    (
        names::TRAINERS_WITH_UPCOMING_BOOKINGS,
        "Trainers with upcoming remote bookings, by whether they connected Lark (last sweep)",
    ),
    (
        names::UPCOMING_BOOKINGS,
        "Upcoming remote bookings, by meeting status (last sweep)",
    ),
    (
        names::LARK_EVENTS_CONNECTED,
        "1 while the long connection that brings Lark's events is open, else 0",
    ),
    (
        names::STORE_WRITABLE,
        "1 while the store can be written, 0 while it cannot (the pipeline pauses)",
    ),
];

/// A booking waits for a batch, Lark and the write linger (4.5 s): seconds to minutes.
const BOOKING_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];
/// One HTTP request: milliseconds to the 25 s client timeout.
const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
];

/// Histograms: name, help, buckets.
const HISTOGRAMS: &[(&str, &str, &[f64])] = &[
    (
        names::BOOKING_LATENCY,
        "Seconds from a booking change's commit in Salesforce to its meeting link written back",
        BOOKING_LATENCY_BUCKETS,
    ),
    (
        names::LARK_REQUEST_DURATION,
        "Seconds one HTTP request to Lark took, by operation",
        REQUEST_DURATION_BUCKETS,
    ),
    (
        names::SALESFORCE_REQUEST_DURATION,
        "Seconds one HTTP request to Salesforce REST took, by operation",
        REQUEST_DURATION_BUCKETS,
    ),
];

/// Most booking changes waiting for their link at once; past it, changes go unmeasured
/// rather than grow memory (the pipeline forgets a batch's changes when it ends).
const MAX_TRACKED_CHANGES: usize = 100_000;

/// Label pairs, sorted by key so one label set has one series.
type Labels = Vec<(&'static str, String)>;

/// Builds the histograms of one family with that family's buckets.
#[derive(Clone, Copy, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The process-wide metrics; cheap to clone (every clone shares one registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    counters: HashMap<&'static str, Family<Labels, Counter>>,
    gauges: HashMap<&'static str, Family<Labels, Gauge<f64, AtomicU64>>>,
    histograms: HashMap<&'static str, Family<Labels, Histogram, Buckets>>,
    /// Booking id → earliest commit (ms since the epoch) of a change not yet linked.
    changes: Mutex<HashMap<BookingId, DateTime<Utc>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let mut counters = HashMap::new();
        for (name, help) in COUNTERS {
            let family = Family::<Labels, Counter>::default();
            // prometheus-client adds `_total` to a counter's samples itself.
            let base = name.strip_suffix("_total").unwrap_or(name);
            registry.register(base, *help, family.clone());
            if UNLABELLED_COUNTERS.contains(name) {
                let _ = family.get_or_create(&Vec::new());
            }
            counters.insert(*name, family);
        }
        let mut gauges = HashMap::new();
        for (name, help) in GAUGES {
            let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
            registry.register(*name, *help, family.clone());
            let _ = family.get_or_create(&Vec::new());
            gauges.insert(*name, family);
        }
        let mut histograms = HashMap::new();
        for (name, help, buckets) in HISTOGRAMS {
            let family = Family::new_with_constructor(Buckets(buckets));
            registry.register(*name, *help, family.clone());
            if *name == names::BOOKING_LATENCY {
                // Unlabelled: shown (empty) from the start, like the unlabelled counters.
                let _ = family.get_or_create(&Vec::new());
            }
            histograms.insert(*name, family);
        }
        // An info metric's samples get `_info` added.
        registry.register(
            names::BUILD_INFO
                .strip_suffix("_info")
                .unwrap_or(names::BUILD_INFO),
            "The running lark-vc-bridge build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                counters,
                gauges,
                histograms,
                changes: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        if let Some(family) = known(&self.inner.counters, name) {
            family.get_or_create(&labels_of(labels)).inc_by(n);
        }
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if let Some(family) = known(&self.inner.gauges, name) {
            family.get_or_create(&labels_of(labels)).set(value);
        }
    }

    /// Records one observation (in seconds) in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        if let Some(family) = known(&self.inner.histograms, name) {
            family.get_or_create(&labels_of(labels)).observe(seconds);
        }
    }

    /// Current value of a counter (tests, summaries).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        known(&self.inner.counters, name)
            .and_then(|family| family.get(&labels_of(labels)).map(|c| c.get()))
            .unwrap_or(0)
    }

    /// Current value of a gauge (tests, summaries).
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        known(&self.inner.gauges, name)
            .and_then(|family| family.get(&labels_of(labels)).map(|g| g.get()))
            .unwrap_or(0.0)
    }

    /// A change to `booking` committed in Salesforce at `committed` (the event's
    /// `commitTimestamp`); the earliest one counts until the booking's link is written.
    pub fn change_committed(&self, booking: &BookingId, committed: DateTime<Utc>) {
        let mut changes = self.inner.changes.lock().expect("metrics");
        if let Some(earliest) = changes.get_mut(booking) {
            *earliest = (*earliest).min(committed);
        } else if changes.len() < MAX_TRACKED_CHANGES {
            changes.insert(booking.clone(), committed);
        }
    }

    /// The meeting link of `booking_id` landed in Salesforce: observes the time since its
    /// pending change's commit in [`names::BOOKING_LATENCY`] (nothing if none is pending).
    pub fn link_written(&self, booking: &BookingId) {
        let commit = self.inner.changes.lock().expect("metrics").remove(booking);
        if let Some(committed) = commit {
            let elapsed = Utc::now().signed_duration_since(committed);
            let seconds = elapsed.num_milliseconds().max(0) as f64 / 1000.0;
            self.observe(names::BOOKING_LATENCY, &[], seconds);
        }
    }

    /// The work for these bookings' changes is over (a batch ended): whatever did not
    /// end in a link (a cancellation, a pending trainer) is not measured.
    pub fn forget_changes(&self, bookings: &[BookingId]) {
        let mut changes = self.inner.changes.lock().expect("metrics");
        for id in bookings {
            changes.remove(id);
        }
    }

    /// Counts one failure of `kind` in [`names::FAILURES`].
    pub fn failure(&self, kind: Failure) {
        self.inc(names::FAILURES, &[("kind", kind.as_str())]);
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

/// The family registered under `name`. Every name comes from [`names`], so a miss is a
/// bug: loud in debug builds, ignored (not counted) in release.
fn known<'a, F>(families: &'a HashMap<&'static str, F>, name: &str) -> Option<&'a F> {
    let family = families.get(name);
    debug_assert!(family.is_some(), "metric {name} is not registered");
    family
}

fn labels_of(labels: &[(&'static str, &str)]) -> Labels {
    let mut l: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    l.sort();
    l
}

#[cfg(test)]
mod tests;
