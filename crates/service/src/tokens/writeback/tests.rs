//! Rule 16 for the batched write of rotated tokens: a connect that comes while a batch is
//! being written is never overwritten by it, whichever of the two took the trainer first.
//! Driven through the trainers' locks and a slow Salesforce answer, never by timing.
//! (Batching itself and the shutdown flush are tested against the running app:
//! `tests/api/token_writes.rs`.)

use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, Utc};

use crate::ids::TrainerId;
use crate::lark::test_support::eventually;
use crate::store::JournalledTokens;
use crate::tokens::test_support::{grant, harness, Harness, TRAINER};

const COLLECTIONS: &str = "/composite/sobjects";

impl Harness {
    /// Two trainers in Salesforce, in id order (the order the batch locks them in).
    fn two_trainers(&self) -> (TrainerId, TrainerId) {
        let mut ids = [self.insert_trainer("Ann"), self.insert_trainer("Bob")];
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        let [first, second] = ids;
        (first, second)
    }

    /// A rotated pair journalled (not yet in Salesforce), as a refresh leaves it.
    fn journal_rotation(&self, trainer: &TrainerId, access: &str) {
        let now = Utc::now();
        self.store
            .journal_tokens(&JournalledTokens {
                trainer_id: trainer.clone(),
                access_enc: self.vault.encrypt(access),
                refresh_enc: Some(self.vault.encrypt(&format!("{access}-refresh"))),
                access_expires_at: now + chrono::Duration::hours(2),
                refresh_expires_at: Some(now + chrono::Duration::days(7)),
                refreshed_at: DateTime::from_timestamp(now.timestamp(), 0).unwrap(),
                confirmed: false,
            })
            .unwrap();
    }

    /// The access token Salesforce holds for the trainer, decrypted.
    fn sf_access(&self, trainer: &TrainerId) -> Option<String> {
        let record = self.sf.get(TRAINER, trainer.as_str()).unwrap();
        let enc = record.get("Lark_Access_Token__c")?.as_str()?.to_string();
        Some(self.vault.decrypt(&enc).unwrap())
    }

    /// The journal's access token for the trainer, decrypted, and whether it is confirmed.
    fn journal(&self, trainer: &TrainerId) -> (String, bool) {
        let row = self.store.journalled_tokens(trainer).unwrap().unwrap();
        (self.vault.decrypt(&row.access_enc).unwrap(), row.confirmed)
    }

    /// The records of every collection call so far, by id.
    fn collection_ids(&self) -> Vec<Vec<String>> {
        self.sf
            .requests()
            .matching(|r| r.method == Method::PATCH && r.path.ends_with(COLLECTIONS))
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                body["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|rec| rec["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

/// The batch read both rows, then waited for the first trainer's lock; meanwhile the
/// second reconnected. The batch must write what the journal holds once it has the
/// second's lock (the reconnect, already in Salesforce: nothing), not the row it read.
/// The test's runtime has one thread: the spawned batch runs until it waits for the
/// lock as soon as the test yields.
#[tokio::test]
async fn a_reconnect_while_the_batch_waits_for_a_lock_is_not_overwritten() {
    let h = harness().await;
    let (first, second) = h.two_trainers();
    h.journal_rotation(&first, "u-first-rotated");
    h.journal_rotation(&second, "u-second-stale");

    let held = h.tokens.flight(&first).lock_owned().await;
    let batch = tokio::spawn({
        let tokens = h.tokens.clone();
        async move { tokens.replay_unconfirmed().await }
    });
    tokio::task::yield_now().await;
    assert!(!batch.is_finished(), "the batch waits for the first lock");
    h.tokens
        .connect(&second, "ou_second", grant("u-second-reconnected"))
        .await
        .expect("the reconnect is saved: its trainer's lock is free");
    drop(held);
    let written = batch.await.unwrap().expect("the batch lands");

    assert_eq!(
        written, 1,
        "only the first trainer's row was still unwritten"
    );
    assert_eq!(
        h.collection_ids(),
        [vec![first.as_str().to_string()]],
        "one call, without the reconnected trainer"
    );
    assert_eq!(h.sf_access(&first).as_deref(), Some("u-first-rotated"));
    assert_eq!(
        h.sf_access(&second).as_deref(),
        Some("u-second-reconnected"),
        "the reconnect stands"
    );
    assert_eq!(h.journal(&second), ("u-second-reconnected".into(), true));
}

/// A connect that comes while a batch's call is on its way waits until the batch has
/// its answer and confirmed its rows (the batch holds the trainer's lock throughout),
/// so the batch can neither land after the connect nor confirm the connect's row.
#[tokio::test]
async fn a_connect_waits_until_the_batch_holding_its_trainer_is_confirmed() {
    let h = harness().await;
    let (trainer, _) = h.two_trainers();
    h.journal_rotation(&trainer, "u-rotated");
    h.sf.faults()
        .slow_answers(Some(Method::PATCH), COLLECTIONS, 1, Duration::from_secs(2));

    let batch = tokio::spawn({
        let tokens = h.tokens.clone();
        async move { tokens.replay_unconfirmed().await }
    });
    eventually("the batch's call to reach Salesforce", || {
        !h.collection_ids().is_empty()
    })
    .await;
    let mut connecting = tokio::spawn({
        let tokens = h.tokens.clone();
        let trainer = trainer.clone();
        async move {
            tokens
                .connect(&trainer, "ou_ann", grant("u-reconnected"))
                .await
        }
    });
    // Unlocked, the save takes a few milliseconds on loopback; the answer is 2 s away.
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut connecting).await;
    assert!(waited.is_err(), "the connect waits for the batch");
    assert_eq!(batch.await.unwrap().expect("the batch lands"), 1);
    connecting
        .await
        .unwrap()
        .expect("then the connect is saved");

    assert_eq!(h.sf_access(&trainer).as_deref(), Some("u-reconnected"));
    assert_eq!(h.journal(&trainer), ("u-reconnected".into(), true));
}
