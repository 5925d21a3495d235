//! User OAuth with Lark: the authorize URL (PKCE S256), the code exchange and the refresh
//! grant (v2 `/authen/v2/oauth/token` or v1 OIDC, per `lark.oauth_version`), and
//! `user_info`.
//!
//! Refresh tokens are single use: a refused refresh is never retried here, and the
//! returned lifetimes are passed on as Lark gave them (never assumed). Nothing here
//! stores a token; the token service does.

use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use super::error::{lenient_i64, ErrorContext, LarkError};
use super::secret::{AccessToken, AuthCode, OAuthState, PkceVerifier, RefreshToken};
use super::{CallKind, Data, LarkClient, NotReplayable, Sensitivity};
use crate::config::OAuthVersion;
use crate::retry::with_retry;

/// Path of the authorize page on the accounts host.
pub const AUTHORIZE_PATH: &str = "/open-apis/authen/v1/authorize";
/// v2 token endpoint (code exchange and refresh).
pub const V2_TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";
/// v1 OIDC code exchange.
pub const V1_ACCESS_TOKEN_PATH: &str = "/open-apis/authen/v1/oidc/access_token";
/// v1 OIDC refresh.
pub const V1_REFRESH_PATH: &str = "/open-apis/authen/v1/oidc/refresh_access_token";
/// The user's identity.
pub const USER_INFO_PATH: &str = "/open-apis/authen/v1/user_info";

/// What Lark granted for a user. `Debug` shows no token (the token types redact).
#[derive(Debug)]
pub struct TokenGrant {
    /// The user access token (`u-…`), sent as `Authorization: Bearer`.
    pub access_token: AccessToken,
    /// Seconds the access token lives, as Lark said (trust it; do not assume 7200).
    pub expires_in: i64,
    /// Present only when `offline_access` was granted.
    pub refresh_token: Option<RefreshToken>,
    /// Seconds the refresh token lives, as Lark said.
    pub refresh_expires_in: Option<i64>,
    /// Space-separated scopes the access token carries.
    pub scope: Option<String>,
}

/// The Lark user behind a user access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LarkUser {
    /// `ou_…`: the user's id within this app.
    pub open_id: String,
    /// `on_…`: the user's id across the developer's apps.
    pub union_id: Option<String>,
    /// Tenant-wide user id; returned only with `contact:user.employee_id:readonly`.
    pub user_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Returned only with the `contact:user.email:readonly` scope.
    pub email: Option<String>,
    /// The work mailbox, when the tenant has one (same scope as `email`).
    pub enterprise_email: Option<String>,
    /// The tenant the user belongs to.
    pub tenant_key: Option<String>,
}

/// v2 success body, flat: `{code, access_token, expires_in, refresh_token,
/// refresh_token_expires_in, scope, token_type}`.
#[derive(Deserialize)]
struct V2Grant {
    access_token: String,
    #[serde(deserialize_with = "lenient_i64")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    refresh_token_expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

/// v1 OIDC `data`: `{access_token, refresh_token, token_type, expires_in,
/// refresh_expires_in, scope}`.
#[derive(Deserialize)]
struct V1Grant {
    access_token: String,
    #[serde(deserialize_with = "lenient_i64")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(
        default,
        alias = "refresh_token_expires_in",
        deserialize_with = "lenient_i64"
    )]
    refresh_expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct UserInfoData {
    open_id: String,
    #[serde(default)]
    union_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    enterprise_email: Option<String>,
    #[serde(default)]
    tenant_key: Option<String>,
}

/// Lark sends "" for fields it has no value for.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn grant(
    access_token: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    refresh_expires_in: Option<i64>,
    scope: Option<String>,
) -> Result<TokenGrant, LarkError> {
    let expires_in = expires_in.ok_or_else(|| LarkError::Unexpected {
        status: 200,
        body: "token response without expires_in".into(),
    })?;
    let refresh_token = non_empty(refresh_token).map(RefreshToken::new);
    Ok(TokenGrant {
        access_token: AccessToken::new(access_token),
        expires_in,
        refresh_expires_in: refresh_token.as_ref().and(refresh_expires_in),
        refresh_token,
        scope: non_empty(scope),
    })
}

impl V2Grant {
    fn into_grant(self) -> Result<TokenGrant, LarkError> {
        grant(
            self.access_token,
            self.expires_in,
            self.refresh_token,
            self.refresh_token_expires_in,
            self.scope,
        )
    }
}

impl V1Grant {
    fn into_grant(self) -> Result<TokenGrant, LarkError> {
        grant(
            self.access_token,
            self.expires_in,
            self.refresh_token,
            self.refresh_expires_in,
            self.scope,
        )
    }
}

impl LarkClient {
    /// The page a trainer is sent to:
    /// `{accounts_url}/open-apis/authen/v1/authorize?client_id=&response_type=code&
    /// redirect_uri=&scope=&state=&code_challenge=&code_challenge_method=S256`.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &OAuthState,
        code_challenge: &str,
    ) -> Url {
        let mut url = self.inner.accounts_url.clone();
        url.set_path(AUTHORIZE_PATH);
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("client_id", &self.inner.app_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.inner.scopes.join(" "))
            .append_pair("state", state.secret())
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    #[tracing::instrument(name = "lark.oauth.exchange_code", skip_all)]
    pub async fn exchange_code(
        &self,
        code: &AuthCode,
        redirect_uri: &str,
        code_verifier: &PkceVerifier,
    ) -> Result<TokenGrant, LarkError> {
        match self.inner.oauth_version {
            OAuthVersion::V2 => {
                let body = serde_json::json!({
                    "grant_type": "authorization_code",
                    "client_id": self.inner.app_id,
                    "client_secret": self.inner.app_secret.expose_secret(),
                    "code": code.secret(),
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier.secret(),
                });
                self.v2_grant(CallKind::TokenExchange, "lark code exchange", &body)
                    .await
            }
            OAuthVersion::V1 => {
                // The v1 OIDC endpoint takes only the code: PKCE and redirect_uri are v2's.
                let body = serde_json::json!({
                    "grant_type": "authorization_code",
                    "code": code.secret(),
                });
                self.v1_grant(
                    CallKind::TokenExchange,
                    "lark code exchange",
                    V1_ACCESS_TOKEN_PATH,
                    &body,
                )
                .await
            }
        }
    }

    /// Trades a refresh token for new tokens. Lark invalidates the old refresh token, so
    /// the caller must keep the returned one. A refused grant ([`LarkError::InvalidGrant`])
    /// is returned at once; only 20050/20072, 5xx and transport failures are retried.
    #[tracing::instrument(name = "lark.oauth.refresh", skip_all)]
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenGrant, LarkError> {
        match self.inner.oauth_version {
            OAuthVersion::V2 => {
                let body = serde_json::json!({
                    "grant_type": "refresh_token",
                    "client_id": self.inner.app_id,
                    "client_secret": self.inner.app_secret.expose_secret(),
                    "refresh_token": refresh_token.secret(),
                });
                self.v2_grant(CallKind::Refresh, "lark token refresh", &body)
                    .await
            }
            OAuthVersion::V1 => {
                let body = serde_json::json!({
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token.secret(),
                });
                self.v1_grant(
                    CallKind::Refresh,
                    "lark token refresh",
                    V1_REFRESH_PATH,
                    &body,
                )
                .await
            }
        }
    }

    /// Who the user access token belongs to.
    pub async fn user_info(&self, token: &AccessToken) -> Result<LarkUser, LarkError> {
        let Data { data }: Data<UserInfoData> = self
            .user_call(
                "lark user_info",
                CallKind::UserInfo,
                Sensitivity::Plain,
                || {
                    self.inner
                        .http
                        .get(self.url(USER_INFO_PATH))
                        .bearer_auth(token.secret())
                },
            )
            .await?;
        Ok(LarkUser {
            open_id: data.open_id,
            union_id: non_empty(data.union_id),
            user_id: non_empty(data.user_id),
            name: non_empty(data.name),
            email: non_empty(data.email),
            enterprise_email: non_empty(data.enterprise_email),
            tenant_key: non_empty(data.tenant_key),
        })
    }

    async fn v2_grant(
        &self,
        kind: CallKind,
        what: &str,
        body: &serde_json::Value,
    ) -> Result<TokenGrant, LarkError> {
        let result = with_retry(&self.inner.policy, what, || async {
            let request = self.inner.http.post(self.url(V2_TOKEN_PATH)).json(body);
            let answer = self
                .send(kind, request)
                .await
                .map_err(NotReplayable::unanswered)?;
            let parsed: V2Grant = answer
                .decode(ErrorContext::Grant, Sensitivity::Secret)
                .map_err(NotReplayable::answered)?;
            parsed.into_grant().map_err(NotReplayable::answered)
        })
        .await;
        result.map_err(|f| f.error)
    }

    async fn v1_grant(
        &self,
        kind: CallKind,
        what: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<TokenGrant, LarkError> {
        with_retry(&self.inner.policy, what, || async {
            let app_token = self.app_token().await.map_err(NotReplayable::answered)?;
            let request = self
                .inner
                .http
                .post(self.url(path))
                .bearer_auth(app_token.expose_secret())
                .json(body);
            let answer = self
                .send(kind, request)
                .await
                .map_err(NotReplayable::unanswered)?;
            let result: Result<Data<V1Grant>, LarkError> =
                answer.decode(ErrorContext::Grant, Sensitivity::Secret);
            match result {
                Ok(Data { data }) => data.into_grant().map_err(NotReplayable::answered),
                Err(e @ LarkError::Retryable { code, .. })
                    if code == super::error::CODE_APP_TOKEN_INVALID =>
                {
                    // Stale app token: drop it so the retry fetches a fresh one.
                    self.forget_app_token(&app_token).await;
                    Err(NotReplayable::answered(e))
                }
                Err(e) => Err(NotReplayable::answered(e)),
            }
        })
        .await
        .map_err(|f| f.error)
    }
}

#[cfg(test)]
mod tests;
