use futures::FutureExt;

use super::*;
use crate::store::test_support::{b, t};

/// The log's commits so far.
fn commits(log: &IntentLog) -> u64 {
    log.metrics.get(names::STORE_INTENT_COMMITS, &[])
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    (dir, store)
}

#[tokio::test(flavor = "current_thread")]
async fn applies_that_leave_together_share_one_durable_commit() {
    let (_dir, store) = store();
    let log = IntentLog::new(Metrics::default());
    let bookings: Vec<BookingId> = (1..=20).map(b).collect();
    let trainer = t(1);
    let recorded =
        futures::future::join_all(bookings.iter().map(|id| log.record(&store, id, &trainer))).await;
    assert!(recorded.iter().all(|r| matches!(r, Ok(1))), "{recorded:?}");
    assert_eq!(
        commits(&log),
        1,
        "twenty applies ready in one turn, one commit"
    );
    for id in &bookings {
        let doubt = store.in_doubt_apply(id).unwrap().expect("recorded");
        assert_eq!((doubt.applies, &doubt.trainer_id), (1, &trainer));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_apply_is_its_own_group_and_counts_go_on() {
    let (_dir, store) = store();
    let log = IntentLog::new(Metrics::default());
    assert_eq!(log.record(&store, &b(1), &t(1)).await.unwrap(), 1);
    assert_eq!(log.record(&store, &b(1), &t(1)).await.unwrap(), 2);
    assert_eq!(commits(&log), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn an_apply_dropped_before_its_commit_is_not_recorded() {
    let (_dir, store) = store();
    let log = IntentLog::new(Metrics::default());
    // Polled once, it joins the group and yields; then its booking's work is dropped.
    assert!(log.record(&store, &b(1), &t(1)).now_or_never().is_none());
    assert_eq!(log.record(&store, &b(2), &t(1)).await.unwrap(), 1);
    assert_eq!(store.in_doubt_apply(&b(1)).unwrap(), None);
    assert!(store.in_doubt_apply(&b(2)).unwrap().is_some());
}
