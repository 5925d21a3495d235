//! The decision table of `decide`, by case.

use std::sync::Arc;

use super::*;
use crate::config::Settings;
use crate::ids::BookingId;
use serde_json::Map;

const T1: &str = "a0T000000000001EAA";
const T2: &str = "a0T000000000002EAA";

fn settings() -> BookingSettings {
    let env = [
        ("LVB__SALESFORCE__CLIENT_ID", "c"),
        ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
        ("LVB__LARK__APP_ID", "a"),
        ("LVB__LARK__APP_SECRET", "s"),
        ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
        ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load_from(None, env).unwrap().salesforce.booking
}

fn now() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn trainer(id: &str, connected: bool) -> TrainerRecord {
    TrainerRecord {
        id: TrainerId::parse(id).unwrap(),
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
    let mut topic = Map::new();
    topic.insert("Merchant_Name__c".into(), "Acme".into());
    Booking {
        id: BookingId::parse("a0B000000000001EAA").unwrap(),
        is_deleted: false,
        trainer_id: Some(TrainerId::parse(T1).unwrap()),
        trainer: Some(Arc::new(trainer(T1, true))),
        start: Some(now() + Duration::days(2)),
        end: Some(now() + Duration::days(2) + Duration::hours(1)),
        bad_times: false,
        service_type: Some("Remote".into()),
        status: Some("Scheduled".into()),
        link: None,
        reservation_id: None,
        meeting_status: None,
        meeting_error: None,
        calendar_error: false,
        topic_values: topic,
    }
}

fn journal(trainer: &str, end: DateTime<Utc>) -> ReservationEntry {
    ReservationEntry {
        booking_id: BookingId::parse("a0B000000000001EAA").unwrap(),
        reservation_id: "6911188411934433".into(),
        trainer_id: TrainerId::parse(trainer).unwrap(),
        url: "https://vc.larksuite.com/j/123456789".into(),
        end_time: end,
        topic: Some("Remote Training: Acme".into()),
        meeting_no: None,
    }
}

fn created(mut b: Booking) -> Booking {
    b.link = Some("https://vc.larksuite.com/j/123456789".into());
    b.reservation_id = Some("6911188411934433".into());
    b.meeting_status = Some(MeetingStatus::Created);
    b
}

fn run(b: &Booking, j: Option<&ReservationEntry>) -> Decision {
    let s = settings();
    decide(
        b,
        &Context {
            settings: &s,
            now: now(),
            journal: j,
            missing_topic_fields: &[],
            require_trainer_email: true,
            unconnected: Unconnected::Pending,
            app_hosted: None,
        },
    )
}

#[test]
fn decisions_table() {
    let b = booking();
    let end = b.end.unwrap();
    let j_same = journal(T1, end);
    let j_old_end = journal(T1, end - Duration::hours(1));
    let j_other = journal(T2, end);

    // New remote booking with a connected trainer → create.
    assert_eq!(
        run(&b, None),
        Decision::Create {
            trainer: trainer(T1, true),
            via: Reserver::Trainer,
            end_time: end,
            topic: "Remote Training: Acme".into()
        }
    );
    // Already created and written → nothing.
    assert_eq!(run(&created(b.clone()), Some(&j_same)), Decision::Nothing);
    // Journalled but the write-back was lost → write back only.
    assert!(matches!(run(&b, Some(&j_same)), Decision::WriteBack { .. }));
    // End time changed → update.
    assert!(matches!(
        run(&created(b.clone()), Some(&j_old_end)),
        Decision::Update { end_time, .. } if end_time == end
    ));
    // Trainer changed to one not connected → release the old meeting and wait.
    let mut unconnected = created(b.clone());
    unconnected.trainer = Some(Arc::new(trainer(T1, false)));
    assert!(matches!(
        run(&unconnected, Some(&j_other)),
        Decision::Release { ref reservation } if reservation.trainer_id.as_ref().unwrap().as_str() == T2
    ));
    // Trainer changed → move from the old trainer.
    assert!(matches!(
        run(&created(b.clone()), Some(&j_other)),
        Decision::Move { ref old, ref trainer, .. } if old.trainer_id.as_ref().unwrap().as_str() == T2 && trainer.id.as_str() == T1
    ));
    // Cancelled / onsite / deleted → cancel, and nothing once cleared.
    for mutate in [
        |b: &mut Booking| b.status = Some("Cancelled".into()),
        |b: &mut Booking| b.service_type = Some("Onsite".into()),
        |b: &mut Booking| b.is_deleted = true,
    ] {
        let mut c = created(b.clone());
        mutate(&mut c);
        assert!(matches!(
            run(&c, Some(&j_same)),
            Decision::Cancel {
                reservation: Some(_)
            }
        ));
        let mut cleared = b.clone();
        mutate(&mut cleared);
        cleared.meeting_status = Some(MeetingStatus::Cancelled);
        assert_eq!(run(&cleared, None), Decision::Nothing);
    }
    // An onsite booking never touched by us → nothing at all.
    let mut onsite = b.clone();
    onsite.service_type = Some("Onsite".into());
    assert_eq!(run(&onsite, None), Decision::Nothing);
    // Trainer not connected → pending; again → nothing.
    let mut p = b.clone();
    p.trainer = Some(Arc::new(trainer(T1, false)));
    assert!(matches!(run(&p, None), Decision::Pending { .. }));
    p.meeting_status = Some(MeetingStatus::PendingTrainerConnection);
    p.meeting_error = Some(PENDING_REASON.into());
    assert_eq!(run(&p, None), Decision::Nothing);
}

#[test]
fn bad_data_fails_with_a_clear_reason() {
    type Mutation = fn(&mut Booking);
    let cases: Vec<(Mutation, &str)> = vec![
        (|b| b.end = None, "needs both"),
        (
            |b| b.end = Some(b.start.unwrap() - Duration::hours(1)),
            "must be after",
        ),
        (|b| b.bad_times = true, "not a valid date"),
        (
            |b| {
                b.trainer_id = None;
                b.trainer = None;
            },
            "no trainer",
        ),
        (|b| b.trainer = None, "does not exist"),
        (
            |b| Arc::make_mut(b.trainer.as_mut().unwrap()).email = None,
            "no email",
        ),
        (
            |b| {
                b.start = Some(now() - Duration::days(2));
                b.end = Some(now() - Duration::days(1));
            },
            "in the past",
        ),
    ];
    for (mutate, expected) in cases {
        let mut b = booking();
        mutate(&mut b);
        match run(&b, None) {
            Decision::Fail { reason } => assert!(reason.contains(expected), "{reason}"),
            other => panic!("expected Fail({expected}), got {other:?}"),
        }
    }
    let s = settings();
    let missing = vec!["Merchant_Name__c".to_string()];
    let d = decide(
        &booking(),
        &Context {
            settings: &s,
            now: now(),
            journal: None,
            missing_topic_fields: &missing,
            require_trainer_email: true,
            unconnected: Unconnected::Pending,
            app_hosted: None,
        },
    );
    assert!(matches!(d, Decision::Fail { reason } if reason.contains("{Merchant_Name__c}")));
}

#[test]
fn far_bookings_are_capped_and_renewed_daily() {
    let mut b = booking();
    b.start = Some(now() + Duration::days(60));
    b.end = Some(now() + Duration::days(60) + Duration::hours(1));
    let cap = now() + MAX_RESERVATION_AHEAD;
    assert!(matches!(run(&b, None), Decision::Create { end_time, .. } if end_time == cap));
    // Set a few hours ago: within the slack, nothing to do.
    let recent = journal(T1, cap - Duration::hours(3));
    assert_eq!(run(&created(b.clone()), Some(&recent)), Decision::Nothing);
    // Set two days ago: renew to the new cap.
    let stale = journal(T1, cap - Duration::days(2));
    assert!(matches!(
        run(&created(b.clone()), Some(&stale)),
        Decision::Update { end_time, .. } if end_time == cap
    ));
}

fn run_app_hosted(
    b: &Booking,
    j: Option<&ReservationEntry>,
    app: Option<&AppHostedEntry>,
) -> Decision {
    let s = settings();
    decide(
        b,
        &Context {
            settings: &s,
            now: now(),
            journal: j,
            missing_topic_fields: &[],
            require_trainer_email: true,
            unconnected: Unconnected::AppHosted,
            app_hosted: app,
        },
    )
}

fn app_record(reservation_id: &str) -> AppHostedEntry {
    AppHostedEntry {
        booking_id: BookingId::parse("a0B000000000001EAA").unwrap(),
        reservation_id: reservation_id.into(),
        owner_open_id: "ou_ann".into(),
        trainer_id: TrainerId::parse(T1).unwrap(),
        created_at: now(),
    }
}

#[test]
fn app_hosting_gives_unconnected_trainers_meetings_and_keeps_app_made_ones() {
    let b = booking();
    let end = b.end.unwrap();
    let mut p = b.clone();
    p.trainer = Some(Arc::new(trainer(T1, false)));
    // Not connected → create anyway (the actor reserves with the tenant token), even when
    // the booking already waits with the old reason.
    assert!(
        matches!(run_app_hosted(&p, None, None), Decision::Create { ref trainer, .. } if !trainer.connected)
    );
    p.meeting_status = Some(MeetingStatus::PendingTrainerConnection);
    p.meeting_error = Some(PENDING_REASON.into());
    assert!(matches!(
        run_app_hosted(&p, None, None),
        Decision::Create { .. }
    ));
    // ... which the pending mode leaves waiting.
    assert_eq!(run(&p, None), Decision::Nothing);

    // An app-made reservation shown as Created by App → nothing; shown as Created → the
    // write-back corrects it.
    let j = journal(T1, end);
    let app = app_record(&j.reservation_id);
    p.meeting_error = None;
    let mut shown = created(p.clone());
    shown.meeting_status = Some(MeetingStatus::CreatedByApp);
    assert_eq!(
        run_app_hosted(&shown, Some(&j), Some(&app)),
        Decision::Nothing
    );
    assert!(matches!(
        run_app_hosted(&created(p.clone()), Some(&j), Some(&app)),
        Decision::WriteBack { .. }
    ));
    // A record of an older reservation does not make this one app-made.
    assert!(matches!(
        run_app_hosted(&shown, Some(&j), Some(&app_record("1"))),
        Decision::WriteBack { .. }
    ));
    // Rescheduled: the app-made one is updated while the trainer is still unconnected;
    // the trainer's own one waits for them.
    let moved = journal(T1, end - Duration::hours(1));
    assert!(matches!(
        run_app_hosted(&shown, Some(&moved), Some(&app)),
        Decision::Update { end_time, .. } if end_time == end
    ));
    assert!(matches!(
        run_app_hosted(&created(p.clone()), Some(&moved), None),
        Decision::Pending { .. }
    ));
    // Trainer changed to an unconnected one → move (the new one gets an app-hosted
    // meeting), not release.
    assert!(matches!(
        run_app_hosted(&shown, Some(&journal(T2, end)), None),
        Decision::Move { ref trainer, .. } if trainer.id.as_str() == T1 && !trainer.connected
    ));
    // Cancelled → cancel as always.
    let mut cancelled = shown.clone();
    cancelled.status = Some("Cancelled".into());
    assert!(matches!(
        run_app_hosted(&cancelled, Some(&j), Some(&app)),
        Decision::Cancel {
            reservation: Some(_)
        }
    ));
}

#[test]
fn a_topic_field_renamed_updates_the_reservation_and_an_unknown_topic_does_not() {
    let end = now() + Duration::days(2) + Duration::hours(1);
    let j = journal(T1, end);
    let b = created(booking());
    assert_eq!(run(&b, Some(&j)), Decision::Nothing);
    let mut renamed = b.clone();
    renamed
        .topic_values
        .insert("Merchant_Name__c".into(), "Acme Roasters".into());
    match run(&renamed, Some(&j)) {
        Decision::Update {
            end_time, topic, ..
        } => {
            assert_eq!(end_time, end);
            assert_eq!(topic, "Remote Training: Acme Roasters");
        }
        other => panic!("expected an update, got {other:?}"),
    }
    // A journal entry from before topics were kept: no churn.
    let mut old = j.clone();
    old.topic = None;
    assert_eq!(run(&renamed, Some(&old)), Decision::Nothing);
    // The host has not connected (and the app did not make it): the meeting stays as it
    // is, not sent back to waiting over a new name.
    let mut unconnected = renamed.clone();
    unconnected.trainer = Some(Arc::new(trainer(T1, false)));
    assert_eq!(run(&unconnected, Some(&j)), Decision::Nothing);
}
