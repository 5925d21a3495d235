//! A trainer connects their Lark account: the whole flow over real HTTP, and every bad
//! input answered with a clear page and nothing stored.

use axum::http::Method;
use lark_vc_bridge::tokens::connect::state;
use lark_vc_bridge::tokens::Vault;
use lvb_simulators::{LARK_APP_ID, LARK_APP_SECRET, SF_CLIENT_SECRET};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::tid;
use crate::helpers::{authorize, captured_logs, connect, cookie_pair, get, spawn_app, TestApp};

const TRAINER_OBJECT_PATH: &str = "/sobjects/Onboarding_Trainer__c/";

/// PATCHes that reached the trainer object (single or collection).
fn trainer_writes(app: &TestApp) -> usize {
    app.sf.requests().count(&Method::PATCH, TRAINER_OBJECT_PATH)
        + app
            .sf
            .requests()
            .matching(|r| {
                r.method == Method::PATCH
                    && r.path.contains("/composite/sobjects")
                    && r.body.contains("Onboarding_Trainer__c")
            })
            .len()
}

fn assert_nothing_stored(app: &TestApp, trainer: &str) {
    assert_eq!(trainer_writes(app), 0, "no write may reach Salesforce");
    let t = app.trainer(trainer);
    assert_ne!(t.get("Lark_Connected__c"), Some(&Value::Bool(true)));
    assert!(t.get("Lark_Access_Token__c").is_none_or(Value::is_null));
    assert!(t.get("Lark_Refresh_Token__c").is_none_or(Value::is_null));
}

fn vault(app: &TestApp) -> Vault {
    Vault::from_settings(&app.settings.security)
}

#[tokio::test]
async fn a_trainer_connects_and_salesforce_holds_the_encrypted_tokens() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann Trainer", Some("ann@example.com"), true);

    let start = get(
        &format!("{}/oauth/lark/start?trainer={trainer}", app.url),
        None,
    )
    .await;
    assert_eq!(start.status, 302);
    let cookie_header = start.set_cookie.clone().unwrap();
    assert!(cookie_header.contains("HttpOnly"), "{cookie_header}");
    assert!(cookie_header.contains("SameSite=Lax"), "{cookie_header}");
    let location = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&format!(
        "{}/open-apis/authen/v1/authorize",
        app.lark.base_url()
    )));
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], LARK_APP_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(
        q["redirect_uri"],
        format!("{}/oauth/lark/callback", app.url)
    );
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"offline_access") && scopes.contains(&"vc:reserve"),
        "{scopes:?}"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url SHA-256");
    assert!(!q["state"].is_empty());

    let done = connect(&app, &trainer, "ann@example.com").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Lark connected"), "{}", done.body);

    let open_id = app
        .lark
        .users()
        .into_iter()
        .find(|u| u.email == "ann@example.com")
        .unwrap()
        .open_id;
    let (access, refresh) = app.lark.current_tokens(&open_id).expect("tokens issued");
    let t = app.trainer(&trainer);
    let v = vault(&app);
    let stored_access = t["Lark_Access_Token__c"].as_str().unwrap();
    let stored_refresh = t["Lark_Refresh_Token__c"].as_str().unwrap();
    assert_ne!(stored_access, access, "stored encrypted");
    assert_eq!(v.decrypt(stored_access).unwrap(), access);
    assert_eq!(v.decrypt(stored_refresh).unwrap(), refresh.unwrap());
    assert_eq!(t["Lark_User_ID__c"], Value::String(open_id));
    assert_eq!(t["Lark_Connected__c"], Value::Bool(true));
    for f in [
        "Lark_Token_Expires_At__c",
        "Lark_Refresh_Expires_At__c",
        "Lark_Connected_At__c",
        "Lark_Last_Token_Refresh__c",
    ] {
        assert!(t[f].is_string(), "{f} set: {t:?}");
    }
    assert!(t.get("Lark_Connection_Error__c").is_none_or(Value::is_null));
    assert_eq!(trainer_writes(&app), 1, "one write carries everything");
}

#[tokio::test]
async fn start_refuses_missing_malformed_and_unknown_trainers() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("No Mail", None, false);
    let cases = [
        ("".to_string(), 400, "does not say which trainer"),
        ("?trainer=".to_string(), 400, "does not say which trainer"),
        (
            "?trainer=abc".to_string(),
            400,
            "not a valid Salesforce record id",
        ),
        (
            "?trainer=a0B'%20OR%20Id!='x".to_string(),
            400,
            "not a valid Salesforce record id",
        ),
        (
            "?trainer=a0T000000009999".to_string(),
            404,
            "No trainer with this id",
        ),
        (format!("?trainer={trainer}"), 422, "no email address"),
    ];
    for (query, status, message) in cases {
        let hop = get(&format!("{}/oauth/lark/start{query}", app.url), None).await;
        assert_eq!(hop.status, status, "{query}: {}", hop.body);
        assert!(hop.body.contains(message), "{query}: {}", hop.body);
        assert!(hop.set_cookie.is_none());
    }
    assert_nothing_stored(&app, &trainer);
}

#[tokio::test]
async fn callback_refuses_bad_state_and_stores_nothing() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    let cb = format!("{}/oauth/lark/callback", app.url);

    // Missing code or state.
    for query in ["", "?code=abc", "?state=abc"] {
        let hop = get(&format!("{cb}{query}"), None).await;
        assert_eq!(hop.status, 400);
        assert!(
            hop.body.contains("without the code and state"),
            "{}",
            hop.body
        );
    }

    // Tampered state (signature no longer matches).
    let (callback, cookie) = authorize(&app, &trainer, "ann@example.com").await;
    let tampered = callback.replace("state=a0T", "state=a0X");
    let hop = get(&tampered, Some(&cookie)).await;
    assert_eq!(hop.status, 400);
    assert!(
        hop.body
            .contains("not issued by this service or was altered"),
        "{}",
        hop.body
    );

    // Cookie-less: the browser that finishes is not the one that started.
    let hop = get(&callback, None).await;
    assert_eq!(hop.status, 400);
    assert!(
        hop.body.contains("started in another browser"),
        "{}",
        hop.body
    );
    let hop = get(&callback, Some("lvb_oauth_state=somebody-else")).await;
    assert_eq!(hop.status, 400);

    // Expired: a correctly signed state issued 11 minutes ago.
    let now = chrono::Utc::now();
    let secret = &app.settings.security.state_secret;
    let old = state::issue(secret, &tid(&trainer), now - chrono::Duration::seconds(660));
    let hop = get(
        &format!("{cb}?code=x&state={}", old.state.secret()),
        Some(&format!("lvb_oauth_state={}", old.nonce)),
    )
    .await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("More than 10 minutes"), "{}", hop.body);

    // Signed by us but never started here.
    let forged = state::issue(secret, &tid(&trainer), now);
    let hop = get(
        &format!("{cb}?code=x&state={}", forged.state.secret()),
        Some(&format!("lvb_oauth_state={}", forged.nonce)),
    )
    .await;
    assert_eq!(hop.status, 400);
    assert!(
        hop.body.contains("not started by this service"),
        "{}",
        hop.body
    );

    assert_nothing_stored(&app, &trainer);
    assert_eq!(
        app.lark.requests().count_path("/authen/v2/oauth/token"),
        0,
        "no exchange attempted"
    );
}

#[tokio::test]
async fn a_state_is_single_use() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    let (callback, cookie) = authorize(&app, &trainer, "ann@example.com").await;
    assert_eq!(get(&callback, Some(&cookie)).await.status, 200);
    let writes = trainer_writes(&app);
    let again = get(&callback, Some(&cookie)).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert_eq!(trainer_writes(&app), writes, "the replay wrote nothing");
}

#[tokio::test]
async fn a_trainer_who_declines_gets_a_friendly_page() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    let start = get(
        &format!("{}/oauth/lark/start?trainer={trainer}", app.url),
        None,
    )
    .await;
    let cookie = cookie_pair(start.set_cookie.as_deref().unwrap());
    let mut deny = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    deny.query_pairs_mut().append_pair("sim_deny", "1");
    let denied = get(deny.as_str(), None).await;
    assert_eq!(denied.status, 302);
    let back = denied.location.unwrap();
    assert!(back.contains("error=access_denied"), "{back}");
    let hop = get(&back, Some(&cookie)).await;
    assert_eq!(hop.status, 200);
    assert!(
        hop.body.contains("You chose not to give access"),
        "{}",
        hop.body
    );
    assert_nothing_stored(&app, &trainer);
}

#[tokio::test]
async fn lark_rejecting_the_code_stores_nothing() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    let (callback, cookie) = authorize(&app, &trainer, "ann@example.com").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    url.query_pairs_mut().clear();
    for (k, v) in pairs {
        let v = if k == "code" {
            format!("{v}-tampered")
        } else {
            v
        };
        url.query_pairs_mut().append_pair(&k, &v);
    }
    let hop = get(url.as_str(), Some(&cookie)).await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(
        hop.body.contains("did not accept the authorization code"),
        "{}",
        hop.body
    );
    assert_nothing_stored(&app, &trainer);
}

#[tokio::test]
async fn a_lark_account_with_another_email_is_refused() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    app.lark.add_user("mallory@example.com", "Mallory");
    let hop = connect(&app, &trainer, "mallory@example.com").await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("Wrong Lark account"), "{}", hop.body);
    assert!(hop.body.contains("mallory@example.com"));
    assert_nothing_stored(&app, &trainer);
}

#[tokio::test]
async fn email_match_is_case_insensitive() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Bob", Some("Bob@Example.com"), false);
    app.lark.add_user("bob@example.COM", "Bob");
    let hop = connect(&app, &trainer, "bob@example.COM").await;
    assert_eq!(hop.status, 200, "{}", hop.body);
}

#[tokio::test]
async fn salesforce_refusing_the_write_stores_nothing() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    app.sf.reject_writes(
        "Onboarding_Trainer__c",
        1,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Trainer records are locked",
    );
    let hop = connect(&app, &trainer, "ann@example.com").await;
    assert_eq!(hop.status, 502, "{}", hop.body);
    assert!(
        hop.body.contains("Salesforce refused to save"),
        "{}",
        hop.body
    );
    let t = app.trainer(&trainer);
    assert_ne!(t.get("Lark_Connected__c"), Some(&Value::Bool(true)));
    assert!(t.get("Lark_Access_Token__c").is_none_or(Value::is_null));
    assert!(
        app.store
            .journalled_tokens(&tid(&trainer))
            .unwrap()
            .is_none(),
        "nothing journalled"
    );
}

#[tokio::test]
async fn logs_never_contain_tokens_or_secrets() {
    let app = spawn_app().await;
    let trainer = app.add_trainer("Ann", Some("ann@example.com"), true);
    assert_eq!(connect(&app, &trainer, "ann@example.com").await.status, 200);
    // A few failures too, so their log lines are covered.
    app.lark.add_user("eve@example.com", "Eve");
    assert_eq!(connect(&app, &trainer, "eve@example.com").await.status, 403);
    let (callback, cookie) = authorize(&app, &trainer, "ann@example.com").await;
    assert_eq!(
        get(&callback.replace("code=", "code=x"), Some(&cookie))
            .await
            .status,
        400
    );

    let logs = captured_logs();
    assert!(logs.contains("trainer connected Lark"), "the capture works");
    let mut secrets: Vec<String> = vec![
        LARK_APP_SECRET.into(),
        SF_CLIENT_SECRET.into(),
        hex::encode(app.settings.security.encryption_key.expose_bytes()),
        app.settings
            .security
            .state_secret
            .expose_secret()
            .to_string(),
    ];
    for user in app.lark.users() {
        if let Some((a, r)) = app.lark.current_tokens(&user.open_id) {
            secrets.push(a);
            secrets.extend(r);
        }
    }
    let t = app.trainer(&trainer);
    secrets.push(t["Lark_Access_Token__c"].as_str().unwrap().to_string());
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!logs.contains(s.as_str()), "a secret reached the logs");
    }
}
