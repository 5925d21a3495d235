use crate::store::Store;

#[test]
fn an_alert_is_claimed_once_a_day_and_a_failed_one_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let (day, now) = (20_000, 20_000 * 86_400 + 60);
    assert!(store.claim_alert("failed:a", day, now, 600).unwrap());
    assert!(
        !store.claim_alert("failed:a", day, now + 1, 600).unwrap(),
        "being sent"
    );
    assert!(store.claim_alert("failed:b", day, now, 600).unwrap());
    store.release_alert("failed:a", day).unwrap();
    assert!(
        store.claim_alert("failed:a", day, now + 2, 600).unwrap(),
        "released"
    );
    store.mark_alert_sent("failed:a", day).unwrap();
    assert!(
        !store
            .claim_alert("failed:a", day, now + 10_000, 600)
            .unwrap(),
        "sent today, however long ago"
    );
    assert!(
        store.claim_alert("failed:b", day, now + 601, 600).unwrap(),
        "a stale claim never marked sent"
    );
    assert!(
        store
            .claim_alert("failed:a", day + 1, now + 86_400, 600)
            .unwrap(),
        "a new day"
    );
    drop(store);
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    assert!(
        !store
            .claim_alert("failed:a", day + 1, now + 86_401, 600)
            .unwrap(),
        "remembered across a reopen"
    );
}
