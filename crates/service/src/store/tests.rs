use super::*;
use crate::store::test_support::{at, b, t};

#[test]
fn pending_flows_are_purged_bounded_and_never_evicted() {
    let s = Store::in_memory().unwrap();
    let pending = |trainer: u32, expires_at: i64| PendingAuth {
        trainer_id: t(trainer),
        verifier_enc: "enc".into(),
        expires_at: at(expires_at),
    };
    // Many starts for one trainer: every flow stays open, the first one included
    // (rule 27: a stranger's start never drops the trainer's own flow).
    for i in 0..8 {
        let saved = s
            .save_pending_auth(&format!("t{i}"), &pending(1, 1_000 + i), at(500))
            .unwrap();
        assert_eq!(saved, PendingSaved::Saved);
    }
    assert_eq!(s.pending_auths(at(500)).unwrap(), 8);
    assert!(matches!(
        s.consume_nonce("t0", at(501)).unwrap(),
        NonceUse::Fresh(_)
    ));
    // A browser starting over forgets its own unfinished flow, never a finished one.
    s.forget_pending_auth("t7").unwrap();
    assert_eq!(s.consume_nonce("t7", at(502)).unwrap(), NonceUse::Unknown);
    s.forget_pending_auth("t0").unwrap();
    assert_eq!(
        s.consume_nonce("t0", at(502)).unwrap(),
        NonceUse::AlreadyUsed
    );
    // Expired flows go at the next start.
    s.save_pending_auth("late", &pending(2, 3_000), at(2_000))
        .unwrap();
    assert_eq!(s.pending_auths(at(0)).unwrap(), 1);

    // Full: nothing more is written, and nothing is dropped, until flows expire.
    s.with(|c| {
        let tx = c.unchecked_transaction()?;
        for i in 1..MAX_PENDING_AUTHS {
            tx.execute(
                "INSERT INTO oauth_pending (nonce, trainer_id, verifier_enc, expires_at) VALUES (?1, ?2, 'e', 3000)",
                params![format!("bulk{i}"), t(i as u32 + 100)],
            )?;
        }
        tx.commit()
    })
    .unwrap();
    assert_eq!(
        s.save_pending_auth("over", &pending(2, 3_000), at(2_000))
            .unwrap(),
        PendingSaved::Full
    );
    assert_eq!(
        s.consume_nonce("over", at(2_001)).unwrap(),
        NonceUse::Unknown
    );
    assert!(
        matches!(
            s.consume_nonce("late", at(2_001)).unwrap(),
            NonceUse::Fresh(_)
        ),
        "the open flow of the same trainer is still there"
    );
    assert_eq!(
        s.save_pending_auth("after", &pending(3, 9_000), at(3_001))
            .unwrap(),
        PendingSaved::Saved,
        "expired flows make room"
    );
}

#[test]
fn bundled_sqlite_has_the_cve_2025_6965_fix() {
    // 3.50.2 fixed CVE-2025-6965; `rusqlite` with `bundled` links the SQLite it ships.
    assert!(
        rusqlite::version_number() >= 3_050_002,
        "SQLite {} predates 3.50.2",
        rusqlite::version()
    );
}

#[test]
fn nonce_is_single_use() {
    let s = Store::in_memory().unwrap();
    let p = PendingAuth {
        trainer_id: t(1),
        verifier_enc: "enc".into(),
        expires_at: at(1_000),
    };
    assert_eq!(
        s.save_pending_auth("n1", &p, at(500)).unwrap(),
        PendingSaved::Saved
    );
    assert_eq!(s.consume_nonce("n1", at(600)).unwrap(), NonceUse::Fresh(p));
    assert_eq!(
        s.consume_nonce("n1", at(601)).unwrap(),
        NonceUse::AlreadyUsed
    );
    assert_eq!(s.consume_nonce("nope", at(601)).unwrap(), NonceUse::Unknown);
}

#[cfg(unix)]
#[test]
fn the_store_and_its_journal_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let s = Store::open(&path).unwrap();
    s.save_checkpoint("/data/X__ChangeEvent", ReplayId::After(1), at(1))
        .unwrap();
    for file in ["store.db", "store.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // The connection holds its locks: SQLite keeps the WAL index in memory, not in a file.
    assert!(!dir.path().join("store.db-shm").exists());
}

#[test]
fn a_second_connection_cannot_use_the_store_while_one_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let s = Store::open(&path).unwrap();
    s.save_checkpoint("/data/X", ReplayId::After(1), at(1))
        .unwrap();
    // Whatever else opens the file (the lock file keeps our own processes off it) cannot
    // read it under the connection that holds it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let read = other.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| {
        r.get::<_, i64>(0)
    });
    assert!(read.is_err(), "read under the holder: {read:?}");
    drop(other);
    drop(s);
    assert_eq!(
        Store::open(&path)
            .unwrap()
            .checkpoint("/data/X")
            .unwrap()
            .map(|c| c.resume),
        Some(ReplayId::After(1)),
        "released when the holder closes"
    );
}

#[test]
fn checkpoints_and_journals_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/store.db");
    {
        let s = Store::open(&path).unwrap();
        s.save_checkpoint("/data/X__ChangeEvent", ReplayId::After(42), at(10))
            .unwrap();
        s.journal_tokens(&JournalledTokens {
            trainer_id: t(1),
            access_enc: "a".into(),
            refresh_enc: Some("r".into()),
            access_expires_at: at(1),
            refresh_expires_at: Some(at(2)),
            refreshed_at: at(3),
            confirmed: false,
        })
        .unwrap();
        s.record_reservation(
            &ReservationEntry {
                booking_id: b(1),
                reservation_id: "r1".into(),
                trainer_id: t(1),
                url: "https://vc/j/1".into(),
                end_time: at(99),
                topic: Some("t".into()),
                meeting_no: None,
            },
            at(5),
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.checkpoint("/data/X__ChangeEvent").unwrap(),
        Some(Checkpoint {
            resume: ReplayId::After(42),
            saved_at: at(10)
        })
    );
    assert_eq!(s.unconfirmed_tokens().unwrap().len(), 1);
    s.confirm_tokens(&t(1), at(999)).unwrap();
    assert_eq!(
        s.unconfirmed_tokens().unwrap().len(),
        1,
        "stale confirm ignored"
    );
    s.confirm_tokens(&t(1), at(3)).unwrap();
    assert!(s.unconfirmed_tokens().unwrap().is_empty());
    assert_eq!(s.reservation(&b(1)).unwrap().unwrap().reservation_id, "r1");
    s.forget_reservation(&b(1)).unwrap();
    assert!(s.reservation(&b(1)).unwrap().is_none());
}

#[test]
fn a_store_from_before_topics_were_kept_gains_the_column_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE reservations (booking_id TEXT PRIMARY KEY, reservation_id TEXT NOT NULL,
               trainer_id TEXT NOT NULL, url TEXT NOT NULL, end_time INTEGER NOT NULL,
               updated_at INTEGER NOT NULL);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO reservations VALUES (?1, 'r1', ?2, 'https://vc/j/1', 99, 5)",
            params![b(1), t(1)],
        )
        .unwrap();
    }
    for _ in 0..2 {
        // Twice: the second open finds the column and adds nothing.
        let s = Store::open(&path).unwrap();
        let old = s.reservation(&b(1)).unwrap().unwrap();
        assert_eq!((old.reservation_id.as_str(), old.topic), ("r1", None));
    }
    let s = Store::open(&path).unwrap();
    let mut e = s.reservation(&b(1)).unwrap().unwrap();
    e.topic = Some("Remote Training: Acme".into());
    s.record_reservation(&e, at(6)).unwrap();
    assert_eq!(
        s.reservation(&b(1)).unwrap().unwrap().topic.as_deref(),
        Some("Remote Training: Acme")
    );
}

#[cfg(unix)]
#[test]
fn store_files_an_older_version_left_open_are_private_after_the_next_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let files = ["store.db", "store.db-wal", "store.db-shm"].map(|f| dir.path().join(f));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    {
        let store = Store::open(&db).unwrap();
        store
            .save_checkpoint("/data/X", ReplayId::After(7), at(1))
            .unwrap();
    }
    // An older version that crashed left its WAL (empty here: nothing to replay) and its
    // WAL index file behind, and made all three world-readable.
    for f in &files {
        if !f.exists() {
            std::fs::write(f, b"").unwrap();
        }
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = Store::open(&db).unwrap();
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(
        store.checkpoint("/data/X").unwrap(),
        Some(Checkpoint {
            resume: ReplayId::After(7),
            saved_at: at(1)
        })
    );
}

#[test]
fn the_reservation_journal_keeps_the_meeting_number_an_update_does_not_forget() {
    let s = Store::in_memory().unwrap();
    let mut e = ReservationEntry {
        booking_id: b(1),
        reservation_id: "r1".into(),
        trainer_id: t(1),
        url: "https://vc/j/123456789".into(),
        end_time: at(99),
        topic: None,
        meeting_no: Some("123456789".into()),
    };
    s.record_reservation(&e, at(5)).unwrap();
    // An update whose answer left the number out keeps the one known.
    e.meeting_no = None;
    e.end_time = at(199);
    s.record_reservation(&e, at(6)).unwrap();
    let read = s.reservation(&b(1)).unwrap().unwrap();
    assert_eq!(
        (read.meeting_no.as_deref(), read.end_time),
        (Some("123456789"), at(199))
    );
}

#[cfg(unix)]
#[test]
fn a_store_on_a_full_disk_says_so_until_a_probe_write_succeeds() {
    // A store whose every write fails as on a full disk: the page limit reached.
    let s = Store::in_memory().unwrap();
    assert!(s.unwritable().is_none());
    s.with(|c| {
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        c.pragma_update(None, "max_page_count", pages)
    })
    .unwrap();
    let big = "x".repeat(64 * 1024);
    let refused = s.record_reservation(
        &ReservationEntry {
            booking_id: b(1),
            reservation_id: big.clone(),
            trainer_id: t(1),
            url: big,
            end_time: at(99),
            topic: None,
            meeting_no: None,
        },
        at(5),
    );
    assert!(refused.is_err());
    let unwritable = s.unwritable().expect("marked unwritable");
    assert!(unwritable.reason.contains("full"), "{}", unwritable.reason);
    assert!(s.reservation(&b(1)).unwrap().is_none(), "reads still work");
    s.with(|c| c.pragma_update(None, "max_page_count", 1_000_000))
        .unwrap();
    assert!(s.unwritable().is_some(), "a read proves nothing");
    s.probe().unwrap();
    assert!(s.unwritable().is_none(), "a probe write does");
}

#[test]
fn a_durable_commit_is_fsynced_alone_and_the_store_goes_back_to_normal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("store.db")).unwrap();
    let synchronous =
        |c: &Connection| c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0));
    // SQLite's codes: 1 = NORMAL, 2 = FULL.
    assert_eq!(s.with(synchronous).unwrap(), 1);
    assert_eq!(s.durably(synchronous).unwrap(), 2);
    assert_eq!(s.with(synchronous).unwrap(), 1);
    // A write that fails inside leaves the store at NORMAL too.
    let failed = s.durably(|c| c.execute("INSERT INTO no_such_table VALUES (1)", []));
    assert!(failed.is_err());
    assert_eq!(s.with(synchronous).unwrap(), 1);
}

#[cfg(unix)]
#[test]
fn a_backup_is_a_private_copy_of_the_committed_rows_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("store.db")).unwrap();
    s.save_checkpoint("/data/X", ReplayId::After(42), at(1))
        .unwrap();
    let to = dir.path().join("copy.db");
    s.backup_to(&to).unwrap();
    let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    // The store goes on; the copy opens as a store of its own with the rows.
    s.save_checkpoint("/data/X", ReplayId::After(43), at(2))
        .unwrap();
    let copy = Store::open(&to).unwrap();
    assert_eq!(
        copy.checkpoint("/data/X").unwrap().map(|c| c.resume),
        Some(ReplayId::After(42))
    );
    drop(copy);
    let again = s.backup_to(&to).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    assert_eq!(
        Store::open(&to)
            .unwrap()
            .checkpoint("/data/X")
            .unwrap()
            .map(|c| c.resume),
        Some(ReplayId::After(42)),
        "the earlier copy is untouched"
    );
    let nowhere = dir.path().join("missing-dir/copy.db");
    let err = s.backup_to(&nowhere).unwrap_err().to_string();
    assert!(err.contains("cannot back up"), "{err}");
}

/// A store an earlier version made keeps its rows when the booking-keyed tables are
/// rebuilt without rowid at the next open, and the rebuilt tables keep their indexes.
#[test]
fn booking_keyed_tables_an_earlier_version_made_are_rebuilt_without_rowid_keeping_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        // Those tables as the versions before this one made them.
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE reservations (
                 booking_id TEXT PRIMARY KEY, reservation_id TEXT NOT NULL, trainer_id TEXT NOT NULL,
                 url TEXT NOT NULL, end_time INTEGER NOT NULL, updated_at INTEGER NOT NULL);
             ALTER TABLE reservations ADD COLUMN topic TEXT;
             ALTER TABLE reservations ADD COLUMN meeting_no TEXT;
             CREATE INDEX reservations_meeting_no ON reservations (meeting_no);
             CREATE TABLE in_doubt_applies (
                 booking_id TEXT PRIMARY KEY, trainer_id TEXT NOT NULL, applies INTEGER NOT NULL,
                 last_at INTEGER NOT NULL);
             CREATE TABLE calendar_events (
                 booking_id TEXT PRIMARY KEY, trainer_id TEXT NOT NULL, calendar_id TEXT NOT NULL,
                 event_id TEXT NOT NULL, reservation_id TEXT NOT NULL, start_time INTEGER NOT NULL,
                 end_time INTEGER NOT NULL, guest TEXT, content TEXT NOT NULL DEFAULT '',
                 updated_at INTEGER NOT NULL);
             INSERT INTO reservations VALUES ('{b1}', 'r1', '{t1}', 'https://vc/j/1', 99, 5, 'Topic', '123456789');
             INSERT INTO in_doubt_applies VALUES ('{b2}', '{t1}', 2, 7000);
             INSERT INTO calendar_events (booking_id, trainer_id, calendar_id, event_id, reservation_id, start_time, end_time, updated_at)
               VALUES ('{b1}', '{t1}', 'cal1', 'ev1', 'r1', 10, 20, 5);",
            b1 = b(1),
            b2 = b(2),
            t1 = t(1),
        ))
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let r = s.reservation(&b(1)).unwrap().expect("kept");
    assert_eq!(
        (
            r.reservation_id.as_str(),
            r.url.as_str(),
            r.end_time,
            r.topic.as_deref()
        ),
        ("r1", "https://vc/j/1", at(99), Some("Topic"))
    );
    assert_eq!(
        s.reservation_by_meeting_no("123456789")
            .unwrap()
            .map(|r| r.booking_id),
        Some(b(1))
    );
    let doubt = s.in_doubt_apply(&b(2)).unwrap().expect("kept");
    assert_eq!((doubt.applies, doubt.trainer_id), (2, t(1)));
    let ev = s.calendar_event(&b(1)).unwrap().expect("kept");
    assert_eq!((ev.event_id.as_str(), ev.content.as_str()), ("ev1", ""));
    // Writes go on as before.
    assert_eq!(s.record_in_doubt_apply(&b(2), &t(1), at(8)).unwrap(), 3);
    drop(s);

    let raw = rusqlite::Connection::open(&path).unwrap();
    for table in ["reservations", "in_doubt_applies", "calendar_events"] {
        let sql: String = raw
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.ends_with("WITHOUT ROWID"), "{table}: {sql}");
    }
    let index: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'reservations_meeting_no'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1, "the meeting number's index is back");
    drop(raw);
    // The next open finds nothing to rebuild, and the rows are still there.
    let again = Store::open(&path).unwrap();
    assert!(again.reservation(&b(1)).unwrap().is_some());
    assert_eq!(again.in_doubt_apply(&b(2)).unwrap().unwrap().applies, 3);
}
