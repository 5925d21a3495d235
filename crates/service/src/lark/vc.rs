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

use std::time::Duration;

use serde::Deserialize;

use secrecy::ExposeSecret;

use super::error::{lenient_i64, ErrorContext, LarkError, CODE_TENANT_TOKEN_INVALID};
use super::secret::AccessToken;
use super::{CallKind, Data, LarkClient, NotReplayable, Sensitivity};
use crate::retry::{with_retry, RetryPolicy};

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
    /// When the reservation expires (unix seconds).
    pub end_time: i64,
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
            end_time: self.end_time.unwrap_or(0),
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
}

/// Longest wait for an apply slot: one full minute window, plus margin.
const PACER_WAIT_ALLOWANCE: Duration = Duration::from_secs(62);

impl LarkClient {
    /// Reserves a meeting hosted by the token's user, valid until `end_time` (unix seconds;
    /// in the future and at most 30 days ahead, or Lark answers 121003).
    pub async fn apply_reserve(
        &self,
        token: &AccessToken,
        end_time: i64,
        topic: &str,
    ) -> Result<Reserve, ApplyError> {
        let body = serde_json::json!({
            "end_time": end_time.to_string(),
            "meeting_settings": { "topic": topic },
        });
        // The wait for a pacer slot (up to a minute in a burst) must not count against
        // the attempt's timeout: a request that was never sent cannot have reached Lark.
        // reqwest's own request timeout still bounds the HTTP call itself.
        let policy = RetryPolicy {
            attempt_timeout: self.inner.policy.attempt_timeout + PACER_WAIT_ALLOWANCE,
            ..self.inner.policy.clone()
        };
        let result = with_retry(&policy, "lark reserve apply", || async {
            // Every attempt is a request Lark counts against the app's limit.
            self.inner.apply_pacer.acquire().await;
            let request = self
                .inner
                .http
                .post(self.url(APPLY_PATH))
                .bearer_auth(token.secret())
                .json(&body);
            // Apply creates a new meeting each time: never replay one that may have landed.
            let answer = self
                .send(CallKind::Apply, request)
                .await
                .map_err(NotReplayable::unanswered)?;
            answer
                .decode::<Data<ReserveData>>(ErrorContext::Api, Sensitivity::Secret)
                .map(|d| d.data.reserve.into_reserve())
                .map_err(NotReplayable::answered)
        })
        .await;
        result.map_err(|f| match f.error {
            LarkError::Timeout | LarkError::Transport(_) if f.may_have_reached => {
                ApplyError::AnswerLost(f.error)
            }
            error => ApplyError::Failed(error),
        })
    }

    /// Changes a reservation's end time and/or topic; the id and link stay the same.
    pub async fn update_reserve(
        &self,
        token: &AccessToken,
        reserve_id: &str,
        end_time: Option<i64>,
        topic: Option<&str>,
    ) -> Result<Reserve, LarkError> {
        let mut body = serde_json::Map::new();
        if let Some(end) = end_time {
            body.insert("end_time".into(), end.to_string().into());
        }
        if let Some(topic) = topic {
            body.insert(
                "meeting_settings".into(),
                serde_json::json!({ "topic": topic }),
            );
        }
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
    /// have reached Lark, like [`LarkClient::apply_reserve`].
    pub async fn apply_reserve_for_owner(
        &self,
        owner_open_id: &str,
        end_time: i64,
        topic: &str,
    ) -> Result<Reserve, LarkError> {
        if owner_open_id.trim().is_empty() {
            return Err(LarkError::InvalidParams {
                code: 0,
                msg: "an app-hosted reservation needs the owner's open_id".into(),
            });
        }
        let body = serde_json::json!({
            "end_time": end_time.to_string(),
            "owner_id": owner_open_id,
            "meeting_settings": { "topic": topic },
        });
        let result = with_retry(&self.paced_policy(), "lark reserve apply (app)", || async {
            let token = self.tenant_token().await.map_err(|error| NotReplayable {
                error,
                // Nothing was applied yet: the tenant token is fetched first.
                may_have_reached: false,
            })?;
            self.inner.apply_pacer.acquire().await;
            let request = self
                .inner
                .http
                .post(self.url(APPLY_PATH))
                .bearer_auth(token.expose_secret())
                .json(&body);
            let answer = self
                .send(CallKind::Apply, request)
                .await
                .map_err(NotReplayable::unanswered)?;
            let decoded =
                answer.decode::<Data<ReserveData>>(ErrorContext::Api, Sensitivity::Secret);
            if let Err(LarkError::Retryable { code, .. }) = &decoded {
                if *code == CODE_TENANT_TOKEN_INVALID {
                    self.forget_tenant_token(&token).await;
                }
            }
            decoded
                .map(|d| d.data.reserve.into_reserve())
                .map_err(NotReplayable::answered)
        })
        .await;
        result.map_err(|f| f.error)
    }

    /// Changes an app-hosted reservation's end time and/or topic, with the tenant token.
    pub async fn update_reserve_for_owner(
        &self,
        owner_open_id: &str,
        reserve_id: &str,
        end_time: Option<i64>,
        topic: Option<&str>,
    ) -> Result<Reserve, LarkError> {
        let mut body = serde_json::Map::new();
        body.insert("owner_id".into(), owner_open_id.into());
        if let Some(end) = end_time {
            body.insert("end_time".into(), end.to_string().into());
        }
        if let Some(topic) = topic {
            body.insert(
                "meeting_settings".into(),
                serde_json::json!({ "topic": topic }),
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lark::pacing::APPLY_PER_SECOND;
    use crate::lark::test_support::{
        connect, eventually, max_in_window, settle, sim_and_client, FrozenClock,
    };
    use axum::http::Method;

    fn in_days(days: i64) -> i64 {
        chrono::Utc::now().timestamp() + days * 86_400
    }

    #[tokio::test]
    async fn apply_update_get_delete_with_owner_checks() {
        let (sim, client, _dir) = sim_and_client().await;
        let ana_id = sim.add_user("ana@example.com", "Ana");
        sim.add_user("bo@example.com", "Bo");
        let ana = connect(&sim, &client, "ana@example.com").await;
        let bo = connect(&sim, &client, "bo@example.com").await;

        let end = in_days(3);
        let reserve = client
            .apply_reserve(&ana.access_token, end, "Remote Training: Acme")
            .await
            .unwrap();
        assert_eq!(reserve.end_time, end);
        assert_eq!(reserve.meeting_no.len(), 9);
        assert!(
            reserve.url.ends_with(&reserve.meeting_no),
            "{}",
            reserve.url
        );
        let held = sim.reserves();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].owner_open_id, ana_id);
        assert_eq!(held[0].topic.as_deref(), Some("Remote Training: Acme"));

        let later = in_days(5);
        let updated = client
            .update_reserve(&ana.access_token, &reserve.id, Some(later), Some("Moved"))
            .await
            .unwrap();
        assert_eq!(updated.id, reserve.id);
        assert_eq!(updated.url, reserve.url, "the link survives an update");
        assert_eq!(updated.end_time, later);
        assert_eq!(
            client
                .get_reserve(&ana.access_token, &reserve.id)
                .await
                .unwrap(),
            updated
        );
        assert_eq!(sim.reserves()[0].topic.as_deref(), Some("Moved"));

        let not_owner = client
            .delete_reserve(&bo.access_token, &reserve.id)
            .await
            .unwrap_err();
        assert!(
            matches!(not_owner, LarkError::PermissionDenied { code: 121005, .. }),
            "{not_owner:?}"
        );
        let not_owner_get = client
            .get_reserve(&bo.access_token, &reserve.id)
            .await
            .unwrap_err();
        assert!(matches!(not_owner_get, LarkError::PermissionDenied { .. }));
        assert!(!sim.reserves()[0].deleted);

        client
            .delete_reserve(&ana.access_token, &reserve.id)
            .await
            .unwrap();
        assert!(sim.reserves()[0].deleted);
        let gone = client
            .get_reserve(&ana.access_token, &reserve.id)
            .await
            .unwrap_err();
        assert!(
            matches!(gone, LarkError::NotFound { code: 121004, .. }),
            "{gone:?}"
        );
        let twice = client
            .delete_reserve(&ana.access_token, &reserve.id)
            .await
            .unwrap_err();
        assert!(matches!(twice, LarkError::NotFound { .. }));

        let counts = client.call_counts();
        assert_eq!(
            (counts.apply, counts.update, counts.get, counts.delete),
            (1, 1, 3, 3)
        );
    }

    #[tokio::test]
    async fn end_times_outside_lark_limits_are_invalid_params_and_not_retried() {
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        let far = client
            .apply_reserve(&ana.access_token, in_days(31), "too far")
            .await
            .unwrap_err();
        assert!(
            matches!(
                far,
                ApplyError::Failed(LarkError::InvalidParams { code: 121003, .. })
            ),
            "{far:?}"
        );
        let past = client
            .apply_reserve(&ana.access_token, in_days(-1), "past")
            .await
            .unwrap_err();
        assert!(matches!(
            past,
            ApplyError::Failed(LarkError::InvalidParams { code: 121003, .. })
        ));
        assert_eq!(client.call_counts().apply, 2);
        assert!(sim.reserves().is_empty());
        assert!(matches!(
            client.get_reserve(&ana.access_token, "../../evil").await,
            Err(LarkError::InvalidParams { .. })
        ));
    }

    #[tokio::test]
    async fn expired_user_token_is_reported_for_the_caller_to_refresh() {
        let (sim, client, _dir) = sim_and_client().await;
        let ana_id = sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        sim.expire_access_tokens(&ana_id);
        let err = client
            .apply_reserve(&ana.access_token, in_days(1), "t")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::Failed(LarkError::UserTokenInvalid { code: 99991677 })
            ),
            "{err:?}"
        );
        assert_eq!(client.call_counts().apply, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_answer_is_waited_out_then_succeeds() {
        let _frozen = FrozenClock::hold();
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        sim.faults().inject(
            Some(Method::POST),
            APPLY_PATH,
            1,
            429,
            include_str!("../../../../fixtures/lark/rate_limited.json"),
            &[
                ("x-ogw-ratelimit-reset", "3"),
                ("x-ogw-ratelimit-limit", "50"),
            ],
        );
        let applying = tokio::spawn({
            let client = client.clone();
            let token = ana.access_token.clone();
            async move { client.apply_reserve(&token, in_days(1), "t").await }
        });
        let applies = || sim.requests().count(&Method::POST, APPLY_PATH);
        eventually("the first, rate-limited apply", || applies() == 1).await;
        // Let the client read the 429 and start its wait before time moves.
        settle().await;
        tokio::time::advance(Duration::from_millis(2900)).await;
        settle().await;
        assert_eq!(applies(), 1, "retried before x-ogw-ratelimit-reset elapsed");
        tokio::time::advance(Duration::from_millis(100)).await;
        eventually("the retried apply", || applies() == 2).await;
        let reserve = applying.await.unwrap().unwrap();
        assert_eq!(sim.reserves()[0].id, reserve.id);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_applies_is_paced_at_fifty_a_second_and_none_is_refused() {
        let _frozen = FrozenClock::hold();
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        let t0 = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..120)
            .map(|i| {
                let client = client.clone();
                let token = ana.access_token.clone();
                tokio::spawn(async move {
                    client
                        .apply_reserve(&token, in_days(2), &format!("Booking {i}"))
                        .await
                })
            })
            .collect();
        let accepted = || sim.reserves().len();
        for (second, expected) in [(0u64, 50usize), (1, 100), (2, 120)] {
            eventually(&format!("{expected} reserves"), || accepted() == expected).await;
            settle().await;
            assert_eq!(
                accepted(),
                expected,
                "more than 50 started in second {second}"
            );
            tokio::time::advance(Duration::from_secs(1) + super::super::pacing::WINDOW_MARGIN)
                .await;
        }
        for t in tasks {
            t.await.unwrap().expect("every apply succeeds");
        }
        let rejected = sim
            .requests()
            .matching(|r| r.path == APPLY_PATH && r.status == 429)
            .len();
        assert_eq!(rejected, 0, "the pacer kept under Lark's limit");
        assert_eq!(client.call_counts().apply, 120);
        let starts: Vec<_> = sim.reserves().iter().map(|r| r.applied_at).collect();
        assert_eq!(
            max_in_window(&starts, Duration::from_secs(1)),
            APPLY_PER_SECOND
        );
        assert!(starts.iter().all(|&t| t < t0 + Duration::from_millis(3300)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_apply_that_timed_out_is_not_sent_again() {
        let _frozen = FrozenClock::hold();
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        sim.faults().set_latency(Duration::from_secs(600));
        let applying = tokio::spawn({
            let client = client.clone();
            let token = ana.access_token.clone();
            async move { client.apply_reserve(&token, in_days(1), "t").await }
        });
        eventually("the apply to be sent", || client.call_counts().apply == 1).await;
        settle().await;
        // Past reqwest's request timeout, well short of the simulator's latency.
        tokio::time::advance(Duration::from_secs(26)).await;
        let err = applying.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ApplyError::AnswerLost(LarkError::Timeout)),
            "a timeout after sending leaves the apply in doubt: {err:?}"
        );
        settle().await;
        assert_eq!(
            client.call_counts().apply,
            1,
            "a maybe-created meeting is not re-applied"
        );
    }

    #[tokio::test]
    async fn the_app_reserves_for_an_owner_with_its_tenant_token() {
        let (sim, client, _dir) = sim_and_client().await;
        let ana_id = sim.add_user("ana@example.com", "Ana");
        let end = in_days(2);
        let reserve = client
            .apply_reserve_for_owner(&ana_id, end, "Remote Training: Acme")
            .await
            .unwrap();
        let held = sim.reserves();
        assert_eq!(held.len(), 1);
        assert_eq!(
            held[0].owner_open_id, ana_id,
            "the trainer owns and hosts it"
        );
        assert!(held[0].applied_by_app);
        let applied = sim
            .requests()
            .matching(|r| r.path == APPLY_PATH)
            .pop()
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&applied.body).unwrap();
        assert_eq!(body["owner_id"], ana_id);
        assert_eq!(body["end_time"], end.to_string());

        let later = in_days(4);
        let updated = client
            .update_reserve_for_owner(&ana_id, &reserve.id, Some(later), Some("Moved"))
            .await
            .unwrap();
        assert_eq!(
            (updated.url.as_str(), updated.end_time),
            (reserve.url.as_str(), later)
        );
        // The trainer, once connected, manages it with their own token too.
        let ana = connect(&sim, &client, "ana@example.com").await;
        assert_eq!(
            client
                .get_reserve(&ana.access_token, &reserve.id)
                .await
                .unwrap()
                .id,
            reserve.id
        );
        client.delete_reserve_as_app(&reserve.id).await.unwrap();
        assert!(sim.reserves()[0].deleted);
        let gone = client.delete_reserve_as_app(&reserve.id).await.unwrap_err();
        assert!(matches!(gone, LarkError::NotFound { code: 121004, .. }));
        assert_eq!(client.call_counts().tenant_token, 1);
    }

    #[tokio::test]
    async fn without_the_app_permission_an_app_hosted_apply_is_refused_once() {
        let (sim, client, _dir) = sim_and_client().await;
        let ana_id = sim.add_user("ana@example.com", "Ana");
        sim.set_app_scope("vc:reserve", false);
        let err = client
            .apply_reserve_for_owner(&ana_id, in_days(1), "t")
            .await
            .unwrap_err();
        assert!(
            matches!(err, LarkError::PermissionDenied { code: 99991672, .. }),
            "{err:?}"
        );
        let unknown_owner = {
            sim.set_app_scope("vc:reserve", true);
            client
                .apply_reserve_for_owner("ou_nobody", in_days(1), "t")
                .await
                .unwrap_err()
        };
        assert!(matches!(
            unknown_owner,
            LarkError::InvalidParams { code: 121003, .. }
        ));
        assert_eq!(client.call_counts().apply, 2, "refusals are not retried");
        assert!(sim.reserves().is_empty());
        assert!(client
            .apply_reserve_for_owner(" ", in_days(1), "t")
            .await
            .is_err());
        assert_eq!(client.call_counts().apply, 2, "refused before sending");
    }

    #[tokio::test]
    async fn a_lost_answer_is_told_apart_from_a_request_that_never_left() {
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let ana = connect(&sim, &client, "ana@example.com").await;
        sim.faults().lose_answers(Some(Method::POST), APPLY_PATH, 1);
        let err = client
            .apply_reserve(&ana.access_token, in_days(1), "t")
            .await
            .unwrap_err();
        assert!(matches!(err, ApplyError::AnswerLost(_)), "{err:?}");
        assert_eq!(sim.reserves().len(), 1, "the simulator did the work");
        assert_eq!(client.call_counts().apply, 1, "not sent again");

        // Nothing listens here: the connection is refused, so nothing can have landed.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let dir = tempfile::tempdir().unwrap();
        let settings =
            crate::config::Settings::for_simulators(&url, &url, &dir.path().join("s.db")).unwrap();
        let unreachable =
            LarkClient::with_retry_policy(&settings.lark, crate::lark::test_support::fast_policy())
                .unwrap();
        let err = unreachable
            .apply_reserve(&ana.access_token, in_days(1), "t")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApplyError::Failed(LarkError::Transport(_))),
            "{err:?}"
        );
    }

    #[test]
    fn recorded_reserve_parses_with_string_end_time() {
        let d: Data<ReserveData> =
            serde_json::from_str(include_str!("../../../../fixtures/lark/reserve_apply.json"))
                .unwrap();
        let r = d.data.reserve.into_reserve();
        assert_eq!(r.end_time, 1_608_888_867);
        assert_eq!(r.meeting_no, "112000358");
        assert!(r.app_link.is_some());
    }
}
