//! Simulator-only HTTP endpoints, under `/sim/` and so off the `/open-apis` namespace
//! (like the authorize page's `sim_user`, an extension no real Lark has): people acting
//! in a meeting, and a look at the long connection, for `simulate` users and the
//! third-party check, who cannot call [`super::MeetingLife`] in-process.
//!
//! - `POST /sim/meetings/start` `{"reservation": "<reserve id or meeting no>", "by"?: P}`
//! - `POST /sim/meetings/{meeting}/join` `P`
//! - `POST /sim/meetings/{meeting}/leave` `P` plus `"reason"?: 1 | 2 | 3`
//! - `POST /sim/meetings/{meeting}/end` `{"by"?: P}`
//! - `POST /sim/meetings/{meeting}/recording` `{"duration_ms"?: n}`
//! - `GET /sim/meetings` — every meeting
//! - `GET /sim/events` — the long connection's counters, events and acks
//!
//! `{meeting}` is the 19-digit meeting id or the 9-digit meeting number (its meeting in
//! progress, else its last one). A person `P` is `{"host": true}`, `{"email": "…"}` (a user of the tenant)
//! or `{"guest": "Name"}` (someone from outside); absent means the host. Answers are
//! 200 with `{"meeting": …}`, 404 or 409 with `{"error": "…"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{LeaveReason, MeetingError, MeetingLife, Person, SimMeeting};
use crate::lark::Shared;

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn refused(error: MeetingError) -> Response {
    let status = match error {
        MeetingError::NoSuchReservation(_)
        | MeetingError::NoSuchMeeting(_)
        | MeetingError::UnknownUser(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    answer(status, json!({ "error": error.to_string() }))
}

fn bad_request(why: &str) -> Response {
    answer(StatusCode::BAD_REQUEST, json!({ "error": why }))
}

/// The meeting as the simulator holds it.
pub(super) fn meeting_view(m: &SimMeeting) -> Value {
    json!({
        "id": m.id,
        "reserve_id": m.reserve_id,
        "meeting_no": m.meeting_no,
        "topic": m.topic,
        "url": m.url,
        "owner_open_id": m.owner_open_id,
        "start_time": m.start_time,
        "end_time": m.end_time,
        "participants": m.participants.iter().map(|p| json!({
            "open_id": p.open_id,
            "name": p.name,
            "is_host": p.is_host,
            "is_external": p.is_external,
            "in_meeting": p.is_in(),
        })).collect::<Vec<_>>(),
        "recording_url": m.recording.as_ref().map(|r| r.0.clone()),
    })
}

/// Why a request is malformed.
type Malformed = &'static str;

fn body_of(bytes: &Bytes) -> Result<Value, Malformed> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or("the body must be a JSON object")
}

/// `{"host": true}` | `{"email"}` | `{"guest"}`; absent = the host.
fn person(value: Option<&Value>) -> Result<Person, Malformed> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Person::Host);
    };
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    match (text("email"), text("guest"), value.get("host")) {
        (Some(email), None, None) => Ok(Person::User(email)),
        (None, Some(name), None) => Ok(Person::Guest(name)),
        (None, None, Some(Value::Bool(true))) | (None, None, None) => Ok(Person::Host),
        _ => Err(r#"a person is {"host": true}, {"email": "..."} or {"guest": "Name"}"#),
    }
}

fn life(shared: Arc<Shared>) -> MeetingLife {
    MeetingLife::new(shared)
}

fn current(life: &MeetingLife, key: &str) -> Response {
    match life.get(key) {
        Some(m) => answer(StatusCode::OK, json!({ "meeting": meeting_view(&m) })),
        None => refused(MeetingError::NoSuchMeeting(key.to_string())),
    }
}

/// `POST /sim/meetings/start`.
pub(in crate::lark) async fn start(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = match body_of(&body) {
        Ok(b) => b,
        Err(why) => return bad_request(why),
    };
    let Some(reservation) = body.get("reservation").and_then(Value::as_str) else {
        return bad_request(r#"{"reservation": "<reserve id or meeting no>"} is required"#);
    };
    let by = match person(body.get("by")) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    match life(shared).start(reservation, &by) {
        Ok(m) => answer(StatusCode::OK, json!({ "meeting": meeting_view(&m) })),
        Err(e) => refused(e),
    }
}

/// `POST /sim/meetings/{meeting}/join`.
pub(in crate::lark) async fn join(
    State(shared): State<Arc<Shared>>,
    Path(meeting): Path<String>,
    body: Bytes,
) -> Response {
    let who = match body_of(&body).and_then(|b| person(Some(&b))) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    let life = life(shared);
    match life.join(&meeting, &who) {
        Ok(()) => current(&life, &meeting),
        Err(e) => refused(e),
    }
}

/// `POST /sim/meetings/{meeting}/leave`.
pub(in crate::lark) async fn leave(
    State(shared): State<Arc<Shared>>,
    Path(meeting): Path<String>,
    body: Bytes,
) -> Response {
    let body = match body_of(&body) {
        Ok(b) => b,
        Err(why) => return bad_request(why),
    };
    let reason = match body.get("reason").and_then(Value::as_i64) {
        None | Some(1) => LeaveReason::Left,
        Some(2) => LeaveReason::MeetingEnded,
        Some(3) => LeaveReason::Removed,
        Some(_) => return bad_request("reason is 1 (left), 2 (meeting ended) or 3 (removed)"),
    };
    let mut who = body.clone();
    if let Some(object) = who.as_object_mut() {
        object.remove("reason");
    }
    let who = match person(Some(&who)) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    let life = life(shared);
    match life.leave(&meeting, &who, reason) {
        Ok(()) => current(&life, &meeting),
        Err(e) => refused(e),
    }
}

/// `POST /sim/meetings/{meeting}/end`.
pub(in crate::lark) async fn end(
    State(shared): State<Arc<Shared>>,
    Path(meeting): Path<String>,
    body: Bytes,
) -> Response {
    let by = match body_of(&body).and_then(|b| person(b.get("by"))) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    match life(shared).end(&meeting, &by) {
        Ok(m) => answer(StatusCode::OK, json!({ "meeting": meeting_view(&m) })),
        Err(e) => refused(e),
    }
}

/// `POST /sim/meetings/{meeting}/recording`.
pub(in crate::lark) async fn recording(
    State(shared): State<Arc<Shared>>,
    Path(meeting): Path<String>,
    body: Bytes,
) -> Response {
    let duration = match body_of(&body) {
        Ok(b) => b
            .get("duration_ms")
            .and_then(Value::as_u64)
            .unwrap_or(30_000),
        Err(why) => return bad_request(why),
    };
    let life = life(shared);
    match life.recording_ready(&meeting, duration) {
        Ok(_) => current(&life, &meeting),
        Err(e) => refused(e),
    }
}

/// `GET /sim/meetings`.
pub(in crate::lark) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let meetings: Vec<Value> = life(shared).all().iter().map(meeting_view).collect();
    answer(StatusCode::OK, json!({ "meetings": meetings }))
}

/// `GET /sim/events`: counters, events raised (without their payloads) and acks.
pub(in crate::lark) async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let hub = &shared.long_connection;
    let s = hub.stats();
    let events: Vec<Value> = hub
        .events()
        .iter()
        .map(|e| {
            json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "pushes": e.pushes,
                "delivered": e.delivered,
                "acked": e.acked,
                "given_up": e.given_up,
            })
        })
        .collect();
    let acks: Vec<Value> = hub
        .acks()
        .iter()
        .map(|a| {
            json!({
                "event_id": a.event_id,
                "message_id": a.message_id,
                "code": a.code,
                "biz_rt": a.biz_rt,
                "connection": a.connection,
            })
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({
            "stats": {
                "endpoint_calls": s.endpoint_calls,
                "connections_opened": s.connections_opened,
                "connections_open": s.connections_open,
                "connections_refused": s.connections_refused,
                "pings": s.pings,
                "pongs": s.pongs,
                "event_frames": s.event_frames,
                "acks": s.acks,
                "bad_frames": s.bad_frames,
            },
            "events": events,
            "acks": acks,
        }),
    )
}
