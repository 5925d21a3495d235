//! What event a booking's meeting should have, and what that means for the event the
//! journal holds (design §3 rule 20): pure functions of the booking, its meeting and the
//! journal. [`super::step`] carries the plan out.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::bookings::decide::lark_time;
use crate::bookings::model::{render_topic, Booking, MeetingStatus};
use crate::config::Settings;
use crate::ids::TrainerId;
use crate::store::{CalendarEventEntry, ReservationEntry};

/// The event a booking should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedEvent {
    /// The host (the reservation's trainer).
    pub host_id: TrainerId,
    pub reservation_id: String,
    /// Start and end, in whole seconds (as Lark keeps them, and the journal).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: String,
    pub meeting_url: String,
    /// The external guest's email.
    pub guest: Option<String>,
}

impl WantedEvent {
    /// A digest of the summary and description: the journal keeps it, so a change of the
    /// fields the templates name (a merchant renamed) patches the event's text as a
    /// reschedule patches its times.
    pub fn content(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.summary.as_bytes())
            .chain_update([0u8])
            .chain_update(self.description.as_bytes())
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the booking's event needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPlan {
    /// Already right.
    Nothing,
    /// Make the event (none is journalled).
    Create(WantedEvent),
    /// Same host and reservation: set start and end (and invite the guest if not yet).
    Patch {
        entry: CalendarEventEntry,
        wanted: WantedEvent,
    },
    /// Same host, same times, the guest not yet invited.
    Invite {
        entry: CalendarEventEntry,
        wanted: WantedEvent,
    },
    /// Another host or another reservation: delete the old event, make the new one.
    Replace {
        old: CalendarEventEntry,
        wanted: WantedEvent,
    },
    /// No event is wanted any more.
    Delete(CalendarEventEntry),
}

/// Decides what the event needs from what is wanted and what the journal holds. Pure.
pub fn plan_event(wanted: Option<WantedEvent>, entry: Option<CalendarEventEntry>) -> EventPlan {
    match (wanted, entry) {
        (None, None) => EventPlan::Nothing,
        (None, Some(old)) => EventPlan::Delete(old),
        (Some(wanted), None) => EventPlan::Create(wanted),
        (Some(wanted), Some(entry)) => {
            if entry.trainer_id != wanted.host_id || entry.reservation_id != wanted.reservation_id {
                EventPlan::Replace { old: entry, wanted }
            } else if entry.start != wanted.start
                || entry.end != wanted.end
                || entry.content != wanted.content()
            {
                EventPlan::Patch { entry, wanted }
            } else if wanted.guest.is_some() && entry.guest != wanted.guest {
                EventPlan::Invite { entry, wanted }
            } else {
                EventPlan::Nothing
            }
        }
    }
}

/// The event a booking should have after this pass, or None. `status` is the status the
/// booking has once this pass's write lands; `reservation` the journal after the meeting
/// step. Pure.
pub fn wanted_event(
    settings: &Settings,
    booking: &Booking,
    status: Option<MeetingStatus>,
    reservation: Option<&ReservationEntry>,
) -> Option<WantedEvent> {
    if !settings.calendar.enabled || booking.is_deleted {
        return None;
    }
    if !matches!(
        status,
        Some(MeetingStatus::Created | MeetingStatus::CreatedByApp)
    ) {
        return None;
    }
    let reservation = reservation?;
    // The host is the booking's own trainer (a Move has already made the new one host).
    // Whether they are connected is for their token to say: a trainer disconnected for a
    // while keeps the event their meeting already has, and gets one once they reconnect.
    let trainer = booking.trainer.as_ref()?;
    if trainer.id != reservation.trainer_id {
        return None;
    }
    let (start, end) = (booking.start?, booking.end?);
    if end <= start || reservation.url.is_empty() {
        return None;
    }
    let b = &settings.salesforce.booking;
    let summary = render_topic(&b.topic_template, &booking.topic_values);
    let mut values = booking.topic_values.clone();
    // A field the object lacks (left out of the query) reads as empty, not as `{Field}`.
    for f in settings.calendar.description_fields() {
        values.entry(f).or_insert(Value::Null);
    }
    values.insert("link".into(), Value::String(reservation.url.clone()));
    let description = render_topic(&settings.calendar.description_template, &values);
    let guest = b
        .attendee_email_field
        .as_deref()
        .and_then(|f| booking.topic_values.get(f))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(WantedEvent {
        host_id: trainer.id.clone(),
        reservation_id: reservation.reservation_id.clone(),
        start: lark_time(start),
        end: lark_time(end),
        summary,
        description,
        meeting_url: reservation.url.clone(),
        guest,
    })
}

#[cfg(test)]
mod tests;
