use super::*;
use crate::store::test_support::{at, at_ms, b, t};

fn event<'a>(id: &'a str, settled: Option<&'a str>) -> NewLarkEvent<'a> {
    NewLarkEvent {
        event_id: id,
        event_type: "vc.meeting.join_meeting_v1",
        kind: "join_meeting",
        meeting_no: Some("123456789"),
        body: "{}",
        settled,
    }
}

#[test]
fn an_event_is_recorded_once_and_processed_with_its_effect() {
    let s = Store::in_memory().unwrap();
    assert_eq!(
        s.record_lark_event(&event("e1", None), at(100)).unwrap(),
        EventRecorded::New
    );
    assert_eq!(
        s.record_lark_event(&event("e1", None), at(101)).unwrap(),
        EventRecorded::Duplicate,
        "a redelivery is known by its event_id"
    );
    s.record_lark_event(&event("e2", Some("other_type")), at(102))
        .unwrap();
    let pending = s.unprocessed_lark_events(10).unwrap();
    assert_eq!(pending.len(), 1, "a settled event is not pending");
    assert_eq!(pending[0].event_id, "e1");
    assert_eq!(pending[0].received_at, at(100));

    let mut entry = AttendanceEntry::new(b(1));
    entry.started_at = Some(at(90));
    s.save_attendance(&[entry.clone()], &[("e1".into(), "applied")], at(103))
        .unwrap();
    assert!(s.unprocessed_lark_events(10).unwrap().is_empty());
    assert_eq!(s.lark_events_with_outcome("applied").unwrap(), 1);
    assert_eq!(s.lark_events_with_outcome("other_type").unwrap(), 1);
    assert_eq!(s.attendance(&[b(1), b(2)]).unwrap(), vec![entry]);
    assert_eq!(
        s.record_lark_event(&event("e1", None), at(104)).unwrap(),
        EventRecorded::Duplicate,
        "a processed event is still known"
    );

    assert_eq!(s.prune_lark_events(at(101)).unwrap(), 1);
    assert_eq!(s.prune_lark_events(at(200)).unwrap(), 1);
}

#[test]
fn a_row_round_trips_every_field() {
    let s = Store::in_memory().unwrap();
    let entry = AttendanceEntry {
        booking_id: b(7),
        meeting_no: Some("987654321".into()),
        trainer_id: Some(t(3)),
        scheduled_start: Some(at_ms(1_000_123)),
        scheduled_end: Some(at_ms(2_000_456)),
        closed: false,
        meeting_id: Some("7000000000000000001".into()),
        owner_open_id: Some("ou_host".into()),
        started_at: Some(at(1_001)),
        ended_at: Some(at(1_900)),
        host_joined_at: Some(at(1_002)),
        participant_ids: vec!["ou_host".into(), "ou_guest".into()],
        recording_url: Some("https://example.com/r".into()),
        no_show: false,
        details: Owed {
            at: Some(at(1_950)),
            attempts: 2,
        },
        details_settled: false,
        lookup: Owed {
            at: None,
            attempts: 1,
        },
        lookup_done: true,
        write: Owed {
            at: Some(at(1_960)),
            attempts: 0,
        },
        written: r#"{"Lark_Session_Status__c":"In Progress"}"#.into(),
        alert_checked: true,
        alert_claimed_at: Some(at(1_700)),
        alert_done: true,
        due_at: Some(at(1_950)),
    };
    s.save_attendance(std::slice::from_ref(&entry), &[], at(1_000))
        .unwrap();
    assert_eq!(s.attendance(&[b(7)]).unwrap(), vec![entry.clone()]);
    assert_eq!(
        s.attendance_by_meeting_no("987654321").unwrap(),
        Some(entry)
    );
    assert_eq!(s.attendance_by_meeting_no("111111111").unwrap(), None);
}

#[test]
fn due_rows_come_soonest_first_and_the_timer_sees_the_soonest() {
    let s = Store::in_memory().unwrap();
    let row = |n: u32, due: Option<i64>| {
        let mut e = AttendanceEntry::new(b(n));
        e.due_at = due.map(at);
        e
    };
    assert_eq!(s.next_attendance_due().unwrap(), None);
    s.save_attendance(
        &[
            row(1, Some(300)),
            row(2, Some(100)),
            row(3, None),
            row(4, Some(200)),
        ],
        &[],
        at(0),
    )
    .unwrap();
    assert_eq!(s.next_attendance_due().unwrap(), Some(at(100)));
    let due: Vec<BookingId> = s
        .due_attendance(at(250), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.booking_id)
        .collect();
    assert_eq!(due, vec![b(2), b(4)]);
    assert_eq!(s.due_attendance(at(250), 1).unwrap().len(), 1);
    assert_eq!(s.open_attendance(10).unwrap().len(), 4);
}

#[test]
fn the_no_show_alert_is_claimed_once_ever() {
    let s = Store::in_memory().unwrap();
    assert!(
        !s.claim_no_show_alert(&b(1), at(10)).unwrap(),
        "no row, nothing to claim"
    );
    s.save_attendance(&[AttendanceEntry::new(b(1))], &[], at(0))
        .unwrap();
    assert!(s.claim_no_show_alert(&b(1), at(10)).unwrap());
    assert!(!s.claim_no_show_alert(&b(1), at(11)).unwrap());
    assert_eq!(
        s.attendance(&[b(1)]).unwrap()[0].alert_claimed_at,
        Some(at(10))
    );
}

#[test]
fn a_meeting_number_finds_its_journalled_reservation() {
    let s = Store::in_memory().unwrap();
    s.record_reservation(
        &ReservationEntry {
            booking_id: b(4),
            reservation_id: "r4".into(),
            trainer_id: t(1),
            url: "https://vc/4".into(),
            end_time: at(5_000),
            topic: None,
            meeting_no: Some("444444444".into()),
        },
        at(1),
    )
    .unwrap();
    let found = s.reservation_by_meeting_no("444444444").unwrap().unwrap();
    assert_eq!(found.booking_id, b(4));
    assert_eq!(s.reservation_by_meeting_no("555555555").unwrap(), None);
}

#[test]
fn finished_rows_are_pruned_and_owed_ones_kept() {
    let s = Store::in_memory().unwrap();
    let mut done = AttendanceEntry::new(b(1));
    done.scheduled_end = Some(at(100));
    let mut owed = AttendanceEntry::new(b(2));
    owed.scheduled_end = Some(at(100));
    owed.due_at = Some(at(5_000));
    s.save_attendance(&[done, owed], &[], at(150)).unwrap();
    assert_eq!(s.prune_attendance(at(120)).unwrap(), 0, "updated since");
    assert_eq!(s.prune_attendance(at(1_000)).unwrap(), 1);
    assert_eq!(s.attendance(&[b(1), b(2)]).unwrap().len(), 1);
}
