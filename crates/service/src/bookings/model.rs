//! The booking as the processor sees it: read fresh from Salesforce (with its trainer, in
//! one query), parsed into typed fields using the configured field names — including what
//! its error field says, so nothing downstream reads that text again. Pure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::{BookingSettings, TrainerSettings};
use crate::ids::{BookingId, TrainerId};
use crate::salesforce::values::parse_datetime;
use crate::tokens::trainer::TrainerRecord;

/// `Lark_Meeting_Status__c` values (design §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeetingStatus {
    Created,
    /// Reserved by the app for a trainer who has not connected; the trainer hosts (rule 21).
    CreatedByApp,
    PendingTrainerConnection,
    Failed,
    Cancelled,
}

impl MeetingStatus {
    /// Every value the service writes; the metadata test checks the picklist has them.
    pub const ALL: [MeetingStatus; 5] = [
        MeetingStatus::Created,
        MeetingStatus::CreatedByApp,
        MeetingStatus::PendingTrainerConnection,
        MeetingStatus::Failed,
        MeetingStatus::Cancelled,
    ];

    /// The picklist value.
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingStatus::Created => "Created",
            MeetingStatus::CreatedByApp => "Created by App",
            MeetingStatus::PendingTrainerConnection => "Pending Trainer Connection",
            MeetingStatus::Failed => "Failed",
            MeetingStatus::Cancelled => "Cancelled",
        }
    }

    /// Parses a picklist value.
    pub fn parse(s: &str) -> Option<MeetingStatus> {
        MeetingStatus::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A booking's current state in Salesforce.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub id: BookingId,
    pub is_deleted: bool,
    pub trainer_id: Option<TrainerId>,
    /// The trainer, read through the lookup's relationship; None when the lookup is
    /// empty or points at a record that no longer exists. Shared by the bookings of one
    /// query that name the same trainer (the record carries its encrypted tokens).
    pub trainer: Option<Arc<TrainerRecord>>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// True when a start or end value is present but not a valid DateTime.
    pub bad_times: bool,
    pub service_type: Option<String>,
    pub status: Option<String>,
    pub link: Option<String>,
    pub reservation_id: Option<String>,
    pub meeting_status: Option<MeetingStatus>,
    pub meeting_error: Option<String>,
    /// The error field shows the calendar step's reason (the meeting itself is fine).
    pub calendar_error: bool,
    /// Values of the topic template's fields, as text.
    pub topic_values: Map<String, Value>,
}

/// How the error field starts when only the calendar step failed; a booking showing it is
/// still rightly `Created` (the decision does not rewrite it), and the step clears it.
/// Read back from Salesforce in [`Booking::from_row`], once.
pub const CALENDAR_REASON: &str =
    "The meeting is ready, but it could not be put on the trainer's Lark calendar: ";

/// The relationship name of a custom lookup (`Trainer__c` → `Trainer__r`).
pub fn relationship_name(lookup_field: &str) -> String {
    match lookup_field.strip_suffix("__c") {
        Some(base) => format!("{base}__r"),
        // Standard lookups (`OwnerId`) drop the `Id`.
        None => lookup_field
            .strip_suffix("Id")
            .unwrap_or(lookup_field)
            .to_string(),
    }
}

/// The SELECT list for bookings with their trainer. `topic_fields` are the template
/// fields known to exist on the booking object.
pub fn select_fields(b: &BookingSettings, t: &TrainerSettings, topic_fields: &[String]) -> String {
    let rel = relationship_name(&b.trainer_field);
    let mut fields: Vec<String> = vec![
        "Id".into(),
        "IsDeleted".into(),
        b.trainer_field.clone(),
        b.start_field.clone(),
        b.end_field.clone(),
        b.service_type_field.clone(),
        b.status_field.clone(),
        b.link_field.clone(),
        b.reservation_field.clone(),
        b.meeting_status_field.clone(),
        b.meeting_error_field.clone(),
    ];
    fields.extend(topic_fields.iter().cloned());
    for f in TrainerRecord::select_fields(t).split(", ") {
        fields.push(format!("{rel}.{f}"));
    }
    let mut seen = std::collections::HashSet::new();
    fields.retain(|f| seen.insert(f.to_ascii_lowercase()));
    fields.join(", ")
}

fn text(row: &Map<String, Value>, field: &str) -> Option<String> {
    match row.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Booking {
    /// Parses a row from the booking query; None for a row without a valid `Id`.
    pub fn from_row(
        b: &BookingSettings,
        t: &TrainerSettings,
        topic_fields: &[String],
        row: &Map<String, Value>,
    ) -> Option<Booking> {
        let id = BookingId::parse(&text(row, "Id")?).ok()?;
        let rel = relationship_name(&b.trainer_field);
        let trainer = row
            .get(&rel)
            .and_then(Value::as_object)
            .and_then(|r| TrainerRecord::from_row(t, r))
            .map(Arc::new);
        let start_raw = text(row, &b.start_field);
        let end_raw = text(row, &b.end_field);
        let start = start_raw.as_deref().and_then(parse_datetime);
        let end = end_raw.as_deref().and_then(parse_datetime);
        let bad_times =
            (start_raw.is_some() && start.is_none()) || (end_raw.is_some() && end.is_none());
        let meeting_error = text(row, &b.meeting_error_field);
        // The one place the error field's text is looked at: the calendar step's reasons
        // carry its fixed prefix (the field holds what we wrote, or what an admin typed).
        let calendar_error = meeting_error
            .as_deref()
            .is_some_and(|e| e.strip_prefix(CALENDAR_REASON).is_some());
        let mut topic_values = Map::new();
        for f in topic_fields {
            topic_values.insert(
                f.clone(),
                text(row, f).map(Value::String).unwrap_or(Value::Null),
            );
        }
        Some(Booking {
            id,
            is_deleted: row
                .get("IsDeleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            // Salesforce only ever puts a valid id in a lookup.
            trainer_id: text(row, &b.trainer_field).and_then(|t| TrainerId::parse(&t).ok()),
            trainer,
            start,
            end,
            bad_times,
            service_type: text(row, &b.service_type_field),
            status: text(row, &b.status_field),
            link: text(row, &b.link_field),
            reservation_id: text(row, &b.reservation_field),
            meeting_status: text(row, &b.meeting_status_field)
                .as_deref()
                .and_then(MeetingStatus::parse),
            meeting_error,
            calendar_error,
            topic_values,
        })
    }
}

impl Booking {
    /// A booking Salesforce no longer returns at all (deleted and purged): its meeting
    /// must go.
    pub fn purged(id: BookingId) -> Booking {
        Booking {
            id,
            is_deleted: true,
            trainer_id: None,
            trainer: None,
            start: None,
            end: None,
            bad_times: false,
            service_type: None,
            status: None,
            link: None,
            reservation_id: None,
            meeting_status: None,
            meeting_error: None,
            calendar_error: false,
            topic_values: Map::new(),
        }
    }

    /// True for a booking that should have a meeting: not deleted, not cancelled, remote.
    pub fn is_live_remote(&self, s: &BookingSettings) -> bool {
        let cancelled = self
            .status
            .as_deref()
            .is_some_and(|v| s.cancelled_values.iter().any(|c| c == v));
        let remote = self
            .service_type
            .as_deref()
            .is_some_and(|v| s.remote_values.iter().any(|r| r == v));
        !self.is_deleted && !cancelled && remote
    }

    /// True when the booking shows a meeting (`Created` or `Created by App`).
    pub fn shows_a_meeting(&self) -> bool {
        matches!(
            self.meeting_status,
            Some(MeetingStatus::Created | MeetingStatus::CreatedByApp)
        )
    }

    /// True when the booking already shows this status and reason (nothing to write).
    pub fn shows_status(&self, status: MeetingStatus, reason: Option<&str>) -> bool {
        self.meeting_status == Some(status) && self.meeting_error.as_deref() == reason
    }

    /// True when the booking already shows this reservation as `Created`, with `link`
    /// (any link when None) and no error.
    /// A reason the calendar step wrote still counts as `Created` (the meeting is fine;
    /// the calendar step itself clears it).
    pub fn shows_created(&self, reservation_id: &str, link: Option<&str>) -> bool {
        self.shows_meeting(MeetingStatus::Created, reservation_id, link)
    }

    /// As [`Booking::shows_created`], with `status` (`Created` or `Created by App`).
    pub fn shows_meeting(
        &self,
        status: MeetingStatus,
        reservation_id: &str,
        link: Option<&str>,
    ) -> bool {
        self.meeting_status == Some(status)
            && (self.meeting_error.is_none() || self.calendar_error)
            && self.reservation_id.as_deref() == Some(reservation_id)
            && match link {
                Some(l) => self.link.as_deref() == Some(l),
                None => self.link.is_some(),
            }
    }
}

/// Fills `{Field__c}` placeholders; a missing value becomes an empty string.
pub fn render_topic(template: &str, values: &Map<String, Value>) -> String {
    let mut out = template.to_string();
    for (field, value) in values {
        let text = value.as_str().unwrap_or("");
        out = out.replace(&format!("{{{field}}}"), text);
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests;
