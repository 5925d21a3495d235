//! Rotated tokens reach Salesforce in batches (issue 22; design §3 rules 5, 16 and 24):
//! the running service hands each refresh's journalled pair to one writing task, which
//! writes the pairs of a burst's refreshes in one sObject Collections call, and writes
//! what is waiting when it is shut down. (Rule 16 against a racing connect:
//! `tokens/writeback/tests.rs`.)

use axum::http::Method;
use lark_vc_bridge::store::Store;
use lark_vc_bridge::tokens::Vault;
use lvb_simulators::lark::{DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS};
use serde_json::{Map, Value};

use crate::helpers::{self, spawn_app, tid, wait_until, TestApp};

const TRAINER: &str = "Onboarding_Trainer__c";
const COLLECTIONS: &str = "/composite/sobjects";
/// Inside the default 5 min skew: the next use of the token refreshes it.
const SHORT_ACCESS_SECS: i64 = 60;

/// `n` trainers connected with access tokens that need a refresh at their next use.
/// Returns (trainer id, open_id) pairs.
async fn trainers_due(app: &TestApp, n: usize) -> Vec<(String, String)> {
    app.lark
        .set_token_lifetimes(SHORT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    let mut trainers = Vec::new();
    for i in 0..n {
        let name = format!("Trainer {i}");
        let email = format!("trainer{i}@example.com");
        trainers.push(helpers::connected_trainer(app, &name, &email).await);
    }
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    trainers
}

/// True when Salesforce holds the (access, refresh) pair Lark issued last to `open_id`.
/// Compared here, never printed: a failing test must not show tokens.
fn sf_holds_current(
    sf_record: &Map<String, Value>,
    vault: &Vault,
    issued: (String, Option<String>),
) -> bool {
    let open = |f: &str| {
        sf_record
            .get(f)
            .and_then(Value::as_str)
            .map(|enc| vault.decrypt(enc).expect("decrypts"))
    };
    (open("Lark_Access_Token__c"), open("Lark_Refresh_Token__c")) == (Some(issued.0), issued.1)
}

/// sObject Collections calls so far (their logged bodies are cut at 64 KiB, too short for
/// twenty records with their encrypted tokens: what each call wrote is read from the
/// records instead).
fn collection_calls(app: &TestApp) -> usize {
    app.sf.requests().count(&Method::PATCH, COLLECTIONS)
}

/// Single-record PATCHes of trainer records.
fn single_trainer_patches(app: &TestApp) -> usize {
    app.sf
        .requests()
        .count(&Method::PATCH, &format!("/sobjects/{TRAINER}/"))
}

/// Issue 22: twenty trainers refreshed in a burst cost one Salesforce call for their
/// rotated tokens, not twenty; each caller has its token before that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trainers_refreshed_together_share_one_collection_call() {
    let app = spawn_app().await;
    let trainers = trainers_due(&app, 20).await;
    let mut records = Vec::new();
    for (id, _) in &trainers {
        records.push(
            app.tokens
                .trainers()
                .get(&tid(id))
                .await
                .unwrap()
                .expect("trainer"),
        );
    }
    app.sf.requests().clear();

    let calls: Vec<_> = records
        .into_iter()
        .map(|trainer| {
            let tokens = app.tokens.clone();
            tokio::spawn(async move { tokens.access_token_for(&trainer).await })
        })
        .collect();
    for (call, (_, open_id)) in calls.into_iter().zip(&trainers) {
        let token = call.await.unwrap().expect("a token");
        let (issued, _) = app.lark.current_tokens(open_id).unwrap();
        assert!(
            token.secret() == issued,
            "each caller gets its rotated token"
        );
    }
    wait_until("every rotated pair is confirmed", || async {
        app.store.unconfirmed_tokens().unwrap().is_empty()
    })
    .await;

    assert_eq!(
        collection_calls(&app),
        1,
        "one collection call for all twenty"
    );
    assert_eq!(
        single_trainer_patches(&app),
        0,
        "no record written on its own"
    );
    let vault = Vault::from_settings(&app.settings.security);
    for (id, open_id) in &trainers {
        let issued = app.lark.current_tokens(open_id).unwrap();
        assert!(
            sf_holds_current(&app.trainer(id), &vault, issued),
            "Salesforce holds trainer {id}'s rotated pair"
        );
    }
}

/// Rule 24: a pair rotated just before SIGTERM is in Salesforce (and confirmed in the
/// journal) by the time the process has stopped: the writing task writes what is waiting
/// before it ends, rather than leave it to the next start-up.
#[tokio::test]
async fn shutdown_writes_the_rotated_tokens_waiting_to_be_written() {
    let app = spawn_app().await;
    let trainers = trainers_due(&app, 1).await;
    let (id, open_id) = &trainers[0];
    let trainer = app.tokens.trainers().get(&tid(id)).await.unwrap().unwrap();

    app.tokens
        .access_token_for(&trainer)
        .await
        .expect("a token");
    let issued = app.lark.current_tokens(open_id).unwrap();
    let vault = Vault::from_settings(&app.settings.security);
    let (sf_sim, _lark, settings, _dir) = app.stop().await;

    assert!(
        sf_holds_current(&sf_sim.get(TRAINER, id).unwrap(), &vault, issued),
        "Salesforce holds the pair rotated before the shutdown"
    );
    let store = Store::open(&settings.store.path).unwrap();
    let row = store
        .journalled_tokens(&tid(id))
        .unwrap()
        .expect("journalled");
    assert!(row.confirmed, "and the journal says so");
}
