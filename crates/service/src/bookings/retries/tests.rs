use super::*;

fn list(max_attempts: u32) -> RetryList {
    let store = Store::in_memory().unwrap();
    let processing = ProcessingSettings {
        max_attempts,
        retry_max_delay: Duration::from_secs(60),
        ..crate::config::Settings::for_simulators(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            std::path::Path::new("x.db"),
        )
        .unwrap()
        .processing
    };
    RetryList::new(store, &processing, Metrics::default())
}

fn booking() -> BookingId {
    BookingId::parse("a0B000000000001EAA").unwrap()
}

#[test]
fn meeting_attempts_are_spent_then_the_list_gives_up() {
    let l = list(3);
    let now = Utc::now();
    let b = booking();
    let later = Some(now + chrono::Duration::days(1));
    assert_eq!(
        l.failed(&b, RetryKind::Meeting, later, now, "x").unwrap(),
        Verdict::Later
    );
    assert_eq!(
        l.failed(&b, RetryKind::WriteBack, later, now, "y").unwrap(),
        Verdict::Later
    );
    assert_eq!(
        l.failed(&b, RetryKind::Meeting, later, now, "z").unwrap(),
        Verdict::GiveUp { attempts: 3 },
        "write-back refusals count with the meeting's attempts"
    );
    assert_eq!(l.due(now + chrono::Duration::days(2), 10).unwrap(), vec![]);
}

#[test]
fn calendar_attempts_count_apart_and_end_only_with_the_session() {
    let l = list(2);
    let now = Utc::now();
    let b = booking();
    let start = Some(now + chrono::Duration::days(1));
    for _ in 0..5 {
        assert_eq!(
            l.failed(&b, RetryKind::Calendar, start, now, "cal")
                .unwrap(),
            Verdict::Later
        );
    }
    // A meeting failure afterwards starts its own count (the calendar's entry is dropped).
    assert_eq!(
        l.failed(&b, RetryKind::Meeting, start, now, "m").unwrap(),
        Verdict::Later
    );
    let entry = l.store.retry_entry(&b).unwrap().unwrap();
    assert_eq!((entry.kind, entry.attempts), (RetryKind::Meeting, 1));
    let started = Some(now - chrono::Duration::minutes(1));
    assert!(matches!(
        l.failed(&b, RetryKind::Calendar, started, now, "cal")
            .unwrap(),
        Verdict::GiveUp { .. }
    ));
}

#[test]
fn waiting_counts_no_attempt_and_is_due_when_asked() {
    let l = list(3);
    let now = Utc::now();
    let b = booking();
    let until = now + chrono::Duration::seconds(30);
    l.wait(&b, RetryKind::InDoubt, until, "in doubt").unwrap();
    assert_eq!(l.due(now, 10).unwrap(), vec![]);
    let due = l.due(until, 10).unwrap();
    assert_eq!((due[0].kind, due[0].attempts), (RetryKind::InDoubt, 0));
    // The list keeps milliseconds: compared at that precision.
    assert_eq!(
        l.next_due().unwrap().map(|t| t.timestamp_millis()),
        Some(until.timestamp_millis())
    );
}
