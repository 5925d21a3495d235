//! Simulated VC reservations: `POST /open-apis/vc/v1/reserves/apply` and
//! `GET/PUT/DELETE /open-apis/vc/v1/reserves/{reserve_id}`.
//!
//! Per Lark's reserve docs: apply is limited per app to 50/s and 1000/min (HTTP 429,
//! code 99991400, `x-ogw-ratelimit-reset`); `end_time` is unix seconds (a string, or a
//! number as the official SDK sends it) in the future and within 30 days (else 121003 param error, 400); only the owner may read,
//! change or delete (121005 no permission, 403); unknown or deleted ids are 121004 (404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{
    bearer, lark_error, lark_ok, random_digits, unix_now, Refusal, Shared, SimReserve,
    State as SimState, MAX_RESERVE_AHEAD_SECS,
};

/// The user scope reservations need.
const VC_SCOPE: &str = "vc:reserve";

const PARAM_ERROR: Refusal = Refusal::new(StatusCode::BAD_REQUEST, 121003, "param error");
const FIELD_VALIDATION_FAILED: Refusal =
    Refusal::new(StatusCode::BAD_REQUEST, 99992402, "field validation failed");
const NOT_FOUND: Refusal = Refusal::new(StatusCode::NOT_FOUND, 121004, "data not exist");
const NO_PERMISSION: Refusal = Refusal::new(StatusCode::FORBIDDEN, 121005, "no permission");
/// The app lacks the tenant-identity scope (Lark's generic 99991672).
const NO_APP_SCOPE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    99991672,
    "Access denied. One of the following scopes is required: [vc:reserve].",
);
const NO_USER_SCOPE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    99991679,
    "Unauthorized. You do not have permission to perform the requested operation on the resource. Please request user re-authorization and try again.",
);

/// HTTP 429 with code 99991400 and the gateway's rate-limit headers.
pub(super) fn rate_limited(reset_secs: u64, limit: u32) -> Response {
    let mut response = lark_error(
        StatusCode::TOO_MANY_REQUESTS,
        99991400,
        "request trigger frequency limit",
    );
    let headers = response.headers_mut();
    headers.insert(
        "x-ogw-ratelimit-reset",
        HeaderValue::from_str(&reset_secs.to_string()).expect("digits"),
    );
    headers.insert(
        "x-ogw-ratelimit-limit",
        HeaderValue::from_str(&limit.to_string()).expect("digits"),
    );
    response
}

/// Who is calling: a user with their own token, or the app with its tenant token (and,
/// on apply and update, the `owner_id` the body names).
enum Caller {
    User(String),
    App { owner_id: Option<String> },
}

/// The caller: a user token with `vc:reserve`, or the tenant token while the app holds
/// the tenant-identity `vc:reserve` scope (design §4 "Reserve for someone else"; refused
/// with 99991672 when the app lacks it). A user token's `owner_id` is ignored.
fn caller(
    state: &SimState,
    headers: &HeaderMap,
    body: Option<&Value>,
    now: Instant,
) -> Result<Caller, Refusal> {
    let token = bearer(headers);
    if let Some(t) = token.filter(|t| t.starts_with("t-")) {
        state.check_tenant_token(Some(t), now)?;
        if state.denied_app_scopes.contains(VC_SCOPE) {
            return Err(NO_APP_SCOPE);
        }
        let owner_id = body
            .and_then(|b| b.get("owner_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return Ok(Caller::App { owner_id });
    }
    let (open_id, scope) = state.check_user_token(token, now)?;
    if !scope.split_whitespace().any(|s| s == VC_SCOPE) {
        return Err(NO_USER_SCOPE);
    }
    Ok(Caller::User(open_id))
}

/// The owner of a new reservation: the user, or with the tenant token the `owner_id`,
/// which is then required and must name a user of the tenant (else 121003).
fn owner_of_new(state: &SimState, caller: Caller) -> Result<(String, bool), Refusal> {
    match caller {
        Caller::User(open_id) => Ok((open_id, false)),
        Caller::App {
            owner_id: Some(owner),
        } if state.user_by_open_id(&owner).is_some() => Ok((owner, true)),
        Caller::App { .. } => Err(PARAM_ERROR),
    }
}

/// `end_time` as Lark takes it: unix seconds as a string (what the docs show) or as a
/// JSON number (what the official SDK sends: larksuite/oapi-sdk-python,
/// `lark_oapi/api/vc/v1/model/apply_reserve_request_body.py`, types `end_time` as `int`),
/// in the future and within 30 days.
fn end_time(value: Option<&Value>) -> Result<Option<i64>, Refusal> {
    let Some(value) = value else {
        return Ok(None);
    };
    let end = match value {
        Value::String(text) => text.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    let Some(end) = end else {
        return Err(FIELD_VALIDATION_FAILED);
    };
    let now = unix_now();
    if end <= now || end > now + MAX_RESERVE_AHEAD_SECS {
        return Err(PARAM_ERROR);
    }
    Ok(Some(end))
}

fn topic(body: &Value) -> Result<Option<String>, Refusal> {
    match body.get("meeting_settings").map(|s| s.get("topic")) {
        None | Some(None) | Some(Some(Value::Null)) => Ok(None),
        Some(Some(Value::String(t))) => Ok(Some(t.clone())),
        Some(Some(_)) => Err(FIELD_VALIDATION_FAILED),
    }
}

/// `meeting_settings.auto_record`: a boolean in the SDK's `ReserveMeetingSetting`.
fn auto_record(body: &Value) -> Result<Option<bool>, Refusal> {
    match body.get("meeting_settings").map(|s| s.get("auto_record")) {
        None | Some(None) | Some(Some(Value::Null)) => Ok(None),
        Some(Some(Value::Bool(b))) => Ok(Some(*b)),
        Some(Some(_)) => Err(FIELD_VALIDATION_FAILED),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|_| FIELD_VALIDATION_FAILED)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(FIELD_VALIDATION_FAILED)
    }
}

fn reserve_json(r: &SimReserve) -> Value {
    json!({
        "id": r.id,
        "meeting_no": r.meeting_no,
        "password": "",
        "url": r.url,
        "app_link": format!(
            "https://applink.larksuite.com/client/videochat/open?source=openplatform&action=join&idtype=reservationid&id={}&preview=1&mic=1&speaker=1&camera=0",
            r.id
        ),
        "live_link": format!("https://meetings.larksuite.com/s/{}", &r.id[r.id.len() - 12..]),
        "end_time": r.end_time.to_string(),
        "expire_status": if r.end_time > unix_now() { 1 } else { 2 },
        "reserve_user_id": r.owner_open_id,
        "meeting_settings": { "topic": r.topic.clone().unwrap_or_default() },
    })
}

/// `POST /open-apis/vc/v1/reserves/apply`.
pub(super) async fn apply(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let parsed = parse_body(&body).ok();
    let who = match caller(&state, &headers, parsed.as_ref(), now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    let (owner, applied_by_app) = match owner_of_new(&state, who) {
        Ok(owner) => owner,
        Err(r) => return r.into_response(),
    };
    if let Err(reset) = state.take_apply_slot(now) {
        let limit = state.apply_per_second;
        return rate_limited(reset, limit);
    }
    let Some(body) = parsed else {
        return FIELD_VALIDATION_FAILED.into_response();
    };
    let end = match end_time(body.get("end_time")) {
        Ok(Some(end)) => end,
        Ok(None) => return FIELD_VALIDATION_FAILED.into_response(),
        Err(r) => return r.into_response(),
    };
    let topic = match topic(&body) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let auto_record = match auto_record(&body) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let meeting_no = random_digits(9);
    let reserve = SimReserve {
        auto_record,
        id: format!("69{}", random_digits(17)),
        owner_open_id: owner,
        url: format!("https://vc.larksuite.com/j/{meeting_no}"),
        meeting_no,
        end_time: end,
        topic,
        deleted: false,
        applied_at: now,
        applied_by_app,
    };
    let data = json!({
        "reserve": reserve_json(&reserve),
        "reserve_correction_check_info": { "invalid_host_id_list": [] },
    });
    state.reserves.push(reserve);
    lark_ok(data)
}

/// Finds a live reservation the caller may manage: its owner, with their user token; or
/// the app, with the tenant token, for one it applied (and, when the body names an
/// `owner_id`, only if that is the owner).
fn owned<'a>(
    state: &'a mut SimState,
    id: &str,
    caller: &Caller,
) -> Result<&'a mut SimReserve, Refusal> {
    let reserve = state
        .reserves
        .iter_mut()
        .find(|r| r.id == id && !r.deleted)
        .ok_or(NOT_FOUND)?;
    let allowed = match caller {
        Caller::User(open_id) => reserve.owner_open_id == *open_id,
        Caller::App { owner_id } => {
            reserve.applied_by_app
                && owner_id
                    .as_ref()
                    .is_none_or(|owner| *owner == reserve.owner_open_id)
        }
    };
    if !allowed {
        return Err(NO_PERMISSION);
    }
    Ok(reserve)
}

/// `GET /open-apis/vc/v1/reserves/{reserve_id}`.
pub(super) async fn get_reserve(
    State(shared): State<Arc<Shared>>,
    Path(reserve_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let who = match caller(&state, &headers, None, now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    match owned(&mut state, &reserve_id, &who) {
        Ok(r) => lark_ok(json!({ "reserve": reserve_json(r) })),
        Err(r) => r.into_response(),
    }
}

/// `PUT /open-apis/vc/v1/reserves/{reserve_id}`: `{end_time?, meeting_settings?}`.
pub(super) async fn update_reserve(
    State(shared): State<Arc<Shared>>,
    Path(reserve_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let parsed = parse_body(&body).ok();
    let who = match caller(&state, &headers, parsed.as_ref(), now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    let Some(body) = parsed else {
        return FIELD_VALIDATION_FAILED.into_response();
    };
    let (end, topic) = match (end_time(body.get("end_time")), topic(&body)) {
        (Ok(end), Ok(topic)) => (end, topic),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    match owned(&mut state, &reserve_id, &who) {
        Ok(r) => {
            if let Some(end) = end {
                r.end_time = end;
            }
            if topic.is_some() {
                r.topic = topic;
            }
            lark_ok(json!({
                "reserve": reserve_json(r),
                "reserve_correction_check_info": { "invalid_host_id_list": [] },
            }))
        }
        Err(r) => r.into_response(),
    }
}

/// `DELETE /open-apis/vc/v1/reserves/{reserve_id}`.
pub(super) async fn delete_reserve(
    State(shared): State<Arc<Shared>>,
    Path(reserve_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let who = match caller(&state, &headers, None, now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    match owned(&mut state, &reserve_id, &who) {
        Ok(r) => {
            r.deleted = true;
            lark_ok(json!({}))
        }
        Err(r) => r.into_response(),
    }
}
