//! Tests of [`super`] (oauth.rs) against the Lark simulator.

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
        "vc:reserve offline_access contact:user.email:readonly calendar:calendar calendar:calendar:readonly"
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
        include_str!("../../../../../fixtures/lark/v2_refresh_expired_string_code.json"),
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
        "../../../../../fixtures/lark/v2_token_success.json"
    ))
    .unwrap();
    let g = v2.into_grant().unwrap();
    assert_eq!(g.expires_in, 7200);
    assert_eq!(g.refresh_expires_in, Some(604800));
    let v1: Data<V1Grant> = serde_json::from_str(include_str!(
        "../../../../../fixtures/lark/v1_oidc_access_token.json"
    ))
    .unwrap();
    assert_eq!(
        v1.data.into_grant().unwrap().refresh_expires_in,
        Some(2592000)
    );
    let info: Data<UserInfoData> =
        serde_json::from_str(include_str!("../../../../../fixtures/lark/user_info.json")).unwrap();
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
