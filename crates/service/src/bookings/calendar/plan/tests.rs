use std::sync::Arc;

use super::*;
use crate::ids::BookingId;
use crate::tokens::trainer::TrainerRecord;
use serde_json::Map;

fn tid(n: u8) -> TrainerId {
    TrainerId::parse(&format!("a0T00000000000{n}")).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn wanted() -> WantedEvent {
    WantedEvent {
        host_id: tid(1),
        reservation_id: "r1".into(),
        start: at(100),
        end: at(200),
        summary: "s".into(),
        description: "d".into(),
        meeting_url: "u".into(),
        guest: Some("m@x.com".into()),
    }
}

fn entry() -> CalendarEventEntry {
    CalendarEventEntry {
        booking_id: BookingId::parse("a0B000000000009EAA").unwrap(),
        trainer_id: tid(1),
        calendar_id: "c".into(),
        event_id: "e".into(),
        reservation_id: "r1".into(),
        start: at(100),
        end: at(200),
        guest: Some("m@x.com".into()),
        content: wanted().content(),
    }
}

#[test]
fn plans_follow_the_meeting() {
    assert_eq!(plan_event(None, None), EventPlan::Nothing);
    assert_eq!(
        plan_event(Some(wanted()), Some(entry())),
        EventPlan::Nothing
    );
    assert_eq!(
        plan_event(Some(wanted()), None),
        EventPlan::Create(wanted())
    );
    assert_eq!(plan_event(None, Some(entry())), EventPlan::Delete(entry()));
    let mut moved = wanted();
    moved.end = at(300);
    assert!(matches!(
        plan_event(Some(moved), Some(entry())),
        EventPlan::Patch { .. }
    ));
    let mut renamed = wanted();
    renamed.summary = "Remote Training: Acme Roasters".into();
    assert_ne!(renamed.content(), wanted().content());
    assert!(matches!(
        plan_event(Some(renamed), Some(entry())),
        EventPlan::Patch { .. }
    ));
    let mut new_text = wanted();
    new_text.description = "Join at u".into();
    assert_ne!(new_text.content(), wanted().content());
    let mut other_host = wanted();
    other_host.host_id = tid(2);
    assert!(matches!(
        plan_event(Some(other_host), Some(entry())),
        EventPlan::Replace { .. }
    ));
    let mut new_reservation = wanted();
    new_reservation.reservation_id = "r2".into();
    assert!(matches!(
        plan_event(Some(new_reservation), Some(entry())),
        EventPlan::Replace { .. }
    ));
    let mut uninvited = entry();
    uninvited.guest = None;
    assert!(matches!(
        plan_event(Some(wanted()), Some(uninvited)),
        EventPlan::Invite { .. }
    ));
}

const T1: &str = "a0T000000000001EAA";

fn settings() -> Settings {
    let env = [
        ("LVB__SALESFORCE__CLIENT_ID", "c"),
        ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
        ("LVB__LARK__APP_ID", "a"),
        ("LVB__LARK__APP_SECRET", "s"),
        ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
        ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
        (
            "LVB__SALESFORCE__BOOKING__ATTENDEE_EMAIL_FIELD",
            "Merchant_Email__c",
        ),
        ("LVB__CALENDAR__TIMEZONE", "Europe/Paris"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load_from(None, env).unwrap()
}

fn trainer(connected: bool) -> TrainerRecord {
    TrainerRecord {
        id: TrainerId::parse(T1).unwrap(),
        name: Some("Ann".into()),
        email: Some("ann@example.com".into()),
        lark_user_id: None,
        access_enc: None,
        refresh_enc: None,
        access_expires_at: None,
        refresh_expires_at: None,
        connected,
    }
}

fn booking() -> Booking {
    let start: DateTime<Utc> = "2026-11-28T08:00:00Z".parse().unwrap();
    let mut values = Map::new();
    values.insert("Merchant_Name__c".into(), "Acme".into());
    values.insert("Merchant_Email__c".into(), "m@acme.example".into());
    Booking {
        id: BookingId::parse("a0B000000000001EAA").unwrap(),
        is_deleted: false,
        trainer_id: Some(TrainerId::parse(T1).unwrap()),
        trainer: Some(Arc::new(trainer(true))),
        start: Some(start),
        end: Some(start + chrono::Duration::hours(1)),
        bad_times: false,
        service_type: Some("Remote".into()),
        status: Some("Scheduled".into()),
        link: Some("https://vc.example/j/1".into()),
        reservation_id: Some("r1".into()),
        meeting_status: Some(MeetingStatus::Created),
        meeting_error: None,
        calendar_error: false,
        topic_values: values,
    }
}

fn reservation() -> ReservationEntry {
    ReservationEntry {
        booking_id: BookingId::parse("a0B000000000001EAA").unwrap(),
        reservation_id: "r1".into(),
        trainer_id: TrainerId::parse(T1).unwrap(),
        url: "https://vc.example/j/1".into(),
        end_time: at(0),
        topic: None,
        meeting_no: None,
    }
}

#[test]
fn a_created_meeting_wants_its_event_built_from_the_booking() {
    let s = settings();
    let b = booking();
    let w =
        wanted_event(&s, &b, Some(MeetingStatus::Created), Some(&reservation())).expect("an event");
    assert_eq!(w.host_id.as_str(), T1);
    assert_eq!(w.reservation_id, "r1");
    assert_eq!(w.start, b.start.unwrap());
    assert_eq!(w.end, b.end.unwrap());
    assert_eq!(w.summary, "Remote Training: Acme");
    assert_eq!(
        w.description,
        "Remote training for Acme. Join: https://vc.example/j/1"
    );
    assert_eq!(w.meeting_url, "https://vc.example/j/1");
    assert_eq!(w.guest.as_deref(), Some("m@acme.example"));
    let mut odd = settings();
    odd.calendar.description_template = "{Nope__c}Join {link}".into();
    let w = wanted_event(&odd, &b, Some(MeetingStatus::Created), Some(&reservation())).unwrap();
    assert_eq!(
        w.description, "Join https://vc.example/j/1",
        "a missing field reads empty"
    );
    // Created by App counts too, once the trainer hosts with their own connection.
    assert!(wanted_event(
        &s,
        &b,
        Some(MeetingStatus::CreatedByApp),
        Some(&reservation())
    )
    .is_some());
}

#[test]
fn no_event_without_a_live_meeting_its_host_or_the_calendar() {
    let s = settings();
    let r = reservation();
    let created = Some(MeetingStatus::Created);
    for status in [
        None,
        Some(MeetingStatus::Cancelled),
        Some(MeetingStatus::Failed),
        Some(MeetingStatus::PendingTrainerConnection),
    ] {
        assert_eq!(
            wanted_event(&s, &booking(), status, Some(&r)),
            None,
            "{status:?}"
        );
    }
    assert_eq!(
        wanted_event(&s, &booking(), created, None),
        None,
        "no reservation"
    );
    let mut deleted = booking();
    deleted.is_deleted = true;
    assert_eq!(wanted_event(&s, &deleted, created, Some(&r)), None);
    // A disconnected host keeps the event (no delete they could not make anyway).
    let mut unconnected = booking();
    unconnected.trainer = Some(Arc::new(trainer(false)));
    assert!(wanted_event(&s, &unconnected, created, Some(&r)).is_some());
    let mut no_trainer = booking();
    no_trainer.trainer = None;
    assert_eq!(wanted_event(&s, &no_trainer, created, Some(&r)), None);
    let mut other_host = r.clone();
    other_host.trainer_id = TrainerId::parse("a0T000000000002EAA").unwrap();
    assert_eq!(
        wanted_event(&s, &booking(), created, Some(&other_host)),
        None
    );
    let mut off = settings();
    off.calendar.enabled = false;
    assert_eq!(wanted_event(&off, &booking(), created, Some(&r)), None);
}
