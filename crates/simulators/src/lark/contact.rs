//! Simulated `POST /open-apis/contact/v3/users/batch_get_id`: emails → user ids, with the
//! tenant access token.
//!
//! Per Lark's page (wxkingstar/doc-hub-mcp `feishu/003-服务端API/contact-v3/user/
//! batch_get_id.md`): `user_id_type` is `open_id` (default), `union_id` or `user_id`; the
//! body is `{emails ≤50, mobiles ≤50, include_resigned}`; the answer has one
//! `data.user_list[]` entry per email and per mobile, `{user_id, email, status}`, and an
//! email Lark does not know comes back without `user_id`. Enterprise mailboxes are not
//! looked up ("不支持企业邮箱"). The app needs the scope `contact:user.id:readonly`
//! (refused with 99991672 when the simulator's app lacks it). Limited to 50/s, 1000/min.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::rate::rate_limited;
use super::{bearer, lark_ok, Refusal, Shared};

/// The app scope the endpoint needs.
pub const CONTACT_ID_SCOPE: &str = "contact:user.id:readonly";
/// Most emails (and, separately, mobiles) one call may carry.
pub const MAX_PER_CALL: usize = 50;

const FIELD_VALIDATION_FAILED: Refusal =
    Refusal::new(StatusCode::BAD_REQUEST, 99992402, "field validation failed");

/// `POST /open-apis/contact/v3/users/batch_get_id?user_id_type=…`.
pub(super) async fn batch_get_id(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    if let Err(r) = state.check_tenant_token(bearer(&headers), now) {
        return r.into_response();
    }
    if let Some(refused) = state.missing_app_scope(CONTACT_ID_SCOPE) {
        return refused;
    }
    if let Err(reset) = state.api_limits.take("contact.batch_get_id", now) {
        return rate_limited(reset);
    }
    let id_type = match q.get("user_id_type").map(String::as_str) {
        None | Some("open_id") => "open_id",
        Some("union_id") => "union_id",
        Some("user_id") => "user_id",
        Some(_) => return FIELD_VALIDATION_FAILED.into_response(),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return FIELD_VALIDATION_FAILED.into_response();
    };
    let list = |key: &str| -> Result<Vec<String>, Refusal> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_PER_CALL => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or(FIELD_VALIDATION_FAILED)
                })
                .collect(),
            Some(_) => Err(FIELD_VALIDATION_FAILED),
        }
    };
    let (emails, mobiles) = match (list("emails"), list("mobiles")) {
        (Ok(e), Ok(m)) => (e, m),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let mut user_list: Vec<Value> = emails
        .iter()
        .map(|email| {
            let user = state
                .users
                .iter()
                .find(|u| u.email.eq_ignore_ascii_case(email.trim()));
            match user {
                Some(u) => json!({
                    "user_id": match id_type {
                        "union_id" => &u.union_id,
                        "user_id" => &u.user_id,
                        _ => &u.open_id,
                    },
                    "email": email,
                    "status": {
                        "is_frozen": false,
                        "is_resigned": false,
                        "is_activated": true,
                        "is_exited": false,
                        "is_unjoin": false,
                    },
                }),
                None => json!({ "email": email }),
            }
        })
        .collect();
    // The simulated users have no phone numbers: every mobile is unknown.
    user_list.extend(mobiles.iter().map(|m| json!({ "mobile": m })));
    lark_ok(json!({ "user_list": user_list }))
}
