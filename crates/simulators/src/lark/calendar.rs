//! Simulated Calendar v4, as the user's own identity (user access token): the primary
//! calendar, events (create with an idempotency key, get, patch, delete) and attendees.
//!
//! Wire facts, from Lark's pages (mirrored in wxkingstar/doc-hub-mcp under
//! `feishu/003-服务端API/calendar-v4/`):
//! - `calendar/primary.md`: `POST /open-apis/calendar/v4/calendars/primary` →
//!   `data.calendars[] = {calendar: {calendar_id, summary, description, permissions, color,
//!   type: "primary", summary_alias, is_deleted, is_third_party, role: "owner"}, user_id}`;
//!   scope `calendar:calendar:read` or `calendar:calendar:readonly`.
//! - `calendar-event/create.md`: `POST .../calendars/:calendar_id/events?idempotency_key=K`
//!   (K 32–128 characters, unique per app and calendar) with `{summary ≤1000,
//!   description ≤40960, need_notification, start_time/end_time: {timestamp: "<unix s>",
//!   timezone} | {date}, vchat: {vc_type, icon_type, description ≤500, meeting_url ≤2000},
//!   reminders: [{minutes}], attendee_ability, free_busy_status, visibility}` →
//!   `data.event.{event_id, organizer_calendar_id, …}`; scope `calendar:calendar` or
//!   `calendar:calendar.event:create`.
//! - `calendar-event/patch.md`, `get.md`, `delete.md` (`need_notification` is a query
//!   string "true"/"false"); `calendar-event-attendee/create.md`: `POST
//!   .../events/:event_id/attendees {attendees: [{type: "third_party", third_party_email} |
//!   {type: "user", user_id}], need_notification}` → `data.attendees[]`.
//! - Errors (same tables): 190002 invalid parameters (400), 191000 calendar not found (404),
//!   191002 no calendar access_role (403), 193001 event not found (404), 193002 no
//!   permission to operate event (403), 193003 event is deleted (403), 190005 app rate
//!   limited (429, see [`super::rate`]).
//!
//! Simplifications: only user identities (no app calendars), no recurrence, no all-day
//! `date` events, and a timezone is taken as given (not checked against the IANA list).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::rate::rate_limited;
use super::{bearer, lark_ok, unix_now, Refusal, Shared, State as SimState};

/// Scopes that allow reading the primary calendar.
const PRIMARY_SCOPES: &[&str] = &["calendar:calendar:read", "calendar:calendar:readonly"];
/// Scopes that allow creating events.
const CREATE_SCOPES: &[&str] = &["calendar:calendar", "calendar:calendar.event:create"];
/// Scopes that allow patching events and adding attendees.
const UPDATE_SCOPES: &[&str] = &["calendar:calendar", "calendar:calendar.event:update"];
/// Scopes that allow deleting events.
const DELETE_SCOPES: &[&str] = &["calendar:calendar", "calendar:calendar.event:delete"];
/// Scopes that allow reading events.
const READ_SCOPES: &[&str] = &[
    "calendar:calendar",
    "calendar:calendar:read",
    "calendar:calendar:readonly",
    "calendar:calendar.event:read",
];

/// Shortest and longest idempotency key Lark accepts.
const IDEMPOTENCY_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=128;
/// Longest summary, description, vchat description and meeting URL (characters).
const MAX_SUMMARY: usize = 1000;
const MAX_DESCRIPTION: usize = 40960;
const MAX_VCHAT_DESCRIPTION: usize = 500;
const MAX_MEETING_URL: usize = 2000;
/// Most attendees one add request may carry.
const MAX_ATTENDEES_PER_CALL: usize = 1000;

const INVALID_PARAMS: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    190002,
    "invalid parameters in request",
);
const CALENDAR_NOT_FOUND: Refusal =
    Refusal::new(StatusCode::NOT_FOUND, 191000, "calendar not found");
const NO_CALENDAR_ACCESS: Refusal =
    Refusal::new(StatusCode::FORBIDDEN, 191002, "no calendar access_role");
const EVENT_NOT_FOUND: Refusal = Refusal::new(StatusCode::NOT_FOUND, 193001, "event not found");
const NO_EVENT_PERMISSION: Refusal = Refusal::new(
    StatusCode::FORBIDDEN,
    193002,
    "no permission to operate event",
);
const EVENT_DELETED: Refusal = Refusal::new(StatusCode::FORBIDDEN, 193003, "event is deleted");
const NO_USER_SCOPE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    99991679,
    "Unauthorized. You do not have permission to perform the requested operation on the resource. Please request user re-authorization and try again.",
);

/// A point in time of an event: unix seconds and the IANA zone it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTime {
    /// Unix seconds.
    pub timestamp: i64,
    /// As sent (Lark's default for timed events is `Asia/Shanghai`).
    pub timezone: String,
}

/// An attendee added to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAttendee {
    /// `third_party_…` or `user_…`.
    pub attendee_id: String,
    /// `third_party` or `user`.
    pub kind: String,
    /// For `third_party`: the external email.
    pub third_party_email: Option<String>,
    /// For `user`: the open_id.
    pub user_id: Option<String>,
    /// Whether the add request asked Lark to notify (default true).
    pub notified: bool,
}

/// A calendar event as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// `<uuid>_0`.
    pub event_id: String,
    /// The calendar it lives on.
    pub calendar_id: String,
    /// open_id of the user whose token created it (the organizer).
    pub organizer_open_id: String,
    /// `summary` as sent ("" when none).
    pub summary: String,
    /// `description` as sent ("" when none).
    pub description: String,
    /// `start_time`.
    pub start: SimTime,
    /// `end_time`.
    pub end: SimTime,
    /// `vchat` as sent (`vc_type`, `icon_type`, `meeting_url`, `description`).
    pub vchat: Value,
    /// `reminders[].minutes`.
    pub reminders: Vec<i64>,
    /// `need_notification` of the create request (default true).
    pub need_notification: bool,
    /// `attendee_ability` as sent (`none`, `can_see_others`, …).
    pub attendee_ability: Option<String>,
    /// `free_busy_status` as sent (`busy` or `free`).
    pub free_busy_status: Option<String>,
    /// Everyone invited through the attendees endpoint, in order, each once.
    pub attendees: Vec<SimAttendee>,
    /// The `idempotency_key` it was created with.
    pub idempotency_key: Option<String>,
    /// Deleted through the API (kept so tests can see it).
    pub deleted: bool,
    /// `need_notification` of the delete request, once deleted.
    pub deleted_with_notification: Option<bool>,
    /// How many patches changed it.
    pub patches: u32,
}

/// Calendars and events of every user.
#[derive(Debug, Default)]
pub(crate) struct Calendars {
    /// open_id → primary calendar id.
    primary: HashMap<String, String>,
    /// calendar id → owner open_id.
    owners: HashMap<String, String>,
    events: Vec<SimEvent>,
    /// (calendar id, idempotency key) → event id.
    keys: HashMap<(String, String), String>,
    /// Users whose calendar refuses writes (their role drops to reader).
    read_only: std::collections::HashSet<String>,
}

impl Calendars {
    /// The user's primary calendar id, made on first use (every Lark user has one).
    pub(crate) fn primary_of(&mut self, open_id: &str) -> String {
        if let Some(id) = self.primary.get(open_id) {
            return id.clone();
        }
        let id = format!(
            "larksuite.com_{}@group.calendar.larksuite.com",
            crate::wire::random_hex(16)
        );
        self.primary.insert(open_id.to_string(), id.clone());
        self.owners.insert(id.clone(), open_id.to_string());
        id
    }

    pub(crate) fn events(&self) -> Vec<SimEvent> {
        self.events.clone()
    }

    pub(crate) fn set_read_only(&mut self, open_id: &str, read_only: bool) {
        if read_only {
            self.read_only.insert(open_id.to_string());
        } else {
            self.read_only.remove(open_id);
        }
    }

    /// The calendar, if the caller may use it.
    fn calendar_for(&self, calendar_id: &str, caller: &str) -> Result<(), Refusal> {
        match self.owners.get(calendar_id) {
            None => Err(CALENDAR_NOT_FOUND),
            Some(owner) if owner != caller => Err(NO_CALENDAR_ACCESS),
            Some(_) => Ok(()),
        }
    }

    /// A live event on the calendar, if the caller may use it.
    fn event_for(
        &mut self,
        calendar_id: &str,
        event_id: &str,
        caller: &str,
    ) -> Result<&mut SimEvent, Refusal> {
        self.calendar_for(calendar_id, caller)?;
        let event = self
            .events
            .iter_mut()
            .find(|e| e.event_id == event_id && e.calendar_id == calendar_id)
            .ok_or(EVENT_NOT_FOUND)?;
        if event.deleted {
            return Err(EVENT_DELETED);
        }
        Ok(event)
    }
}

/// The user behind the token, if it carries one of `scopes`; and a rate-limit slot.
fn caller(
    state: &mut SimState,
    headers: &HeaderMap,
    scopes: &[&str],
    method: &'static str,
    now: Instant,
) -> Result<String, Box<Response>> {
    let (open_id, granted) = state
        .check_user_token(bearer(headers), now)
        .map_err(|r| Box::new(r.into_response()))?;
    if !granted.split_whitespace().any(|s| scopes.contains(&s)) {
        return Err(Box::new(NO_USER_SCOPE.into_response()));
    }
    state
        .api_limits
        .take(method, now)
        .map_err(|reset| Box::new(rate_limited(reset)))?;
    Ok(open_id)
}

fn parse_object(body: &Bytes) -> Result<Value, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(INVALID_PARAMS),
    }
}

/// An optional string field no longer than `max` characters.
fn text(body: &Value, key: &str, max: usize) -> Result<Option<String>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(INVALID_PARAMS),
    }
}

/// `time_info`: `{timestamp: "<unix seconds>", timezone?}`. Lark types `timestamp` as a
/// string; a JSON number is a type error (190002), as for any mistyped field.
fn time_info(value: Option<&Value>) -> Result<Option<SimTime>, Refusal> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let timestamp = value
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|t| *t > 0)
        .ok_or(INVALID_PARAMS)?;
    let timezone = match value.get("timezone") {
        None | Some(Value::Null) => "Asia/Shanghai".to_string(),
        Some(Value::String(tz)) if !tz.trim().is_empty() => tz.clone(),
        Some(_) => return Err(INVALID_PARAMS),
    };
    Ok(Some(SimTime {
        timestamp,
        timezone,
    }))
}

fn vchat(body: &Value) -> Result<Value, Refusal> {
    let Some(vchat) = body.get("vchat").filter(|v| !v.is_null()) else {
        return Ok(json!({ "vc_type": "vc" }));
    };
    if !vchat.is_object() {
        return Err(INVALID_PARAMS);
    }
    match vchat.get("vc_type").and_then(Value::as_str) {
        None | Some("vc" | "third_party" | "no_meeting") => {}
        Some(_) => return Err(INVALID_PARAMS),
    }
    match vchat.get("icon_type").and_then(Value::as_str) {
        None | Some("vc" | "live" | "default") => {}
        Some(_) => return Err(INVALID_PARAMS),
    }
    text(vchat, "description", MAX_VCHAT_DESCRIPTION)?;
    if let Some(url) = text(vchat, "meeting_url", MAX_MEETING_URL)? {
        if url.is_empty() {
            return Err(INVALID_PARAMS);
        }
    }
    Ok(vchat.clone())
}

fn reminders(body: &Value) -> Result<Option<Vec<i64>>, Refusal> {
    let Some(list) = body.get("reminders").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let list = list.as_array().ok_or(INVALID_PARAMS)?;
    list.iter()
        .map(|r| {
            r.get("minutes")
                .and_then(Value::as_i64)
                // The page's range: -20160 (two weeks after) to 20160 (two weeks before).
                .filter(|m| (-20160..=20160).contains(m))
                .ok_or(INVALID_PARAMS)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn flag(body: &Value, key: &str) -> Result<Option<bool>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(INVALID_PARAMS),
    }
}

fn time_json(t: &SimTime) -> Value {
    json!({ "timestamp": t.timestamp.to_string(), "timezone": t.timezone })
}

fn event_json(e: &SimEvent, organizer_name: &str) -> Value {
    json!({
        "event_id": e.event_id,
        "organizer_calendar_id": e.calendar_id,
        "summary": e.summary,
        "description": e.description,
        "start_time": time_json(&e.start),
        "end_time": time_json(&e.end),
        "vchat": e.vchat,
        "visibility": "default",
        "attendee_ability": e.attendee_ability.clone().unwrap_or_else(|| "none".into()),
        "free_busy_status": e.free_busy_status.clone().unwrap_or_else(|| "busy".into()),
        "color": -1,
        "reminders": e.reminders.iter().map(|m| json!({ "minutes": m })).collect::<Vec<_>>(),
        "status": if e.deleted { "cancelled" } else { "confirmed" },
        "is_exception": false,
        "create_time": unix_now().to_string(),
        "event_organizer": { "user_id": e.organizer_open_id, "display_name": organizer_name },
        "app_link": format!(
            "https://applink.larksuite.com/client/calendar/event/detail?calendarId={}&key={}&originalTime=0&startTime={}",
            e.calendar_id, e.event_id.trim_end_matches("_0"), e.start.timestamp
        ),
    })
}

fn name_of(state: &SimState, open_id: &str) -> String {
    state
        .user_by_open_id(open_id)
        .map(|u| u.name.clone())
        .unwrap_or_default()
}

/// `POST /open-apis/calendar/v4/calendars/primary`.
pub(super) async fn primary(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, PRIMARY_SCOPES, "primary", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let calendar_id = state.calendars.primary_of(&open_id);
    let name = name_of(&state, &open_id);
    let role = if state.calendars.read_only.contains(&open_id) {
        "reader"
    } else {
        "owner"
    };
    lark_ok(json!({
        "calendars": [{
            "calendar": {
                "calendar_id": calendar_id,
                "summary": name,
                "description": "",
                "permissions": "private",
                "color": -1,
                "type": "primary",
                "summary_alias": "",
                "is_deleted": false,
                "is_third_party": false,
                "role": role,
            },
            "user_id": open_id,
        }]
    }))
}

/// `POST /open-apis/calendar/v4/calendars/{calendar_id}/events?idempotency_key=K`.
pub(super) async fn create_event(
    State(shared): State<Arc<Shared>>,
    Path(calendar_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, CREATE_SCOPES, "event.create", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let key = q.get("idempotency_key").cloned();
    if key
        .as_ref()
        .is_some_and(|k| !IDEMPOTENCY_KEY_LEN.contains(&k.chars().count()))
    {
        return INVALID_PARAMS.into_response();
    }
    if let Err(r) = state.calendars.calendar_for(&calendar_id, &open_id) {
        return r.into_response();
    }
    if state.calendars.read_only.contains(&open_id) {
        // The owner lost the writer role on their own calendar.
        return NO_CALENDAR_ACCESS.into_response();
    }
    if let Some(key) = &key {
        let existing = state
            .calendars
            .keys
            .get(&(calendar_id.clone(), key.clone()))
            .and_then(|id| state.calendars.events.iter().find(|e| &e.event_id == id));
        if let Some(event) = existing {
            // Same key, same calendar: the event made the first time, never a second.
            let name = name_of(&state, &event.organizer_open_id);
            return lark_ok(json!({ "event": event_json(event, &name) }));
        }
    }
    let event = match new_event(&body, &calendar_id, &open_id, key.clone()) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let name = name_of(&state, &open_id);
    let data = json!({ "event": event_json(&event, &name) });
    if let Some(key) = key {
        state
            .calendars
            .keys
            .insert((calendar_id, key), event.event_id.clone());
    }
    state.calendars.events.push(event);
    lark_ok(data)
}

fn new_event(
    body: &Bytes,
    calendar_id: &str,
    open_id: &str,
    idempotency_key: Option<String>,
) -> Result<SimEvent, Refusal> {
    let body = parse_object(body)?;
    let (Some(start), Some(end)) = (
        time_info(body.get("start_time"))?,
        time_info(body.get("end_time"))?,
    ) else {
        return Err(INVALID_PARAMS);
    };
    if end.timestamp <= start.timestamp {
        return Err(INVALID_PARAMS);
    }
    let attendee_ability = match body.get("attendee_ability").and_then(Value::as_str) {
        None => None,
        Some(a @ ("none" | "can_see_others" | "can_invite_others" | "can_modify_event")) => {
            Some(a.to_string())
        }
        Some(_) => return Err(INVALID_PARAMS),
    };
    let free_busy_status = match body.get("free_busy_status").and_then(Value::as_str) {
        None => None,
        Some(s @ ("busy" | "free")) => Some(s.to_string()),
        Some(_) => return Err(INVALID_PARAMS),
    };
    Ok(SimEvent {
        event_id: format!("{}_0", uuid::Uuid::new_v4()),
        calendar_id: calendar_id.to_string(),
        organizer_open_id: open_id.to_string(),
        summary: text(&body, "summary", MAX_SUMMARY)?.unwrap_or_default(),
        description: text(&body, "description", MAX_DESCRIPTION)?.unwrap_or_default(),
        start,
        end,
        vchat: vchat(&body)?,
        reminders: reminders(&body)?.unwrap_or_default(),
        need_notification: flag(&body, "need_notification")?.unwrap_or(true),
        attendee_ability,
        free_busy_status,
        attendees: Vec::new(),
        idempotency_key,
        deleted: false,
        deleted_with_notification: None,
        patches: 0,
    })
}

/// `GET /open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}`.
pub(super) async fn get_event(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, READ_SCOPES, "event.get", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let name = name_of(&state, &open_id);
    match state.calendars.event_for(&calendar_id, &event_id, &open_id) {
        Ok(event) => lark_ok(json!({ "event": event_json(event, &name) })),
        Err(r) => r.into_response(),
    }
}

/// `PATCH /open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}`. Start and end
/// take effect only together: one without the other is ignored.
pub(super) async fn patch_event(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, UPDATE_SCOPES, "event.patch", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let name = name_of(&state, &open_id);
    let read_only = state.calendars.read_only.contains(&open_id);
    let event = match state.calendars.event_for(&calendar_id, &event_id, &open_id) {
        Ok(event) => event,
        Err(r) => return r.into_response(),
    };
    if read_only {
        return NO_EVENT_PERMISSION.into_response();
    }
    match apply_patch(event, &body) {
        Ok(()) => lark_ok(json!({ "event": event_json(event, &name) })),
        Err(r) => r.into_response(),
    }
}

fn apply_patch(event: &mut SimEvent, body: &Bytes) -> Result<(), Refusal> {
    let body = parse_object(body)?;
    // Validate everything before changing anything.
    let summary = text(&body, "summary", MAX_SUMMARY)?;
    let description = text(&body, "description", MAX_DESCRIPTION)?;
    let start = time_info(body.get("start_time"))?;
    let end = time_info(body.get("end_time"))?;
    let times = match (start, end) {
        (Some(s), Some(e)) if e.timestamp <= s.timestamp => return Err(INVALID_PARAMS),
        (Some(s), Some(e)) => Some((s, e)),
        _ => None,
    };
    let vchat = body
        .get("vchat")
        .filter(|v| !v.is_null())
        .map(|_| vchat(&body))
        .transpose()?;
    let reminders = reminders(&body)?;
    flag(&body, "need_notification")?;
    if let Some(s) = summary {
        event.summary = s;
    }
    if let Some(d) = description {
        event.description = d;
    }
    if let Some((s, e)) = times {
        event.start = s;
        event.end = e;
    }
    if let Some(v) = vchat {
        event.vchat = v;
    }
    if let Some(r) = reminders {
        event.reminders = r;
    }
    event.patches += 1;
    Ok(())
}

/// `DELETE /open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}
/// ?need_notification=true|false`.
pub(super) async fn delete_event(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, DELETE_SCOPES, "event.delete", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let notify = match q.get("need_notification").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return INVALID_PARAMS.into_response(),
    };
    let read_only = state.calendars.read_only.contains(&open_id);
    match state.calendars.event_for(&calendar_id, &event_id, &open_id) {
        Ok(_) if read_only => NO_EVENT_PERMISSION.into_response(),
        Ok(event) => {
            event.deleted = true;
            event.deleted_with_notification = Some(notify);
            lark_ok(json!({}))
        }
        Err(r) => r.into_response(),
    }
}

/// `POST /open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees`.
pub(super) async fn add_attendees(
    State(shared): State<Arc<Shared>>,
    Path((calendar_id, event_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let open_id = match caller(&mut state, &headers, UPDATE_SCOPES, "attendee.create", now) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let body = match parse_object(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let requested = match requested_attendees(&state, &body) {
        Ok(list) => list,
        Err(r) => return r.into_response(),
    };
    let read_only = state.calendars.read_only.contains(&open_id);
    let event = match state.calendars.event_for(&calendar_id, &event_id, &open_id) {
        Ok(event) => event,
        Err(r) => return r.into_response(),
    };
    if read_only {
        return NO_EVENT_PERMISSION.into_response();
    }
    let mut answered = Vec::new();
    for wanted in requested {
        // Adding someone already invited changes nothing and answers them as they are.
        let existing = event.attendees.iter().position(|a| {
            a.kind == wanted.kind
                && a.user_id == wanted.user_id
                && a.third_party_email.as_deref().map(str::to_lowercase)
                    == wanted.third_party_email.as_deref().map(str::to_lowercase)
        });
        let index = existing.unwrap_or_else(|| {
            event.attendees.push(wanted);
            event.attendees.len() - 1
        });
        answered.push(attendee_json(&event.attendees[index]));
    }
    lark_ok(json!({ "attendees": answered }))
}

fn requested_attendees(state: &SimState, body: &Value) -> Result<Vec<SimAttendee>, Refusal> {
    let notified = flag(body, "need_notification")?.unwrap_or(true);
    let list = match body.get("attendees") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_ATTENDEES_PER_CALL => list,
        Some(_) => return Err(INVALID_PARAMS),
    };
    list.iter()
        .map(|a| {
            let field = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            match a.get("type").and_then(Value::as_str) {
                Some("third_party") => {
                    let email = field("third_party_email")
                        .filter(|e| e.contains('@') && !e.trim().is_empty())
                        .ok_or(INVALID_PARAMS)?;
                    Ok(SimAttendee {
                        attendee_id: format!("third_party_{}", crate::wire::random_hex(8)),
                        kind: "third_party".into(),
                        third_party_email: Some(email),
                        user_id: None,
                        notified,
                    })
                }
                Some("user") => {
                    let user = field("user_id")
                        .filter(|id| state.user_by_open_id(id).is_some())
                        .ok_or(INVALID_PARAMS)?;
                    Ok(SimAttendee {
                        attendee_id: format!("user_{}", crate::wire::random_hex(8)),
                        kind: "user".into(),
                        third_party_email: None,
                        user_id: Some(user),
                        notified,
                    })
                }
                _ => Err(INVALID_PARAMS),
            }
        })
        .collect()
}

fn attendee_json(a: &SimAttendee) -> Value {
    let mut v = json!({
        "type": a.kind,
        "attendee_id": a.attendee_id,
        "rsvp_status": "needs_action",
        "is_optional": false,
        "is_organizer": false,
        "is_external": a.kind == "third_party",
    });
    if let Some(email) = &a.third_party_email {
        v["third_party_email"] = json!(email);
        v["display_name"] = json!(email);
    }
    if let Some(id) = &a.user_id {
        v["user_id"] = json!(id);
    }
    v
}
