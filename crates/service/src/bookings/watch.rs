//! What a sweep tells admins beyond the booking fields: the success measures as gauges
//! (trainers with upcoming remote bookings by whether they connected, upcoming remote
//! bookings by meeting status — set on each sweep), and the rule 22 alert for a booking
//! within `alerts.pending_horizon` of its start still without a meeting (read again after
//! the sweep, which may have given it one). Nothing here changes a booking.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::engine::Engine;
use super::model::{Booking, MeetingStatus};
use super::notices::NO_STATUS;
use crate::config::Settings;
use crate::ids::{BookingId, TrainerId};
use crate::metrics::names;

/// What a sweep read, for the gauges and the "still no meeting" check.
#[derive(Debug, Default)]
pub struct SweepCensus {
    /// Live remote upcoming bookings and the status each showed.
    statuses: HashMap<BookingId, Option<MeetingStatus>>,
    /// Their trainers, and whether each is connected.
    trainers: HashMap<TrainerId, bool>,
    /// Bookings starting within the horizon that showed no meeting (the sweep may give
    /// them one: they are read again after it).
    near_without_meeting: Vec<BookingId>,
}

/// Takes stock of the bookings a sweep read, before it processes them.
pub fn census(settings: &Settings, bookings: &[Booking], now: DateTime<Utc>) -> SweepCensus {
    let s = &settings.salesforce.booking;
    let horizon = pending_horizon(settings);
    let mut census = SweepCensus::default();
    for b in bookings.iter().filter(|b| b.is_live_remote(s)) {
        census.statuses.insert(b.id.clone(), b.meeting_status);
        if let Some(t) = &b.trainer {
            census.trainers.insert(t.id.clone(), t.connected);
        }
        if !b.shows_a_meeting() && starts_within(b, now, horizon) {
            census.near_without_meeting.push(b.id.clone());
        }
    }
    census
}

/// After the sweep processed its bookings: reads the near ones that showed no meeting
/// again, alerts for those that still have none, and sets the gauges.
pub async fn after_sweep(engine: &Engine, mut census: SweepCensus) {
    let now = Utc::now();
    let settings = engine.settings();
    let horizon = pending_horizon(settings);
    let s = &settings.salesforce.booking;
    let mut still: Vec<Booking> = Vec::new();
    if !census.near_without_meeting.is_empty() {
        match engine.reader().by_ids(&census.near_without_meeting).await {
            Ok(fresh) => {
                for b in fresh {
                    if b.is_live_remote(s) {
                        census.statuses.insert(b.id.clone(), b.meeting_status);
                        if !b.shows_a_meeting() && starts_within(&b, now, horizon) {
                            still.push(b);
                        }
                    } else {
                        census.statuses.remove(&b.id);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read bookings near their start again; no alerts this sweep")
            }
        }
    }
    set_gauges(engine, &census);
    engine.alerts().without_meeting(&still).await;
}

fn set_gauges(engine: &Engine, census: &SweepCensus) {
    let metrics = engine.metrics();
    let mut by_status: HashMap<&'static str, usize> = MeetingStatus::ALL
        .iter()
        .map(|m| (m.as_str(), 0))
        .chain([(NO_STATUS, 0)])
        .collect();
    for status in census.statuses.values() {
        *by_status
            .entry(status.map_or(NO_STATUS, MeetingStatus::as_str))
            .or_default() += 1;
    }
    for (status, n) in by_status {
        metrics.set(
            names::UPCOMING_BOOKINGS,
            &[("meeting_status", status)],
            n as f64,
        );
    }
    let connected = census.trainers.values().filter(|c| **c).count();
    let not_connected = census.trainers.len() - connected;
    for (label, n) in [("true", connected), ("false", not_connected)] {
        metrics.set(
            names::TRAINERS_WITH_UPCOMING_BOOKINGS,
            &[("connected", label)],
            n as f64,
        );
    }
}

/// `alerts.pending_horizon` as a span of time.
fn pending_horizon(settings: &Settings) -> chrono::Duration {
    chrono::Duration::from_std(settings.alerts.pending_horizon).unwrap_or(chrono::Duration::MAX)
}

/// True when the booking starts after `now` and no later than `now + horizon`.
fn starts_within(b: &Booking, now: DateTime<Utc>, horizon: chrono::Duration) -> bool {
    b.start
        .is_some_and(|s| s > now && s.signed_duration_since(now) <= horizon)
}
