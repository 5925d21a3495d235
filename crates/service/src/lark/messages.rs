//! Bot messages: a plain-text message to a user identified by email (trainers' connect
//! links) or to a group chat by its `oc_…` id (admin alerts, rule 22), sent as the app
//! with the tenant access token. To a chat the bot is not in, Lark answers 230002
//! ([`LarkError::PermissionDenied`]).
//!
//! Each message carries a caller-chosen `uuid`; Lark sends at most one message per uuid
//! within an hour, which makes retries (ours and the caller's) safe.

use secrecy::{ExposeSecret, SecretString};

use super::error::{ErrorContext, LarkError, CODE_TENANT_TOKEN_INVALID};
use super::{CallKind, LarkClient, Sensitivity};
use crate::retry::with_retry;

/// Send a message.
pub const MESSAGES_PATH: &str = "/open-apis/im/v1/messages";
/// Prefix of a chat's path (`{CHATS_PATH}/{chat_id}/members/is_in_chat`).
pub const CHATS_PATH: &str = "/open-apis/im/v1/chats";
/// Lark's limit on the dedup `uuid`.
pub const MAX_UUID_LEN: usize = 50;

impl LarkClient {
    /// Sends `text` from the bot to the user with this email. `uuid` (≤ 50 chars) makes
    /// the send idempotent for an hour: use one per logical message.
    pub async fn send_text_by_email(
        &self,
        email: &str,
        text: &str,
        uuid: &str,
    ) -> Result<(), LarkError> {
        self.send_text("email", email, text, uuid).await
    }

    /// Sends `text` from the bot to the group chat `chat_id` (`oc_…`), idempotent per
    /// `uuid` for an hour like [`LarkClient::send_text_by_email`].
    pub async fn send_text_to_chat(
        &self,
        chat_id: &str,
        text: &str,
        uuid: &str,
    ) -> Result<(), LarkError> {
        self.send_text("chat_id", chat_id, text, uuid).await
    }

    /// Whether the app's bot is a member of the group chat `chat_id` (`check` asks before
    /// alerts go there). `GET /open-apis/im/v1/chats/{chat_id}/members/is_in_chat` with the
    /// tenant token → `data.is_in_chat`; needs one of the app scopes `im:chat`,
    /// `im:chat:readonly` or `im:chat.members:read`; an id that names no chat is 232006
    /// (HTTP 400). Source: open.feishu.cn/document/server-docs/group/chat-member/is_in_chat
    /// (mirrored in wxkingstar/doc-hub-mcp `feishu/003-服务端API/group/chat-member/is_in_chat.md`).
    pub async fn bot_in_chat(&self, chat_id: &str) -> Result<bool, LarkError> {
        #[derive(serde::Deserialize)]
        struct Membership {
            #[serde(default)]
            is_in_chat: bool,
        }
        let super::Data { data }: super::Data<Membership> = self
            .tenant_call(
                "lark is_in_chat",
                CallKind::ChatMembership,
                Sensitivity::Plain,
                None,
                |token| {
                    self.inner
                        .http
                        .get(self.url(&format!("{CHATS_PATH}/{chat_id}/members/is_in_chat")))
                        .bearer_auth(token)
                },
            )
            .await?;
        Ok(data.is_in_chat)
    }

    #[tracing::instrument(name = "lark.message.send", skip_all, fields(to = %receive_id_type))]
    async fn send_text(
        &self,
        receive_id_type: &str,
        receive_id: &str,
        text: &str,
        uuid: &str,
    ) -> Result<(), LarkError> {
        if uuid.is_empty() || uuid.len() > MAX_UUID_LEN {
            return Err(LarkError::InvalidParams {
                code: 0,
                msg: format!("message uuid must be 1 to {MAX_UUID_LEN} characters"),
            });
        }
        let body = serde_json::json!({
            "receive_id": receive_id,
            "msg_type": "text",
            "content": serde_json::json!({ "text": text }).to_string(),
            "uuid": uuid,
        });
        with_retry(&self.inner.policy, "lark bot message", || async {
            let token: SecretString = self.tenant_token().await?;
            let request = self
                .inner
                .http
                .post(self.url(MESSAGES_PATH))
                .query(&[("receive_id_type", receive_id_type)])
                .bearer_auth(token.expose_secret())
                .json(&body);
            let result: Result<serde_json::Value, LarkError> = self
                .exchange(
                    CallKind::Message,
                    ErrorContext::Api,
                    Sensitivity::Plain,
                    request,
                )
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e @ LarkError::Retryable { code, .. }) if code == CODE_TENANT_TOKEN_INVALID => {
                    // Lark no longer accepts the cached token: drop it; the retry fetches anew.
                    self.forget_tenant_token(&token).await;
                    Err(e)
                }
                Err(e) => Err(e),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests;
