//! Admin alerts (design §3 rule 22): with `alerts.lark_chat_id` set, the bot posts a
//! plain-text message to that Lark group chat when a trainer is disconnected by Lark, when
//! a booking becomes `Failed`, when a booking near its start still has no meeting, and
//! when a booking's trainer has not joined its meeting (rule 30, once per booking).
//!
//! Each [`Subject`] is alerted at most once a UTC day, remembered in the store (so across
//! restarts). The message's `uuid` is derived from the subject and the day, so Lark drops
//! a resend of the same alert. A send Lark refuses or that fails is logged and counted in
//! `lvb_alerts_total{outcome="failed"}`, never fatal, and not remembered as sent: the next
//! occasion (a sweep, the next refusal) tries again.
//!
//! This module only words and delivers alerts; the callers decide when something is
//! alert-worthy. It sits below `tokens` (which alerts on disconnects) and knows no ids type.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::ids::{BookingId, TrainerId};
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::store::Store;

/// A claim on an alert older than this that was never marked sent belongs to a sender
/// that died mid-send: the alert may be sent again.
const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Longest one post may take, retries included: alerts are sent from the pipeline's write
/// path and sweeps, which must not wait minutes on a Lark that hangs. A post that timed out
/// counts as failed (and Lark drops a duplicate of it, by its uuid, if it did arrive).
const ALERT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Longest alert text sent (Lark's text messages take far more; alerts stay readable).
const MAX_ALERT_CHARS: usize = 1500;

/// What an alert is about; one alert a day each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A trainer whose refresh Lark refused.
    Disconnected(TrainerId),
    /// A booking written `Failed`.
    Failed(BookingId),
    /// A booking near its start without a meeting.
    Pending(BookingId),
    /// A booking whose meeting (or its calendar event) could not be deleted (rule 25).
    Owed(BookingId),
    /// A booking whose host has not joined its meeting (rule 30; once per booking, which
    /// the caller's own claim ensures).
    NoShow(BookingId),
}

impl Subject {
    /// The metrics label and key prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Disconnected(_) => "disconnected",
            Subject::Failed(_) => "failed",
            Subject::Pending(_) => "pending",
            Subject::Owed(_) => "owed",
            Subject::NoShow(_) => "no_show",
        }
    }

    /// The store key, e.g. `failed:a0B5g00000AbCdEAAV`.
    pub fn key(&self) -> String {
        let id = match self {
            Subject::Disconnected(id) => id.as_str(),
            Subject::Failed(id)
            | Subject::Pending(id)
            | Subject::Owed(id)
            | Subject::NoShow(id) => id.as_str(),
        };
        format!("{}:{id}", self.kind())
    }
}

/// What became of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// `alerts.lark_chat_id` is not set.
    Off,
    /// Posted to the chat.
    Sent,
    /// Already posted today (or being posted right now).
    AlreadySent,
    /// Lark refused or could not be reached; tried again on the next occasion.
    Failed,
}

/// Posts admin alerts; cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

struct Inner {
    chat_id: Option<String>,
    lark: LarkClient,
    store: Store,
    metrics: Metrics,
}

impl Alerter {
    /// An alerter posting to `settings.alerts.lark_chat_id` (off when unset).
    pub fn new(settings: &Settings, lark: LarkClient, store: Store, metrics: Metrics) -> Alerter {
        Alerter {
            inner: Arc::new(Inner {
                chat_id: settings.alerts.lark_chat_id.clone(),
                lark,
                store,
                metrics,
            }),
        }
    }

    /// True when alerts go somewhere.
    pub fn is_on(&self) -> bool {
        self.inner.chat_id.is_some()
    }

    /// Posts `text` about `subject`, unless it was posted today. Never fails: a failure
    /// is logged, counted and left for the next occasion.
    pub async fn send(&self, subject: &Subject, text: &str) -> AlertOutcome {
        let Some(chat_id) = self.inner.chat_id.as_deref() else {
            return AlertOutcome::Off;
        };
        let now = Utc::now();
        let day = now.date_naive();
        let key = subject.key();
        let store = &self.inner.store;
        match store.claim_alert(&key, now, STALE_CLAIM) {
            Ok(true) => {}
            Ok(false) => return AlertOutcome::AlreadySent,
            Err(e) => {
                tracing::warn!(subject = %key, error = %e, "alert state unreadable; not sending");
                return self.failed(subject);
            }
        }
        let text = clip(text, MAX_ALERT_CHARS);
        let uuid = message_uuid(&key, day);
        let post = self.inner.lark.send_text_to_chat(chat_id, &text, &uuid);
        let posted = match tokio::time::timeout(ALERT_TIMEOUT, post).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {ALERT_TIMEOUT:?}")),
        };
        match posted {
            Ok(()) => {
                if let Err(e) = store.mark_alert_sent(&key, day) {
                    tracing::warn!(subject = %key, error = %e, "could not remember the alert");
                }
                self.inner.metrics.inc(
                    names::ALERTS,
                    &[("subject", subject.kind()), ("outcome", "sent")],
                );
                tracing::info!(subject = %key, "admin alert posted");
                AlertOutcome::Sent
            }
            Err(e) => {
                if let Err(e) = store.release_alert(&key, day) {
                    tracing::warn!(subject = %key, error = %e, "could not release the alert claim");
                }
                tracing::warn!(subject = %key, error = %e, "admin alert could not be posted; will try again");
                self.failed(subject)
            }
        }
    }

    fn failed(&self, subject: &Subject) -> AlertOutcome {
        self.inner.metrics.inc(
            names::ALERTS,
            &[("subject", subject.kind()), ("outcome", "failed")],
        );
        AlertOutcome::Failed
    }

    /// A trainer Lark disconnected (a refused refresh), with why and their connect link.
    pub async fn trainer_disconnected(
        &self,
        trainer: &TrainerId,
        name: Option<&str>,
        reason: &str,
        connect_link: &str,
    ) -> AlertOutcome {
        let who = trainer_label(name, trainer);
        let text = format!(
            "Trainer {who} was disconnected from Lark: {reason}\n\
             Their new remote bookings get no meeting from their own account until they reconnect here: {connect_link}"
        );
        self.send(&Subject::Disconnected(trainer.clone()), &text)
            .await
    }

    /// A booking whose `Failed` status Salesforce accepted, with why and its record URL.
    pub async fn booking_failed(
        &self,
        booking: &BookingId,
        reason: &str,
        record_url: Option<&str>,
    ) -> AlertOutcome {
        let mut text =
            format!("Booking {booking} has no Lark meeting: it is Failed. Reason: {reason}");
        if let Some(url) = record_url {
            text.push_str(&format!("\nOpen it in Salesforce: {url}"));
        }
        self.send(&Subject::Failed(booking.clone()), &text).await
    }

    /// A meeting (or its calendar event) that had to go could not be deleted: its host is
    /// not connected (rule 25). It is deleted once they reconnect, or lapses at its end.
    pub async fn deletion_owed(&self, owed: &OwedNotice<'_>) -> AlertOutcome {
        let OwedNotice {
            booking_id,
            trainer,
            connect_link,
            record_url,
        } = owed;
        let text = format!(
            "Booking {booking_id} no longer needs its Lark meeting, but the meeting (and its calendar event, if it has one) could not be deleted: its host {trainer} is not connected. The session stays joinable, and an invited merchant keeps the invitation, until the trainer reconnects (then it is deleted) or the session ends."
        );
        let mut text = text;
        text.push_str(&format!("\nThe trainer's connect link: {connect_link}"));
        if let Some(url) = record_url {
            text.push_str(&format!("\nOpen the booking in Salesforce: {url}"));
        }
        self.send(&Subject::Owed((*booking_id).clone()), &text)
            .await
    }

    /// A booking starting soon that still has no meeting.
    pub async fn booking_pending(&self, booking: &PendingBooking<'_>) -> AlertOutcome {
        let PendingBooking {
            booking_id,
            start,
            status,
            reason,
            trainer,
            connect_link,
            record_url,
        } = booking;
        let mut text = format!(
            "Booking {booking_id} starts {} and still has no Lark meeting (status: {status}).",
            start.format("%Y-%m-%d %H:%M UTC")
        );
        if let Some(reason) = reason {
            text.push_str(&format!(" Reason: {reason}"));
        }
        if let Some(trainer) = trainer {
            text.push_str(&format!("\nTrainer: {trainer}"));
        }
        if let Some(link) = connect_link {
            text.push_str(&format!(
                "\nThe trainer has not connected Lark; their connect link: {link}"
            ));
        }
        if let Some(url) = record_url {
            text.push_str(&format!("\nOpen it in Salesforce: {url}"));
        }
        self.send(&Subject::Pending((*booking_id).clone()), &text)
            .await
    }

    /// A booking whose trainer has not joined its meeting `after` its start (rule 30).
    pub async fn booking_no_show(&self, alert: &NoShowBooking<'_>) -> AlertOutcome {
        let NoShowBooking {
            booking_id,
            start,
            after,
            trainer,
            merchant,
            link,
            record_url,
        } = alert;
        let minutes = after.as_secs() / 60;
        let after = if minutes >= 1 {
            format!("{minutes} min")
        } else {
            format!("{} s", after.as_secs())
        };
        let mut text = format!(
            "Booking {booking_id}: the trainer {trainer} has not joined the Lark meeting {after} after the session's start ({}).",
            start.format("%Y-%m-%d %H:%M UTC")
        );
        if let Some(merchant) = merchant {
            text.push_str(&format!("\nMerchant: {merchant}"));
        }
        if let Some(link) = link {
            text.push_str(&format!("\nMeeting: {link}"));
        }
        text.push_str("\nThe trainer was sent a message with the link.");
        if let Some(url) = record_url {
            text.push_str(&format!("\nOpen it in Salesforce: {url}"));
        }
        self.send(&Subject::NoShow((*booking_id).clone()), &text)
            .await
    }
}

/// What a no-show alert says about a booking (rule 30).
#[derive(Debug, Clone)]
pub struct NoShowBooking<'a> {
    /// The booking.
    pub booking_id: &'a BookingId,
    /// Its start.
    pub start: DateTime<Utc>,
    /// `alerts.no_show_after`.
    pub after: std::time::Duration,
    /// The trainer's name and id.
    pub trainer: String,
    /// The merchant, as the booking names them (topic fields, guest email).
    pub merchant: Option<String>,
    /// The meeting's join link.
    pub link: Option<&'a str>,
    /// The booking's Salesforce record URL (filled in by `BookingAlerts`).
    pub record_url: Option<&'a str>,
}

/// What an "owed deletion" alert says.
#[derive(Debug, Clone)]
pub struct OwedNotice<'a> {
    pub booking_id: &'a BookingId,
    /// The host's name and id.
    pub trainer: String,
    pub connect_link: String,
    pub record_url: Option<&'a str>,
}

/// What a "still no meeting" alert says about a booking.
#[derive(Debug, Clone)]
pub struct PendingBooking<'a> {
    pub booking_id: &'a BookingId,
    pub start: DateTime<Utc>,
    /// The meeting status shown on the booking (`none` when blank).
    pub status: &'a str,
    /// The reason shown on the booking.
    pub reason: Option<&'a str>,
    /// The trainer's name and id, when known.
    pub trainer: Option<String>,
    /// The trainer's connect link, when they have not connected.
    pub connect_link: Option<String>,
    pub record_url: Option<&'a str>,
}

/// A trainer as alerts and `remind` name them: `Ann (a0X…)`, or the id alone.
pub fn trainer_label(name: Option<&str>, id: &TrainerId) -> String {
    match name {
        Some(n) if !n.trim().is_empty() => format!("{} ({id})", n.trim()),
        _ => id.to_string(),
    }
}

/// The message `uuid` of an alert: the same subject on the same day gives the same one
/// (Lark drops the resend), within Lark's 50 characters.
fn message_uuid(key: &str, day: NaiveDate) -> String {
    let digest = Sha256::digest(format!("{key}|{day}").as_bytes());
    format!("lvb-alert-{}", &hex::encode(digest)[..32])
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
