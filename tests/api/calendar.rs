//! The session on the trainer's Lark calendar (issue 13, design rule 20), end to end
//! through both simulators: the event appears with the meeting, follows reschedules,
//! trainer changes and cancellations, survives lost answers and calendar failures without
//! costing the meeting, and a trainer without the calendar scopes gets one reminder.

use std::time::Duration;

use axum::http::Method;
use lvb_simulators::lark::SimEvent;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::json;

use crate::helpers::{bid, tid};
use crate::helpers::{
    booking_time, connect, connected_trainer, edit_booking, field, open_id_of, sf_time_in,
    spawn_app_with, start_app, wait_caught_up, wait_ready, wait_until, TestApp, BOOKING,
};

const LINK: &str = "Remote_Training_Meeting_Link__c";
const STATUS: &str = "Lark_Meeting_Status__c";
const ERROR: &str = "Lark_Meeting_Error__c";
const EVENT: &str = "Lark_Calendar_Event_Id__c";
const GUEST_FIELD: &str = "Merchant_Email__c";
const GUEST: &str = "merchant@acme.example";
const EVENTS: &str = "/open-apis/calendar/v4/calendars/";

/// Settings for these tests: the merchant invited, retries quick.
fn calendar_on(s: &mut lark_vc_bridge::config::Settings) {
    s.salesforce.booking.attendee_email_field = Some(GUEST_FIELD.into());
    s.processing.retry_max_delay = Duration::from_millis(400);
}

/// A remote booking of `trainer` with a guest; `start`/`end` in hours from now.
fn booking_with_guest(app: &TestApp, trainer: &str, start: i64, end: i64) -> String {
    app.sf.insert(
        BOOKING,
        json!({
            "Name": "Booking",
            "Trainer__c": trainer,
            "Training_Start__c": sf_time_in(start),
            "Training_End__c": sf_time_in(end),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Acme",
            GUEST_FIELD: GUEST,
        }),
        SF_HUMAN_USER_ID,
    )
}

/// Live (not deleted) events whose vchat carries this link.
fn live_events_with_link(app: &TestApp, link: &str) -> Vec<SimEvent> {
    app.lark
        .calendar_events()
        .into_iter()
        .filter(|e| !e.deleted && e.vchat["meeting_url"] == json!(link))
        .collect()
}

fn event(app: &TestApp, id: &str) -> SimEvent {
    app.lark
        .calendar_events()
        .into_iter()
        .find(|e| e.event_id == id)
        .unwrap_or_else(|| panic!("Lark has no event {id}"))
}

fn creates(app: &TestApp) -> usize {
    app.lark
        .requests()
        .matching(|r| {
            r.method == Method::POST && r.path.starts_with(EVENTS) && r.path.ends_with("/events")
        })
        .len()
}

async fn wait_for_event_field(app: &TestApp, booking: &str) -> String {
    wait_until(&format!("booking {booking} shows its event"), || async {
        field(app, booking, EVENT).is_some()
    })
    .await;
    field(app, booking, EVENT).unwrap()
}

/// PATCHes that reached the booking object (single or collection).
fn sf_booking_writes(app: &TestApp) -> Vec<String> {
    app.sf
        .requests()
        .matching(|r| {
            r.method == Method::PATCH
                && (r.path.contains("/sobjects/Training_Booking__c/")
                    || (r.path.contains("/composite/sobjects") && r.body.contains(BOOKING)))
        })
        .into_iter()
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_meeting_gets_one_event_on_its_trainers_calendar_that_follows_the_booking() {
    let app = spawn_app_with(calendar_on).await;
    let (ann, ann_open_id) = connected_trainer(&app, "Ann", "ann@example.com").await;
    let (bo, bo_open_id) = connected_trainer(&app, "Bo", "bo@example.com").await;
    wait_ready(&app).await;
    wait_caught_up(&app).await;
    let sf_before = app.sf.requests().len();

    // Create: one event on Ann's primary calendar, with the booking's times, the link, the
    // reminder and the guest, and its id on the booking in the meeting's own write-back.
    let booking = booking_with_guest(&app, &ann, 24, 25);
    let event_id = wait_for_event_field(&app, &booking).await;
    let link = field(&app, &booking, LINK).expect("link");
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert_eq!(field(&app, &booking, ERROR), None);
    let e = event(&app, &event_id);
    assert_eq!(e.calendar_id, app.lark.primary_calendar_id(&ann_open_id));
    assert_eq!(
        e.organizer_open_id, ann_open_id,
        "made with Ann's own token"
    );
    assert_eq!(
        e.start.timestamp,
        booking_time(&app, &booking, "Training_Start__c")
    );
    assert_eq!(
        e.end.timestamp,
        booking_time(&app, &booking, "Training_End__c")
    );
    assert_eq!(e.start.timezone, "UTC");
    assert_eq!(e.summary, "Remote Training: Acme", "the meeting topic");
    // Issue 13 item 4: the reservation's topic and the event's summary come from one
    // template, and the meeting is not recorded unless meetings.auto_record says so.
    let reservation = field(&app, &booking, "Lark_Reservation_Id__c").expect("reservation");
    let reserve = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == reservation)
        .expect("Lark holds the reservation");
    assert_eq!(reserve.topic.as_deref(), Some(e.summary.as_str()));
    assert_eq!(
        reserve.auto_record,
        Some(false),
        "auto_record off by default"
    );
    assert!(
        e.description.contains("Acme") && e.description.contains(&link),
        "{}",
        e.description
    );
    assert_eq!(e.vchat["vc_type"], json!("third_party"));
    assert_eq!(e.vchat["meeting_url"], json!(link));
    assert_eq!(e.reminders, vec![15]);
    assert!(
        !e.need_notification,
        "the host is not notified of their own event"
    );
    assert_eq!(e.attendees.len(), 1, "{:?}", e.attendees);
    assert_eq!(e.attendees[0].kind, "third_party");
    assert_eq!(e.attendees[0].third_party_email.as_deref(), Some(GUEST));
    assert!(e.attendees[0].notified, "the merchant gets the invitation");
    assert_eq!(
        live_events_with_link(&app, &link).len(),
        1,
        "exactly one event"
    );
    wait_caught_up(&app).await;
    let writes = sf_booking_writes(&app);
    assert_eq!(writes.len(), 1, "one write-back: {writes:?}");
    assert!(
        writes[0].contains(&event_id) && writes[0].contains(&link),
        "{}",
        writes[0]
    );
    // The same Salesforce calls as a meeting without a calendar: one read, one write
    // (besides the stream's own polls).
    let sf_calls: Vec<String> = app.sf.requests().all()[sf_before..]
        .iter()
        .filter(|r| !r.path.contains("/cometd/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        sf_calls.len(),
        2,
        "Salesforce calls for one new booking: {sf_calls:?}"
    );

    // Reschedule (start and end later): the same event, patched.
    edit_booking(
        &app,
        &booking,
        json!({"Training_Start__c": sf_time_in(30), "Training_End__c": sf_time_in(32)}),
    );
    let new_end = booking_time(&app, &booking, "Training_End__c");
    wait_until("the event moved with the booking", || async {
        event(&app, &event_id).end.timestamp == new_end
    })
    .await;
    let e = event(&app, &event_id);
    assert_eq!(
        e.start.timestamp,
        booking_time(&app, &booking, "Training_Start__c")
    );
    assert_eq!(e.patches, 1);
    assert!(!e.deleted);
    assert_eq!(creates(&app), 1, "no second event");
    wait_caught_up(&app).await;
    assert_eq!(
        field(&app, &booking, EVENT).as_deref(),
        Some(event_id.as_str())
    );

    // The merchant renamed: the same event's summary and description follow the
    // templates (one more patch), and a pass with nothing changed patches nothing.
    edit_booking(&app, &booking, json!({"Merchant_Name__c": "Acme Roasters"}));
    wait_until("the event's text follows the booking", || async {
        event(&app, &event_id).summary == "Remote Training: Acme Roasters"
    })
    .await;
    let e = event(&app, &event_id);
    assert!(e.description.contains("Acme Roasters") && e.description.contains(&link));
    assert_eq!(e.patches, 2);
    assert_eq!(creates(&app), 1, "still the one event");
    // ... and so does the meeting's topic: the same reservation, its link unchanged.
    wait_until("the meeting's topic follows the booking", || async {
        app.lark.reserves().iter().any(|r| {
            r.id == reservation && r.topic.as_deref() == Some("Remote Training: Acme Roasters")
        })
    })
    .await;
    assert_eq!(field(&app, &booking, LINK).as_deref(), Some(link.as_str()));
    assert_eq!(
        field(&app, &booking, "Lark_Reservation_Id__c").as_deref(),
        Some(reservation.as_str())
    );
    edit_booking(&app, &booking, json!({"Status__c": "Confirmed"}));
    wait_caught_up(&app).await;
    assert_eq!(event(&app, &event_id).patches, 2, "nothing to patch");

    // Trainer change: deleted from Ann's calendar with her token, made on Bo's.
    edit_booking(&app, &booking, json!({"Trainer__c": bo}));
    wait_until("the event moved to Bo's calendar", || async {
        field(&app, &booking, EVENT).is_some_and(|id| id != event_id)
    })
    .await;
    assert!(event(&app, &event_id).deleted, "Ann's event is deleted");
    let moved_id = field(&app, &booking, EVENT).unwrap();
    let moved = event(&app, &moved_id);
    assert_eq!(moved.calendar_id, app.lark.primary_calendar_id(&bo_open_id));
    assert_eq!(moved.organizer_open_id, bo_open_id);
    let new_link = field(&app, &booking, LINK).expect("link");
    assert_eq!(moved.vchat["meeting_url"], json!(new_link));
    assert_eq!(moved.attendees.len(), 1, "the merchant invited again");
    let live: Vec<SimEvent> = app
        .lark
        .calendar_events()
        .into_iter()
        .filter(|e| !e.deleted)
        .collect();
    assert_eq!(live.len(), 1, "one live event: {live:?}");

    // Cancel: the event is deleted and the field cleared.
    edit_booking(&app, &booking, json!({"Status__c": "Cancelled"}));
    wait_until("the booking is cancelled without an event", || async {
        field(&app, &booking, STATUS).as_deref() == Some("Cancelled")
            && field(&app, &booking, EVENT).is_none()
    })
    .await;
    assert!(event(&app, &moved_id).deleted);
    assert!(app.lark.calendar_events().iter().all(|e| e.deleted));
}

#[tokio::test]
async fn a_lost_create_answer_still_makes_exactly_one_event() {
    let app = spawn_app_with(calendar_on).await;
    let (ann, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;
    app.lark
        .faults()
        .lose_answers(Some(Method::POST), "/events", 1);

    let booking = booking_with_guest(&app, &ann, 24, 25);
    let event_id = wait_for_event_field(&app, &booking).await;
    let link = field(&app, &booking, LINK).unwrap();
    assert!(
        creates(&app) >= 2,
        "the create was sent again after the lost answer"
    );
    let live = live_events_with_link(&app, &link);
    assert_eq!(live.len(), 1, "one event: {live:?}");
    assert_eq!(live[0].event_id, event_id);
    assert_eq!(app.lark.calendar_events().len(), 1, "never a second one");
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
}

#[tokio::test]
async fn a_calendar_failure_keeps_the_meeting_and_is_retried_until_it_heals() {
    let app = spawn_app_with(calendar_on).await;
    let (ann, ann_open_id) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;
    app.lark.set_calendar_read_only(&ann_open_id, true);

    let booking = booking_with_guest(&app, &ann, 24, 25);
    wait_until("the booking shows the calendar's reason", || async {
        field(&app, &booking, ERROR).is_some_and(|e| e.contains("Lark calendar"))
    })
    .await;
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert!(field(&app, &booking, LINK).is_some(), "the meeting stands");
    assert!(field(&app, &booking, EVENT).is_none());
    assert!(app.lark.calendar_events().is_empty());
    // Retried on the booking's own backoff (never Failed for the calendar's sake).
    wait_until("the calendar step was retried", || async {
        creates(&app) >= 3
    })
    .await;
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert_eq!(
        app.lark.requests().count(&Method::POST, "/reserves/apply"),
        1,
        "the meeting is not made again"
    );

    app.lark.set_calendar_read_only(&ann_open_id, false);
    let event_id = wait_for_event_field(&app, &booking).await;
    wait_until("the reason is cleared", || async {
        field(&app, &booking, ERROR).is_none()
    })
    .await;
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert!(!event(&app, &event_id).deleted);
    assert_eq!(
        app.lark
            .calendar_events()
            .iter()
            .filter(|e| !e.deleted)
            .count(),
        1
    );
    // The batch takes it off the list right after its write-back lands.
    wait_until(
        "the booking is off the retry list once it healed",
        || async { app.store.retry_entry(&bid(&booking)).unwrap().is_none() },
    )
    .await;
}

#[tokio::test]
async fn a_trainer_without_the_calendar_scopes_gets_meetings_without_events_and_one_reminder() {
    // Ann connects while the calendar is off: her consent has no calendar scopes.
    let app = spawn_app_with(|s| {
        calendar_on(s);
        s.calendar.enabled = false;
    })
    .await;
    let (ann, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    let (sf, lark, mut settings, dir) = app.stop().await;
    settings.calendar.enabled = true;
    let app = start_app(sf, lark, settings, dir).await;
    // As if she had connected before scopes were recorded: Lark's refusal (99991679)
    // must teach the service what the grant would have.
    app.store.forget_trainer_calendar(&tid(&ann)).unwrap();
    wait_ready(&app).await;

    let first = booking_with_guest(&app, &ann, 24, 25);
    let second = booking_with_guest(&app, &ann, 48, 49);
    for b in [&first, &second] {
        wait_until("the booking has its meeting", || async {
            field(&app, b, STATUS).as_deref() == Some("Created") && field(&app, b, LINK).is_some()
        })
        .await;
    }
    wait_caught_up(&app).await;
    let reminders = |app: &TestApp| {
        app.lark
            .bot_messages()
            .into_iter()
            .filter(|m| m.receive_id == "ann@example.com" && m.text.contains("calendar"))
            .count()
    };
    wait_until("the calendar reminder went out", || async {
        reminders(&app) >= 1
    })
    .await;
    let third = booking_with_guest(&app, &ann, 72, 73);
    wait_until("the third booking has its meeting", || async {
        field(&app, &third, LINK).is_some()
    })
    .await;
    wait_caught_up(&app).await;
    assert!(app.lark.calendar_events().is_empty(), "no event");
    for b in [&first, &second, &third] {
        assert_eq!(field(&app, b, STATUS).as_deref(), Some("Created"));
        assert!(field(&app, b, EVENT).is_none());
    }
    assert_eq!(reminders(&app), 1, "exactly one reminder");
    assert!(app.store.trainer_calendar(&tid(&ann)).unwrap().lacks_scope);
    // No error loop: nothing waits on the retry list, and once known, no calendar call.
    for b in [&first, &second, &third] {
        assert!(app.store.retry_entry(&bid(b)).unwrap().is_none());
    }
    let refused = app
        .lark
        .requests()
        .matching(|r| r.path.starts_with(EVENTS))
        .len();
    assert!(
        refused <= 2,
        "{refused} calendar calls (the first bookings' refusals only)"
    );

    // Reconnecting with the calendar allowed: her existing meetings get their events
    // without an edit, and new ones too.
    let done = connect(&app, &ann, "ann@example.com").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(!app.store.trainer_calendar(&tid(&ann)).unwrap().lacks_scope);
    let fourth = booking_with_guest(&app, &ann, 96, 97);
    for b in [&first, &second, &third, &fourth] {
        let event_id = wait_for_event_field(&app, b).await;
        let e = event(&app, &event_id);
        assert_eq!(e.organizer_open_id, open_id_of(&app, "ann@example.com"));
        assert_eq!(e.vchat["meeting_url"], json!(field(&app, b, LINK).unwrap()));
    }
    wait_until("the calendar's reasons are cleared", || async {
        [&first, &second, &third, &fourth]
            .iter()
            .all(|b| field(&app, b, ERROR).is_none())
    })
    .await;
    assert_eq!(app.lark.calendar_events().len(), 4, "one event each");
    assert_eq!(reminders(&app), 1, "still one reminder");
}

#[tokio::test]
async fn events_go_with_meetings_that_end_and_never_come_for_a_waiting_booking() {
    let app = spawn_app_with(calendar_on).await;
    let (ann, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    let cy = app.add_trainer("Cy", Some("cy@example.com"), true);
    wait_ready(&app).await;

    // A booking whose trainer has not connected: pending, no event, no calendar call.
    let waiting = booking_with_guest(&app, &cy, 24, 25);
    wait_until("the booking waits for Cy", || async {
        field(&app, &waiting, STATUS).as_deref() == Some("Pending Trainer Connection")
    })
    .await;

    // No longer remote, deleted, moved to a trainer who has not connected (released):
    // each event is deleted, and the field cleared where the booking still exists.
    let onsite = booking_with_guest(&app, &ann, 24, 25);
    let deleted = booking_with_guest(&app, &ann, 48, 49);
    let released = booking_with_guest(&app, &ann, 72, 73);
    let mut events = Vec::new();
    for b in [&onsite, &deleted, &released] {
        events.push(wait_for_event_field(&app, b).await);
    }
    edit_booking(&app, &onsite, json!({"Service_Type__c": "Onsite"}));
    app.sf.delete(BOOKING, &deleted, SF_HUMAN_USER_ID);
    edit_booking(&app, &released, json!({"Trainer__c": cy}));
    wait_until("every event is deleted", || async {
        events.iter().all(|id| event(&app, id).deleted)
    })
    .await;
    wait_until("the fields are cleared", || async {
        field(&app, &onsite, EVENT).is_none() && field(&app, &released, EVENT).is_none()
    })
    .await;
    assert_eq!(field(&app, &onsite, STATUS).as_deref(), Some("Cancelled"));
    assert_eq!(
        field(&app, &released, STATUS).as_deref(),
        Some("Pending Trainer Connection")
    );
    wait_caught_up(&app).await;
    assert_eq!(
        app.lark.calendar_events().len(),
        3,
        "none for the waiting booking"
    );
    assert!(app.lark.calendar_events().iter().all(|e| e.deleted));
    assert_eq!(
        field(&app, &waiting, ERROR)
            .as_deref()
            .map(|e| e.contains("calendar")),
        Some(false)
    );
}

#[tokio::test]
async fn an_event_deleted_while_the_meeting_stays_is_made_again_not_answered_from_its_key() {
    let app = spawn_app_with(calendar_on).await;
    let (ann, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;
    let booking = booking_with_guest(&app, &ann, 24, 25);
    let first = wait_for_event_field(&app, &booking).await;
    let reservation = field(&app, &booking, "Lark_Reservation_Id__c").unwrap();

    // Inverted times: Failed (the reservation is kept), the event deleted.
    edit_booking(&app, &booking, json!({"Training_End__c": sf_time_in(23)}));
    wait_until("the booking failed and its event is gone", || async {
        field(&app, &booking, STATUS).as_deref() == Some("Failed") && event(&app, &first).deleted
    })
    .await;
    wait_until("the event field is cleared", || async {
        field(&app, &booking, EVENT).is_none()
    })
    .await;

    // Fixed: the same reservation, and a new live event (a key naming the deleted one).
    edit_booking(&app, &booking, json!({"Training_End__c": sf_time_in(26)}));
    wait_until("the booking has a new event", || async {
        field(&app, &booking, EVENT).is_some_and(|e| e != first)
    })
    .await;
    let second = field(&app, &booking, EVENT).unwrap();
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert_eq!(
        field(&app, &booking, "Lark_Reservation_Id__c").as_deref(),
        Some(reservation.as_str())
    );
    let e = event(&app, &second);
    assert!(!e.deleted);
    assert_eq!(
        e.end.timestamp,
        booking_time(&app, &booking, "Training_End__c")
    );
    assert_ne!(e.idempotency_key, event(&app, &first).idempotency_key);
    assert_eq!(
        app.lark
            .calendar_events()
            .iter()
            .filter(|e| !e.deleted)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_guest_email_lark_cannot_take_is_shown_once_not_retried_and_fixed_by_an_edit() {
    // The guest's field holds a name here, not an email.
    let app = spawn_app_with(|s| {
        calendar_on(s);
        s.salesforce.booking.attendee_email_field = Some("Merchant_Name__c".into());
    })
    .await;
    let (ann, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;
    let booking = booking_with_guest(&app, &ann, 24, 25);
    let event_id = wait_for_event_field(&app, &booking).await;
    wait_until("the booking says why the guest is missing", || async {
        field(&app, &booking, ERROR).is_some_and(|e| e.contains("not an email address"))
    })
    .await;
    assert_eq!(field(&app, &booking, STATUS).as_deref(), Some("Created"));
    assert!(event(&app, &event_id).attendees.is_empty());
    wait_caught_up(&app).await;
    assert!(
        app.store.retry_entry(&bid(&booking)).unwrap().is_none(),
        "the same request would be refused again: not retried"
    );

    edit_booking(
        &app,
        &booking,
        json!({"Merchant_Name__c": "ops@acme.example"}),
    );
    wait_until("the guest is invited and the reason cleared", || async {
        field(&app, &booking, ERROR).is_none() && !event(&app, &event_id).attendees.is_empty()
    })
    .await;
    let e = event(&app, &event_id);
    assert_eq!(
        e.attendees[0].third_party_email.as_deref(),
        Some("ops@acme.example")
    );
    assert_eq!(app.lark.calendar_events().len(), 1, "the same event");
}

/// Issue 22: twenty bookings of one trainer processed at once look the trainer's primary
/// calendar up once (the others wait for that answer), and a restart does not look it up
/// again (the id is kept in the store).
#[tokio::test]
async fn one_primary_calendar_lookup_per_trainer_for_concurrent_bookings_and_none_after_a_restart()
{
    const PRIMARY: &str = "/open-apis/calendar/v4/calendars/primary";
    let app = crate::helpers::spawn_app().await;
    let (trainer, _) = crate::helpers::connected_trainer(&app, "Ann", "ann@example.com").await;
    crate::helpers::wait_ready(&app).await;
    let lookups = |app: &crate::helpers::TestApp| app.lark.requests().count(&Method::POST, PRIMARY);
    let bookings: Vec<String> = (0..20)
        .map(|k| crate::helpers::insert_booking(&app.sf, &trainer, 30 + k, 31 + k, true))
        .collect();
    crate::helpers::wait_until("every booking's event is on the calendar", || async {
        bookings
            .iter()
            .all(|b| crate::helpers::field(&app, b, "Lark_Calendar_Event_Id__c").is_some())
    })
    .await;
    assert_eq!(
        lookups(&app),
        1,
        "one lookup for the trainer's twenty bookings"
    );

    let (sf, lark, settings, dir) = app.stop().await;
    let app = crate::helpers::start_app(sf, lark, settings, dir).await;
    let next = crate::helpers::create_booking(&app, &trainer, 60, 61, true);
    crate::helpers::wait_until("the next booking's event", || async {
        crate::helpers::field(&app, &next, "Lark_Calendar_Event_Id__c").is_some()
    })
    .await;
    assert_eq!(lookups(&app), 1, "none after the restart");
}
