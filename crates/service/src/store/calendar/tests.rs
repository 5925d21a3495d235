use super::*;
use crate::store::test_support::{at, b, t};

fn entry() -> CalendarEventEntry {
    CalendarEventEntry {
        booking_id: b(1),
        trainer_id: t(1),
        calendar_id: "cal".into(),
        event_id: "ev_0".into(),
        reservation_id: "r1".into(),
        start: at(100),
        end: at(200),
        guest: None,
        content: "abc".into(),
    }
}

#[test]
fn event_journal_round_trips_and_forgets() {
    let s = Store::in_memory().unwrap();
    assert_eq!(s.calendar_event(&b(1)).unwrap(), None);
    s.record_calendar_event(&entry(), at(1)).unwrap();
    let mut moved = entry();
    moved.start = at(150);
    moved.guest = Some("m@x.com".into());
    s.record_calendar_event(&moved, at(2)).unwrap();
    assert_eq!(s.calendar_event(&b(1)).unwrap(), Some(moved));
    s.forget_calendar_event(&b(1)).unwrap();
    assert_eq!(s.calendar_event(&b(1)).unwrap(), None);
    assert_eq!(s.deleted_event(&b(1), "r1").unwrap(), None);
    s.record_deleted_event(&b(1), "r1", "ev_0").unwrap();
    s.record_deleted_event(&b(1), "r1", "ev_1").unwrap();
    assert_eq!(
        s.deleted_event(&b(1), "r1").unwrap().as_deref(),
        Some("ev_1")
    );
    assert_eq!(s.deleted_event(&b(1), "r2").unwrap(), None);
}

#[test]
fn one_scope_reminder_per_connection() {
    let s = Store::in_memory().unwrap();
    assert_eq!(
        s.trainer_calendar(&t(1)).unwrap(),
        TrainerCalendar::default()
    );
    s.record_connect_scope(&t(1), Some("vc:reserve"), true)
        .unwrap();
    s.save_primary_calendar(&t(1), "cal").unwrap();
    assert!(s.claim_scope_reminder(&t(1), at(5)).unwrap());
    assert!(!s.claim_scope_reminder(&t(1), at(6)).unwrap());
    let known = s.trainer_calendar(&t(1)).unwrap();
    assert!(known.lacks_scope && known.scope_reminded);
    assert_eq!(known.calendar_id.as_deref(), Some("cal"));
    // A reconnect starts over: calendar looked up again, reminder possible again.
    s.record_connect_scope(&t(1), Some("calendar:calendar"), false)
        .unwrap();
    let fresh = s.trainer_calendar(&t(1)).unwrap();
    assert!(!fresh.lacks_scope && !fresh.scope_reminded && fresh.calendar_id.is_none());
    s.mark_lacks_calendar_scope(&t(1)).unwrap();
    assert!(s.trainer_calendar(&t(1)).unwrap().lacks_scope);
    s.forget_trainer_calendar(&t(1)).unwrap();
    assert_eq!(
        s.trainer_calendar(&t(1)).unwrap(),
        TrainerCalendar::default()
    );
}
