//! App-hosted meetings (issue 14 part 1, design §3 rule 21), end to end through both
//! simulators: with `meetings.unconnected = "app_hosted"`, a trainer who has not connected
//! gets meetings reserved with the app's tenant token and `owner_id`, status
//! `Created by App`; a trainer without a Lark account, or an app without the permission,
//! leaves the booking pending with that reason; once the trainer connects, new work uses
//! their own token and the app-hosted meeting keeps its link. One test runs the real
//! binary's `reconcile`.

use std::process::Command;
use std::time::Duration;

use axum::http::Method;
use lark_vc_bridge::config::{Settings, Unconnected};
use lvb_simulators::launch::Simulators;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Value};

use crate::helpers::bid;
use crate::helpers::{
    connect, create_booking, edit_booking, field, insert_booking, metric, open_id_of, sf_time_in,
    spawn_app_with, wait_caught_up, wait_for_status, wait_ready, wait_until, TestApp, BIN, BOOKING,
};
use lark_vc_bridge::bookings::reconcile;

const APPLY: &str = "/open-apis/vc/v1/reserves/apply";
const RESERVES: &str = "/open-apis/vc/v1/reserves/";
const BATCH_GET_ID: &str = "/open-apis/contact/v3/users/batch_get_id";
const LINK: &str = "Remote_Training_Meeting_Link__c";
const RESERVATION: &str = "Lark_Reservation_Id__c";
const STATUS: &str = "Lark_Meeting_Status__c";
const ERROR: &str = "Lark_Meeting_Error__c";
const BY_APP: &str = "Created by App";
const PENDING: &str = "Pending Trainer Connection";

fn app_hosted(s: &mut Settings) {
    s.meetings.unconnected = Unconnected::AppHosted;
}

fn app_hosted_quick_retries(s: &mut Settings) {
    app_hosted(s);
    s.processing.in_doubt_delay = Duration::from_millis(300);
    s.processing.retry_max_delay = Duration::from_millis(200);
    s.processing.max_attempts = 3;
}

fn applies(app: &TestApp) -> usize {
    app.lark.requests().count(&Method::POST, APPLY)
}

fn lookups(app: &TestApp) -> usize {
    app.lark.requests().count(&Method::POST, BATCH_GET_ID)
}

/// Reserve calls other than apply (PUT, DELETE, GET) with this method.
fn reserve_calls(app: &TestApp, method: Method) -> Vec<lvb_simulators::common::RecordedRequest> {
    app.lark
        .requests()
        .matching(|r| r.method == method && r.path.starts_with(RESERVES) && r.path != APPLY)
}

/// Asserts the booking shows `Created by App` with a live reservation the app applied
/// for `owner`, and returns that reservation.
fn assert_app_hosted(
    app: &TestApp,
    booking: &str,
    owner: &str,
) -> lvb_simulators::lark::SimReserve {
    let b = app.booking(booking);
    assert_eq!(b[STATUS], json!(BY_APP), "{b:?}");
    assert!(b.get(ERROR).is_none_or(Value::is_null), "{b:?}");
    let rid = b[RESERVATION].as_str().expect("reservation id");
    let r = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == rid)
        .expect("Lark holds the reservation");
    assert!(!r.deleted);
    assert!(r.applied_by_app, "applied with the tenant token");
    assert_eq!(r.owner_open_id, owner, "the trainer owns and hosts it");
    assert_eq!(b[LINK], json!(r.url));
    r
}

fn reminded(app: &TestApp, email: &str, trainer: &str) -> bool {
    app.lark.bot_messages().iter().any(|m| {
        m.receive_id == email
            && m.text
                .contains(&format!("/oauth/lark/start?trainer={trainer}"))
    })
}

#[tokio::test]
async fn an_unconnected_trainer_gets_a_meeting_the_app_reserves_for_them_and_changes_with_its_token(
) {
    let app = spawn_app_with(app_hosted).await;
    let trainer = app.add_trainer("Bo", Some("bo@example.com"), true);
    let bo = open_id_of(&app, "bo@example.com");
    wait_ready(&app).await;

    let booking = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &booking, BY_APP).await;
    let r = assert_app_hosted(&app, &booking, &bo);
    assert_eq!(applies(&app), 1);
    assert_eq!(r.topic.as_deref(), Some("Remote Training: Acme"));
    let body: Value =
        serde_json::from_str(&app.lark.requests().matching(|q| q.path == APPLY)[0].body).unwrap();
    assert_eq!(body["owner_id"], json!(bo));
    assert_eq!(lookups(&app), 1, "email → open_id asked once");
    wait_until("the trainer was still reminded to connect", || async {
        reminded(&app, "bo@example.com", &trainer)
    })
    .await;
    let hosted = app
        .store
        .app_hosted(&bid(&booking))
        .unwrap()
        .expect("recorded");
    assert_eq!(
        (
            hosted.reservation_id.as_str(),
            hosted.owner_open_id.as_str()
        ),
        (r.id.as_str(), bo.as_str())
    );
    assert_eq!(
        metric(&app, r#"lvb_meetings_reserved_total{host="app"}"#).await,
        1.0
    );
    assert_eq!(
        metric(&app, r#"lvb_meetings_reserved_total{host="trainer"}"#).await,
        0.0
    );

    // A second booking: the open_id is remembered, not asked again.
    let second = create_booking(&app, &trainer, 72, 73, true);
    wait_for_status(&app, &second, BY_APP).await;
    assert_eq!(lookups(&app), 1, "cached");
    assert_eq!(applies(&app), 2);

    // Reschedule: a PUT with the tenant token naming the owner; same link.
    let end = sf_time_in(50);
    edit_booking(&app, &booking, json!({ "Training_End__c": end }));
    wait_until("the app-hosted reservation is moved", || async {
        !reserve_calls(&app, Method::PUT).is_empty()
    })
    .await;
    wait_caught_up(&app).await;
    let put = reserve_calls(&app, Method::PUT);
    assert_eq!(put.len(), 1);
    let put_body: Value = serde_json::from_str(&put[0].body).unwrap();
    assert_eq!(
        put_body["owner_id"],
        json!(bo),
        "made with the tenant token"
    );
    let moved = assert_app_hosted(&app, &booking, &bo);
    assert_eq!(moved.id, r.id);
    assert_eq!(moved.url, r.url, "the link stays");
    assert!(moved.end_time > r.end_time);

    // Trainer change to another unconnected trainer: the old one is deleted as the app,
    // the new trainer gets their own app-hosted meeting.
    let other = app.add_trainer("Cy", Some("cy@example.com"), true);
    let cy = open_id_of(&app, "cy@example.com");
    edit_booking(&app, &booking, json!({ "Trainer__c": other }));
    wait_until("the booking moved to the new trainer", || async {
        field(&app, &booking, RESERVATION).is_some_and(|rid| rid != r.id)
    })
    .await;
    let new = assert_app_hosted(&app, &booking, &cy);
    assert!(app
        .lark
        .reserves()
        .iter()
        .any(|x| x.id == r.id && x.deleted));
    assert_ne!(new.url, r.url);

    // Cancel: deleted as the app, link cleared.
    edit_booking(&app, &second, json!({ "Status__c": "Cancelled" }));
    wait_for_status(&app, &second, "Cancelled").await;
    let second_rid = app
        .store
        .reservation(&bid(&second))
        .unwrap()
        .map(|e| e.reservation_id);
    assert_eq!(second_rid, None, "forgotten");
    assert!(field(&app, &second, LINK).is_none());
    assert_eq!(reserve_calls(&app, Method::DELETE).len(), 2);
    assert_eq!(
        app.lark.reserves().iter().filter(|x| !x.deleted).count(),
        1,
        "only the new trainer's meeting is live"
    );
    assert!(app.store.app_hosted(&bid(&second)).unwrap().is_none());
}

#[tokio::test]
async fn a_trainer_without_a_lark_account_waits_with_the_reason_and_lark_is_not_asked_again() {
    let app = spawn_app_with(app_hosted).await;
    let trainer = app.add_trainer("Di", Some("di@example.com"), false);
    wait_ready(&app).await;

    let booking = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &booking, PENDING).await;
    let reason = field(&app, &booking, ERROR).unwrap();
    assert!(
        reason.contains("Lark has no user with their email"),
        "{reason}"
    );
    assert!(field(&app, &booking, LINK).is_none());
    assert_eq!(applies(&app), 0);
    assert_eq!(lookups(&app), 1);
    wait_caught_up(&app).await;

    // Not a tight retry: nothing on the retry list, and a sweep uses the remembered miss.
    assert!(app.store.retry_entry(&bid(&booking)).unwrap().is_none());
    let summary = reconcile(&app.engine).await.unwrap();
    assert_eq!((summary.pending, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(lookups(&app), 1, "the miss is remembered");
    assert_eq!(applies(&app), 0);
    assert_eq!(field(&app, &booking, ERROR).unwrap(), reason, "unchanged");
}

#[tokio::test]
async fn an_app_without_the_permissions_leaves_bookings_pending_with_the_reason() {
    let app = spawn_app_with(app_hosted).await;
    let trainer = app.add_trainer("Ed", Some("ed@example.com"), true);
    wait_ready(&app).await;

    // The tenant-level VC permission is missing.
    app.lark.set_app_scope("vc:reserve", false);
    let booking = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &booking, PENDING).await;
    let reason = field(&app, &booking, ERROR).unwrap();
    assert!(
        reason.contains("lacks the tenant permission to reserve meetings"),
        "{reason}"
    );
    assert_eq!(applies(&app), 1, "refused once, not retried");
    assert!(app.lark.reserves().is_empty());
    wait_caught_up(&app).await;
    assert!(
        app.store.retry_entry(&bid(&booking)).unwrap().is_none(),
        "no tight retry"
    );

    // The contact permission is missing (for a trainer not looked up yet).
    app.lark.set_app_scope("contact:user.id:readonly", false);
    let other = app.add_trainer("Flo", Some("flo@example.com"), true);
    let second = create_booking(&app, &other, 50, 51, true);
    wait_for_status(&app, &second, PENDING).await;
    let reason = field(&app, &second, ERROR).unwrap();
    assert!(reason.contains("contact:user.id:readonly"), "{reason}");
    assert_eq!(applies(&app), 1, "no apply without an owner");
    assert_eq!(
        metric(&app, r#"lvb_failures_total{kind="app_permission_missing"}"#).await,
        2.0,
        "one per refusal"
    );

    // Granted again: the next sweep gives both their meetings.
    app.lark.set_app_scope("vc:reserve", true);
    app.lark.set_app_scope("contact:user.id:readonly", true);
    let summary = reconcile(&app.engine).await.unwrap();
    assert_eq!(summary.created, 2, "{summary:?}");
    assert_app_hosted(&app, &booking, &open_id_of(&app, "ed@example.com"));
    assert_app_hosted(&app, &second, &open_id_of(&app, "flo@example.com"));
}

#[tokio::test]
async fn once_the_trainer_connects_new_work_uses_their_token_and_the_app_hosted_meeting_stays() {
    let app = spawn_app_with(app_hosted).await;
    let trainer = app.add_trainer("Gus", Some("gus@example.com"), true);
    let gus = open_id_of(&app, "gus@example.com");
    wait_ready(&app).await;
    let hosted = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &hosted, BY_APP).await;
    let before = assert_app_hosted(&app, &hosted, &gus);

    let done = connect(&app, &trainer, "gus@example.com").await;
    assert_eq!(done.status, 200, "{}", done.body);
    wait_caught_up(&app).await;
    let own = create_booking(&app, &trainer, 72, 73, true);
    wait_for_status(&app, &own, "Created").await;
    let rid = field(&app, &own, RESERVATION).unwrap();
    let mine = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == rid)
        .unwrap();
    assert!(!mine.applied_by_app, "made with the trainer's own token");
    assert_eq!(mine.owner_open_id, gus);
    assert_eq!(applies(&app), 2, "the app-hosted one was not made again");
    let after = assert_app_hosted(&app, &hosted, &gus);
    assert_eq!(
        (after.id, after.url),
        (before.id.clone(), before.url),
        "keeps its link"
    );
    assert_eq!(
        metric(&app, r#"lvb_meetings_reserved_total{host="trainer"}"#).await,
        1.0
    );

    // The app-hosted one is still changed with the tenant token: the trainer's own calls
    // all fail now, and the reschedule and cancel go through anyway.
    app.lark.fail_user_calls(&gus, 500, 121001);
    edit_booking(&app, &hosted, json!({ "Training_End__c": sf_time_in(50) }));
    wait_until("the app-hosted meeting is rescheduled", || async {
        app.lark
            .reserves()
            .iter()
            .any(|r| r.id == before.id && r.end_time > before.end_time)
    })
    .await;
    edit_booking(&app, &hosted, json!({ "Status__c": "Cancelled" }));
    wait_for_status(&app, &hosted, "Cancelled").await;
    assert!(app
        .lark
        .reserves()
        .iter()
        .any(|r| r.id == before.id && r.deleted));
    assert!(!app
        .lark
        .reserves()
        .iter()
        .any(|r| r.id == mine.id && r.deleted));
}

#[tokio::test]
async fn a_lost_answer_to_an_app_apply_is_in_doubt_and_the_booking_knows_one_reservation() {
    let app = spawn_app_with(app_hosted_quick_retries).await;
    let trainer = app.add_trainer("Hal", Some("hal@example.com"), true);
    let hal = open_id_of(&app, "hal@example.com");
    wait_ready(&app).await;
    app.lark.faults().lose_answers(Some(Method::POST), APPLY, 1);

    let booking = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &booking, BY_APP).await;
    assert_eq!(
        applies(&app),
        2,
        "the lost one and one re-apply after the delay"
    );
    assert_eq!(app.lark.faults().answers_lost(), 1);
    let reserves = app.lark.reserves();
    assert_eq!(reserves.len(), 2, "Lark did the work both times (rule 13)");
    let known = assert_app_hosted(&app, &booking, &hal);
    assert_eq!(
        known.id, reserves[1].id,
        "the booking knows the confirmed one only"
    );
    assert_eq!(
        app.store
            .reservation(&bid(&booking))
            .unwrap()
            .unwrap()
            .reservation_id,
        known.id
    );
    assert_eq!(
        app.store
            .app_hosted(&bid(&booking))
            .unwrap()
            .unwrap()
            .reservation_id,
        known.id
    );
    assert!(app.store.in_doubt_apply(&bid(&booking)).unwrap().is_none());
    assert_eq!(
        metric(&app, r#"lvb_failures_total{kind="apply_answer_lost"}"#).await,
        1.0
    );
    assert_eq!(
        metric(&app, r#"lvb_meetings_reserved_total{host="app"}"#).await,
        1.0
    );
}

/// A config file for the binary against `sims`, with `meetings.unconnected = "app_hosted"`.
fn app_hosted_config(sims: &Simulators, dir: &std::path::Path) -> std::path::PathBuf {
    let meetings = "\n[meetings]\nunconnected = \"app_hosted\"\n";
    crate::helpers::binary_config(sims, dir, "app_hosted.toml", "", meetings)
}

/// Runs `lark-vc-bridge reconcile --config <config>` to the end (off the async runtime).
async fn reconcile_binary(config: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["reconcile", "--config"])
        .arg(config)
        .env("RUST_LOG", "error");
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_of_the_binary_with_app_hosted_config_reserves_for_unconnected_trainers() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = app_hosted_config(&sims, dir.path());
    let add_trainer = |name: &str, email: &str| {
        sims.salesforce.insert(
            "Onboarding_Trainer__c",
            json!({ "Name": name, "Email__c": email }),
            SF_HUMAN_USER_ID,
        )
    };
    let ivy_open_id = sims.lark.add_user("ivy@example.com", "Ivy");
    let ivy = add_trainer("Ivy", "ivy@example.com");
    let jo = add_trainer("Jo", "jo@example.com");
    let hosted = insert_booking(&sims.salesforce, &ivy, 24, 25, true);
    let waiting = insert_booking(&sims.salesforce, &jo, 48, 49, true);

    let out = reconcile_binary(&config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("reconciled 2 bookings: 1 created") && stdout.contains("1 pending"),
        "{stdout}"
    );
    let b = sims.salesforce.get(BOOKING, &hosted).unwrap();
    assert_eq!(b[STATUS], json!(BY_APP), "{b:?}");
    let reserves = sims.lark.reserves();
    assert_eq!(reserves.len(), 1);
    assert!(reserves[0].applied_by_app);
    assert_eq!(reserves[0].owner_open_id, ivy_open_id);
    assert_eq!(b[LINK], json!(reserves[0].url));
    let w = sims.salesforce.get(BOOKING, &waiting).unwrap();
    assert_eq!(w[STATUS], json!(PENDING));
    assert!(w[ERROR].as_str().unwrap().contains("Lark has no user"));
    let secret = lvb_simulators::LARK_APP_SECRET;
    assert!(!stderr.contains(secret) && !stdout.contains(secret));

    // Run again: nothing to do, nothing asked of Lark (the miss is remembered across runs).
    let lookups_before = sims.lark.requests().count(&Method::POST, BATCH_GET_ID);
    let out = reconcile_binary(&config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 created"), "{stdout}");
    assert_eq!(sims.lark.requests().count(&Method::POST, APPLY), 1);
    assert_eq!(
        sims.lark.requests().count(&Method::POST, BATCH_GET_ID),
        lookups_before
    );
}

#[tokio::test]
async fn check_names_the_app_permissions_app_hosting_needs_and_tries_the_lookup() {
    let app = spawn_app_with(app_hosted).await;
    let line = |lines: &[lark_vc_bridge::check::CheckLine]| {
        lines
            .iter()
            .find(|l| l.what == "app-hosted meetings")
            .cloned()
            .expect("an app-hosted line")
    };
    let ok = line(&lark_vc_bridge::check::collect_with(&app.settings).await);
    assert!(ok.ok, "{ok:?}");
    assert!(
        ok.detail.contains("vc:reserve") && ok.detail.contains("contact:user.id:readonly"),
        "{ok:?}"
    );
    assert_eq!(lookups(&app), 1, "the lookup was tried");
    assert_eq!(applies(&app), 0, "check reserves nothing");

    app.lark.set_app_scope("contact:user.id:readonly", false);
    let refused = line(&lark_vc_bridge::check::collect_with(&app.settings).await);
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused.detail.contains("grant contact:user.id:readonly"),
        "{refused:?}"
    );

    // The default mode has no such line.
    let mut pending = app.settings.clone();
    pending.meetings.unconnected = Unconnected::Pending;
    let lines = lark_vc_bridge::check::collect_with(&pending).await;
    assert!(!lines.iter().any(|l| l.what == "app-hosted meetings"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_looks_up_sixty_unconnected_trainers_in_two_calls_and_reserves_each_once() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = app_hosted_config(&sims, dir.path());
    let bookings: Vec<String> = (0..60)
        .map(|i| {
            let email = format!("t{i}@example.com");
            sims.lark.add_user(&email, &format!("T{i}"));
            let trainer = sims.salesforce.insert(
                "Onboarding_Trainer__c",
                json!({ "Name": format!("T{i}"), "Email__c": email }),
                SF_HUMAN_USER_ID,
            );
            insert_booking(&sims.salesforce, &trainer, 24 + i, 25 + i, true)
        })
        .collect();

    let started = std::time::Instant::now();
    let out = reconcile_binary(&config).await;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("reconciled 60 bookings: 60 created"),
        "{stdout}"
    );
    let lookups = sims.lark.requests().count(&Method::POST, BATCH_GET_ID);
    let applies = sims.lark.requests().count(&Method::POST, APPLY);
    eprintln!("60 app-hosted bookings: {took:?}, {lookups} lookups, {applies} applies");
    assert_eq!(
        lookups, 2,
        "60 emails in batches of 50, asked once before the bookings"
    );
    assert_eq!(applies, 60);
    assert!(sims.lark.reserves().iter().all(|r| r.applied_by_app));
    for b in &bookings {
        let row = sims.salesforce.get(BOOKING, b).unwrap();
        assert_eq!(row[STATUS], json!(BY_APP), "{row:?}");
    }
}

/// Rules 20 and 21 together: an app-hosted meeting has no calendar event while its
/// trainer has not connected (the calendar needs their token) and shows no calendar
/// error; once they connect, the existing meeting gets its event on their calendar with
/// its link unchanged, and the booking stays `Created by App` with no error.
#[tokio::test]
async fn an_app_hosted_meeting_gets_its_calendar_event_once_the_trainer_connects() {
    let app = spawn_app_with(app_hosted).await;
    assert!(
        app.settings.calendar.enabled,
        "the calendar is on by default"
    );
    let trainer = app.add_trainer("Ivy", Some("ivy@example.com"), true);
    let ivy = open_id_of(&app, "ivy@example.com");
    wait_ready(&app).await;
    let booking = create_booking(&app, &trainer, 48, 49, true);
    wait_for_status(&app, &booking, BY_APP).await;
    wait_caught_up(&app).await;
    let before = assert_app_hosted(&app, &booking, &ivy);
    let calendar_calls = |app: &TestApp| {
        app.lark
            .requests()
            .matching(|r| r.path.starts_with("/open-apis/calendar/"))
            .len()
    };
    assert_eq!(
        calendar_calls(&app),
        0,
        "no calendar call without the host's token"
    );
    assert!(app.lark.calendar_events().is_empty());
    assert!(field(&app, &booking, "Lark_Calendar_Event_Id__c").is_none());

    let done = connect(&app, &trainer, "ivy@example.com").await;
    assert_eq!(done.status, 200, "{}", done.body);
    wait_until(
        "the app-hosted meeting's event is on Ivy's calendar",
        || async { field(&app, &booking, "Lark_Calendar_Event_Id__c").is_some() },
    )
    .await;
    let event_id = field(&app, &booking, "Lark_Calendar_Event_Id__c").unwrap();
    let events: Vec<_> = app
        .lark
        .calendar_events()
        .into_iter()
        .filter(|e| !e.deleted)
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.event_id, event_id);
    assert_eq!(
        e.organizer_open_id, ivy,
        "made with the trainer's own token"
    );
    assert_eq!(e.calendar_id, app.lark.primary_calendar_id(&ivy));
    assert_eq!(
        e.vchat["meeting_url"],
        json!(before.url),
        "the meeting's link"
    );
    let after = assert_app_hosted(&app, &booking, &ivy);
    assert_eq!(after.id, before.id, "the app-hosted meeting stays");
    assert_eq!(applies(&app), 1, "no meeting was made again");
}
