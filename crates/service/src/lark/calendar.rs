//! The host's Lark calendar (design rule 20), always with the host's own user access token:
//! the primary calendar's id, events created with an idempotency key, start and end moved,
//! events deleted without notifying, external guests invited.
//!
//! Every method is paced under Lark's per-app, per-method limit (50/s, 1000/min) and is
//! safe to repeat, so the retry helper may resend it: a create carries its idempotency key
//! (Lark answers the same event for the same key and calendar), a patch sets absolute
//! times, a repeated delete answers "deleted" ([`LarkError::NotFound`]) and an attendee
//! already invited is not invited twice. It decides nothing about bookings: which event a
//! booking has, and when to move or delete it, is the pipeline's business.
//!
//! Wire facts (paths, field names and types, codes): Lark's Calendar v4 pages, mirrored in
//! wxkingstar/doc-hub-mcp under `feishu/003-服务端API/calendar-v4/` — `calendar/primary.md`,
//! `calendar-event/{create,patch,get,delete}.md`, `calendar-event-attendee/create.md` — and
//! the request models of larksuite/oapi-sdk-go `service/calendar/v4` (`TimeInfo.Timestamp`
//! is a string of unix seconds; `need_notification` of delete is a query string).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{lenient_i64, truncate, LarkError};
use super::pacing::Pacer;
use super::secret::AccessToken;
use super::{CallKind, Data, LarkClient};

/// Path of the primary-calendar lookup.
pub const PRIMARY_PATH: &str = "/open-apis/calendar/v4/calendars/primary";
/// Prefix of a calendar's path (`{CALENDARS_PATH}/{calendar_id}/events…`).
pub const CALENDARS_PATH: &str = "/open-apis/calendar/v4/calendars";
/// Shortest and longest `idempotency_key` Lark accepts (the create page's 数据校验规则).
pub const IDEMPOTENCY_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=128;

/// A pacer per calendar method.
pub(crate) struct Pacers {
    primary: Pacer,
    create: Pacer,
    patch: Pacer,
    get: Pacer,
    delete: Pacer,
    attendees: Pacer,
}

impl Default for Pacers {
    fn default() -> Self {
        Pacers {
            primary: Pacer::at_standard_limits(),
            create: Pacer::at_standard_limits(),
            patch: Pacer::at_standard_limits(),
            get: Pacer::at_standard_limits(),
            delete: Pacer::at_standard_limits(),
            attendees: Pacer::at_standard_limits(),
        }
    }
}

/// A point in time as the calendar takes it (sent as unix seconds), and the IANA zone
/// the event is written in (e.g. `UTC`, `Europe/Paris`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTime {
    /// The instant (whole seconds reach Lark).
    pub at: DateTime<Utc>,
    /// IANA zone name.
    pub timezone: String,
}

/// What an event for a meeting carries (rule 20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCalendarEvent {
    /// The meeting topic.
    pub summary: String,
    /// From `calendar.description_template`.
    pub description: String,
    /// The booking's start.
    pub start: EventTime,
    /// The booking's end.
    pub end: EventTime,
    /// The join link, as the event's third-party video meeting.
    pub meeting_url: String,
    /// The one reminder, minutes before the start.
    pub reminder_minutes: i64,
}

/// An event as Lark answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEvent {
    /// `<uuid>_0`: what goes to `Lark_Calendar_Event_Id__c`.
    pub event_id: String,
    /// The organizer's calendar.
    pub calendar_id: String,
    /// Start, as Lark keeps it (whole seconds); None when the answer left it out.
    pub start: Option<DateTime<Utc>>,
    /// End, likewise.
    pub end: Option<DateTime<Utc>>,
    /// `vchat.meeting_url`, when the event has one.
    pub meeting_url: Option<String>,
}

/// An attendee as Lark answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAttendee {
    /// Lark's id of this attendee on this event.
    pub attendee_id: String,
    /// `third_party`, `user`, `chat` or `resource`.
    pub kind: String,
    /// The guest's email, for a `third_party` attendee.
    pub third_party_email: Option<String>,
}

/// An `idempotency_key` for an event create, derived from `parts` (e.g. the booking id and
/// the reservation id): the same parts always give the same key, and it is always within
/// Lark's 32–128 characters (64 hex characters of a SHA-256).
pub fn idempotency_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

// ---------------------------------------------------------------------------------------
// Wire shapes.

/// `time_info`: `timestamp` is a string of unix seconds.
#[derive(Serialize)]
struct TimeInfo<'a> {
    timestamp: String,
    timezone: &'a str,
}

impl<'a> From<&'a EventTime> for TimeInfo<'a> {
    fn from(t: &'a EventTime) -> Self {
        TimeInfo {
            timestamp: t.at.timestamp().to_string(),
            timezone: &t.timezone,
        }
    }
}

#[derive(Serialize)]
struct Vchat<'a> {
    vc_type: &'static str,
    icon_type: &'static str,
    meeting_url: &'a str,
    description: &'static str,
}

#[derive(Serialize)]
struct Reminder {
    minutes: i64,
}

/// Body of the create request.
#[derive(Serialize)]
struct CreateBody<'a> {
    summary: &'a str,
    description: &'a str,
    /// The host creates their own event: no bot notification to them.
    need_notification: bool,
    start_time: TimeInfo<'a>,
    end_time: TimeInfo<'a>,
    vchat: Vchat<'a>,
    reminders: [Reminder; 1],
    /// Guests see who else is invited (the trainer), nothing more.
    attendee_ability: &'static str,
    free_busy_status: &'static str,
}

/// Body of the patch request: start and end only take effect together; summary and
/// description are left out unless they change.
#[derive(Serialize)]
struct PatchTimesBody<'a> {
    need_notification: bool,
    start_time: TimeInfo<'a>,
    end_time: TimeInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct AttendeeBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    third_party_email: &'a str,
}

#[derive(Serialize)]
struct AttendeesBody<'a> {
    attendees: Vec<AttendeeBody<'a>>,
    need_notification: bool,
}

#[derive(Deserialize)]
struct PrimaryData {
    #[serde(default)]
    calendars: Vec<UserCalendar>,
}

#[derive(Deserialize)]
struct UserCalendar {
    calendar: CalendarBody,
}

#[derive(Deserialize)]
struct CalendarBody {
    calendar_id: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct EventData {
    event: EventBody,
}

#[derive(Deserialize)]
struct TimeBody {
    #[serde(default, deserialize_with = "lenient_i64")]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct VchatBody {
    #[serde(default)]
    meeting_url: Option<String>,
}

#[derive(Deserialize)]
struct EventBody {
    event_id: String,
    #[serde(default)]
    organizer_calendar_id: String,
    start_time: Option<TimeBody>,
    end_time: Option<TimeBody>,
    #[serde(default)]
    vchat: Option<VchatBody>,
}

impl EventBody {
    fn into_event(self, calendar_id: &str) -> CalendarEvent {
        let at = |t: Option<TimeBody>| {
            t.and_then(|t| t.timestamp)
                .and_then(|s| DateTime::from_timestamp(s, 0))
        };
        CalendarEvent {
            event_id: self.event_id,
            calendar_id: if self.organizer_calendar_id.is_empty() {
                calendar_id.to_string()
            } else {
                self.organizer_calendar_id
            },
            start: at(self.start_time),
            end: at(self.end_time),
            meeting_url: self
                .vchat
                .and_then(|v| v.meeting_url)
                .filter(|u| !u.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct AttendeesData {
    #[serde(default)]
    attendees: Vec<AttendeeAnswer>,
}

#[derive(Deserialize)]
struct AttendeeAnswer {
    #[serde(default)]
    attendee_id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    third_party_email: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Calls.

impl LarkClient {
    /// The id of the token user's primary calendar.
    #[tracing::instrument(name = "lark.calendar.primary", skip_all)]
    pub async fn primary_calendar_id(&self, token: &AccessToken) -> Result<String, LarkError> {
        let Data { data }: Data<PrimaryData> = self
            .paced_user_call(
                "lark primary calendar",
                CallKind::CalendarPrimary,
                &self.inner.calendar_pacers.primary,
                || {
                    self.inner
                        .http
                        .post(self.url(PRIMARY_PATH))
                        .bearer_auth(token.secret())
                        .json(&serde_json::json!({}))
                },
            )
            .await?;
        let mut calendars: Vec<CalendarBody> =
            data.calendars.into_iter().map(|c| c.calendar).collect();
        // Lark lists the identity's primary calendars; take the one typed primary.
        let typed = calendars
            .iter()
            .position(|c| c.kind.as_deref() == Some("primary"));
        let primary = match typed {
            Some(i) => Some(calendars.swap_remove(i)),
            None => calendars.into_iter().next(),
        };
        match primary {
            Some(c) if valid_calendar_id(&c.calendar_id) => Ok(c.calendar_id),
            Some(c) => Err(LarkError::Unexpected {
                status: 200,
                body: format!("unusable calendar id {:?}", truncate(&c.calendar_id)),
            }),
            None => Err(LarkError::NotFound {
                code: 0,
                msg: "Lark listed no primary calendar for this user".into(),
            }),
        }
    }

    /// Creates the event on `calendar_id`. `idempotency_key` (see [`idempotency_key`])
    /// makes a repeat answer the event already made, never a second one.
    #[tracing::instrument(name = "lark.calendar.event_create", skip_all, fields(calendar = %calendar_id))]
    pub async fn create_calendar_event(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        idempotency_key: &str,
        event: &NewCalendarEvent,
    ) -> Result<CalendarEvent, LarkError> {
        if !IDEMPOTENCY_KEY_LEN.contains(&idempotency_key.chars().count()) {
            return Err(invalid(format!(
                "an idempotency key must be {} to {} characters",
                IDEMPOTENCY_KEY_LEN.start(),
                IDEMPOTENCY_KEY_LEN.end()
            )));
        }
        let path = format!("{}/events", calendar_path(calendar_id)?);
        let body = CreateBody {
            summary: &event.summary,
            description: &event.description,
            need_notification: false,
            start_time: (&event.start).into(),
            end_time: (&event.end).into(),
            vchat: Vchat {
                vc_type: "third_party",
                icon_type: "vc",
                meeting_url: &event.meeting_url,
                description: "Join the Lark meeting",
            },
            reminders: [Reminder {
                minutes: event.reminder_minutes,
            }],
            attendee_ability: "can_see_others",
            free_busy_status: "busy",
        };
        let Data { data }: Data<EventData> = self
            .paced_user_call(
                "lark calendar event create",
                CallKind::EventCreate,
                &self.inner.calendar_pacers.create,
                || {
                    self.inner
                        .http
                        .post(self.url(&path))
                        .query(&[("idempotency_key", idempotency_key)])
                        .bearer_auth(token.secret())
                        .json(&body)
                },
            )
            .await?;
        Ok(data.event.into_event(calendar_id))
    }

    /// Moves the event: start and end together (Lark applies them only as a pair).
    /// `notify_attendees` lets Lark tell the guests about the new time.
    pub async fn patch_calendar_event_times(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        event_id: &str,
        start: &EventTime,
        end: &EventTime,
        notify_attendees: bool,
    ) -> Result<CalendarEvent, LarkError> {
        self.patch_calendar_event(
            token,
            calendar_id,
            event_id,
            start,
            end,
            None,
            notify_attendees,
        )
        .await
    }

    /// As [`LarkClient::patch_calendar_event_times`], also setting the summary and the
    /// description when `text` is given (`summary`, `description` of the patch body).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "lark.calendar.event_patch", skip_all, fields(event = %event_id))]
    pub async fn patch_calendar_event(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        event_id: &str,
        start: &EventTime,
        end: &EventTime,
        text: Option<(&str, &str)>,
        notify_attendees: bool,
    ) -> Result<CalendarEvent, LarkError> {
        let path = event_path(calendar_id, event_id)?;
        let body = PatchTimesBody {
            need_notification: notify_attendees,
            start_time: start.into(),
            end_time: end.into(),
            summary: text.map(|(s, _)| s),
            description: text.map(|(_, d)| d),
        };
        let Data { data }: Data<EventData> = self
            .paced_user_call(
                "lark calendar event patch",
                CallKind::EventPatch,
                &self.inner.calendar_pacers.patch,
                || {
                    self.inner
                        .http
                        .patch(self.url(&path))
                        .bearer_auth(token.secret())
                        .json(&body)
                },
            )
            .await?;
        Ok(data.event.into_event(calendar_id))
    }

    /// Reads the event. A deleted one answers [`LarkError::NotFound`] (code 193003).
    pub async fn get_calendar_event(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        event_id: &str,
    ) -> Result<CalendarEvent, LarkError> {
        let path = event_path(calendar_id, event_id)?;
        let Data { data }: Data<EventData> = self
            .paced_user_call(
                "lark calendar event get",
                CallKind::EventGet,
                &self.inner.calendar_pacers.get,
                || {
                    self.inner
                        .http
                        .get(self.url(&path))
                        .bearer_auth(token.secret())
                },
            )
            .await?;
        Ok(data.event.into_event(calendar_id))
    }

    /// Deletes the event without notifying anyone (`need_notification=false`). An event
    /// already deleted or unknown answers [`LarkError::NotFound`]; the caller decides
    /// whether that counts as done.
    #[tracing::instrument(name = "lark.calendar.event_delete", skip_all, fields(event = %event_id))]
    pub async fn delete_calendar_event(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        event_id: &str,
    ) -> Result<(), LarkError> {
        let path = event_path(calendar_id, event_id)?;
        let _: serde_json::Value = self
            .paced_user_call(
                "lark calendar event delete",
                CallKind::EventDelete,
                &self.inner.calendar_pacers.delete,
                || {
                    self.inner
                        .http
                        .delete(self.url(&path))
                        .query(&[("need_notification", "false")])
                        .bearer_auth(token.secret())
                },
            )
            .await?;
        Ok(())
    }

    /// Invites external guests by email (`third_party` attendees). `notify` lets Lark send
    /// them the invitation. A guest already invited is answered as is, not added twice.
    #[tracing::instrument(name = "lark.calendar.guests_add", skip_all, fields(event = %event_id))]
    pub async fn add_calendar_guests(
        &self,
        token: &AccessToken,
        calendar_id: &str,
        event_id: &str,
        emails: &[&str],
        notify: bool,
    ) -> Result<Vec<EventAttendee>, LarkError> {
        if let Some(bad) = emails.iter().find(|e| !looks_like_email(e)) {
            return Err(invalid(format!(
                "not an email address: {:?}",
                truncate(bad)
            )));
        }
        let path = format!("{}/attendees", event_path(calendar_id, event_id)?);
        let body = AttendeesBody {
            attendees: emails
                .iter()
                .map(|email| AttendeeBody {
                    kind: "third_party",
                    third_party_email: email,
                })
                .collect(),
            need_notification: notify,
        };
        let Data { data }: Data<AttendeesData> = self
            .paced_user_call(
                "lark calendar attendees",
                CallKind::EventAttendees,
                &self.inner.calendar_pacers.attendees,
                || {
                    self.inner
                        .http
                        .post(self.url(&path))
                        .bearer_auth(token.secret())
                        .json(&body)
                },
            )
            .await?;
        Ok(data
            .attendees
            .into_iter()
            .map(|a| EventAttendee {
                attendee_id: a.attendee_id,
                kind: a.kind,
                third_party_email: a.third_party_email,
            })
            .collect())
    }
}

fn invalid(msg: String) -> LarkError {
    LarkError::InvalidParams { code: 0, msg }
}

fn looks_like_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Calendar ids look like `feishu.cn_xxx@group.calendar.feishu.cn`: refuse anything that
/// could change the request path (an id read back from Salesforce is not trusted blindly).
fn valid_calendar_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// Event ids are `<uuid>_<n>`.
fn valid_event_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn calendar_path(calendar_id: &str) -> Result<String, LarkError> {
    if !valid_calendar_id(calendar_id) {
        return Err(invalid(format!(
            "not a calendar id: {:?}",
            truncate(calendar_id)
        )));
    }
    Ok(format!("{CALENDARS_PATH}/{calendar_id}"))
}

fn event_path(calendar_id: &str, event_id: &str) -> Result<String, LarkError> {
    if !valid_event_id(event_id) {
        return Err(invalid(format!(
            "not an event id: {:?}",
            truncate(event_id)
        )));
    }
    Ok(format!("{}/events/{event_id}", calendar_path(calendar_id)?))
}

#[cfg(test)]
mod tests;
