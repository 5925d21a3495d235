//! Attendance on the booking from Lark's meeting events (rules 28–30), through the real
//! app and both simulators: a meeting driven as people would (start, join, leave, end,
//! recording) lands on its booking in at most three writes; with the events lost the
//! post-end sweep fills the same fields, or `No Show`; redelivered and fragmented events
//! count once; a host who does not show gets one message and one admin alert, never
//! again; the real binary killed around an event processes it once; and bad input of
//! every kind is acknowledged or dropped, counted, and never stalls the pipeline.

use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, Utc};
use lark_vc_bridge::store::Store;
use lvb_simulators::lark::{LeaveReason, Person, SimMeeting, SimReserve};
use lvb_simulators::launch::Simulators;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Map, Value};

use crate::helpers::{
    binary_config, booking_time, connected_trainer, cookie_pair, edit_booking, field, get, metric,
    server_section, spawn_app_after, spawn_app_with, start_app, start_run, wait_for_status,
    wait_ready, wait_until, TestApp, BOOKING,
};

const STATUS: &str = "Lark_Session_Status__c";
const STARTED: &str = "Lark_Session_Started_At__c";
const ENDED: &str = "Lark_Session_Ended_At__c";
const JOINED: &str = "Lark_Trainer_Joined_At__c";
const COUNT: &str = "Lark_Participants__c";
const GUEST: &str = "Lark_Guest_Joined__c";
const RECORDING: &str = "Lark_Recording_Url__c";
const ATTENDANCE_FIELDS: [&str; 7] = [STATUS, STARTED, ENDED, JOINED, COUNT, GUEST, RECORDING];

/// A Salesforce DateTime for `t`.
fn sf_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// A remote booking for `trainer` from `start` to `end`, created as a human user.
fn remote_booking(
    app: &TestApp,
    trainer: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> String {
    app.sf.insert(
        BOOKING,
        json!({
            "Name": "Booking",
            "Trainer__c": trainer,
            "Training_Start__c": sf_time(start),
            "Training_End__c": sf_time(end),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Acme Coffee",
        }),
        SF_HUMAN_USER_ID,
    )
}

/// A connected trainer's remote booking with its meeting reserved.
struct Booked {
    booking: String,
    trainer: String,
    email: String,
    reserve: SimReserve,
}

async fn booked(app: &TestApp, name: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Booked {
    let email = format!("{}@example.com", name.to_lowercase());
    let (trainer, _) = connected_trainer(app, name, &email).await;
    let booking = remote_booking(app, &trainer, start, end);
    wait_for_status(app, &booking, "Created").await;
    let reserve_id = field(app, &booking, "Lark_Reservation_Id__c").expect("reserved");
    let reserve = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == reserve_id)
        .expect("the reservation is in Lark");
    Booked {
        booking,
        trainer,
        email,
        reserve,
    }
}

/// The attendance fields of every landed collection write that carried this booking's
/// attendance, in order.
fn attendance_writes(app: &TestApp, booking: &str) -> Vec<Map<String, Value>> {
    writes_in(&app.sf.requests().all(), booking)
}

fn writes_in(
    requests: &[lvb_simulators::RecordedRequest],
    booking: &str,
) -> Vec<Map<String, Value>> {
    requests
        .iter()
        .filter(|r| {
            r.method == Method::PATCH && r.path.contains("/composite/sobjects") && r.status == 200
        })
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .flat_map(|body| body["records"].as_array().cloned().unwrap_or_default())
        .filter(|rec| rec["id"] == booking)
        .filter_map(|rec| {
            let fields: Map<String, Value> = rec
                .as_object()?
                .iter()
                .filter(|(k, _)| ATTENDANCE_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!fields.is_empty()).then_some(fields)
        })
        .collect()
}

/// Waits until the long connection to the Lark simulator is open.
async fn wait_events_connected(app: &TestApp) {
    wait_until("the app's long connection is open", || async {
        app.lark.long_connection().stats().connections_open >= 1
    })
    .await;
}

/// Waits until the booking's session status is `status`.
async fn wait_session(app: &TestApp, booking: &str, status: &str) {
    wait_until(
        &format!("booking {booking}'s session is {status}"),
        || async { field(app, booking, STATUS).as_deref() == Some(status) },
    )
    .await;
}

/// Waits until every event raised so far was acknowledged with 200.
async fn wait_all_acked(app: &TestApp) {
    wait_until("every event raised is acknowledged", || async {
        app.lark.long_connection().events().iter().all(|e| e.acked)
    })
    .await;
}

/// Waits until the store says `n` events were applied to bookings.
async fn wait_applied(app: &TestApp, n: usize) {
    wait_until(&format!("{n} events are applied"), || async {
        app.store.lark_events_with_outcome("applied").unwrap() >= n
    })
    .await;
}

/// A Number field as the simulator holds it (a float, as Salesforce's REST API returns).
fn number(app: &TestApp, booking: &str, name: &str) -> Value {
    match app.booking(booking).get(name) {
        Some(Value::Number(n)) => json!(n.as_f64().map(|f| f as i64)),
        other => other.cloned().unwrap_or(Value::Null),
    }
}

/// Asserts the booking shows a completed session with the host and one guest.
fn assert_completed(app: &TestApp, booking: &str, meeting: &SimMeeting, host_open_id: &str) {
    assert_eq!(field(app, booking, STATUS).as_deref(), Some("Completed"));
    assert_eq!(booking_time(app, booking, STARTED), meeting.start_time);
    assert_eq!(
        Some(booking_time(app, booking, ENDED)),
        meeting.end_time,
        "ended at"
    );
    let host = meeting
        .participants
        .iter()
        .find(|p| p.open_id == host_open_id)
        .expect("the host took part");
    assert_eq!(
        booking_time(app, booking, JOINED),
        host.stays[0].0,
        "trainer joined at"
    );
    assert_eq!(number(app, booking, COUNT), json!(2));
    assert_eq!(number(app, booking, GUEST), json!(true));
}

/// Salesforce calls other than the streaming long-poll, from `from` on.
fn salesforce_calls_since(app: &TestApp, from: usize) -> Vec<String> {
    app.sf.requests().all()[from..]
        .iter()
        .filter(|r| !r.path.contains("/cometd/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_meeting_with_the_host_and_a_guest_lands_on_the_booking_in_three_writes() {
    let app = spawn_app_with(|_| {}).await;
    wait_ready(&app).await;
    wait_events_connected(&app).await;
    let now = Utc::now();
    let b = booked(&app, "Ann", now + secs(1800), now + secs(5400)).await;
    let host = crate::helpers::open_id_of(&app, &b.email);
    crate::helpers::wait_caught_up(&app).await;
    let calls_before = app.sf.requests().all().len();

    let meetings = app.lark.meetings();
    let m = meetings.start(&b.reserve.id, &Person::Host).unwrap();
    meetings.join(&m.id, &Person::Host).unwrap();
    wait_session(&app, &b.booking, "In Progress").await;
    meetings
        .join(&m.id, &Person::Guest("Merchant".into()))
        .unwrap();
    meetings
        .leave(&m.id, &Person::Guest("Merchant".into()), LeaveReason::Left)
        .unwrap();
    let ended = meetings.end(&m.id, &Person::Host).unwrap();
    wait_session(&app, &b.booking, "Completed").await;
    let url = meetings.recording_ready(&m.id, 3_600_000).unwrap();
    wait_until("the recording URL is on the booking", || async {
        field(&app, &b.booking, RECORDING).as_deref() == Some(url.as_str())
    })
    .await;
    wait_all_acked(&app).await;

    assert_completed(&app, &b.booking, &ended, &host);
    let writes = attendance_writes(&app, &b.booking);
    assert_eq!(writes.len(), 3, "start, end, recording: {writes:#?}");
    assert_eq!(writes[0][STATUS], json!("In Progress"));
    assert_eq!(writes[1][STATUS], json!("Completed"));
    assert_eq!(
        writes[2],
        Map::from_iter([(RECORDING.to_string(), json!(url))])
    );
    // The one participants call after the end, with the app's token.
    let gets = app
        .lark
        .requests()
        .count(&Method::GET, "/open-apis/vc/v1/meetings/");
    assert_eq!(gets, 1, "one participants call");
    assert_eq!(app.lark.requests().count_path("/list_by_no"), 0);
    // The Salesforce cost of the meeting's attendance: the three writes, nothing else (the
    // change events of our own writes are skipped without a read, rule 2).
    crate::helpers::wait_caught_up(&app).await;
    let calls = salesforce_calls_since(&app, calls_before);
    assert_eq!(
        calls,
        vec!["PATCH /services/data/v62.0/composite/sobjects"; 3],
        "{calls:#?}"
    );
    let events = app.lark.long_connection().events().len();
    assert_eq!(
        app.store.lark_events_with_outcome("applied").unwrap(),
        events
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_events_lost_for_the_whole_meeting_the_sweep_fills_the_same_fields() {
    let app = spawn_app_with(|s| {
        s.attendance.grace = Duration::from_secs(1);
        s.alerts.no_show_after = None;
    })
    .await;
    wait_ready(&app).await;
    wait_events_connected(&app).await;
    let now = Utc::now();
    let b = booked(&app, "Bo", now - secs(600), now + secs(8)).await;
    let host = crate::helpers::open_id_of(&app, &b.email);

    // The connection still looks open, but nothing reaches the app any more.
    assert_eq!(app.lark.long_connection().go_silent(), 1);
    let meetings = app.lark.meetings();
    let m = meetings.start(&b.reserve.id, &Person::Host).unwrap();
    meetings.join(&m.id, &Person::Host).unwrap();
    meetings
        .join(&m.id, &Person::Guest("Merchant".into()))
        .unwrap();
    let ended = meetings.end(&m.id, &Person::Host).unwrap();
    app.lark.long_connection().discard_pending();
    assert_eq!(app.store.lark_events_with_outcome("applied").unwrap(), 0);

    // End + grace: the sweep asks Lark (list_by_no, then the meeting's participants).
    wait_session(&app, &b.booking, "Completed").await;
    assert_completed(&app, &b.booking, &ended, &host);
    assert_eq!(app.lark.requests().count_path("/list_by_no"), 1);
    assert_eq!(attendance_writes(&app, &b.booking).len(), 1, "one write");
    assert_eq!(
        metric(
            &app,
            "lvb_attendance_lookups_total{kind=\"post_end\",outcome=\"completed\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_meeting_never_started_is_a_no_show_and_a_reschedule_starts_over() {
    // Lark refuses the app the long connection for good: the service runs on without
    // events, and the sweep still fills attendance.
    let app = spawn_app_after(
        |lark| {
            lark.long_connection().fail_endpoint(
                1_000_040_351,
                "the app may not use the long connection",
                1_000,
            )
        },
        |s, ()| {
            s.attendance.grace = Duration::from_secs(1);
            s.alerts.no_show_after = None;
        },
    )
    .await;
    wait_ready(&app).await;
    let now = Utc::now();
    let b = booked(&app, "Cy", now - secs(600), now + secs(5)).await;

    wait_session(&app, &b.booking, "No Show").await;
    let writes = attendance_writes(&app, &b.booking);
    assert_eq!(
        writes,
        vec![Map::from_iter([(STATUS.to_string(), json!("No Show"))])]
    );
    assert_eq!(field(&app, &b.booking, STARTED), None);

    // Rescheduled to tomorrow: its attendance starts over (the No Show is cleared).
    let tomorrow = Utc::now() + secs(86_400);
    edit_booking(
        &app,
        &b.booking,
        json!({
            "Training_Start__c": sf_time(tomorrow),
            "Training_End__c": sf_time(tomorrow + secs(3600)),
        }),
    );
    wait_until("the No Show is cleared", || async {
        field(&app, &b.booking, STATUS).is_none()
    })
    .await;
    assert_eq!(attendance_writes(&app, &b.booking).len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivered_duplicated_and_fragmented_events_count_once() {
    let app = spawn_app_with(|_| {}).await;
    wait_ready(&app).await;
    wait_events_connected(&app).await;
    let hub = app.lark.long_connection();
    // Every event in 64-byte fragments, and pushed again at once, before any answer
    // could come back (as Lark does when the answer is late).
    hub.set_fragment_size(64);
    hub.set_retry_delays(vec![
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_millis(5),
    ]);
    let now = Utc::now();
    let b = booked(&app, "Di", now + secs(600), now + secs(4200)).await;

    let meetings = app.lark.meetings();
    let m = meetings.start(&b.reserve.id, &Person::Host).unwrap();
    meetings.join(&m.id, &Person::Host).unwrap();
    meetings
        .join(&m.id, &Person::Guest("Merchant".into()))
        .unwrap();
    let ended = meetings.end(&m.id, &Person::Host).unwrap();
    wait_session(&app, &b.booking, "Completed").await;
    wait_all_acked(&app).await;
    let events = hub.events();
    assert!(
        events.iter().all(|e| e.delivered >= 2),
        "each event reached the app more than once: {:?}",
        events.iter().map(|e| e.delivered).collect::<Vec<_>>()
    );
    // And once more, long after it was acknowledged (Lark's at-least-once delivery).
    let started = &events[0];
    assert!(hub.push_again(&started.event_id));
    wait_until("the duplicate is acknowledged", || async {
        hub.acks()
            .iter()
            .filter(|a| a.event_id.as_deref() == Some(started.event_id.as_str()))
            .count() as u32
            > started.delivered
    })
    .await;

    assert_eq!(
        app.store.lark_events_with_outcome("applied").unwrap(),
        events.len(),
        "each event applied once"
    );
    assert!(metric(&app, "lvb_attendance_events_total{outcome=\"duplicate\"}").await >= 1.0);
    assert!(
        metric(
            &app,
            "lvb_lark_events_total{outcome=\"recorded\",type=\"meeting_started\"}"
        )
        .await
            >= 2.0
    );
    // Nothing written twice: each status once (the start's write may even have waited
    // for the end, the events came so close together).
    let writes = attendance_writes(&app, &b.booking);
    let statuses: Vec<&Value> = writes.iter().filter_map(|w| w.get(STATUS)).collect();
    let mut distinct = statuses.clone();
    distinct.dedup();
    assert_eq!(statuses, distinct, "{writes:#?}");
    assert!(writes.len() <= 2, "{writes:#?}");
    assert_eq!(statuses.last(), Some(&&json!("Completed")));
    assert_completed(
        &app,
        &b.booking,
        &ended,
        &crate::helpers::open_id_of(&app, &b.email),
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_who_does_not_show_gets_one_message_and_admins_one_alert_never_again() {
    let app = spawn_app_after(
        |lark| Some(lark.create_chat("Training admins")),
        |s, chat| {
            s.alerts.no_show_after = Some(Duration::from_secs(2));
            s.alerts.lark_chat_id = chat;
        },
    )
    .await;
    let chat = app.settings.alerts.lark_chat_id.clone().unwrap();
    wait_ready(&app).await;
    wait_events_connected(&app).await;

    let now = Utc::now();
    let b = booked(&app, "Eve", now + secs(1), now + secs(3600)).await;
    // The merchant waits in the meeting; the trainer is not there.
    let meetings = app.lark.meetings();
    let m = meetings
        .start(&b.reserve.id, &Person::Guest("Merchant".into()))
        .unwrap();
    meetings
        .join(&m.id, &Person::Guest("Merchant".into()))
        .unwrap();

    let lark = app.lark.clone();
    let to_trainer = || {
        lark.bot_messages()
            .into_iter()
            .filter(|m| m.receive_id == b.email)
            .collect::<Vec<_>>()
    };
    wait_until("the trainer got the no-show message", || async {
        !to_trainer().is_empty()
    })
    .await;
    wait_until("the admins got the alert", || async {
        app.lark.chat_messages(&chat).len() == 1
    })
    .await;
    let message = &to_trainer()[0];
    assert!(message.text.contains(&b.reserve.url), "{}", message.text);
    assert!(message.text.contains("have not joined"), "{}", message.text);
    let alert = &app.lark.chat_messages(&chat)[0].text;
    assert!(alert.contains(&b.booking), "{alert}");
    assert!(alert.contains("Eve"), "{alert}");
    assert!(alert.contains(&b.trainer), "{alert}");
    assert!(alert.contains("Acme Coffee"), "{alert}");
    // Lark was asked first whether the host was in after all.
    assert!(app.lark.requests().count_path("/list_by_no") >= 1);
    assert_eq!(
        metric(&app, "lvb_no_shows_total{outcome=\"alerted\"}").await,
        1.0
    );

    // Restarted: nothing is sent again, though the host has still not joined.
    let (sf, lark_sim, settings, dir) = app.stop().await;
    let app = start_app(sf, lark_sim, settings, dir).await;
    wait_ready(&app).await;
    wait_events_connected(&app).await;
    let applied = app.store.lark_events_with_outcome("applied").unwrap();
    meetings
        .leave(&m.id, &Person::Guest("Merchant".into()), LeaveReason::Left)
        .unwrap();
    wait_applied(&app, applied + 1).await;
    assert_eq!(to_trainer().len(), 1, "one message");
    assert_eq!(app.lark.chat_messages(&chat).len(), 1, "one alert");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_acknowledged_or_dropped_counted_and_never_stalls_the_pipeline() {
    use lvb_simulators::lark::events::frame::{header, Frame};
    let app = spawn_app_with(|s| {
        s.alerts.no_show_after = None;
    })
    .await;
    wait_ready(&app).await;
    wait_events_connected(&app).await;
    let hub = app.lark.long_connection();
    let now = Utc::now();
    let b = booked(&app, "Fay", now + secs(600), now + secs(4200)).await;

    // Frames that carry no event: garbage, an unknown type, a fragment set that never
    // completes. Dropped and counted by the connection.
    assert_eq!(hub.send_raw(b"\x00\xffnot a frame"), 1);
    let frame = |kind: &str, sum: &str, payload: &[u8]| Frame {
        seq_id: 9,
        log_id: 9,
        service: 0,
        method: 1,
        headers: vec![
            header("type", kind),
            header("message_id", "m-bad"),
            header("sum", sum),
            header("seq", "0"),
        ],
        payload_encoding: None,
        payload_type: None,
        payload: Some(payload.to_vec()),
        log_id_new: None,
    };
    assert_eq!(hub.send_frame(&frame("mystery", "1", b"{}")), 1);
    assert_eq!(hub.send_frame(&frame("event", "2", b"{\"schema\":")), 1);

    // Events nothing is done with: another type, a VC event without a meeting number, a
    // meeting number no booking has, and a booking since cancelled.
    hub.raise("im.message.receive_v1", json!({ "message": {} }));
    hub.raise(
        "vc.meeting.join_meeting_v1",
        json!({ "meeting": { "id": "1" } }),
    );
    hub.raise(
        "vc.meeting.join_meeting_v1",
        json!({ "meeting": { "id": "7000000000000000009", "meeting_no": "999999999" } }),
    );
    edit_booking(&app, &b.booking, json!({ "Status__c": "Cancelled" }));
    wait_for_status(&app, &b.booking, "Cancelled").await;
    hub.raise(
        "vc.meeting.meeting_started_v1",
        json!({ "meeting": {
            "id": "7000000000000000010",
            "meeting_no": b.reserve.meeting_no,
            "start_time": Utc::now().timestamp().to_string(),
        } }),
    );
    wait_all_acked(&app).await;
    let counted = |outcome: &'static str| {
        let app = &app;
        async move {
            metric(
                app,
                &format!("lvb_attendance_events_total{{outcome=\"{outcome}\"}}"),
            )
            .await
        }
    };
    wait_until("every ignored event is counted", || async {
        counted("cancelled").await == 1.0
    })
    .await;
    assert_eq!(counted("other_type").await, 1.0);
    assert_eq!(counted("no_meeting_no").await, 1.0);
    assert_eq!(counted("not_ours").await, 1.0);
    for reason in ["undecodable_frame", "unknown_type"] {
        assert_eq!(
            metric(
                &app,
                &format!("lvb_lark_event_frames_dropped_total{{reason=\"{reason}\"}}")
            )
            .await,
            1.0,
            "{reason}"
        );
    }
    assert_eq!(
        field(&app, &b.booking, STATUS),
        None,
        "the cancelled booking shows nothing"
    );

    // Lark refuses the app the participants call (121005), and the host's token lacks
    // the user scope: the end is written with what the events said.
    app.lark.meetings().refuse_tenant_token(true);
    let now = Utc::now();
    let c = booked(&app, "Gil", now + secs(600), now + secs(4200)).await;
    let meetings = app.lark.meetings();
    let m = meetings.start(&c.reserve.id, &Person::Host).unwrap();
    meetings.join(&m.id, &Person::Host).unwrap();
    meetings
        .join(&m.id, &Person::Guest("Merchant".into()))
        .unwrap();
    let ended = meetings.end(&m.id, &Person::Host).unwrap();
    wait_session(&app, &c.booking, "Completed").await;
    assert_eq!(booking_time(&app, &c.booking, STARTED), ended.start_time);
    assert_eq!(number(&app, &c.booking, COUNT), json!(2));
    assert_eq!(number(&app, &c.booking, GUEST), json!(true));
    // From the join event's time (Lark stamps it as it sends it, in milliseconds; kept in
    // whole seconds), so within a second of the join itself.
    let host = crate::helpers::open_id_of(&app, &c.email);
    let joined = ended
        .participants
        .iter()
        .find(|p| p.open_id == host)
        .unwrap()
        .stays[0]
        .0;
    assert!((booking_time(&app, &c.booking, JOINED) - joined).abs() <= 1);
    assert_eq!(
        metric(
            &app,
            "lvb_attendance_lookups_total{kind=\"details\",outcome=\"given_up\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_killed_after_receiving_an_event_processes_it_exactly_once() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server_section();
    let config = binary_config(&sims, dir.path(), "attendance.toml", "", &server);
    let mut run = start_run(&config, &url).await;
    let hub = sims.lark.long_connection().clone();
    wait_until("the binary's long connection is open", || async {
        hub.stats().connections_open >= 1
    })
    .await;

    // A trainer connects through the binary; a booking gets its meeting.
    let email = "hal@example.com";
    sims.lark.add_user(email, "Hal");
    let trainer = sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": "Hal", "Email__c": email }),
        SF_HUMAN_USER_ID,
    );
    let start = get(&format!("{url}/oauth/lark/start?trainer={trainer}"), None).await;
    let cookie = cookie_pair(start.set_cookie.as_deref().unwrap());
    let mut authorize = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    authorize.query_pairs_mut().append_pair("sim_user", email);
    let approved = get(authorize.as_str(), None).await;
    assert_eq!(
        get(approved.location.as_deref().unwrap(), Some(&cookie))
            .await
            .status,
        200
    );
    let now = Utc::now();
    let booking = sims.salesforce.insert(
        BOOKING,
        json!({
            "Name": "Booking",
            "Trainer__c": trainer,
            "Training_Start__c": sf_time(now + secs(900)),
            "Training_End__c": sf_time(now + secs(4500)),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Acme",
        }),
        SF_HUMAN_USER_ID,
    );
    let sf_field = |name: &str| {
        sims.salesforce
            .get(BOOKING, &booking)
            .and_then(|r| r.get(name).and_then(Value::as_str).map(str::to_string))
    };
    wait_until("the booking has its meeting", || async {
        sf_field("Lark_Meeting_Status__c").as_deref() == Some("Created")
    })
    .await;
    let reserve = sf_field("Lark_Reservation_Id__c").unwrap();

    // The meeting starts; the binary receives the event — and is killed -9 at once.
    let m = sims.lark.meetings().start(&reserve, &Person::Host).unwrap();
    let started = hub.events()[0].event_id.clone();
    wait_until("the event reached the binary", || async {
        hub.events()[0].delivered >= 1
    })
    .await;
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    assert_eq!(sf_field(STATUS), None, "not written before the kill");

    // Lark pushes it again (from its side the answer may never have come), to the
    // restarted binary.
    hub.push_again(&started);
    let _run = start_run(&config, &url).await;
    wait_until("the session is on the booking", || async {
        sf_field(STATUS).as_deref() == Some("In Progress")
    })
    .await;
    wait_until("the redelivery is acknowledged", || async {
        hub.acks()
            .iter()
            .filter(|a| a.event_id.as_deref() == Some(started.as_str()) && a.code == Some(200))
            .count()
            >= 1
    })
    .await;
    // The end, through the restarted binary.
    sims.lark.meetings().end(&m.id, &Person::Host).unwrap();
    wait_until("the session is completed", || async {
        sf_field(STATUS).as_deref() == Some("Completed")
    })
    .await;
    drop(_run);

    let writes = writes_in(&sims.salesforce.requests().all(), &booking);
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.get(STATUS) == Some(&json!("In Progress")))
            .count(),
        1,
        "the start written once: {writes:#?}"
    );
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    assert_eq!(
        store.lark_events_with_outcome("applied").unwrap(),
        hub.events().len(),
        "every event applied once"
    );
}
