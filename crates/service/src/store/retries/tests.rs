use super::*;

#[test]
fn the_retry_list_counts_attempts_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.record_failed_attempt("b1", 100, "first").unwrap(), 1);
        assert_eq!(s.record_failed_attempt("b1", 200, "second").unwrap(), 2);
        s.defer_retry("b2", 150, "in doubt").unwrap();
        assert_eq!(s.record_in_doubt_apply("b2", "t1", 90).unwrap(), 1);
        assert_eq!(s.record_in_doubt_apply("b2", "t1", 95).unwrap(), 2);
        s.record_in_doubt_apply("b3", "t1", 10).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_retry_at().unwrap(), Some(150));
    assert!(s.due_retries(149, 10).unwrap().is_empty());
    let due = s.due_retries(200, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].booking_id, "b2");
    assert_eq!(due[0].attempts, 0, "a deferral is not an attempt");
    assert_eq!(due[1].attempts, 2);
    assert_eq!(due[1].last_reason, "second");
    assert_eq!(s.in_doubt_apply("b2").unwrap().unwrap().applies, 2);
    assert_eq!(s.prune_in_doubt(50).unwrap(), 1, "b3's lapsed");
    assert_eq!(s.prune_in_doubt(95).unwrap(), 0, "sent at 95: kept");
    s.clear_retry("b1").unwrap();
    s.clear_in_doubt("b2").unwrap();
    assert!(s.retry_entry("b1").unwrap().is_none());
    assert!(s.in_doubt_apply("b2").unwrap().is_none());
}
