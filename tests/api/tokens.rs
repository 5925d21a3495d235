//! Trainer tokens stay valid (issue 3, design §3 rules 5–6): single-flight refresh,
//! crash-safe rotation, failure classification, the refresh timer, reconnect reminders,
//! disconnect, key rotation and refresh metrics — all against the simulators, counting
//! calls. Time is controlled through token lifetimes and expiry knobs, never waited for
//! (but for one test of the timer itself, ticking every second).

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Method;
use lark_vc_bridge::config::{EncryptionKey, OAuthVersion, Settings};
use lark_vc_bridge::salesforce::values::parse_datetime;
use lark_vc_bridge::store::Store;
use lark_vc_bridge::tokens::trainer::TrainerRecord;
use lark_vc_bridge::tokens::{TokenError, Vault};
use lvb_simulators::lark::{LarkSim, DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS};
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::{
    RecordedRequest, LARK_APP_ID, LARK_APP_SECRET, SF_CLIENT_ID, SF_CLIENT_SECRET, SF_HUMAN_USER_ID,
};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};

use crate::helpers::tid;
use crate::helpers::{
    self, captured_logs, changed_fields, connect, spawn_app, spawn_app_with, start_app,
    wait_for_status, wait_ready, wait_until, TestApp,
};
use lark_vc_bridge::tokens::refresh_pass;

const TRAINER: &str = "Onboarding_Trainer__c";
const BOOKING: &str = "Training_Booking__c";
const TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";
/// sObject Collections (`PATCH`): where rotated tokens are written.
const COLLECTIONS: &str = "/composite/sobjects";
const APPLY_PATH: &str = "/open-apis/vc/v1/reserves/apply";
const PENDING: &str = "Pending Trainer Connection";
/// An access lifetime well inside the default 5 min skew: the token counts as expired
/// the moment it is issued, so the next use refreshes it.
const SHORT_ACCESS_SECS: i64 = 60;

// ---------------------------------------------------------------------------------------
// Helpers

/// Adds a trainer with a Lark account and connects them through the real OAuth flow,
/// with the Lark simulator issuing tokens of the given lifetimes. Returns (trainer id,
/// open_id). Lifetimes go back to Lark's defaults afterwards.
async fn connected_with_lifetimes(
    app: &TestApp,
    name: &str,
    email: &str,
    access_secs: i64,
    refresh_secs: i64,
) -> (String, String) {
    app.lark.set_token_lifetimes(access_secs, refresh_secs);
    let connected = helpers::connected_trainer(app, name, email).await;
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    assert_eq!(app.trainer(&connected.0)["Lark_Connected__c"], json!(true));
    connected
}

/// The trainer as the service reads it (a fresh SOQL read).
async fn fresh(app: &TestApp, id: &str) -> TrainerRecord {
    app.tokens
        .trainers()
        .get(&tid(id))
        .await
        .expect("trainer query")
        .expect("trainer exists")
}

fn vault(app: &TestApp) -> Vault {
    Vault::from_settings(&app.settings.security)
}

/// The `grant_type` of a recorded token-endpoint request.
fn grant_type(r: &RecordedRequest) -> Option<String> {
    serde_json::from_str::<Value>(&r.body)
        .ok()?
        .get("grant_type")?
        .as_str()
        .map(String::from)
}

/// Every refresh request Lark received (v2 token endpoint, grant `refresh_token`).
fn refresh_calls(app: &TestApp) -> Vec<RecordedRequest> {
    app.lark.requests().matching(|r| {
        r.method == Method::POST
            && r.path == TOKEN_PATH
            && grant_type(r).as_deref() == Some("refresh_token")
    })
}

/// The refresh token a recorded refresh request carried.
fn sent_refresh_token(r: &RecordedRequest) -> String {
    serde_json::from_str::<Value>(&r.body).unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// True when a field is absent or null (cleared).
fn blank(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// A text field of a record, None when null or absent.
fn text(record: &Map<String, Value>, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(String::from)
}

/// The (access, refresh) tokens Salesforce holds for the trainer, decrypted.
fn sf_tokens(app: &TestApp, id: &str) -> (Option<String>, Option<String>) {
    let t = app.trainer(id);
    let v = vault(app);
    let open = |f: &str| text(&t, f).map(|enc| v.decrypt(&enc).expect("decrypts"));
    (open("Lark_Access_Token__c"), open("Lark_Refresh_Token__c"))
}

/// True when Salesforce holds exactly the tokens Lark issued last to this user.
fn sf_holds_current(app: &TestApp, id: &str, open_id: &str) -> bool {
    let (access, refresh) = app.lark.current_tokens(open_id).expect("issued");
    // Compared as booleans: a failing test must not print tokens either.
    sf_tokens(app, id) == (Some(access), refresh)
}

/// Waits (bounded) until Salesforce holds exactly the tokens Lark issued last to this
/// user: the running service writes rotated tokens shortly after the refresh, batched
/// with other trainers' (`tokens::writeback`), not on the refresh's own path.
async fn assert_sf_holds_current(app: &TestApp, id: &str, open_id: &str) {
    wait_until(
        "Salesforce holds the pair Lark issued last, and the journal says so",
        || async {
            let confirmed = app
                .store
                .journalled_tokens(&tid(id))
                .unwrap()
                .is_some_and(|j| j.confirmed);
            confirmed && sf_holds_current(app, id, open_id)
        },
    )
    .await;
}

/// Single-record PATCHes of one trainer record (connect and disconnect writes).
fn trainer_patches(app: &TestApp, id: &str) -> Vec<RecordedRequest> {
    let path = format!("/sobjects/{TRAINER}/{id}");
    app.sf
        .requests()
        .matching(|r| r.method == Method::PATCH && r.path.ends_with(&path))
}

/// sObject Collections calls that carried this trainer's record (rotated tokens are
/// written this way, several trainers to a call).
fn token_writes(app: &TestApp, id: &str) -> Vec<RecordedRequest> {
    app.sf.requests().matching(|r| {
        r.method == Method::PATCH
            && r.path.ends_with(COLLECTIONS)
            && r.body.contains(&format!("\"{id}\""))
    })
}

/// A remote booking three days out for `trainer`, created by a Salesforce user.
fn remote_booking(app: &TestApp, trainer: &str, merchant: &str) -> String {
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    app.sf.insert(
        BOOKING,
        json!({
            "Name": format!("Onboarding — {merchant}"),
            "Trainer__c": trainer,
            "Training_Start__c": start.to_rfc3339(),
            "Training_End__c": (start + chrono::Duration::hours(1)).to_rfc3339(),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": merchant,
        }),
        SF_HUMAN_USER_ID,
    )
}

async fn metrics_text(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Single flight and crash-safe rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_callers_share_one_refresh() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let (_, first_refresh) = app.lark.current_tokens(&open_id).unwrap();
    let trainer = fresh(&app, &id).await;

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let tokens = app.tokens.clone();
            let trainer = trainer.clone();
            tokio::spawn(async move { tokens.access_token_for(&trainer).await })
        })
        .collect();
    let mut got = Vec::new();
    for c in calls {
        got.push(
            c.await
                .unwrap()
                .expect("a valid token")
                .secret()
                .to_string(),
        );
    }

    let refreshes = refresh_calls(&app);
    assert_eq!(refreshes.len(), 1, "exactly one refresh for 20 callers");
    assert!(
        Some(sent_refresh_token(&refreshes[0])) == first_refresh,
        "the refresh spent the token issued at connect"
    );
    let (new_access, _) = app.lark.current_tokens(&open_id).unwrap();
    assert!(
        got.iter().all(|t| *t == new_access),
        "all 20 callers got the new token"
    );
    assert_sf_holds_current(&app, &id, &open_id).await;
    let journal = app
        .store
        .journalled_tokens(&tid(&id))
        .unwrap()
        .expect("journalled");
    assert!(journal.confirmed, "Salesforce confirmed the rotated pair");
    assert!(vault(&app).decrypt(&journal.access_enc).unwrap() == new_access);

    // Rule 11: neither the spent nor the rotated tokens reach a log line.
    let logs = captured_logs();
    let (_, new_refresh) = app.lark.current_tokens(&open_id).unwrap();
    for secret in [Some(new_access.clone()), new_refresh, first_refresh.clone()] {
        assert!(!logs.contains(&secret.unwrap()), "a token was logged");
    }

    // The new token is fresh: using it again costs no refresh.
    let again = app.tokens.access_token_for(&fresh(&app, &id).await).await;
    assert!(
        again.unwrap().secret() == new_access,
        "the same token again"
    );
    assert_eq!(refresh_calls(&app).len(), 1);
}

#[tokio::test]
async fn a_token_write_that_fails_three_times_still_lands() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let trainer = fresh(&app, &id).await;
    app.sf.requests().clear();
    app.sf.faults().inject(
        Some(Method::PATCH),
        COLLECTIONS,
        3,
        503,
        r#"[{"message":"Service temporarily unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#,
        &[],
    );

    let token = app.tokens.access_token_for(&trainer).await.expect("token");

    let (new_access, _) = app.lark.current_tokens(&open_id).unwrap();
    assert!(token.secret() == new_access, "the rotated token");
    assert_sf_holds_current(&app, &id, &open_id).await;
    assert_eq!(refresh_calls(&app).len(), 1);
    let statuses: Vec<u16> = token_writes(&app, &id).iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [503, 503, 503, 200],
        "three failures, then the write lands"
    );
    let journal = app
        .store
        .journalled_tokens(&tid(&id))
        .unwrap()
        .expect("journalled");
    assert!(
        journal.confirmed,
        "journal row confirmed once Salesforce holds it"
    );
    assert!(app.store.unconfirmed_tokens().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_journalled_before_a_crash_are_written_at_start_up() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let (connect_access, _) = app.lark.current_tokens(&open_id).unwrap();
    let trainer = fresh(&app, &id).await;
    // Salesforce refuses every trainer write: the refresh journals, then cannot write.
    app.sf.faults().inject(
        Some(Method::PATCH),
        COLLECTIONS,
        100_000,
        503,
        r#"[{"message":"Service temporarily unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#,
        &[],
    );
    let tokens = app.tokens.clone();
    let refresh = tokio::spawn(async move { tokens.access_token_for(&trainer).await });
    wait_until(
        "the rotated pair is journalled and its write is failing",
        || async {
            let journalled = app
                .store
                .unconfirmed_tokens()
                .unwrap()
                .iter()
                .any(|r| r.trainer_id.as_str() == id);
            journalled && token_writes(&app, &id).iter().any(|r| r.status == 503)
        },
    )
    .await;
    // The process dies here: between the journal and the Salesforce write.
    refresh.abort();
    let _ = refresh.await;
    let (rotated_access, rotated_refresh) = app.lark.current_tokens(&open_id).unwrap();
    assert!(rotated_access != connect_access, "Lark rotated the pair");
    assert!(
        sf_tokens(&app, &id).0.as_deref() == Some(connect_access.as_str()),
        "Salesforce still holds the spent pair"
    );
    let (sf, lark, settings, dir) = app.stop().await;
    sf.faults().clear();

    let app = start_app(sf, lark, settings, dir).await;
    wait_until("start-up writes the journalled pair", || async {
        sf_tokens(&app, &id) == (Some(rotated_access.clone()), rotated_refresh.clone())
    })
    .await;
    assert!(app.store.unconfirmed_tokens().unwrap().is_empty());
    // The service goes on with them: no second refresh is needed.
    let token = app.tokens.access_token_for(&fresh(&app, &id).await).await;
    assert!(
        token.unwrap().secret() == rotated_access,
        "the journalled token"
    );
    assert_eq!(refresh_calls(&app).len(), 1);
}

/// Rule 5: rotated tokens are "written to Salesforce (retried until they land)". A write
/// Salesforce refused outright (here a validation rule, once) must be retried later — by
/// the next refresh pass, not only at the next restart.
#[tokio::test]
async fn tokens_salesforce_refused_are_written_by_the_next_refresh_pass() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let trainer = fresh(&app, &id).await;
    app.sf.reject_writes(
        TRAINER,
        1,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Trainer records are locked during the nightly sync",
    );
    let token = app.tokens.access_token_for(&trainer).await.expect("token");
    let (rotated_access, _) = app.lark.current_tokens(&open_id).unwrap();
    assert!(token.secret() == rotated_access, "the rotated token");
    wait_until("the batched write was answered", || async {
        token_writes(&app, &id).len() == 1
    })
    .await;
    assert!(
        sf_tokens(&app, &id).0 != Some(rotated_access.clone()),
        "write refused"
    );
    assert_eq!(app.store.unconfirmed_tokens().unwrap().len(), 1);

    refresh_pass(&app.tokens).await;

    assert_sf_holds_current(&app, &id, &open_id).await;
    assert!(app.store.unconfirmed_tokens().unwrap().is_empty());
    assert_eq!(refresh_calls(&app).len(), 1, "writing needs no new refresh");
}

// ---------------------------------------------------------------------------------------
// Failure classification and reconnect reminders

/// Refreshes `id`'s tokens through the on-demand path (its access token is expired) and
/// expects Lark to refuse: the trainer is reported not connected.
async fn refresh_is_refused(app: &TestApp, id: &str) -> String {
    match app.tokens.access_token_for(&fresh(app, id).await).await {
        Err(TokenError::NotConnected { reason }) => reason,
        Err(e) => panic!("expected NotConnected, got {e}"),
        Ok(_) => panic!("expected NotConnected, got a token"),
    }
}

/// Connects again through the OAuth flow, with an access token that counts as expired.
async fn reconnect(app: &TestApp, id: &str, email: &str) {
    app.lark
        .set_token_lifetimes(SHORT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    let hop = connect(app, id, email).await;
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    assert_eq!(hop.status, 200, "{}", hop.body);
}

fn assert_disconnected(app: &TestApp, id: &str) {
    let t = app.trainer(id);
    assert_eq!(t["Lark_Connected__c"], json!(false));
    for f in [
        "Lark_Access_Token__c",
        "Lark_Refresh_Token__c",
        "Lark_Token_Expires_At__c",
        "Lark_Refresh_Expires_At__c",
    ] {
        assert!(blank(t.get(f)), "{f} cleared");
    }
    assert!(
        app.store.journalled_tokens(&tid(id)).unwrap().is_none(),
        "no journalled tokens left to use"
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_disconnects_and_reminds_once_a_day() {
    let app = spawn_app().await;
    let email = "ann@example.com";
    let (id, open_id) =
        connected_with_lifetimes(&app, "Ann", email, SHORT_ACCESS_SECS, DEFAULT_REFRESH_SECS).await;
    app.lark.revoke(&open_id);

    refresh_is_refused(&app, &id).await;

    assert_eq!(
        refresh_calls(&app).len(),
        1,
        "a refused refresh is not retried"
    );
    assert_disconnected(&app, &id);
    let error = text(&app.trainer(&id), "Lark_Connection_Error__c").expect("reason recorded");
    assert!(error.contains("revoked"), "says what happened: {error}");
    assert!(error.contains("reconnect"), "says what to do: {error}");
    assert!(error.chars().count() <= 255);
    let messages = app.lark.bot_messages();
    assert_eq!(messages.len(), 1, "one reminder");
    assert_eq!(messages[0].receive_id_type, "email");
    assert_eq!(messages[0].receive_id, email);
    let link = app.settings.server.connect_link(&tid(&id));
    assert!(
        messages[0].text.contains(&link),
        "carries {link}: {}",
        messages[0].text
    );

    // Reconnect, lose access again the same day: no second reminder.
    reconnect(&app, &id, email).await;
    assert_eq!(app.trainer(&id)["Lark_Connected__c"], json!(true));
    assert!(blank(app.trainer(&id).get("Lark_Connection_Error__c")));
    app.lark.revoke(&open_id);
    refresh_is_refused(&app, &id).await;
    assert_disconnected(&app, &id);
    assert_eq!(
        app.lark.bot_messages().len(),
        1,
        "at most one reminder per 24 hours"
    );

    // Remembered across a restart.
    let (sf, lark, settings, dir) = app.stop().await;
    let app = start_app(sf, lark, settings, dir).await;
    reconnect(&app, &id, email).await;
    app.lark.revoke(&open_id);
    refresh_is_refused(&app, &id).await;
    assert_disconnected(&app, &id);
    assert_eq!(
        app.lark.bot_messages().len(),
        1,
        "the 24 hours survive a restart"
    );
}

/// Single flight holds for a refused refresh too: callers that waited for it reuse its
/// outcome instead of spending the same (refused) refresh token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_refused_refresh() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    app.lark.revoke(&open_id);
    let trainer = fresh(&app, &id).await;
    app.sf.requests().clear();

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let tokens = app.tokens.clone();
            let trainer = trainer.clone();
            tokio::spawn(async move { tokens.access_token_for(&trainer).await })
        })
        .collect();
    for c in calls {
        assert!(matches!(
            c.await.unwrap(),
            Err(TokenError::NotConnected { .. })
        ));
    }
    assert_disconnected(&app, &id);
    assert_eq!(app.lark.bot_messages().len(), 1);
    assert_eq!(
        (refresh_calls(&app).len(), trainer_patches(&app, &id).len()),
        (1, 1),
        "one refused refresh and one disconnect write for 20 callers"
    );
}

/// `lark.oauth_version = "v1"`: the OIDC refresh endpoint rotates the pair the same way,
/// and its refusals (`{code, msg}`, same codes) disconnect the same way.
#[tokio::test]
async fn the_v1_endpoints_refresh_and_refuse_like_v2() {
    let app = spawn_app_with(|s| s.lark.oauth_version = OAuthVersion::V1).await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let v1_refreshes = || {
        app.lark.requests().count(
            &Method::POST,
            "/open-apis/authen/v1/oidc/refresh_access_token",
        )
    };
    let token = app.tokens.access_token_for(&fresh(&app, &id).await).await;
    let (access, _) = app.lark.current_tokens(&open_id).unwrap();
    assert!(token.expect("refreshed").secret() == access);
    assert_eq!(v1_refreshes(), 1);
    assert!(refresh_calls(&app).is_empty(), "no v2 call in v1 mode");
    assert_sf_holds_current(&app, &id, &open_id).await;

    // Connect again with a short-lived access token, then lose access: the refusal
    // arrives in the v1 shape.
    reconnect(&app, &id, "ann@example.com").await;
    app.lark.revoke(&open_id);
    refresh_is_refused(&app, &id).await;
    assert_disconnected(&app, &id);
    let error = text(&app.trainer(&id), "Lark_Connection_Error__c").unwrap();
    assert!(error.contains("revoked"), "{error}");
}

#[tokio::test]
async fn an_expired_or_used_refresh_token_disconnects_with_its_own_reason() {
    let app = spawn_app().await;
    let (a, a_open) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let (b, _) = connected_with_lifetimes(
        &app,
        "Bob",
        "bob@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    app.lark.expire_refresh_tokens(&a_open);
    refresh_is_refused(&app, &a).await;
    assert_disconnected(&app, &a);
    let error = text(&app.trainer(&a), "Lark_Connection_Error__c").unwrap();
    assert!(error.contains("expired"), "{error}");

    // Bob's refresh token is spent behind the service's back (another copy of the
    // service, a script): Lark answers 20073.
    let spent = {
        let (_, r) = sf_tokens(&app, &b);
        r.unwrap()
    };
    let used = reqwest::Client::new()
        .post(format!("{}{TOKEN_PATH}", app.lark.base_url()))
        .json(&json!({
            "grant_type": "refresh_token",
            "client_id": LARK_APP_ID,
            "client_secret": LARK_APP_SECRET,
            "refresh_token": spent,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200);
    refresh_is_refused(&app, &b).await;
    assert_disconnected(&app, &b);
    let error = text(&app.trainer(&b), "Lark_Connection_Error__c").unwrap();
    assert!(error.contains("already-used"), "{error}");
    assert_eq!(app.lark.bot_messages().len(), 2, "one reminder each");
}

#[tokio::test]
async fn a_retryable_refresh_failure_keeps_the_trainer_connected() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let (connect_access, connect_refresh) = app.lark.current_tokens(&open_id).unwrap();
    // Lark's "temporarily unavailable" (20072, HTTP 503) on every attempt the client makes.
    app.lark.faults().inject(
        Some(Method::POST),
        TOKEN_PATH,
        1_000,
        503,
        r#"{"code":20072,"error":"temporarily_unavailable","error_description":"Server temporarily unavailable, please retry."}"#,
        &[],
    );
    let result = app.tokens.access_token_for(&fresh(&app, &id).await).await;
    assert!(
        matches!(result, Err(TokenError::Lark(_))),
        "a transient failure, not a disconnect: {:?}",
        result.err()
    );
    let attempts = app.lark.requests().count(&Method::POST, TOKEN_PATH);
    assert!(attempts > 1, "retried with backoff ({attempts} attempts)");
    assert_eq!(app.trainer(&id)["Lark_Connected__c"], json!(true));
    assert!(sf_tokens(&app, &id) == (Some(connect_access), connect_refresh.clone()));
    assert!(
        app.lark.bot_messages().is_empty(),
        "no reminder for a Lark outage"
    );
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("lvb_token_refreshes_total{outcome=\"failed\"} 1\n"),
        "{metrics}"
    );

    // Lark is back: the untouched refresh token still works.
    app.lark.faults().clear();
    app.tokens
        .access_token_for(&fresh(&app, &id).await)
        .await
        .expect("refreshes once Lark is back");
    let ok = refresh_calls(&app)
        .into_iter()
        .filter(|r| r.status == 200)
        .collect::<Vec<_>>();
    assert_eq!(ok.len(), 1);
    assert!(Some(sent_refresh_token(&ok[0])) == connect_refresh);
    assert_sf_holds_current(&app, &id, &open_id).await;
}

// ---------------------------------------------------------------------------------------
// The refresh timer

#[tokio::test]
async fn the_timer_refreshes_exactly_the_trainers_inside_the_window() {
    let app = spawn_app_with(|s| {
        s.refresh.refresh_token_window = Duration::from_secs(48 * 3600);
    })
    .await;
    let hour = 3600;
    let (in_1h, in_1h_open) =
        connected_with_lifetimes(&app, "One", "one@example.com", DEFAULT_ACCESS_SECS, hour).await;
    let (in_10h, in_10h_open) = connected_with_lifetimes(
        &app,
        "Ten",
        "ten@example.com",
        DEFAULT_ACCESS_SECS,
        10 * hour,
    )
    .await;
    let (in_100h, _) = connected_with_lifetimes(
        &app,
        "Hundred",
        "hundred@example.com",
        DEFAULT_ACCESS_SECS,
        100 * hour,
    )
    .await;
    // Only the access token is about to expire: the timer leaves this one alone.
    let (access_only, _) = connected_with_lifetimes(
        &app,
        "Access",
        "access@example.com",
        SHORT_ACCESS_SECS,
        100 * hour,
    )
    .await;
    let before = |id: &str| app.trainer(id);
    let (b1, b10, b100, b_access) = (
        before(&in_1h),
        before(&in_10h),
        before(&in_100h),
        before(&access_only),
    );
    let spent: Vec<String> = [&in_1h, &in_10h]
        .iter()
        .map(|id| sf_tokens(&app, id).1.unwrap())
        .collect();

    let engine = app.engine.clone();
    let pass_started = chrono::Utc::now();
    let summary = refresh_pass(engine.tokens()).await;

    assert_eq!(
        (
            summary.refreshed,
            summary.failed,
            summary.disconnected,
            summary.skipped
        ),
        (2, 0, 0, 0),
        "{summary:?}"
    );
    let refreshes = refresh_calls(&app);
    assert_eq!(refreshes.len(), 2);
    let mut sent: Vec<String> = refreshes.iter().map(sent_refresh_token).collect();
    sent.sort();
    let mut expected = spent.clone();
    expected.sort();
    assert!(sent == expected, "refreshed the 1 h and 10 h trainers only");
    assert_sf_holds_current(&app, &in_1h, &in_1h_open).await;
    assert_sf_holds_current(&app, &in_10h, &in_10h_open).await;
    for (id, old) in [(&in_1h, &b1), (&in_10h, &b10)] {
        let now = app.trainer(id);
        let refresh_exp =
            parse_datetime(&text(&now, "Lark_Refresh_Expires_At__c").unwrap()).unwrap();
        assert!(
            refresh_exp > chrono::Utc::now() + chrono::Duration::days(6),
            "the new refresh token's lifetime is Lark's: {refresh_exp}"
        );
        let last = |r: &Map<String, Value>| {
            parse_datetime(&text(r, "Lark_Last_Token_Refresh__c").unwrap()).unwrap()
        };
        // Recorded by the pass (the service writes it to the second).
        assert_ne!(last(&now), last(old), "Lark_Last_Token_Refresh__c recorded");
        assert!(last(&now) >= pass_started - chrono::Duration::seconds(1));
    }
    assert_eq!(
        changed_fields(&b100, &app.trainer(&in_100h)),
        Vec::<String>::new(),
        "outside the window: untouched"
    );
    assert_eq!(
        changed_fields(&b_access, &app.trainer(&access_only)),
        Vec::<String>::new(),
        "access token alone: untouched"
    );

    // The next pass finds nothing due.
    let again = refresh_pass(engine.tokens()).await;
    assert_eq!(again.refreshed, 0, "{again:?}");
    assert_eq!(refresh_calls(&app).len(), 2);
}

/// Rule 6 through `run`'s own timer (the test above calls the pass the timer asks for):
/// with `refresh.interval` at 1 s, trainers whose refresh tokens are inside the window are
/// refreshed tick after tick with no call from outside, and one whose access token alone
/// is short-lived is left alone by every pass.
#[tokio::test(flavor = "multi_thread")]
async fn run_s_timer_refreshes_trainers_inside_the_window_every_refresh_interval() {
    let app = spawn_app_with(|s| {
        s.refresh.interval = Duration::from_secs(1);
        s.refresh.refresh_token_window = Duration::from_secs(48 * 3600);
    })
    .await;
    let hour = 3600;
    let (access_only, _) = connected_with_lifetimes(
        &app,
        "Access",
        "access@example.com",
        SHORT_ACCESS_SECS,
        100 * hour,
    )
    .await;
    let before = app.trainer(&access_only);
    let refresh_expires_in = |id: &str| {
        let at = text(&app.trainer(id), "Lark_Refresh_Expires_At__c").expect("set");
        parse_datetime(&at).unwrap() - chrono::Utc::now()
    };
    // Each connects after the previous one was refreshed: the second is refreshed by a
    // later tick than the first.
    for (name, email) in [("One", "one@example.com"), ("Two", "two@example.com")] {
        let (id, _) = connected_with_lifetimes(&app, name, email, DEFAULT_ACCESS_SECS, hour).await;
        wait_until(&format!("the timer refreshes {name}"), || async {
            refresh_expires_in(&id) > chrono::Duration::days(6)
        })
        .await;
    }
    assert!(refresh_calls(&app).len() >= 2);
    assert_eq!(
        changed_fields(&before, &app.trainer(&access_only)),
        Vec::<String>::new(),
        "the access token alone expiring is not the timer's business"
    );
    app.stop().await;
}

/// Issue 3 §5: a refresh token that cannot be extended and expires within the window
/// means the trainer must reconnect soon: one reminder (and not one per pass).
#[tokio::test]
async fn a_refresh_token_that_cannot_be_extended_sends_one_reminder() {
    let app = spawn_app_with(|s| {
        s.refresh.refresh_token_window = Duration::from_secs(48 * 3600);
    })
    .await;
    let email = "ann@example.com";
    let (id, _) = connected_with_lifetimes(&app, "Ann", email, DEFAULT_ACCESS_SECS, 3600).await;
    // Lark keeps issuing refresh tokens that live 10 hours: refreshing cannot get the
    // expiry out of the window.
    app.lark.set_token_lifetimes(DEFAULT_ACCESS_SECS, 10 * 3600);

    let engine = app.engine.clone();
    refresh_pass(engine.tokens()).await;
    refresh_pass(engine.tokens()).await;

    assert_eq!(app.trainer(&id)["Lark_Connected__c"], json!(true));
    let messages = app.lark.bot_messages();
    assert_eq!(messages.len(), 1, "one reminder to reconnect");
    assert_eq!(messages[0].receive_id, email);
    assert!(messages[0]
        .text
        .contains(&app.settings.server.connect_link(&tid(&id))));
}

// ---------------------------------------------------------------------------------------
// Tokens in use: a rejected user token, disconnect

#[tokio::test]
async fn a_rejected_user_token_gets_one_refresh_and_one_retry() {
    let app = spawn_app().await;
    let (id, open_id) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        DEFAULT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    wait_ready(&app).await;
    // Lark says the token expired although the service's own record says it is valid.
    app.lark.expire_access_tokens(&open_id);
    app.lark.requests().clear();

    let booking = remote_booking(&app, &id, "Acme Coffee");
    wait_for_status(&app, &booking, "Created").await;

    let applies = app
        .lark
        .requests()
        .matching(|r| r.method == Method::POST && r.path == APPLY_PATH);
    let statuses: Vec<u16> = applies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [401, 200],
        "rejected once (99991677), then retried once"
    );
    assert_eq!(refresh_calls(&app).len(), 1, "one refresh");
    let reserve = app.lark.reserves().pop().expect("reserved");
    assert_eq!(reserve.owner_open_id, open_id, "the trainer hosts it");
    assert_eq!(
        text(&app.booking(&booking), "Remote_Training_Meeting_Link__c"),
        Some(reserve.url)
    );
    assert_sf_holds_current(&app, &id, &open_id).await;
}

#[tokio::test]
async fn a_disconnected_trainer_gets_pending_bookings_and_no_lark_call() {
    let app = spawn_app().await;
    let (id, _) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        DEFAULT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    wait_ready(&app).await;

    app.tokens
        .disconnect(&tid(&id), "Disconnected by an administrator.")
        .await
        .expect("disconnect");
    assert_disconnected(&app, &id);
    assert_eq!(
        text(&app.trainer(&id), "Lark_Connection_Error__c").as_deref(),
        Some("Disconnected by an administrator.")
    );

    app.lark.requests().clear();
    let booking = remote_booking(&app, &id, "Acme Coffee");
    wait_for_status(&app, &booking, PENDING).await;
    assert_eq!(
        app.lark.requests().count_path("/open-apis/vc/"),
        0,
        "no reservation call"
    );
    assert!(refresh_calls(&app).is_empty(), "no refresh");
    assert!(app.lark.reserves().is_empty());
}

/// Issue 3 §6: an admin unchecking `Lark_Connected__c` means the service never uses the
/// trainer's tokens again, and they are cleared.
#[tokio::test]
async fn an_admin_unchecking_connected_stops_all_use_and_clears_the_tokens() {
    let app = spawn_app().await;
    let (id, _) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        DEFAULT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    wait_ready(&app).await;

    app.sf.update(
        TRAINER,
        &id,
        json!({ "Lark_Connected__c": false }),
        SF_HUMAN_USER_ID,
    );
    app.lark.requests().clear();
    let booking = remote_booking(&app, &id, "Acme Coffee");
    wait_for_status(&app, &booking, PENDING).await;
    assert_eq!(
        app.lark.requests().count_path("/open-apis/vc/"),
        0,
        "no reservation call"
    );
    assert!(refresh_calls(&app).is_empty(), "no refresh");
    let summary = refresh_pass(&app.tokens).await;
    assert_eq!(summary.refreshed, 0, "the timer leaves them alone");
    assert!(refresh_calls(&app).is_empty());

    // The tokens must not stay behind in Salesforce or in the journal.
    let t = app.trainer(&id);
    let sf_cleared = blank(t.get("Lark_Access_Token__c")) && blank(t.get("Lark_Refresh_Token__c"));
    let journal_cleared = app.store.journalled_tokens(&tid(&id)).unwrap().is_none();
    assert!(
        sf_cleared && journal_cleared,
        "tokens cleared (Salesforce: {sf_cleared}, local journal: {journal_cleared})"
    );
}

// ---------------------------------------------------------------------------------------
// rotate-key

/// A config file for the binary: the simulators, the store, and the given keys.
fn write_config(
    sims: (&SalesforceSim, &LarkSim),
    settings: &Settings,
    dir: &Path,
    primary: &str,
    previous: &[&str],
) -> PathBuf {
    let previous: Vec<String> = previous.iter().map(|k| format!("\"{k}\"")).collect();
    let toml = format!(
        r#"[server]
bind = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"

[store]
path = "{store}"

[salesforce]
login_url = "{sf}"
client_id = "{SF_CLIENT_ID}"
client_secret = "{SF_CLIENT_SECRET}"

[lark]
base_url = "{lark}"
accounts_url = "{lark}"
app_id = "{LARK_APP_ID}"
app_secret = "{LARK_APP_SECRET}"

[security]
encryption_key = "{primary}"
previous_keys = [{previous}]
state_secret = "{state}"
"#,
        store = settings.store.path.display(),
        sf = sims.0.base_url(),
        lark = sims.1.base_url(),
        previous = previous.join(", "),
        state = settings.security.state_secret.expose_secret(),
    );
    let path = dir.join("rotate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `lark-vc-bridge rotate-key`; returns its summary line.
async fn rotate_key(config: &Path) -> String {
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(config)
        .arg("rotate-key")
        .env_remove("LVB_CONFIG")
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "rotate-key failed:\n{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .find(|l| l.contains("re-encrypted:"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"))
        .to_string()
}

/// `re-encrypted: 4  already current: 0 ...` → the number after `label:`.
fn count(summary: &str, label: &str) -> usize {
    let rest = summary.split(&format!("{label}:")).nth(1).expect(label);
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_key_reencrypts_every_token_with_the_new_key_alone() {
    let app = spawn_app().await;
    let mut trainers = Vec::new();
    for (name, email) in [("Ann", "ann@example.com"), ("Bob", "bob@example.com")] {
        trainers.push(
            connected_with_lifetimes(&app, name, email, DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS)
                .await,
        );
    }
    // Operators rotate with the service stopped: new primary key, the old one kept for
    // decryption; then the service restarts on the new key alone.
    let (sf, lark, mut settings, dir) = app.stop().await;
    let old_key = hex::encode(settings.security.encryption_key.expose_bytes());
    let new_key = lark_vc_bridge::config::random_hex(32);
    let config = write_config((&sf, &lark), &settings, dir.path(), &new_key, &[&old_key]);

    let first = rotate_key(&config).await;
    assert_eq!(count(&first, "re-encrypted"), 4, "{first}");
    assert_eq!(count(&first, "already current"), 0, "{first}");
    assert_eq!(count(&first, "journal rows re-encrypted"), 2, "{first}");
    let second = rotate_key(&config).await;
    assert_eq!(count(&second, "re-encrypted"), 0, "idempotent: {second}");
    assert_eq!(count(&second, "already current"), 4, "{second}");
    assert_eq!(count(&second, "journal rows re-encrypted"), 0, "{second}");

    let new_only = Vault::from_hex(&new_key, &[]).unwrap();
    let old_only = Vault::from_hex(&old_key, &[]).unwrap();
    let store = Store::open(&settings.store.path).unwrap();
    for (id, open_id) in &trainers {
        let t = sf.get(TRAINER, id).unwrap();
        let (access, refresh) = lark.current_tokens(open_id).unwrap();
        for (field, plain) in [
            ("Lark_Access_Token__c", Some(access)),
            ("Lark_Refresh_Token__c", refresh),
        ] {
            let enc = text(&t, field).expect(field);
            assert!(
                new_only.decrypt(&enc).ok() == plain,
                "{field} of {id} opens with the new key alone"
            );
            assert!(
                old_only.decrypt(&enc).is_err(),
                "{field} no longer opens with the old key"
            );
        }
        let j = store
            .journalled_tokens(&tid(id))
            .unwrap()
            .expect("journalled");
        assert!(
            new_only.decrypt(&j.access_enc).is_ok(),
            "journal re-encrypted too"
        );
        assert!(new_only.decrypt(j.refresh_enc.as_deref().unwrap()).is_ok());
    }
    drop(store);

    // The restarted service uses the tokens with the new key alone, no reconnect needed.
    settings.security.encryption_key = EncryptionKey::from_hex(&new_key).unwrap();
    settings.security.previous_keys = Vec::new();
    let app = start_app(sf, lark, settings, dir).await;
    for (id, open_id) in &trainers {
        let token = app.tokens.access_token_for(&fresh(&app, id).await).await;
        let (access, _) = app.lark.current_tokens(open_id).unwrap();
        assert!(token.expect("usable").secret() == access);
    }
    assert!(refresh_calls(&app).is_empty());
}

// ---------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn refresh_outcomes_are_counted_in_metrics() {
    let app = spawn_app().await;
    let (a, _) = connected_with_lifetimes(
        &app,
        "Ann",
        "ann@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    let (b, b_open) = connected_with_lifetimes(
        &app,
        "Bob",
        "bob@example.com",
        SHORT_ACCESS_SECS,
        DEFAULT_REFRESH_SECS,
    )
    .await;
    app.tokens
        .access_token_for(&fresh(&app, &a).await)
        .await
        .expect("refreshed");
    app.lark.revoke(&b_open);
    refresh_is_refused(&app, &b).await;

    let text = metrics_text(&app).await;
    assert!(
        text.contains("lvb_token_refreshes_total{outcome=\"ok\"} 1\n"),
        "{text}"
    );
    let refused: u64 = text
        .lines()
        .filter(|l| l.starts_with("lvb_token_refreshes_total{") && !l.contains("\"ok\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(refused, 1, "the refused refresh is counted apart: {text}");
}
