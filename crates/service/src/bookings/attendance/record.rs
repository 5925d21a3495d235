//! An event as attendance keeps it: the part of a VC meeting event that rule 29 and 30
//! need, in whole seconds (Lark's precision), encoded as JSON for the store. The sink
//! turns each [`LarkEvent`] into one of these — or into the outcome of an event nothing
//! will be done with — before it is acknowledged. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lark::events::{EventKind, EventUser, LarkEvent, Meeting, MeetingActivity};

/// `user_role` of a meeting's host in the events (1 participant, 2 host, 3 co-host).
const ROLE_HOST: i64 = 2;

/// What happened in the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Happening {
    /// `meeting_started_v1`.
    Started,
    /// `join_meeting_v1`.
    Joined,
    /// `leave_meeting_v1`.
    Left,
    /// `meeting_ended_v1`.
    Ended,
    /// `recording_ready_v1`.
    RecordingReady,
}

/// A meeting event, as kept until it is processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// What happened.
    pub happening: Happening,
    /// The reservation's meeting number: how the booking is found.
    pub meeting_no: String,
    /// The meeting's id (19 digits), once it started.
    pub meeting_id: Option<String>,
    /// `meeting.start_time`.
    pub meeting_start: Option<DateTime<Utc>>,
    /// `meeting.end_time` (none while the meeting runs).
    pub meeting_end: Option<DateTime<Utc>>,
    /// The meeting's owner (the reservation's host), else its host.
    pub owner_open_id: Option<String>,
    /// Who started, joined, left or ended it.
    pub operator_open_id: Option<String>,
    /// The operator's role in the meeting is host (when the owner is not named).
    pub operator_is_host: bool,
    /// When Lark created the event (`header.create_time`).
    pub at: Option<DateTime<Utc>>,
    /// `recording_ready_v1`'s URL.
    pub recording_url: Option<String>,
}

/// What the sink keeps of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordable {
    /// A meeting event for the pipeline to match to a booking.
    Meeting(RecordedEvent),
    /// An event nothing will be done with: recorded as processed with this outcome.
    Ignored(&'static str),
}

/// The outcome of an event of a type the service does not use.
pub const OTHER_TYPE: &str = "other_type";
/// The outcome of a VC event without a meeting number.
pub const NO_MEETING_NO: &str = "no_meeting_no";

/// Whole seconds: every time attendance keeps has Lark's precision, so times from events
/// and from Lark's answers compare alike.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl Recordable {
    /// Reads what attendance keeps of `event`.
    pub fn of(event: &LarkEvent) -> Recordable {
        let at = event.header.create_time.map(whole_seconds);
        let (happening, meeting, operator, url) = match &event.kind {
            EventKind::MeetingStarted(a) => activity(Happening::Started, a),
            EventKind::Joined(a) => activity(Happening::Joined, a),
            EventKind::Left { activity: a, .. } => activity(Happening::Left, a),
            EventKind::MeetingEnded(a) => activity(Happening::Ended, a),
            EventKind::RecordingReady { meeting, recording } => (
                Happening::RecordingReady,
                meeting,
                None,
                recording.url.clone(),
            ),
            EventKind::VcWithoutMeetingNo => return Recordable::Ignored(NO_MEETING_NO),
            EventKind::Other => return Recordable::Ignored(OTHER_TYPE),
        };
        let owner = meeting
            .owner
            .as_ref()
            .and_then(|u| u.open_id.clone())
            .or_else(|| meeting.host.as_ref().and_then(|u| u.open_id.clone()));
        Recordable::Meeting(RecordedEvent {
            happening,
            meeting_no: meeting.meeting_no.clone(),
            meeting_id: meeting.id.clone(),
            meeting_start: meeting.start_time.map(whole_seconds),
            meeting_end: meeting.end_time.map(whole_seconds),
            owner_open_id: owner,
            operator_open_id: operator.and_then(|o| o.open_id.clone()),
            operator_is_host: operator.is_some_and(|o| o.user_role == Some(ROLE_HOST)),
            at,
            recording_url: url,
        })
    }
}

fn activity(
    happening: Happening,
    a: &MeetingActivity,
) -> (Happening, &Meeting, Option<&EventUser>, Option<String>) {
    (happening, &a.meeting, a.operator.as_ref(), None)
}

impl RecordedEvent {
    /// The store's encoding.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the store's encoding; None for a body another version wrote differently.
    pub fn decode(body: &str) -> Option<RecordedEvent> {
        serde_json::from_str(body).ok()
    }
}

#[cfg(test)]
mod tests;
