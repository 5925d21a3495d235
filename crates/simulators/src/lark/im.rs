//! Simulated bot messages: `POST /open-apis/im/v1/messages?receive_id_type=…` with the
//! tenant access token.
//!
//! Per Lark's "send message" docs: `content` is a JSON string (`{"text": "…"}` for text);
//! `uuid` (≤ 50 chars) deduplicates — requests with the same uuid send at most one
//! message within an hour; a user the bot cannot reach is 230013. To a group chat:
//! `receive_id_type=chat_id` with an `oc_…` id; an id that names no chat is 230034 "The
//! receive_id is invalid.", a chat the bot is not in is 230002 "The bot can not be outside
//! the group." (both HTTP 400).
//! Source: open.feishu.cn/document/server-docs/im-v1/message/create (mirrored in
//! wxkingstar/doc-hub-mcp `feishu/003-服务端API/im-v1/message/create.md`, 错误码).
//!
//! `GET /open-apis/im/v1/chats/{chat_id}/members/is_in_chat` with the tenant token →
//! `data.is_in_chat` for the bot; an id that names no chat is 232006 "Your request
//! specifies a chat_id which is invalid." (HTTP 400)
//! (`feishu/003-服务端API/group/chat-member/is_in_chat.md`).
//!
//! Group chats come from `POST /open-apis/im/v1/chats` with the tenant token (the chat is
//! created by the app, so its bot is a member): `{name, description, chat_mode, chat_type,
//! …}` → `data.{chat_id: "oc_…", name, description, chat_mode, chat_type, owner_id_type,
//! external, tenant_key}` (`feishu/003-服务端API/im-v1/chat/create.md`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{
    bearer, lark_error, lark_ok, Shared, SimMessage, MESSAGE_DEDUP_WINDOW, SIM_TENANT_KEY,
};
use crate::LARK_APP_ID;

/// Longest `uuid` Lark accepts.
const MAX_UUID_LEN: usize = 50;

fn field_validation_failed() -> Response {
    lark_error(StatusCode::BAD_REQUEST, 99992402, "field validation failed")
}

/// `POST /open-apis/im/v1/messages`.
pub(super) async fn send_message(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    if let Err(refused) = state.check_tenant_token(bearer(&headers), now) {
        return refused.into_response();
    }
    let receive_id_type = match q.get("receive_id_type").map(String::as_str) {
        Some(t @ ("email" | "open_id" | "chat_id")) => t.to_string(),
        _ => return field_validation_failed(),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return field_validation_failed();
    };
    let text_field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(receive_id), Some(msg_type), Some(content)) = (
        text_field("receive_id"),
        text_field("msg_type"),
        text_field("content"),
    ) else {
        return field_validation_failed();
    };
    let uuid = text_field("uuid").filter(|u| !u.is_empty());
    if uuid.as_ref().is_some_and(|u| u.len() > MAX_UUID_LEN) {
        return field_validation_failed();
    }

    state
        .sent_uuids
        .retain(|_, (at, _)| *at + MESSAGE_DEDUP_WINDOW > now);
    if let Some(uuid) = &uuid {
        if let Some((_, data)) = state.sent_uuids.get(uuid) {
            return lark_ok(data.clone());
        }
    }

    let text = match msg_type.as_str() {
        "text" => match serde_json::from_str::<Value>(&content)
            .ok()
            .and_then(|c| c.get("text").and_then(Value::as_str).map(str::to_string))
        {
            Some(text) => text,
            None => return lark_error(StatusCode::BAD_REQUEST, 230001, "invalid message content"),
        },
        _ => content.clone(),
    };
    if receive_id_type == "chat_id" {
        match state.chats.iter().find(|c| c.chat_id == receive_id) {
            None => {
                return lark_error(
                    StatusCode::BAD_REQUEST,
                    230034,
                    "The receive_id is invalid.",
                )
            }
            Some(chat) if !chat.bot_is_member => {
                return lark_error(
                    StatusCode::BAD_REQUEST,
                    230002,
                    "The bot can not be outside the group.",
                )
            }
            Some(_) => {}
        }
    }
    let reachable = match receive_id_type.as_str() {
        "email" => state.user_by_email(&receive_id).is_some(),
        "chat_id" => true,
        _ => state.user_by_open_id(&receive_id).is_some(),
    };
    if !reachable {
        return lark_error(
            StatusCode::BAD_REQUEST,
            230013,
            "Bot has NO availability to this user.",
        );
    }

    let message_id = format!("om_{}", crate::wire::random_hex(16));
    let created_ms = chrono::Utc::now().timestamp_millis().to_string();
    let data = json!({
        "message_id": message_id,
        "root_id": "",
        "parent_id": "",
        "msg_type": msg_type,
        "create_time": created_ms,
        "update_time": created_ms,
        "deleted": false,
        "updated": false,
        "chat_id": if receive_id_type == "chat_id" {
            receive_id.clone()
        } else {
            format!("oc_{}", crate::wire::random_hex(16))
        },
        "sender": {
            "id": LARK_APP_ID,
            "id_type": "app_id",
            "sender_type": "app",
            "tenant_key": SIM_TENANT_KEY,
        },
        "body": { "content": content },
    });
    state.messages.push(SimMessage {
        receive_id_type,
        receive_id,
        msg_type,
        text,
        uuid: uuid.clone(),
        message_id,
    });
    if let Some(uuid) = uuid {
        state.sent_uuids.insert(uuid, (now, data.clone()));
    }
    lark_ok(data)
}

/// `POST /open-apis/im/v1/chats`: a group chat made by the app, its bot a member.
pub(super) async fn create_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    if let Err(refused) = state.check_tenant_token(bearer(&headers), now) {
        return refused.into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return field_validation_failed();
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = text("name");
    let chat_mode = match body.get("chat_mode").and_then(Value::as_str) {
        None | Some("group") => "group",
        Some(_) => return field_validation_failed(),
    };
    let chat_type = match body.get("chat_type").and_then(Value::as_str) {
        None | Some("private") => "private",
        Some("public") => "public",
        Some(_) => return field_validation_failed(),
    };
    let chat_id = format!("oc_{}", crate::wire::random_hex(16));
    state.chats.push(super::SimChat {
        chat_id: chat_id.clone(),
        name: name.clone(),
        bot_is_member: true,
    });
    lark_ok(json!({
        "chat_id": chat_id,
        "avatar": "",
        "name": name,
        "description": text("description"),
        "owner_id_type": "app_id",
        "owner_id": LARK_APP_ID,
        "chat_mode": chat_mode,
        "chat_type": chat_type,
        "chat_tag": "inner",
        "external": false,
        "tenant_key": SIM_TENANT_KEY,
    }))
}

/// `GET /open-apis/im/v1/chats/{chat_id}/members/is_in_chat`: whether the app's bot is
/// a member of the chat.
pub(super) async fn is_in_chat(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(chat_id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let state = shared.lock();
    if let Err(refused) = state.check_tenant_token(bearer(&headers), now) {
        return refused.into_response();
    }
    match state.chats.iter().find(|c| c.chat_id == chat_id) {
        Some(chat) => lark_ok(json!({ "is_in_chat": chat.bot_is_member })),
        None => lark_error(
            StatusCode::BAD_REQUEST,
            232006,
            "Your request specifies a chat_id which is invalid.",
        ),
    }
}
