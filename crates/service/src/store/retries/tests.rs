use super::*;
use crate::store::test_support::{at_ms, b, t};

#[test]
fn the_retry_list_counts_attempts_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let meeting = RetryKind::Meeting;
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.record_failed_attempt(&b(1), meeting, at_ms(100), "first")
                .unwrap(),
            1
        );
        assert_eq!(
            s.record_failed_attempt(&b(1), meeting, at_ms(200), "second")
                .unwrap(),
            2
        );
        s.defer_retry(&b(2), RetryKind::InDoubt, at_ms(150), "in doubt")
            .unwrap();
        assert_eq!(s.record_in_doubt_apply(&b(2), &t(1), at_ms(90)).unwrap(), 1);
        assert_eq!(s.record_in_doubt_apply(&b(2), &t(1), at_ms(95)).unwrap(), 2);
        s.record_in_doubt_apply(&b(3), &t(1), at_ms(10)).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_retry_at().unwrap(), Some(at_ms(150)));
    assert!(s.due_retries(at_ms(149), 10).unwrap().is_empty());
    let due = s.due_retries(at_ms(200), 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].booking_id, b(2));
    assert_eq!(due[0].kind, RetryKind::InDoubt);
    assert_eq!(due[0].attempts, 0, "a deferral is not an attempt");
    assert_eq!((due[1].kind, due[1].attempts), (meeting, 2));
    assert_eq!(due[1].last_reason, "second");
    assert_eq!(s.in_doubt_apply(&b(2)).unwrap().unwrap().applies, 2);
    assert_eq!(s.prune_in_doubt(at_ms(50)).unwrap(), 1, "b3's lapsed");
    assert_eq!(s.prune_in_doubt(at_ms(95)).unwrap(), 0, "sent at 95: kept");
    s.clear_retry(&b(1)).unwrap();
    s.clear_in_doubt(&b(2)).unwrap();
    assert!(s.retry_entry(&b(1)).unwrap().is_none());
    assert!(s.in_doubt_apply(&b(2)).unwrap().is_none());
}

#[test]
fn a_store_of_an_earlier_version_learns_the_kind_of_each_retry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE booking_retries (booking_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL,
               next_at INTEGER NOT NULL, last_reason TEXT NOT NULL);",
        )
        .unwrap();
        let calendar =
            "The meeting is ready, but it could not be put on the trainer's Lark calendar: down";
        for (id, reason) in [(b(1), "Lark unavailable"), (b(2), calendar)] {
            c.execute(
                "INSERT INTO booking_retries VALUES (?1, 3, 5, ?2)",
                rusqlite::params![id.as_str(), reason],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO booking_retries VALUES ('not an id', 1, 5, 'x')",
            [],
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let due = s.due_retries(at_ms(10), 10).unwrap();
    let kinds: Vec<(BookingId, RetryKind, u32)> = due
        .into_iter()
        .map(|e| (e.booking_id, e.kind, e.attempts))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (b(1), RetryKind::Meeting, 3),
            (b(2), RetryKind::Calendar, 3)
        ],
        "the row that is no booking id is dropped"
    );
    assert_eq!(s.next_retry_at().unwrap(), Some(at_ms(5)));
}

#[test]
fn an_apply_refused_outright_no_longer_counts_as_in_doubt() {
    let s = Store::in_memory().unwrap();
    assert_eq!(s.record_in_doubt_apply(&b(1), &t(1), at_ms(1)).unwrap(), 1);
    assert_eq!(s.record_in_doubt_apply(&b(1), &t(1), at_ms(2)).unwrap(), 2);
    s.settle_refused_apply(&b(1)).unwrap();
    assert_eq!(s.in_doubt_apply(&b(1)).unwrap().unwrap().applies, 1);
    s.settle_refused_apply(&b(1)).unwrap();
    assert!(s.in_doubt_apply(&b(1)).unwrap().is_none());
    s.settle_refused_apply(&b(1)).unwrap();
    assert!(
        s.in_doubt_apply(&b(1)).unwrap().is_none(),
        "nothing below zero"
    );
}
