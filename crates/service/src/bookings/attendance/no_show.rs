//! The no-show alert's delivery (rule 30): one bot message to the trainer with the
//! meeting's link, and one admin alert naming the booking, the trainer and the merchant.
//! The step claims the booking's alert in the store before calling here, so neither is
//! ever sent twice for a booking; the message's `uuid` is the booking's, so a resend after
//! a crash mid-send (within Lark's hour of deduplication) cannot reach the trainer twice.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alerts::{trainer_label, AlertOutcome, NoShowBooking};
use crate::bookings::model::{render_topic, Booking};
use crate::bookings::notices::BookingAlerts;
use crate::config::BookingSettings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};

/// What one delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The trainer got the message.
    pub message: bool,
    /// The admins' chat got the alert (or alerts are off).
    pub alert: bool,
}

/// Sends no-show messages and alerts; cheap to clone.
#[derive(Clone)]
pub struct NoShowNotices {
    lark: LarkClient,
    alerts: BookingAlerts,
    metrics: Metrics,
}

/// The message's `uuid`: one per booking (Lark sends one message per uuid within an hour).
pub fn message_uuid(booking: &BookingId) -> String {
    format!("lvb-noshow-{booking}")
}

/// How long `after` reads in a message.
pub fn wait_text(after: Duration) -> String {
    match after.as_secs() {
        s if s >= 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The merchant as the booking names them: the meeting topic's fields (by default the
/// merchant's name) and the guest's email, when the booking has them.
pub fn merchant(booking: &Booking, b: &BookingSettings) -> Option<String> {
    let mut parts: Vec<String> = b
        .topic_fields()
        .iter()
        .filter_map(|f| booking.topic_values.get(f)?.as_str())
        .map(str::to_string)
        .filter(|v| !v.trim().is_empty())
        .collect();
    if let Some(email) = b
        .attendee_email_field
        .as_ref()
        .and_then(|f| booking.topic_values.get(f)?.as_str())
        .filter(|e| !e.trim().is_empty())
    {
        parts.push(format!("<{email}>"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The trainer's message.
pub fn trainer_message(
    name: Option<&str>,
    topic: &str,
    start: DateTime<Utc>,
    after: Duration,
    link: Option<&str>,
) -> String {
    let name = name.filter(|n| !n.trim().is_empty()).unwrap_or("there");
    let session = if topic.is_empty() {
        "your remote training session".to_string()
    } else {
        format!("your remote training session \"{topic}\"")
    };
    let mut text = format!(
        "Hi {name}, {session} started at {} and you have not joined its Lark meeting {} later. The merchant may be waiting.",
        start.format("%H:%M UTC"),
        wait_text(after)
    );
    if let Some(link) = link {
        text.push_str(&format!(" Join here: {link}"));
    }
    text
}

impl NoShowNotices {
    /// Messages with `lark`'s bot, alerts through `alerts`.
    pub fn new(lark: LarkClient, alerts: BookingAlerts, metrics: Metrics) -> NoShowNotices {
        NoShowNotices {
            lark,
            alerts,
            metrics,
        }
    }

    /// Sends the trainer's message and the admins' alert for a booking whose trainer has
    /// not joined `after` its `start`. Failures are logged and counted; the claim stands.
    pub async fn deliver(
        &self,
        booking: &Booking,
        b: &BookingSettings,
        start: DateTime<Utc>,
        after: Duration,
        link: Option<&str>,
    ) -> Delivered {
        let trainer = booking.trainer.as_ref();
        let topic = render_topic(&b.topic_template, &booking.topic_values);
        let text = trainer_message(
            trainer.and_then(|t| t.name.as_deref()),
            &topic,
            start,
            after,
            link,
        );
        let message = match trainer.and_then(|t| t.email.as_deref()) {
            None => {
                tracing::warn!("no-show message: the trainer has no email");
                false
            }
            Some(email) => match self
                .lark
                .send_text_by_email(email, &text, &message_uuid(&booking.id))
                .await
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "no-show message to the trainer failed");
                    false
                }
            },
        };
        if !message {
            self.metrics
                .inc(names::NO_SHOWS, &[("outcome", "message_failed")]);
        }
        let trainer_name = trainer
            .map(|t| trainer_label(t.name.as_deref(), &t.id))
            .unwrap_or_else(|| "(none)".into());
        let alert = self
            .alerts
            .no_show(NoShowBooking {
                booking_id: &booking.id,
                start,
                after,
                trainer: trainer_name,
                merchant: merchant(booking, b),
                link,
                record_url: None,
            })
            .await;
        let alert = !matches!(alert, AlertOutcome::Failed);
        if !alert {
            self.metrics
                .inc(names::NO_SHOWS, &[("outcome", "alert_failed")]);
        }
        Delivered { message, alert }
    }
}

#[cfg(test)]
mod tests;
