//! VC reservations, made with the trainer's own user access token so the trainer hosts:
//! apply, update (end time / topic), get, delete.
//!
//! App-hosted meetings (rule 21) use the app's tenant token instead, naming the trainer
//! as `owner_id`: apply, update and delete (`*_for_owner`, `delete_reserve_as_app`). Lark
//! needs the app's tenant-level `vc:reserve` permission for these and answers a
//! permission error without it ([`LarkError::PermissionDenied`]).
//!
//! Apply is paced app-wide (50/s, 1000/min: see [`super::pacing`]) and is not idempotent
//! at Lark, so an apply that may have reached Lark and then timed out is handed back to
//! the caller (whose journal reconciles it) instead of being sent again.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Deserialize;

use secrecy::ExposeSecret;

use super::error::{lenient_i64, ErrorContext, LarkError, CODE_TENANT_TOKEN_INVALID};
use super::secret::AccessToken;
use super::{CallKind, Data, LarkClient, NotReplayable, Sensitivity};
use crate::retry::with_retry;

/// Create a reservation.
pub const APPLY_PATH: &str = "/open-apis/vc/v1/reserves/apply";
/// Prefix of one reservation's path (`{RESERVES_PATH}/{reserve_id}`).
pub const RESERVES_PATH: &str = "/open-apis/vc/v1/reserves";

/// A Lark VC reservation, as the service needs it. The meeting password is left out on
/// purpose: it is not needed, and it is a secret of sorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    /// Reserve id (numeric string), the key for update/get/delete.
    pub id: String,
    /// Nine-digit meeting number.
    pub meeting_no: String,
    /// The join link written to the booking.
    pub url: String,
    /// Deep link that opens the meeting in the Lark app.
    pub app_link: Option<String>,
    /// Live-stream link, when Lark gives one.
    pub live_link: Option<String>,
    /// When the reservation expires; None when Lark's answer left it out.
    pub end_time: Option<DateTime<Utc>>,
}

/// `data` of apply/update/get: `{reserve: {...}}`.
#[derive(Deserialize)]
struct ReserveData {
    reserve: ReserveBody,
}

#[derive(Deserialize)]
struct ReserveBody {
    id: String,
    #[serde(default)]
    meeting_no: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    app_link: Option<String>,
    #[serde(default)]
    live_link: Option<String>,
    /// Lark sends it as a string of unix seconds.
    #[serde(default, deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
}

impl ReserveBody {
    fn into_reserve(self) -> Reserve {
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        Reserve {
            id: self.id,
            meeting_no: self.meeting_no,
            url: self.url,
            app_link: non_empty(self.app_link),
            live_link: non_empty(self.live_link),
            end_time: self.end_time.and_then(|s| DateTime::from_timestamp(s, 0)),
        }
    }
}

/// Why an apply did not give a reservation.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Lark answered with an error, or the request never left (a connect error): no
    /// meeting was reserved.
    #[error(transparent)]
    Failed(#[from] LarkError),
    /// The request may have reached Lark but its answer never came (a timeout after
    /// sending, the connection closed): a meeting may exist that we do not know of. Apply
    /// has no idempotency key, so the caller decides whether to apply again (rule 13).
    #[error("the answer to the reserve apply was lost ({0}); a meeting may exist in Lark")]
    AnswerLost(#[source] LarkError),
    /// The caller's [`ApplyLedger`] could not record the request: nothing was sent.
    #[error("the reserve apply could not be recorded before sending; nothing was sent")]
    NotRecorded,
}

impl From<NotReplayable> for ApplyError {
    /// A timeout or broken connection after the request may have reached Lark is an
    /// answer lost (rule 13); anything else failed outright.
    fn from(f: NotReplayable) -> ApplyError {
        match f.error {
            _ if f.unrecorded => ApplyError::NotRecorded,
            LarkError::Timeout | LarkError::Transport(_) if f.may_have_reached => {
                ApplyError::AnswerLost(f.error)
            }
            error => ApplyError::Failed(error),
        }
    }
}

/// Why an [`ApplyLedger`] would not let a request leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRecorded;

/// Told of every reserve apply request as it is about to leave — after its pacing slot,
/// right before it is written to the wire — and of every one Lark refused outright, so the
/// caller records each apply before it is sent (design §3 rule 23) and only applies that
/// may have reached Lark stay in doubt. A request waiting for its slot when the process
/// dies was never recorded, and never sent.
pub trait ApplyLedger: Send + Sync {
    /// The request is about to leave: record it, and answer once it is recorded. An error
    /// stops it; nothing is sent.
    fn sending(&self) -> BoxFuture<'_, Result<(), NotRecorded>>;
    /// The request made nothing: Lark refused it outright, or it never left.
    fn refused(&self);
}

impl LarkClient {
    /// A new reservation's `meeting_settings`: the topic (the calendar event's summary comes
    /// from the same template) and `auto_record` (`meetings.auto_record`, false unless
    /// configured). Field names and types: `ReserveMeetingSetting` of the official SDK
    /// (larksuite/oapi-sdk-python `lark_oapi/api/vc/v1/model/reserve_meeting_setting.py`:
    /// `topic: str`, `auto_record: bool`).
    fn meeting_settings(&self, topic: &str) -> serde_json::Value {
        serde_json::json!({ "topic": topic, "auto_record": self.inner.auto_record })
    }

    /// Reserves a meeting hosted by the token's user, valid until `end_time` (in the
    /// future and at most 30 days ahead, or Lark answers 121003; sent in whole seconds).
    #[tracing::instrument(name = "lark.reserve.apply", skip_all)]
    pub async fn apply_reserve(
        &self,
        token: &AccessToken,
        end_time: DateTime<Utc>,
        topic: &str,
        ledger: &dyn ApplyLedger,
    ) -> Result<Reserve, ApplyError> {
        let body = serde_json::json!({
            "end_time": unix_seconds(end_time),
            "meeting_settings": self.meeting_settings(topic),
        });
        let result = with_retry(&self.paced_policy(), "lark reserve apply", || {
            self.apply_once(token.secret(), &body, ledger)
        })
        .await;
        result.map_err(ApplyError::from)
    }

    /// Changes a reservation's end time and/or topic; the id and link stay the same.
    #[tracing::instrument(name = "lark.reserve.update", skip_all, fields(reservation = %reserve_id))]
    pub async fn update_reserve(
        &self,
        token: &AccessToken,
        reserve_id: &str,
        end_time: Option<DateTime<Utc>>,
        topic: Option<&str>,
    ) -> Result<Reserve, LarkError> {
        let body = update_body(end_time, topic);
        let path = reserve_path(reserve_id)?;
        let Data { data }: Data<ReserveData> = self
            .user_call(
                "lark reserve update",
                CallKind::Update,
                Sensitivity::Secret,
                || {
                    self.inner
                        .http
                        .put(self.url(&path))
                        .bearer_auth(token.secret())
                        .json(&body)
                },
            )
            .await?;
        Ok(data.reserve.into_reserve())
    }

    /// Reads a reservation (owner only).
    pub async fn get_reserve(
        &self,
        token: &AccessToken,
        reserve_id: &str,
    ) -> Result<Reserve, LarkError> {
        let path = reserve_path(reserve_id)?;
        let Data { data }: Data<ReserveData> = self
            .user_call(
                "lark reserve get",
                CallKind::Get,
                Sensitivity::Secret,
                || {
                    self.inner
                        .http
                        .get(self.url(&path))
                        .bearer_auth(token.secret())
                },
            )
            .await?;
        Ok(data.reserve.into_reserve())
    }

    /// Deletes a reservation (owner only). Deleting one that is already gone answers
    /// [`LarkError::NotFound`]; the caller decides whether that counts as done.
    #[tracing::instrument(name = "lark.reserve.delete", skip_all, fields(reservation = %reserve_id))]
    pub async fn delete_reserve(
        &self,
        token: &AccessToken,
        reserve_id: &str,
    ) -> Result<(), LarkError> {
        let path = reserve_path(reserve_id)?;
        let _: serde_json::Value = self
            .user_call(
                "lark reserve delete",
                CallKind::Delete,
                Sensitivity::Plain,
                || {
                    self.inner
                        .http
                        .delete(self.url(&path))
                        .bearer_auth(token.secret())
                },
            )
            .await?;
        Ok(())
    }
}

impl LarkClient {
    /// Reserves a meeting owned and hosted by the user `owner_open_id`, applied with the
    /// app's tenant token (design §4 "Reserve for someone else": with the tenant token,
    /// `owner_id` is required and names the owner). Paced and never replayed once it may
    /// have reached Lark, like [`LarkClient::apply_reserve`]: an answer lost after sending
    /// is [`ApplyError::AnswerLost`], for the caller's in-doubt handling (rule 13).
    #[tracing::instrument(name = "lark.reserve.apply_for_owner", skip_all, fields(owner = %owner_open_id))]
    pub async fn apply_reserve_for_owner(
        &self,
        owner_open_id: &str,
        end_time: DateTime<Utc>,
        topic: &str,
        ledger: &dyn ApplyLedger,
    ) -> Result<Reserve, ApplyError> {
        if owner_open_id.trim().is_empty() {
            return Err(ApplyError::Failed(LarkError::InvalidParams {
                code: 0,
                msg: "an app-hosted reservation needs the owner's open_id".into(),
            }));
        }
        let body = serde_json::json!({
            "end_time": unix_seconds(end_time),
            "owner_id": owner_open_id,
            "meeting_settings": self.meeting_settings(topic),
        });
        let result = with_retry(&self.paced_policy(), "lark reserve apply (app)", || async {
            // Nothing was applied yet: the tenant token is fetched first.
            let token = self.tenant_token().await.map_err(NotReplayable::not_sent)?;
            let applied = self.apply_once(token.expose_secret(), &body, ledger).await;
            if let Err(NotReplayable {
                error: LarkError::Retryable { code, .. },
                ..
            }) = &applied
            {
                if *code == CODE_TENANT_TOKEN_INVALID {
                    self.forget_tenant_token(&token).await;
                }
            }
            applied
        })
        .await;
        result.map_err(ApplyError::from)
    }

    /// One apply request, for either token: paced (every attempt is a request Lark counts
    /// against the app's limit) and never replayed once it may have landed, since apply
    /// creates a new meeting each time.
    async fn apply_once(
        &self,
        bearer: &str,
        body: &serde_json::Value,
        ledger: &dyn ApplyLedger,
    ) -> Result<Reserve, NotReplayable> {
        // Counted until its answer is read: dropped when this returns.
        let _slot = self.inner.apply_pacer.acquire().await;
        let request = self
            .inner
            .http
            .post(self.url(APPLY_PATH))
            .bearer_auth(bearer)
            .json(body);
        ledger
            .sending()
            .await
            .map_err(|_| NotReplayable::unrecorded())?;
        let answer = match self.send(CallKind::Apply, request).await {
            Ok(answer) => answer,
            Err(f) => {
                if !f.may_have_reached {
                    ledger.refused();
                }
                return Err(NotReplayable::unanswered(f));
            }
        };
        let decoded = answer
            .decode::<Data<ReserveData>>(ErrorContext::Api, Sensitivity::Secret)
            .map(|d| d.data.reserve.into_reserve());
        if decoded.is_err() {
            // Lark answered with an error: it made nothing.
            ledger.refused();
        }
        decoded.map_err(NotReplayable::answered)
    }

    /// Changes an app-hosted reservation's end time and/or topic, with the tenant token.
    #[tracing::instrument(name = "lark.reserve.update_for_owner", skip_all, fields(reservation = %reserve_id))]
    pub async fn update_reserve_for_owner(
        &self,
        owner_open_id: &str,
        reserve_id: &str,
        end_time: Option<DateTime<Utc>>,
        topic: Option<&str>,
    ) -> Result<Reserve, LarkError> {
        let mut body = update_body(end_time, topic);
        body.insert("owner_id".into(), owner_open_id.into());
        let path = reserve_path(reserve_id)?;
        let Data { data }: Data<ReserveData> = self
            .tenant_call(
                "lark reserve update (app)",
                CallKind::Update,
                Sensitivity::Secret,
                None,
                |token| {
                    self.inner
                        .http
                        .put(self.url(&path))
                        .bearer_auth(token)
                        .json(&body)
                },
            )
            .await?;
        Ok(data.reserve.into_reserve())
    }

    /// Deletes an app-hosted reservation, with the tenant token. One already gone answers
    /// [`LarkError::NotFound`].
    #[tracing::instrument(name = "lark.reserve.delete_as_app", skip_all, fields(reservation = %reserve_id))]
    pub async fn delete_reserve_as_app(&self, reserve_id: &str) -> Result<(), LarkError> {
        let path = reserve_path(reserve_id)?;
        let _: serde_json::Value = self
            .tenant_call(
                "lark reserve delete (app)",
                CallKind::Delete,
                Sensitivity::Plain,
                None,
                |token| self.inner.http.delete(self.url(&path)).bearer_auth(token),
            )
            .await?;
        Ok(())
    }
}

/// The body of `PUT /reserves/{id}`: only what changes (Lark keeps what is left out).
fn update_body(
    end_time: Option<DateTime<Utc>>,
    topic: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    if let Some(end) = end_time {
        body.insert("end_time".into(), unix_seconds(end).into());
    }
    if let Some(topic) = topic {
        body.insert(
            "meeting_settings".into(),
            serde_json::json!({ "topic": topic }),
        );
    }
    body
}

/// `/open-apis/vc/v1/reserves/{id}`, refusing ids that would change the path (reserve ids
/// are numeric; one read back from Salesforce is not trusted blindly).
fn reserve_path(reserve_id: &str) -> Result<String, LarkError> {
    let valid = !reserve_id.is_empty()
        && reserve_id.len() <= 64
        && reserve_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(LarkError::InvalidParams {
            code: 0,
            msg: format!("not a reserve id: {:?}", super::error::truncate(reserve_id)),
        });
    }
    Ok(format!("{RESERVES_PATH}/{reserve_id}"))
}

/// A time as the reserve endpoints take it: unix seconds, as a string (Lark's reference
/// shows `"end_time": "1608888867"`; the SDK sends a number, and Lark takes either).
fn unix_seconds(t: DateTime<Utc>) -> String {
    t.timestamp().to_string()
}

#[cfg(test)]
mod tests;
