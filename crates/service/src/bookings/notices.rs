//! What the pipeline tells admins about bookings in their Lark chat (rule 22): a booking
//! written `Failed`, a booking near its start still without a meeting, and a booking whose
//! trainer has not joined its meeting (rule 30). Each alert names
//! the booking's Salesforce record URL. Posting is the [`Alerter`]'s (at most once a day a
//! subject, bounded in time); this type only says what each alert is about.

use std::sync::Arc;

use futures::StreamExt;

use super::model::{Booking, MeetingStatus};
use super::outcome::{BookingFailure, BookingFailureKind};
use crate::alerts::{
    trainer_label, AlertOutcome, Alerter, NoShowBooking, OwedNotice, PendingBooking,
};
use crate::config::Settings;
use crate::ids::{BookingId, TrainerId};
use crate::salesforce::SalesforceClient;

/// Alerts posted at once (each bounded in time by the alerter), so a pass with many keeps
/// the write path or the sweep waiting for about one post, not one after another.
const ALERTS_AT_ONCE: usize = 4;

/// The status a "still no meeting" alert shows for a booking with a blank status.
pub const NO_STATUS: &str = "none";

/// Admin alerts about bookings; cheap to clone.
#[derive(Clone)]
pub struct BookingAlerts {
    settings: Arc<Settings>,
    alerter: Alerter,
    salesforce: SalesforceClient,
}

impl BookingAlerts {
    /// Alerts posted by `alerter`, with record URLs of `salesforce`'s instance.
    pub fn new(settings: Arc<Settings>, alerter: Alerter, salesforce: SalesforceClient) -> Self {
        BookingAlerts {
            settings,
            alerter,
            salesforce,
        }
    }

    /// True when alerts go somewhere (`alerts.lark_chat_id` is set).
    pub fn are_on(&self) -> bool {
        self.alerter.is_on()
    }

    /// Alerts for each booking whose `Failed` status Salesforce just accepted.
    pub async fn failed(&self, failures: &[BookingFailure]) {
        if failures.is_empty() || !self.are_on() {
            return;
        }
        let failed = failures
            .iter()
            .filter(|f| f.kind == BookingFailureKind::MeetingFailed);
        futures::stream::iter(failed)
            .for_each_concurrent(ALERTS_AT_ONCE, |f| async move {
                let url = self.record_url(&f.booking).await;
                self.alerter
                    .booking_failed(&f.booking, &f.reason, url.as_deref())
                    .await;
            })
            .await;
    }

    /// Alerts for each booking near its start that still has no meeting.
    pub async fn without_meeting(&self, bookings: &[Booking]) {
        if !self.are_on() {
            return;
        }
        futures::stream::iter(bookings)
            .for_each_concurrent(ALERTS_AT_ONCE, |b| self.no_meeting(b))
            .await;
    }

    async fn no_meeting(&self, b: &Booking) {
        let Some(start) = b.start else { return };
        let record_url = self.record_url(&b.id).await;
        let trainer = b.trainer.as_ref();
        let connect_link = trainer
            .filter(|t| !t.connected)
            .map(|t| self.settings.server.connect_link(&t.id));
        let alert = PendingBooking {
            booking_id: &b.id,
            start,
            status: b.meeting_status.map_or(NO_STATUS, MeetingStatus::as_str),
            reason: b.meeting_error.as_deref(),
            trainer: trainer.map(|t| trainer_label(t.name.as_deref(), &t.id)),
            connect_link,
            record_url: record_url.as_deref(),
        };
        self.alerter.booking_pending(&alert).await;
    }

    /// The no-show alert of a booking whose trainer has not joined its meeting (rule 30),
    /// with the booking's record URL.
    pub async fn no_show(&self, alert: NoShowBooking<'_>) -> AlertOutcome {
        // Off: no Salesforce session fetched for a record URL nobody would see.
        if !self.are_on() {
            return AlertOutcome::Off;
        }
        let url = self.record_url(alert.booking_id).await;
        let alert = NoShowBooking {
            record_url: url.as_deref(),
            ..alert
        };
        self.alerter.booking_no_show(&alert).await
    }

    /// A booking's meeting (or event) that had to go could not be deleted: its host
    /// `trainer` (named `name`) is not connected (rule 25). Once a day per booking.
    pub async fn deletion_owed(
        &self,
        booking: &BookingId,
        trainer: &TrainerId,
        name: Option<&str>,
    ) {
        if !self.are_on() {
            return;
        }
        let record_url = self.record_url(booking).await;
        let notice = OwedNotice {
            booking_id: booking,
            trainer: trainer_label(name, trainer),
            connect_link: self.settings.server.connect_link(trainer),
            record_url: record_url.as_deref(),
        };
        self.alerter.deletion_owed(&notice).await;
    }

    /// `{instance_url}/{record id}`: Salesforce opens the record from there.
    async fn record_url(&self, id: &BookingId) -> Option<String> {
        let session = self.salesforce.session().await.ok()?;
        session
            .instance_url
            .join(id.as_str())
            .ok()
            .map(String::from)
    }
}
