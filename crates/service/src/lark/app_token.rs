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
mod tests;
