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
mod tests {
    use super::*;
    use crate::config::OAuthVersion;
    use crate::lark::error::GrantFailure;
    use crate::lark::test_support::{
        authorize, connect, eventually, fast_policy, pkce, settle, sim_and_client, FrozenClock,
        REDIRECT,
    };
    use axum::http::Method;
    use lvb_simulators::lark::LarkSim;

    async fn v1_client(sim: &LarkSim) -> (LarkClient, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::Settings::for_simulators(
            "http://127.0.0.1:9",
            &sim.base_url(),
            &dir.path().join("s.db"),
        )
        .unwrap();
        let mut lark = settings.lark.clone();
        lark.oauth_version = OAuthVersion::V1;
        (
            LarkClient::with_retry_policy(&lark, fast_policy()).unwrap(),
            dir,
        )
    }

    #[tokio::test]
    async fn authorize_url_has_every_parameter() {
        let (sim, client, _dir) = sim_and_client().await;
        let url = client.authorize_url(REDIRECT, &OAuthState::new("s t"), "chal");
        assert!(url
            .as_str()
            .starts_with(&format!("{}{AUTHORIZE_PATH}?", sim.base_url())));
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "client_id",
                "response_type",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method"
            ]
        );
        assert_eq!(q[0].1, lvb_simulators::LARK_APP_ID);
        assert_eq!(q[1].1, "code");
        assert_eq!(q[2].1, REDIRECT);
        assert_eq!(
            q[3].1,
            "vc:reserve offline_access contact:user.email:readonly"
        );
        assert_eq!(q[4].1, "s t");
        assert_eq!(q[6].1, "S256");
    }

    #[tokio::test]
    async fn v2_authorize_exchange_and_user_info() {
        let (sim, client, _dir) = sim_and_client().await;
        let open_id = sim.add_user("ana@example.com", "Ana Trainer");
        let grant = connect(&sim, &client, "ana@example.com").await;
        assert!(grant.access_token.secret().starts_with("u-"));
        assert!(grant.access_token.secret().len() >= 200);
        assert_eq!(grant.expires_in, 7200);
        assert_eq!(grant.refresh_expires_in, Some(604800));
        assert!(grant.scope.as_deref().unwrap().contains("offline_access"));

        let user = client.user_info(&grant.access_token).await.unwrap();
        assert_eq!(user.open_id, open_id);
        assert_eq!(user.email.as_deref(), Some("ana@example.com"));
        assert_eq!(user.name.as_deref(), Some("Ana Trainer"));
        assert_eq!(client.call_counts().token_exchange, 1);
        assert_eq!(client.call_counts().user_info, 1);
        assert_eq!(sim.requests().count(&Method::POST, V2_TOKEN_PATH), 1);
    }

    #[tokio::test]
    async fn wrong_pkce_verifier_is_a_refused_code_and_codes_are_single_use() {
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let (verifier, challenge) = pkce();
        let code = authorize(&client, "ana@example.com", "s", &challenge).await;
        let err = client
            .exchange_code(
                &code,
                REDIRECT,
                &PkceVerifier::new(verifier.secret().to_string() + "x"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                LarkError::InvalidGrant {
                    code: 20049,
                    kind: GrantFailure::CodeInvalid,
                    ..
                }
            ),
            "{err:?}"
        );
        let code = authorize(&client, "ana@example.com", "s", &challenge).await;
        client
            .exchange_code(&code, REDIRECT, &verifier)
            .await
            .unwrap();
        let again = client
            .exchange_code(&code, REDIRECT, &verifier)
            .await
            .unwrap_err();
        assert!(
            matches!(
                again,
                LarkError::InvalidGrant {
                    code: 20065,
                    kind: GrantFailure::CodeInvalid,
                    ..
                }
            ),
            "{again:?}"
        );
        assert_eq!(
            client.call_counts().token_exchange,
            3,
            "refusals are not retried"
        );
    }

    #[tokio::test]
    async fn v1_authorize_exchange_refresh_and_user_info() {
        let sim = LarkSim::start(0).await.unwrap();
        let (client, _dir) = v1_client(&sim).await;
        let open_id = sim.add_user("bo@example.com", "Bo");
        let grant = connect(&sim, &client, "bo@example.com").await;
        assert_eq!(client.call_counts().app_token, 1);
        assert_eq!(sim.requests().count(&Method::POST, V1_ACCESS_TOKEN_PATH), 1);
        assert_eq!(sim.requests().count(&Method::POST, V2_TOKEN_PATH), 0);
        let user = client.user_info(&grant.access_token).await.unwrap();
        assert_eq!(user.open_id, open_id);

        let refreshed = client
            .refresh(grant.refresh_token.as_ref().unwrap())
            .await
            .unwrap();
        assert_ne!(refreshed.access_token.secret(), grant.access_token.secret());
        let (access, refresh) = sim.current_tokens(&open_id).unwrap();
        assert_eq!(refreshed.access_token.secret(), access);
        assert_eq!(refreshed.refresh_token.unwrap().secret(), refresh.unwrap());
        assert_eq!(client.call_counts().app_token, 1, "app token is cached");
        let reused = client
            .refresh(grant.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(
            reused,
            LarkError::InvalidGrant {
                kind: GrantFailure::AlreadyUsed,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn refresh_rotates_and_the_old_token_is_then_already_used() {
        let (sim, client, _dir) = sim_and_client().await;
        let open_id = sim.add_user("ana@example.com", "Ana");
        let grant = connect(&sim, &client, "ana@example.com").await;
        let old = grant.refresh_token.unwrap();

        let new = client.refresh(&old).await.unwrap();
        let new_refresh = new.refresh_token.as_ref().unwrap();
        assert_ne!(new_refresh.secret(), old.secret());
        assert_ne!(new.access_token.secret(), grant.access_token.secret());
        assert_eq!(
            sim.current_tokens(&open_id).unwrap().1.as_deref(),
            Some(new_refresh.secret())
        );

        let before = sim.requests().count(&Method::POST, V2_TOKEN_PATH);
        let err = client.refresh(&old).await.unwrap_err();
        assert!(
            matches!(
                err,
                LarkError::InvalidGrant {
                    code: 20073,
                    kind: GrantFailure::AlreadyUsed,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            sim.requests().count(&Method::POST, V2_TOKEN_PATH),
            before + 1,
            "not retried"
        );
        // The rotated token still works.
        client.refresh(new_refresh).await.unwrap();
    }

    #[tokio::test]
    async fn revoked_and_expired_refresh_tokens_are_refused_without_retry() {
        let (sim, client, _dir) = sim_and_client().await;
        let ana = sim.add_user("ana@example.com", "Ana");
        let bo = sim.add_user("bo@example.com", "Bo");
        let ana_grant = connect(&sim, &client, "ana@example.com").await;
        let bo_grant = connect(&sim, &client, "bo@example.com").await;

        sim.revoke(&ana);
        let before = client.call_counts().refresh;
        let revoked = client
            .refresh(ana_grant.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                revoked,
                LarkError::InvalidGrant {
                    code: 20064,
                    kind: GrantFailure::Revoked,
                    ..
                }
            ),
            "{revoked:?}"
        );
        let access = client.user_info(&ana_grant.access_token).await.unwrap_err();
        assert!(
            matches!(access, LarkError::UserTokenInvalid { code: 99991668 }),
            "{access:?}"
        );

        sim.expire_refresh_tokens(&bo);
        let expired = client
            .refresh(bo_grant.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                expired,
                LarkError::InvalidGrant {
                    code: 20037,
                    kind: GrantFailure::Expired,
                    ..
                }
            ),
            "{expired:?}"
        );
        let unknown = client
            .refresh(&RefreshToken::new("ur-nonsense"))
            .await
            .unwrap_err();
        assert!(matches!(
            unknown,
            LarkError::InvalidGrant {
                kind: GrantFailure::Invalid,
                ..
            }
        ));
        assert_eq!(
            client.call_counts().refresh,
            before + 3,
            "each refused exactly once"
        );

        sim.expire_access_tokens(&bo);
        let stale = client.user_info(&bo_grant.access_token).await.unwrap_err();
        assert!(
            matches!(stale, LarkError::UserTokenInvalid { code: 99991677 }),
            "{stale:?}"
        );
    }

    #[tokio::test]
    async fn server_errors_on_refresh_are_retried_and_string_codes_parse() {
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let grant = connect(&sim, &client, "ana@example.com").await;
        sim.faults().inject(
            Some(Method::POST),
            V2_TOKEN_PATH,
            1,
            503,
            r#"{"code":"20072","error":"server_error","error_description":"The server is temporarily unavailable. Please retry your request."}"#,
            &[],
        );
        let before = client.call_counts().refresh;
        client
            .refresh(grant.refresh_token.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(client.call_counts().refresh, before + 2);

        // A refusal whose code arrives as a string is still classified.
        sim.faults().inject(
            Some(Method::POST),
            V2_TOKEN_PATH,
            1,
            400,
            include_str!("../../../../fixtures/lark/v2_refresh_expired_string_code.json"),
            &[],
        );
        let err = client
            .refresh(&RefreshToken::new("ur-x"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            LarkError::InvalidGrant {
                code: 20037,
                kind: GrantFailure::Expired,
                ..
            }
        ));
    }

    #[test]
    fn recorded_responses_parse() {
        let v2: V2Grant = serde_json::from_str(include_str!(
            "../../../../fixtures/lark/v2_token_success.json"
        ))
        .unwrap();
        let g = v2.into_grant().unwrap();
        assert_eq!(g.expires_in, 7200);
        assert_eq!(g.refresh_expires_in, Some(604800));
        let v1: Data<V1Grant> = serde_json::from_str(include_str!(
            "../../../../fixtures/lark/v1_oidc_access_token.json"
        ))
        .unwrap();
        assert_eq!(
            v1.data.into_grant().unwrap().refresh_expires_in,
            Some(2592000)
        );
        let info: Data<UserInfoData> =
            serde_json::from_str(include_str!("../../../../fixtures/lark/user_info.json")).unwrap();
        assert!(info.data.open_id.starts_with("ou_"));
    }

    #[test]
    fn debug_of_a_grant_shows_no_token() {
        let grant = TokenGrant {
            access_token: AccessToken::new("u-SECRET-ACCESS"),
            expires_in: 7200,
            refresh_token: Some(RefreshToken::new("ur-SECRET-REFRESH")),
            refresh_expires_in: Some(604800),
            scope: Some("vc:reserve".into()),
        };
        let shown = format!("{grant:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("7200"));
    }

    #[tokio::test]
    async fn errors_never_carry_the_tokens_that_were_sent() {
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let grant = connect(&sim, &client, "ana@example.com").await;
        let refresh = grant.refresh_token.unwrap();
        client.refresh(&refresh).await.unwrap();
        let used = client.refresh(&refresh).await.unwrap_err();
        // A 200 whose body does not parse is reported by size, not content.
        sim.faults().inject(
            Some(Method::POST),
            V2_TOKEN_PATH,
            1,
            200,
            r#"{"code":0,"access_token":"u-LEAKED","expires_in":"soon"}"#,
            &[],
        );
        let garbled = client
            .refresh(&RefreshToken::new("ur-y"))
            .await
            .unwrap_err();
        for e in [&used, &garbled] {
            let shown = format!("{e:?} {e}");
            assert!(!shown.contains(refresh.secret()), "{shown}");
            assert!(!shown.contains(grant.access_token.secret()), "{shown}");
            assert!(!shown.contains("LEAKED"), "{shown}");
            assert!(!shown.contains(lvb_simulators::LARK_APP_SECRET), "{shown}");
        }
        assert!(matches!(garbled, LarkError::Unexpected { status: 200, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_that_timed_out_is_not_sent_again() {
        let _frozen = FrozenClock::hold();
        let (sim, client, _dir) = sim_and_client().await;
        sim.add_user("ana@example.com", "Ana");
        let grant = connect(&sim, &client, "ana@example.com").await;
        let refresh = grant.refresh_token.unwrap();
        sim.faults()
            .set_latency(std::time::Duration::from_secs(600));
        let refreshing = tokio::spawn({
            let client = client.clone();
            async move { client.refresh(&refresh).await }
        });
        eventually("the refresh to be sent", || {
            client.call_counts().refresh == 1
        })
        .await;
        settle().await;
        // Past reqwest's request timeout, well short of the simulator's latency.
        tokio::time::advance(std::time::Duration::from_secs(26)).await;
        let err = refreshing.await.unwrap().unwrap_err();
        assert!(matches!(err, LarkError::Timeout), "{err:?}");
        settle().await;
        assert_eq!(
            client.call_counts().refresh,
            1,
            "a spent refresh token is not replayed"
        );
    }
}
