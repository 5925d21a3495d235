//! Email → open_id, with the app's tenant token (`contact/v3/users/batch_get_id`): how an
//! app-hosted meeting (rule 21) finds the owner to name in `owner_id`.
//!
//! Lark takes at most 50 emails per call and answers one entry per email, without
//! `user_id` for an email it does not know; a company's enterprise mailbox is not looked
//! up. The app needs the scope `contact:user.id:readonly`. Limited to 50/s and 1000/min
//! per app, so calls are paced. It caches nothing: remembering answers is the caller's job.
//! Source: Lark's page "通过手机号或邮箱获取用户 ID" (wxkingstar/doc-hub-mcp
//! `feishu/003-服务端API/contact-v3/user/batch_get_id.md`) and larksuite/oapi-sdk-go
//! `service/contact/v3` (`BatchGetIdUserReqBody.Emails`, `UserContactInfo.UserId`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::LarkError;
use super::{CallKind, Data, LarkClient, Sensitivity};

/// Path of the lookup.
pub const BATCH_GET_ID_PATH: &str = "/open-apis/contact/v3/users/batch_get_id";
/// Most emails Lark takes in one call (the page's 数据校验规则: 最大长度 50).
pub const MAX_EMAILS_PER_CALL: usize = 50;

#[derive(Serialize)]
struct BatchGetIdBody<'a> {
    emails: &'a [String],
    include_resigned: bool,
}

#[derive(Deserialize)]
struct UserList {
    #[serde(default)]
    user_list: Vec<UserContactInfo>,
}

#[derive(Deserialize)]
struct UserContactInfo {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl LarkClient {
    /// The open_id of each email's Lark user, `None` where Lark knows no (active) user by
    /// that email. Keys are the emails as given; duplicates are asked once. Calls Lark in
    /// batches of [`MAX_EMAILS_PER_CALL`].
    #[tracing::instrument(name = "lark.contact.batch_get_id", skip_all, fields(emails = emails.len()))]
    pub async fn open_ids_by_email(
        &self,
        emails: &[&str],
    ) -> Result<HashMap<String, Option<String>>, LarkError> {
        let mut wanted: Vec<String> = Vec::new();
        for email in emails {
            let email = email.trim();
            if !email.is_empty() && !wanted.iter().any(|w| w.eq_ignore_ascii_case(email)) {
                wanted.push(email.to_string());
            }
        }
        let mut found: HashMap<String, String> = HashMap::new();
        for batch in wanted.chunks(MAX_EMAILS_PER_CALL) {
            let body = BatchGetIdBody {
                emails: batch,
                include_resigned: false,
            };
            let Data { data }: Data<UserList> = self
                .tenant_call(
                    "lark batch_get_id",
                    CallKind::BatchGetId,
                    Sensitivity::Plain,
                    Some(&self.inner.contact_pacer),
                    |token| {
                        self.inner
                            .http
                            .post(self.url(BATCH_GET_ID_PATH))
                            .query(&[("user_id_type", "open_id")])
                            .bearer_auth(token)
                            .json(&body)
                    },
                )
                .await?;
            for entry in data.user_list {
                if let (Some(email), Some(open_id)) =
                    (entry.email, entry.user_id.filter(|id| !id.is_empty()))
                {
                    found.insert(email.to_lowercase(), open_id);
                }
            }
        }
        Ok(emails
            .iter()
            .map(|email| {
                let open_id = found.get(&email.trim().to_lowercase()).cloned();
                (email.to_string(), open_id)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
