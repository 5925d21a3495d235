//! The events that arrive over the long connection: the envelope every event shares and a
//! typed reading of the five VC meeting events of rule 29.
//!
//! Shapes from the Feishu server API docs (wxkingstar/doc-hub-mcp mirror,
//! `feishu/003-服务端API/视频会议/会议管理/事件/`: 会议开始 `meeting_started_v1`, 加入会议
//! `join_meeting_v1`, 离开会议 `leave_meeting_v1`, 会议结束 `meeting_ended_v1`, 录制完成
//! `recording_ready_v1`) and design §4. The envelope is schema 2.0: `{schema, header:
//! {event_id, event_type, create_time (ms), token, app_id, tenant_key}, event}`; over the
//! long connection it is not encrypted. `header.token` (the webhook verification token)
//! is not kept.
//!
//! Reading is field by field from JSON values, so one odd field (a number where a string
//! was documented, an absurd timestamp) costs that field, never the event, and nothing
//! here can panic (rule 17). A VC event without a `meeting_no` cannot be matched to a
//! booking: it becomes [`EventKind::VcWithoutMeetingNo`], for the pipeline to acknowledge
//! and ignore. Any other event type is [`EventKind::Other`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// `vc.meeting.meeting_started_v1`.
pub const MEETING_STARTED: &str = "vc.meeting.meeting_started_v1";
/// `vc.meeting.join_meeting_v1`.
pub const JOIN_MEETING: &str = "vc.meeting.join_meeting_v1";
/// `vc.meeting.leave_meeting_v1`.
pub const LEAVE_MEETING: &str = "vc.meeting.leave_meeting_v1";
/// `vc.meeting.meeting_ended_v1`.
pub const MEETING_ENDED: &str = "vc.meeting.meeting_ended_v1";
/// `vc.meeting.recording_ready_v1`.
pub const RECORDING_READY: &str = "vc.meeting.recording_ready_v1";

/// The five events the service subscribes to (the developer console's list; `check`
/// names them).
pub const EVENT_TYPES: [&str; 5] = [
    MEETING_STARTED,
    JOIN_MEETING,
    LEAVE_MEETING,
    MEETING_ENDED,
    RECORDING_READY,
];

/// Longest text kept from any one field: ids, topics and URLs are far shorter, and an
/// absurd value must not grow memory or the store.
const MAX_TEXT: usize = 2048;

/// One event from Lark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LarkEvent {
    pub header: EventHeader,
    pub kind: EventKind,
}

/// The envelope's `header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    /// Unique per event; Lark sends the same id again when it redelivers.
    pub event_id: String,
    pub event_type: String,
    /// When Lark created the event (`create_time`, milliseconds).
    pub create_time: Option<DateTime<Utc>>,
    pub app_id: Option<String>,
    pub tenant_key: Option<String>,
}

/// What the event says, typed for the events the service acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `meeting_started_v1`: the meeting began (`operator` started it).
    MeetingStarted(MeetingActivity),
    /// `join_meeting_v1`: `operator` joined.
    Joined(MeetingActivity),
    /// `leave_meeting_v1`: `operator` left, for `reason`.
    Left {
        activity: MeetingActivity,
        reason: Option<LeaveReason>,
    },
    /// `meeting_ended_v1`: the meeting ended (`operator` ended it).
    MeetingEnded(MeetingActivity),
    /// `recording_ready_v1`: the recording is uploaded.
    RecordingReady {
        meeting: Meeting,
        recording: Recording,
    },
    /// One of the five VC events, without a `meeting_no`: nothing to match it to.
    VcWithoutMeetingNo,
    /// Any other event type (`header.event_type` says which).
    Other,
}

impl EventKind {
    /// The meeting, for the four activity events and recording ready.
    pub fn meeting(&self) -> Option<&Meeting> {
        match self {
            EventKind::MeetingStarted(a)
            | EventKind::Joined(a)
            | EventKind::MeetingEnded(a)
            | EventKind::Left { activity: a, .. } => Some(&a.meeting),
            EventKind::RecordingReady { meeting, .. } => Some(meeting),
            EventKind::VcWithoutMeetingNo | EventKind::Other => None,
        }
    }

    /// A short label for metrics: never the raw event type (a label carries kinds, and
    /// the set of event types is Lark's).
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::MeetingStarted(_) => "meeting_started",
            EventKind::Joined(_) => "join_meeting",
            EventKind::Left { .. } => "leave_meeting",
            EventKind::MeetingEnded(_) => "meeting_ended",
            EventKind::RecordingReady { .. } => "recording_ready",
            EventKind::VcWithoutMeetingNo => "vc_without_meeting_no",
            EventKind::Other => "other",
        }
    }
}

/// A meeting event's `meeting` and `operator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingActivity {
    pub meeting: Meeting,
    /// Who started, joined, left or ended it.
    pub operator: Option<EventUser>,
}

/// `event.meeting` (`meeting_event_meeting` in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// The meeting id (19 digits), once the meeting has started.
    pub id: Option<String>,
    /// The 9-digit meeting number: the same as the reservation's (how a booking is found).
    pub meeting_no: String,
    pub topic: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub host: Option<EventUser>,
    pub owner: Option<EventUser>,
    pub calendar_event_id: Option<String>,
}

/// A `meeting_event_user`: `{id: {union_id, user_id, open_id}, user_role, user_type}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventUser {
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    /// Only with the app permission `contact:user.employee_id:readonly`.
    pub user_id: Option<String>,
    /// 1 participant, 2 host, 3 co-host.
    pub user_role: Option<i64>,
    pub user_type: Option<UserType>,
    /// Whether the user is from another tenant, when the payload says (the documented
    /// events do not; the participants call does).
    pub is_external: Option<bool>,
}

/// `user_type` of a meeting user (the docs' 可选值).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    /// 1: a Lark user.
    Lark,
    /// 2: a Rooms device.
    Rooms,
    /// 3: a Docs user.
    Docs,
    /// 4: a standalone (neo) user.
    Neo,
    /// 5: a standalone (neo) guest.
    NeoGuest,
    /// 6: a phone (PSTN) participant.
    Pstn,
    /// 7: a SIP device.
    Sip,
    /// A value the docs do not list.
    Other(i64),
}

impl UserType {
    /// From Lark's number.
    pub fn from_code(code: i64) -> UserType {
        match code {
            1 => UserType::Lark,
            2 => UserType::Rooms,
            3 => UserType::Docs,
            4 => UserType::Neo,
            5 => UserType::NeoGuest,
            6 => UserType::Pstn,
            7 => UserType::Sip,
            other => UserType::Other(other),
        }
    }
}

/// `leave_reason` of `leave_meeting_v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// 1: left on their own.
    Left,
    /// 2: the meeting ended.
    MeetingEnded,
    /// 3: removed by the host.
    Removed,
    /// A value the docs do not list.
    Other(i64),
}

/// `recording_ready_v1`'s `url` and `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub url: Option<String>,
    /// Length of the recording (`duration`, milliseconds as a string).
    pub duration: Option<Duration>,
}

/// Why a payload is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("the payload is not JSON")]
    NotJson,
    #[error("the envelope has no event_id or event_type")]
    NoHeader,
}

impl LarkEvent {
    /// Reads one event payload (after fragments are joined).
    pub(crate) fn parse(payload: &[u8]) -> Result<LarkEvent, EnvelopeError> {
        let value: Value = serde_json::from_slice(payload).map_err(|_| EnvelopeError::NotJson)?;
        let header = header(&value).ok_or(EnvelopeError::NoHeader)?;
        let event = value.get("event").unwrap_or(&Value::Null);
        let kind = kind(&header.event_type, event);
        Ok(LarkEvent { header, kind })
    }
}

/// A schema 2.0 `header`; a schema 1.0 envelope (`uuid`, `event.type`) is read too, as
/// the SDKs' dispatchers do, so that it is recorded as [`EventKind::Other`].
fn header(value: &Value) -> Option<EventHeader> {
    if let Some(h) = value.get("header") {
        return Some(EventHeader {
            event_id: text(h.get("event_id"))?,
            event_type: text(h.get("event_type"))?,
            create_time: millis(h.get("create_time")),
            app_id: text(h.get("app_id")),
            tenant_key: text(h.get("tenant_key")),
        });
    }
    let event = value.get("event")?;
    Some(EventHeader {
        event_id: text(value.get("uuid"))?,
        event_type: text(event.get("type"))?,
        create_time: None,
        app_id: text(event.get("app_id")),
        tenant_key: text(event.get("tenant_key")),
    })
}

fn kind(event_type: &str, event: &Value) -> EventKind {
    if !EVENT_TYPES.contains(&event_type) {
        return EventKind::Other;
    }
    let Some(meeting) = meeting(event.get("meeting")) else {
        return EventKind::VcWithoutMeetingNo;
    };
    let activity = || MeetingActivity {
        meeting: meeting.clone(),
        operator: user(event.get("operator")),
    };
    match event_type {
        MEETING_STARTED => EventKind::MeetingStarted(activity()),
        JOIN_MEETING => EventKind::Joined(activity()),
        LEAVE_MEETING => EventKind::Left {
            activity: activity(),
            reason: integer(event.get("leave_reason")).map(|r| match r {
                1 => LeaveReason::Left,
                2 => LeaveReason::MeetingEnded,
                3 => LeaveReason::Removed,
                other => LeaveReason::Other(other),
            }),
        },
        MEETING_ENDED => EventKind::MeetingEnded(activity()),
        _ => EventKind::RecordingReady {
            recording: Recording {
                url: text(event.get("url")),
                duration: integer(event.get("duration"))
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Duration::from_millis),
            },
            meeting: meeting.clone(),
        },
    }
}

fn meeting(value: Option<&Value>) -> Option<Meeting> {
    let m = value?;
    Some(Meeting {
        meeting_no: text(m.get("meeting_no"))?,
        id: text(m.get("id")),
        topic: text(m.get("topic")),
        start_time: seconds(m.get("start_time")),
        end_time: seconds(m.get("end_time")),
        host: user(m.get("host_user")),
        owner: user(m.get("owner")),
        calendar_event_id: text(m.get("calendar_event_id")),
    })
}

fn user(value: Option<&Value>) -> Option<EventUser> {
    let u = value.filter(|v| v.is_object())?;
    let id = u.get("id");
    // `id` is an object of ids in events; accept a bare open_id string as well.
    let open_id = match id {
        Some(Value::String(_)) => text(id),
        _ => text(id.and_then(|i| i.get("open_id"))),
    };
    Some(EventUser {
        open_id,
        union_id: text(id.and_then(|i| i.get("union_id"))),
        user_id: text(id.and_then(|i| i.get("user_id"))),
        user_role: integer(u.get("user_role")),
        user_type: integer(u.get("user_type")).map(UserType::from_code),
        is_external: u.get("is_external").and_then(Value::as_bool),
    })
}

/// A non-empty string field, trimmed and capped at [`MAX_TEXT`]; numbers are taken as
/// their text (an id sent as a number is still the id).
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    let s = match value? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if s.is_empty() {
        return None;
    }
    if s.len() <= MAX_TEXT {
        return Some(s);
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_string())
}

/// An integer sent as a number or a numeric string.
pub(crate) fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds (number or string) as a time; absurd values (negative, zero, beyond
/// chrono's range) are none.
pub(crate) fn seconds(value: Option<&Value>) -> Option<DateTime<Utc>> {
    integer(value)
        .filter(|s| *s > 0)
        .and_then(|s| DateTime::from_timestamp(s, 0))
}

/// Unix milliseconds (number or string) as a time.
fn millis(value: Option<&Value>) -> Option<DateTime<Utc>> {
    integer(value)
        .filter(|ms| *ms > 0)
        .and_then(DateTime::from_timestamp_millis)
}

#[cfg(test)]
mod tests;
