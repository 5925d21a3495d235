//! Login: the JWT audience, the login flows, session caching and re-login.

use super::*;
use crate::config::SalesforceAuth;
use crate::salesforce::test_support::*;
use axum::http::Method;
use lvb_simulators::salesforce::{SF_PASSWORD, SF_USERNAME, TEST_JWT_PRIVATE_KEY_PATH};
use lvb_simulators::{SF_CLIENT_ID, SF_CLIENT_SECRET, SF_INTEGRATION_USER_ID};
use std::path::PathBuf;

#[test]
fn audience_follows_the_login_host() {
    for (login, aud) in [
        (
            "https://login.salesforce.com",
            "https://login.salesforce.com",
        ),
        (
            "https://test.salesforce.com/",
            "https://test.salesforce.com",
        ),
        (
            "https://acme.my.salesforce.com",
            "https://login.salesforce.com",
        ),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "https://test.salesforce.com",
        ),
        (
            "https://acme.force.com/customers",
            "https://acme.force.com/customers",
        ),
        ("http://127.0.0.1:4567", "http://127.0.0.1:4567"),
    ] {
        assert_eq!(jwt_audience(&Url::parse(login).unwrap()), aud, "{login}");
    }
}

#[test]
fn token_url_keeps_a_site_path() {
    assert_eq!(
        token_url(&Url::parse("https://acme.force.com/customers").unwrap()),
        "https://acme.force.com/customers/services/oauth2/token"
    );
}

#[test]
fn a_malformed_success_body_is_never_quoted() {
    let body = br#"{"access_token":"00Dsecret!token","instance_url":"nope","id":"x"}"#;
    let err = parse_token_response(body, 1).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("00Dsecret"), "{text}");
}

#[test]
fn session_debug_hides_the_token() {
    let session = parse_token_response(
        br#"{"access_token":"00Dsecret!token","instance_url":"https://x.my.salesforce.com","id":"https://login.salesforce.com/id/00D000000000001EAA/005000000000001AAA"}"#,
        3,
    )
    .unwrap();
    assert_eq!(session.user_id.as_str(), "005000000000001AAA");
    assert_eq!(session.generation, 3);
    assert!(!format!("{session:?}").contains("00Dsecret"));
}

// Login flows, session caching and re-login.

#[tokio::test]
async fn client_credentials_login_is_cached() {
    let env = env().await;
    let session = env.client.session().await.expect("login");
    assert_eq!(session.user_id.as_str(), SF_INTEGRATION_USER_ID);
    assert_eq!(
        session.instance_url.as_str().trim_end_matches('/'),
        env.sim.base_url()
    );
    let again = env.client.session().await.expect("cached");
    assert_eq!(again.generation, session.generation);
    assert_eq!(token_calls(&env.sim), 1);
    let form = &env.sim.requests().matching(|r| r.path == TOKEN_PATH)[0].body;
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert_eq!(env.client.call_counts().auth, 1);
}

#[tokio::test]
async fn password_login_works() {
    let env = env_with(|s| {
        s.auth = password_auth(SF_PASSWORD);
    })
    .await;
    let session = env.client.session().await.expect("login");
    assert_eq!(session.user_id.as_str(), SF_INTEGRATION_USER_ID);
    let form = &env.sim.requests().matching(|r| r.path == TOKEN_PATH)[0].body;
    assert!(form.contains("grant_type=password"), "{form}");
}

fn password_auth(password: &str) -> SalesforceAuth {
    SalesforceAuth::Password {
        client_id: SF_CLIENT_ID.into(),
        client_secret: SF_CLIENT_SECRET.into(),
        username: SF_USERNAME.into(),
        password: password.into(),
    }
}

fn jwt_settings(s: &mut crate::config::SalesforceSettings) {
    s.auth = SalesforceAuth::JwtBearer {
        client_id: SF_CLIENT_ID.into(),
        username: SF_USERNAME.into(),
        private_key_path: PathBuf::from(TEST_JWT_PRIVATE_KEY_PATH),
    };
}

#[tokio::test]
async fn jwt_bearer_login_works_and_a_foreign_key_is_refused() {
    let env = env_with(jwt_settings).await;
    let session = env.client.session().await.expect("login with the test key");
    assert_eq!(session.user_id.as_str(), SF_INTEGRATION_USER_ID);
    let form = &env.sim.requests().matching(|r| r.path == TOKEN_PATH)[0].body;
    assert!(
        form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
        "{form}"
    );

    let other = env_with(jwt_settings).await;
    other.sim.set_jwt_public_key_pem(include_str!(
        "../../../../../fixtures/salesforce/test-only-unrelated-public-key.pem"
    ));
    let err = other.client.session().await.unwrap_err();
    assert_eq!(
        err,
        SalesforceError::Auth {
            reason: "invalid_grant: invalid assertion".into()
        }
    );
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_that_does_not_echo_it() {
    let secret = "wrong-secret-do-not-print-4711";
    let env = env_with(|s| {
        s.auth = SalesforceAuth::ClientCredentials {
            client_id: SF_CLIENT_ID.into(),
            client_secret: secret.into(),
        }
    })
    .await;
    let err = env.client.query("SELECT Id FROM User").await.unwrap_err();
    assert_eq!(
        err,
        SalesforceError::Auth {
            reason: "invalid_client: invalid client credentials".into()
        }
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    // A refused login is not retried.
    assert_eq!(token_calls(&env.sim), 1);

    let password = "wrong-password-do-not-print";
    let env = env_with(|s| {
        s.auth = password_auth(password);
    })
    .await;
    let err = env.client.session().await.unwrap_err();
    assert_eq!(
        err,
        SalesforceError::Auth {
            reason: "invalid_grant: authentication failure".into()
        }
    );
    assert!(!format!("{err} {err:?}").contains(password));
}

#[tokio::test]
async fn an_expired_session_is_renewed_exactly_once() {
    let env = env().await;
    env.client
        .query("SELECT Id FROM User")
        .await
        .expect("first");
    env.sim.expire_sessions();
    let users = env
        .client
        .query("SELECT Id FROM User")
        .await
        .expect("after re-login");
    assert_eq!(users.len(), 2);
    assert_eq!(token_calls(&env.sim), 2, "one login, one re-login");
    let unauthorized = env
        .sim
        .requests()
        .matching(|r| r.path.ends_with("/query") && r.status == 401);
    assert_eq!(unauthorized.len(), 1);
}

#[tokio::test]
async fn a_second_401_after_re_login_is_unauthorized_not_a_loop() {
    let env = env().await;
    env.client.session().await.expect("login");
    env.sim.faults().inject(
        Some(Method::GET),
        "/query",
        5,
        401,
        r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        &[],
    );
    let err = env.client.query("SELECT Id FROM User").await.unwrap_err();
    assert_eq!(err, SalesforceError::Unauthorized);
    assert_eq!(
        token_calls(&env.sim),
        2,
        "initial login + exactly one re-login"
    );
    assert_eq!(env.sim.requests().count(&Method::GET, "/query"), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_re_login() {
    let env = env().await;
    env.client.session().await.expect("login");
    env.sim.expire_sessions();
    let calls = (0..6).map(|_| {
        let client = env.client.clone();
        async move { client.query("SELECT Id FROM User").await }
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.expect("query").len(), 2);
    }
    assert_eq!(token_calls(&env.sim), 2, "one login + one shared re-login");
}
