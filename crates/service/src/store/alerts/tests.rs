use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::Store;

/// `secs` seconds into the UTC day 20,000 after the epoch (2024-10-04).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(20_000 * 86_400 + secs, 0).unwrap()
}

#[test]
fn an_alert_is_claimed_once_a_day_and_a_failed_one_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let stale = Duration::from_secs(600);
    let day = at(0).date_naive();
    assert!(store.claim_alert("failed:a", at(60), stale).unwrap());
    assert!(
        !store.claim_alert("failed:a", at(61), stale).unwrap(),
        "being sent"
    );
    assert!(store.claim_alert("failed:b", at(60), stale).unwrap());
    store.release_alert("failed:a", day).unwrap();
    assert!(
        store.claim_alert("failed:a", at(62), stale).unwrap(),
        "released"
    );
    store.mark_alert_sent("failed:a", day).unwrap();
    assert!(
        !store.claim_alert("failed:a", at(10_060), stale).unwrap(),
        "sent today, however long ago"
    );
    assert!(
        store.claim_alert("failed:b", at(661), stale).unwrap(),
        "a stale claim never marked sent"
    );
    assert!(
        store.claim_alert("failed:a", at(86_460), stale).unwrap(),
        "a new day"
    );
    drop(store);
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    assert!(
        !store.claim_alert("failed:a", at(86_461), stale).unwrap(),
        "remembered across a reopen"
    );
}
