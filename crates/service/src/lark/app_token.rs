//! App-level tokens: the tenant access token (bot messages) and the app access token
//! (v1 OIDC endpoints), each cached and renewed single-flight.
//!
//! Lark's documented behaviour (`tenant_access_token/internal`): a token lives at most
//! 2 hours; asking while it has 30 minutes or more left returns the *same* token, asking
//! with less than 30 minutes left returns a new one (both stay valid meanwhile). So the
//! cache renews when fewer than 30 minutes remain — earlier would only get the same token
//! back. Only this module fetches these tokens.
//!
//! Source: open.feishu.cn/document/server-docs/authentication-management/access-token/
//! tenant_access_token_internal ("剩余有效期小于 30 分钟时，调用本接口会返回一个新的
//! tenant_access_token").

use std::future::Future;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{lenient_i64, ErrorContext, LarkError};
use super::{CallKind, LarkClient, Sensitivity};
use crate::retry::with_retry;

/// Renew when the cached token has less than this left (Lark hands out a new token only
/// from this point on).
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30 * 60);

/// One cached token, renewed single-flight: the lock is held while fetching, so
/// concurrent callers wait for one fetch and share its result.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    renew_at: Instant,
}

impl TokenCache {
    /// The cached token, or a fresh one from `fetch` (token, lifetime in seconds).
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString, LarkError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, i64), LarkError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref() {
            if Instant::now() < cached.renew_at {
                return Ok(cached.token.clone());
            }
        }
        let (token, expire_secs) = fetch().await?;
        *slot = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + renew_after(expire_secs),
        });
        Ok(token)
    }

    /// Forgets `token` if it is still the cached one (Lark called it invalid), so the next
    /// caller fetches anew; a newer token someone else already fetched is kept.
    pub(crate) async fn invalidate(&self, token: &SecretString) {
        let mut slot = self.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == token.expose_secret())
        {
            *slot = None;
        }
    }
}

/// Longest tenant-token lifetime believed from Lark.
const MAX_APP_TOKEN_LIFE_SECS: i64 = 24 * 3600;

/// How long to use a token Lark says lives `expire_secs`: until 30 minutes are left, or,
/// for a token handed out with less than that (Lark returned one already near its end),
/// half its remaining life so we do not ask again on every call.
fn renew_after(expire_secs: i64) -> Duration {
    // Clamped to a day: Lark's tenant tokens live two hours, and an absurd `expire` must
    // not overflow `Instant::now() + …` (design §3 rule 17).
    let life = Duration::from_secs(expire_secs.clamp(0, MAX_APP_TOKEN_LIFE_SECS) as u64);
    if life > RENEW_BEFORE_EXPIRY {
        life - RENEW_BEFORE_EXPIRY
    } else {
        life / 2
    }
}

/// `{code, msg, tenant_access_token, expire}` — flat, no `data` wrapper.
#[derive(Deserialize)]
struct TenantTokenBody {
    tenant_access_token: String,
    #[serde(deserialize_with = "lenient_i64")]
    expire: Option<i64>,
}

/// `{code, msg, app_access_token, expire}`.
#[derive(Deserialize)]
struct AppTokenBody {
    app_access_token: String,
    #[serde(deserialize_with = "lenient_i64")]
    expire: Option<i64>,
}

impl LarkClient {
    /// The tenant access token (bot calls), cached and renewed before expiry.
    pub async fn tenant_token(&self) -> Result<SecretString, LarkError> {
        self.inner
            .tenant_token
            .get(|| async {
                with_retry(&self.inner.policy, "lark tenant token", || async {
                    let body: TenantTokenBody = self
                        .exchange(
                            CallKind::TenantToken,
                            ErrorContext::Api,
                            Sensitivity::Secret,
                            self.app_credentials_request(
                                "/open-apis/auth/v3/tenant_access_token/internal",
                            ),
                        )
                        .await?;
                    Ok((
                        SecretString::from(body.tenant_access_token),
                        body.expire.unwrap_or(0),
                    ))
                })
                .await
            })
            .await
    }

    /// The app access token (v1 OIDC endpoints), cached and renewed like the tenant token.
    pub async fn app_token(&self) -> Result<SecretString, LarkError> {
        self.inner
            .app_token
            .get(|| async {
                with_retry(&self.inner.policy, "lark app token", || async {
                    let body: AppTokenBody = self
                        .exchange(
                            CallKind::AppToken,
                            ErrorContext::Api,
                            Sensitivity::Secret,
                            self.app_credentials_request(
                                "/open-apis/auth/v3/app_access_token/internal",
                            ),
                        )
                        .await?;
                    Ok((
                        SecretString::from(body.app_access_token),
                        body.expire.unwrap_or(0),
                    ))
                })
                .await
            })
            .await
    }

    /// Drops a tenant token Lark called invalid.
    pub(crate) async fn forget_tenant_token(&self, token: &SecretString) {
        self.inner.tenant_token.invalidate(token).await;
    }

    /// Drops an app token Lark called invalid.
    pub(crate) async fn forget_app_token(&self, token: &SecretString) {
        self.inner.app_token.invalidate(token).await;
    }

    fn app_credentials_request(&self, path: &str) -> reqwest::RequestBuilder {
        self.inner
            .http
            .post(self.url(path))
            .json(&serde_json::json!({
                "app_id": self.inner.app_id,
                "app_secret": self.inner.app_secret.expose_secret(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lark::test_support::sim_and_client;
    use axum::http::Method;

    #[test]
    fn renewal_waits_until_thirty_minutes_are_left() {
        assert_eq!(renew_after(7200), Duration::from_secs(5400));
        assert_eq!(renew_after(1800), Duration::from_secs(900));
        assert_eq!(renew_after(0), Duration::ZERO);
        assert_eq!(renew_after(i64::MAX), Duration::from_secs(24 * 3600 - 1800));
        assert_eq!(renew_after(-7200), Duration::ZERO);
    }

    #[tokio::test]
    async fn tenant_token_is_fetched_once_for_many_callers() {
        let (sim, client, _dir) = sim_and_client().await;
        let tokens = futures::future::join_all((0..8).map(|_| client.tenant_token())).await;
        let first = tokens[0]
            .as_ref()
            .expect("token")
            .expose_secret()
            .to_string();
        assert!(first.starts_with("t-"));
        for t in &tokens {
            assert_eq!(t.as_ref().unwrap().expose_secret(), first);
        }
        assert_eq!(client.call_counts().tenant_token, 1);
        assert_eq!(
            sim.requests().count(
                &Method::POST,
                "/open-apis/auth/v3/tenant_access_token/internal"
            ),
            1
        );
    }

    #[tokio::test]
    async fn unreachable_lark_is_a_transport_error_after_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on the discard port: every connection is refused.
        let settings = crate::config::Settings::for_simulators(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            &dir.path().join("s.db"),
        )
        .unwrap();
        let client =
            LarkClient::with_retry_policy(&settings.lark, crate::lark::test_support::fast_policy())
                .unwrap();
        let err = client.tenant_token().await.unwrap_err();
        assert!(matches!(err, LarkError::Transport(_)), "{err:?}");
        assert!(!err.to_string().contains(lvb_simulators::LARK_APP_SECRET));
        assert_eq!(client.call_counts().tenant_token, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn tenant_token_is_renewed_once_less_than_thirty_minutes_remain() {
        let _frozen = crate::lark::test_support::FrozenClock::hold();
        let (sim, client, _dir) = sim_and_client().await;
        let first = client.tenant_token().await.unwrap();
        tokio::time::advance(Duration::from_secs(5399)).await;
        let same = client.tenant_token().await.unwrap();
        assert_eq!(same.expose_secret(), first.expose_secret());
        assert_eq!(client.call_counts().tenant_token, 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        let renewed = client.tenant_token().await.unwrap();
        assert_ne!(renewed.expose_secret(), first.expose_secret());
        assert_eq!(client.call_counts().tenant_token, 2);
        assert_eq!(
            sim.requests().count(
                &Method::POST,
                "/open-apis/auth/v3/tenant_access_token/internal"
            ),
            2
        );
    }
}
