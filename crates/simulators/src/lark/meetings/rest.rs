//! The meetings' Open API: `GET /open-apis/vc/v1/meetings/:meeting_id` and
//! `GET /open-apis/vc/v1/meetings/list_by_no`.
//!
//! From the pages mirrored in wxkingstar/doc-hub-mcp under
//! `feishu/003-服务端API/视频会议/会议管理/`:
//!
//! - `获取会议详情.md`: tenant or user token; "只能获取归属于自己的会议" (a user token sees
//!   the meetings it owns; the tenant token the app's); query `with_participants`,
//!   `user_id_type` (open_id default, union_id, user_id); `data.meeting {id, topic, url,
//!   meeting_no, password, create_time, start_time, end_time, host_user {id, user_type},
//!   status (1 calling, 2 in progress, 3 ended), participant_count (peak),
//!   participant_count_accumulated, participants[] {id, first_join_time,
//!   final_leave_time, in_meeting_duration (s), user_type, is_host, is_cohost,
//!   is_external, status (2 in the meeting, 4 left)}}`, numbers as strings; 1000/min and
//!   50/s; errors 121003 param (400), 121004 not found (404), 121005 no permission (403).
//! - `获取与会议号关联的会议列表.md`: `meeting_no`, `start_time`, `end_time` (unix s,
//!   required, a window within 90 days), `page_size` (default 20, at most 50),
//!   `page_token` → `data {has_more, page_token (only with has_more), meeting_briefs[]
//!   {id, topic, url, meeting_no, password}}`; 100/min; 121003 param error.
//!
//! Both need `vc:meeting:readonly`: the app's scope for the tenant token (99991672 when
//! withdrawn), the user's for a user token (99991679).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{SimMeeting, SimParticipant, USER_TYPE_LARK};
use crate::lark::vc::rate_limited;
use crate::lark::{bearer, lark_ok, unix_now, Refusal, Shared, State as SimState};

/// The scope both calls need.
pub const MEETING_SCOPE: &str = "vc:meeting:readonly";
/// Largest `page_size` of `list_by_no`.
pub const MAX_PAGE_SIZE: usize = 50;
/// Default `page_size` of `list_by_no`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Widest `list_by_no` window (90 days, in seconds).
pub const MAX_WINDOW_SECS: i64 = 90 * 86_400;
/// `list_by_no` calls per minute per app.
pub const LIST_BY_NO_PER_MINUTE: u32 = 100;

const PARAM_ERROR: Refusal = Refusal::new(StatusCode::BAD_REQUEST, 121003, "param error");
const NOT_FOUND: Refusal = Refusal::new(StatusCode::NOT_FOUND, 121004, "data not exist");
const NO_PERMISSION: Refusal = Refusal::new(StatusCode::FORBIDDEN, 121005, "no permission");
const FIELD_VALIDATION_FAILED: Refusal =
    Refusal::new(StatusCode::BAD_REQUEST, 99992402, "field validation failed");
const NO_APP_SCOPE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    99991672,
    "Access denied. One of the following scopes is required: [vc:meeting:readonly].",
);
const NO_USER_SCOPE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    99991679,
    "Unauthorized. You do not have permission to perform the requested operation on the resource. Please request user re-authorization and try again.",
);

/// The caller: the app (tenant token), or a user by open_id.
enum Caller {
    App,
    User(String),
}

fn caller(state: &SimState, headers: &HeaderMap, now: Instant) -> Result<Caller, Refusal> {
    let token = bearer(headers);
    if let Some(t) = token.filter(|t| t.starts_with("t-")) {
        state.check_tenant_token(Some(t), now)?;
        if state.denied_app_scopes.contains(MEETING_SCOPE) {
            return Err(NO_APP_SCOPE);
        }
        return Ok(Caller::App);
    }
    let (open_id, scope) = state.check_user_token(token, now)?;
    if !scope.split_whitespace().any(|s| s == MEETING_SCOPE) {
        return Err(NO_USER_SCOPE);
    }
    Ok(Caller::User(open_id))
}

fn may_see(caller: &Caller, m: &SimMeeting) -> bool {
    match caller {
        Caller::App => true,
        Caller::User(open_id) => m.owner_open_id == *open_id,
    }
}

/// The id of a participant in the asked `user_id_type`.
fn id_of(p: &SimParticipant, id_type: &str) -> String {
    match id_type {
        "union_id" => p.union_id.clone(),
        "user_id" => p.user_id.clone(),
        _ => p.open_id.clone(),
    }
}

fn meeting_json(state: &SimState, m: &SimMeeting, with_participants: bool, id_type: &str) -> Value {
    let now = unix_now();
    let host = m
        .participants
        .iter()
        .find(|p| p.open_id == m.owner_open_id)
        .cloned()
        .or_else(|| {
            state
                .user_by_open_id(&m.owner_open_id)
                .map(|u| SimParticipant {
                    open_id: u.open_id.clone(),
                    union_id: u.union_id.clone(),
                    user_id: u.user_id.clone(),
                    name: u.name.clone(),
                    is_host: true,
                    is_external: false,
                    stays: Vec::new(),
                })
        });
    let mut meeting = json!({
        "id": m.id,
        "topic": m.topic,
        "url": m.url,
        "meeting_no": m.meeting_no,
        "password": "",
        "create_time": m.start_time.to_string(),
        "start_time": m.start_time.to_string(),
        "host_user": {
            "id": host.as_ref().map(|h| id_of(h, id_type)).unwrap_or_else(|| m.owner_open_id.clone()),
            "user_type": USER_TYPE_LARK,
        },
        "status": if m.end_time.is_some() { 3 } else { 2 },
        "participant_count": m.peak_participants.to_string(),
        "participant_count_accumulated": m.participants.len().to_string(),
    });
    if let Some(end) = m.end_time {
        meeting["end_time"] = json!(end.to_string());
    }
    if with_participants {
        let participants: Vec<Value> = m
            .participants
            .iter()
            .map(|p| {
                let mut entry = json!({
                    "id": id_of(p, id_type),
                    "first_join_time": p.stays.first().map(|s| s.0).unwrap_or(0).to_string(),
                    "in_meeting_duration": p.seconds_in(now).to_string(),
                    "user_type": USER_TYPE_LARK,
                    "is_host": p.is_host,
                    "is_cohost": false,
                    "is_external": p.is_external,
                    "status": if p.is_in() { 2 } else { 4 },
                });
                if let Some(Some(left)) = p.stays.last().map(|s| s.1) {
                    entry["final_leave_time"] = json!(left.to_string());
                }
                entry
            })
            .collect();
        meeting["participants"] = json!(participants);
    }
    meeting
}

/// `GET /open-apis/vc/v1/meetings/{meeting_id}`.
pub(in crate::lark) async fn get_meeting(
    State(shared): State<Arc<Shared>>,
    Path(meeting_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let who = match caller(&state, &headers, now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    if let Err(reset) = state.api_limits.take("vc.meeting.get", now) {
        return rate_limited(reset, crate::lark::rate::DEFAULT_PER_SECOND);
    }
    let id_type = query
        .get("user_id_type")
        .map(String::as_str)
        .unwrap_or("open_id");
    if !matches!(id_type, "open_id" | "union_id" | "user_id") {
        return FIELD_VALIDATION_FAILED.into_response();
    }
    let with_participants = match query.get("with_participants").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return FIELD_VALIDATION_FAILED.into_response(),
    };
    let Some(m) = state.meetings.all().iter().find(|m| m.id == meeting_id) else {
        return NOT_FOUND.into_response();
    };
    if matches!(who, Caller::App) && state.meetings.tenant_refused || !may_see(&who, m) {
        return NO_PERMISSION.into_response();
    }
    lark_ok(json!({ "meeting": meeting_json(&state, m, with_participants, id_type) }))
}

/// `GET /open-apis/vc/v1/meetings/list_by_no`.
pub(in crate::lark) async fn list_by_no(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let who = match caller(&state, &headers, now) {
        Ok(who) => who,
        Err(r) => return r.into_response(),
    };
    if let Err(reset) = state.list_by_no_limits.take("vc.meeting.list_by_no", now) {
        return rate_limited(reset, LIST_BY_NO_PER_MINUTE);
    }
    let number = |k: &str| query.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let meeting_no = query.get("meeting_no").map(String::as_str).unwrap_or("");
    let (Some(start), Some(end)) = (number("start_time"), number("end_time")) else {
        return PARAM_ERROR.into_response();
    };
    if meeting_no.len() != 9
        || !meeting_no.bytes().all(|b| b.is_ascii_digit())
        || end < start
        || end - start > MAX_WINDOW_SECS
    {
        return PARAM_ERROR.into_response();
    }
    let page_size = match query.get("page_size").map(|v| v.parse::<usize>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => return FIELD_VALIDATION_FAILED.into_response(),
    };
    let offset = match query.get("page_token").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match t.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return PARAM_ERROR.into_response(),
        },
    };
    let matching: Vec<&SimMeeting> = state
        .meetings
        .all()
        .iter()
        .filter(|m| m.meeting_no == meeting_no && (start..=end).contains(&m.start_time))
        .filter(|m| may_see(&who, m))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|m| {
            json!({
                "id": m.id,
                "topic": m.topic,
                "url": m.url,
                "meeting_no": m.meeting_no,
                "password": "",
            })
        })
        .collect();
    let next = offset + page.len();
    let has_more = next < matching.len();
    let mut data = json!({ "has_more": has_more, "meeting_briefs": page });
    if has_more {
        data["page_token"] = json!(next.to_string());
    }
    lark_ok(data)
}
