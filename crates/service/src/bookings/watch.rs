//! What the pipeline tells admins beyond the booking fields: the success measures as
//! gauges (trainers with upcoming remote bookings by whether they connected, upcoming
//! remote bookings by meeting status — set on each sweep), and the admin alerts of rule 22
//! that the booking side raises (a booking written `Failed`; a booking within
//! `alerts.pending_horizon` of its start still without a meeting, checked on the sweep).
//!
//! Nothing here changes a booking; alerts go through the token service's [`Alerter`].
//!
//! [`Alerter`]: crate::alerts::Alerter

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::engine::{BookingFailure, BookingFailureKind, Engine};
use super::model::{Booking, MeetingStatus};
use crate::alerts::{trainer_label, PendingBooking};
use crate::config::BookingSettings;
use crate::ids::BookingId;
use crate::metrics::names;

/// Alerts posted at once (each bounded in time by the alerter), so a pass with many keeps
/// the write path or the sweep waiting for about one post, not one after another.
const ALERTS_AT_ONCE: usize = 4;

/// The `meeting_status` label of a booking with a blank status.
const NO_STATUS: &str = "none";

/// True for a booking that should have a meeting: not deleted, not cancelled, remote.
pub(super) fn is_live_remote(b: &Booking, s: &BookingSettings) -> bool {
    let cancelled = b
        .status
        .as_deref()
        .is_some_and(|v| s.cancelled_values.iter().any(|c| c == v));
    let remote = b
        .service_type
        .as_deref()
        .is_some_and(|v| s.remote_values.iter().any(|r| r == v));
    !b.is_deleted && !cancelled && remote
}

/// True when the booking shows a meeting.
fn has_meeting(b: &Booking) -> bool {
    matches!(
        b.meeting_status,
        Some(MeetingStatus::Created | MeetingStatus::CreatedByApp)
    )
}

/// What a sweep read, for the gauges and the "still no meeting" check.
#[derive(Debug, Default)]
pub(super) struct SweepCensus {
    /// Live remote upcoming bookings and the status each showed.
    statuses: HashMap<BookingId, Option<MeetingStatus>>,
    /// Their trainers, and whether each is connected.
    trainers: HashMap<String, bool>,
    /// Bookings starting within the horizon that showed no meeting (the sweep may give
    /// them one: they are read again after it).
    near_without_meeting: Vec<BookingId>,
}

impl Engine {
    /// Takes stock of the bookings a sweep read, before it processes them.
    pub(super) fn census(&self, bookings: &[Booking], now: DateTime<Utc>) -> SweepCensus {
        let s = &self.settings.salesforce.booking;
        let horizon = chrono::Duration::from_std(self.settings.alerts.pending_horizon)
            .unwrap_or(chrono::Duration::MAX);
        let mut census = SweepCensus::default();
        for b in bookings.iter().filter(|b| is_live_remote(b, s)) {
            census.statuses.insert(b.id.clone(), b.meeting_status);
            if let Some(t) = &b.trainer {
                census.trainers.insert(t.id.clone(), t.connected);
            }
            if !has_meeting(b) && starts_within(b, now, horizon) {
                census.near_without_meeting.push(b.id.clone());
            }
        }
        census
    }

    /// After the sweep processed its bookings: reads the near ones that showed no meeting
    /// again, alerts for those that still have none, and sets the gauges.
    pub(super) async fn after_sweep(&self, mut census: SweepCensus) {
        let now = Utc::now();
        let horizon = chrono::Duration::from_std(self.settings.alerts.pending_horizon)
            .unwrap_or(chrono::Duration::MAX);
        let s = &self.settings.salesforce.booking;
        let mut still: Vec<Booking> = Vec::new();
        if !census.near_without_meeting.is_empty() {
            match self.bookings_by_id(&census.near_without_meeting).await {
                Ok(fresh) => {
                    for b in fresh {
                        if is_live_remote(&b, s) {
                            census.statuses.insert(b.id.clone(), b.meeting_status);
                            if !has_meeting(&b) && starts_within(&b, now, horizon) {
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
        self.set_gauges(&census);
        if !self.tokens.alerter().is_on() {
            return;
        }
        futures::stream::iter(&still)
            .for_each_concurrent(ALERTS_AT_ONCE, |b| self.alert_no_meeting(b))
            .await;
    }

    fn set_gauges(&self, census: &SweepCensus) {
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
            self.metrics.set(
                names::UPCOMING_BOOKINGS,
                &[("meeting_status", status)],
                n as f64,
            );
        }
        let connected = census.trainers.values().filter(|c| **c).count();
        let not_connected = census.trainers.len() - connected;
        for (label, n) in [("true", connected), ("false", not_connected)] {
            self.metrics.set(
                names::TRAINERS_WITH_UPCOMING_BOOKINGS,
                &[("connected", label)],
                n as f64,
            );
        }
    }

    async fn alert_no_meeting(&self, b: &Booking) {
        let Some(start) = b.start else { return };
        let record_url = self.record_url(b.id.as_str()).await;
        let trainer = b.trainer.as_ref();
        let connect_link = trainer
            .filter(|t| !t.connected)
            .map(|t| self.settings.server.connect_link(&t.id));
        let alert = PendingBooking {
            booking_id: b.id.as_str(),
            start,
            status: b.meeting_status.map_or(NO_STATUS, MeetingStatus::as_str),
            reason: b.meeting_error.as_deref(),
            trainer: trainer.map(|t| trainer_label(t.name.as_deref(), &t.id)),
            connect_link,
            record_url: record_url.as_deref(),
        };
        self.tokens.alerter().booking_pending(&alert).await;
    }

    /// Alerts for each booking whose `Failed` status Salesforce just accepted.
    pub(super) async fn alert_failed(&self, failed: &[BookingFailure]) {
        if failed.is_empty() || !self.tokens.alerter().is_on() {
            return;
        }
        let failed = failed
            .iter()
            .filter(|f| f.kind == BookingFailureKind::MeetingFailed);
        futures::stream::iter(failed)
            .for_each_concurrent(ALERTS_AT_ONCE, |f| async move {
                let url = self.record_url(&f.booking).await;
                self.tokens
                    .alerter()
                    .booking_failed(&f.booking, &f.reason, url.as_deref())
                    .await;
            })
            .await;
    }

    /// `{instance_url}/{record id}`: Salesforce opens the record from there.
    async fn record_url(&self, id: &str) -> Option<String> {
        let session = self.salesforce.session().await.ok()?;
        session.instance_url.join(id).ok().map(String::from)
    }
}

/// True when the booking starts after `now` and no later than `now + horizon`.
fn starts_within(b: &Booking, now: DateTime<Utc>, horizon: chrono::Duration) -> bool {
    b.start
        .is_some_and(|s| s > now && s.signed_duration_since(now) <= horizon)
}
