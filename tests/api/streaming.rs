//! The stream keeps going (issue 4): expired sessions, dropped CometD clients, an invalid
//! replay id, gap and overflow events, 5xx and 429 from either side, malformed events and
//! a graceful shutdown — each through both simulators, and every booking ends right.

use std::time::Duration;

use axum::http::Method;
use lark_vc_bridge::store::Store;
use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::{SF_HUMAN_USER_ID, SF_INTEGRATION_USER_ID};
use serde_json::json;

use crate::helpers::bid;
use crate::helpers::{
    booking_time, captured_logs, checkpoint, connected_trainer, create_booking, field,
    insert_booking, last_booking_event, metric, sim_settings, spawn_app, start_app, wait_caught_up,
    wait_ready, wait_until, TestApp, BOOKING,
};
use lark_vc_bridge::ids::ReplayId;

const APPLY: &str = "/open-apis/vc/v1/reserves/apply";
const LINK: &str = "Remote_Training_Meeting_Link__c";
const RESERVATION: &str = "Lark_Reservation_Id__c";
const STATUS: &str = "Lark_Meeting_Status__c";

/// Successful applies (each made one reservation).
fn applies(app: &TestApp) -> usize {
    app.lark
        .requests()
        .matching(|r| r.method == Method::POST && r.path == APPLY && r.status == 200)
        .len()
}

fn logins(app: &TestApp) -> usize {
    app.sf
        .requests()
        .count(&Method::POST, "/services/oauth2/token")
}

/// Bayeux messages of one meta channel the hub received.
fn bayeux(app: &TestApp, meta: &str) -> usize {
    app.sf
        .requests()
        .matching(|r| r.path.starts_with("/cometd/") && r.body.contains(meta))
        .len()
}

/// Waits until the booking has its link, then checks it is `Created` with a live
/// reservation Lark holds, and that it is the only reservation naming that booking's id.
async fn assert_gets_its_meeting(app: &TestApp, booking: &str) {
    wait_until(&format!("booking {booking} has its link"), || async {
        field(app, booking, LINK).is_some()
    })
    .await;
    assert_eq!(field(app, booking, STATUS).as_deref(), Some("Created"));
    let rid = field(app, booking, RESERVATION).expect("reservation id");
    let r = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == rid)
        .expect("Lark holds it");
    assert!(!r.deleted);
    assert_eq!(field(app, booking, LINK), Some(r.url));
}

/// A running app with one connected trainer and a first booking done (so a checkpoint
/// exists).
async fn running() -> (TestApp, String) {
    let app = spawn_app().await;
    let (trainer, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;
    let first = create_booking(&app, &trainer, 24, 25, true);
    assert_gets_its_meeting(&app, &first).await;
    wait_caught_up(&app).await;
    (app, trainer)
}

#[tokio::test]
async fn an_expired_salesforce_session_means_one_re_login_and_the_stream_goes_on() {
    let (app, trainer) = running().await;
    let before = logins(&app);
    app.sf.expire_sessions();
    let next = create_booking(&app, &trainer, 30, 31, true);
    assert_gets_its_meeting(&app, &next).await;
    wait_caught_up(&app).await;
    let another = create_booking(&app, &trainer, 32, 33, true);
    assert_gets_its_meeting(&app, &another).await;
    wait_caught_up(&app).await;
    let relogins = logins(&app) - before;
    assert!(
        (1..=2).contains(&relogins),
        "streaming and REST re-login once each at most, not in a loop: {relogins}"
    );
    assert_eq!(applies(&app), 3, "one apply per booking");
}

#[tokio::test]
async fn a_dropped_cometd_client_re_handshakes_and_resumes_from_the_checkpoint() {
    let (app, trainer) = running().await;
    let handshakes = bayeux(&app, "/meta/handshake");
    let saved = checkpoint(&app).expect("checkpoint");
    app.sf.hub().drop_clients();
    wait_until("the subscriber handshakes again", || async {
        bayeux(&app, "/meta/handshake") > handshakes && app.sf.hub().client_count() == 1
    })
    .await;
    wait_until("it resubscribed", || async {
        app.sf
            .hub()
            .subscribe_history()
            .last()
            .is_some_and(|s| s.successful && s.replay_from != -1)
    })
    .await;
    let resumed = app.sf.hub().subscribe_history().last().unwrap().clone();
    assert_eq!(
        resumed.replay_from, saved,
        "resumed from the saved checkpoint"
    );

    let next = create_booking(&app, &trainer, 30, 31, true);
    assert_gets_its_meeting(&app, &next).await;
    wait_caught_up(&app).await;
    assert_eq!(applies(&app), 2, "nothing processed twice");
    assert_eq!(app.lark.reserves().len(), 2);
}

#[tokio::test]
async fn an_invalid_replay_id_falls_back_to_latest_and_a_sweep_catches_what_was_missed() {
    let (app, trainer) = running().await;
    let saved = checkpoint(&app).expect("checkpoint");
    let (sf, lark, settings, dir) = app.stop().await;

    let missed = insert_booking(&sf, &trainer, 30, 31, true);
    // Everything up to now is past retention: the checkpoint names an event the hub no
    // longer has.
    sf.hub().forget_events_before(sf.hub().last_replay_id() + 1);

    let app = start_app(sf, lark, settings, dir).await;
    assert_gets_its_meeting(&app, &missed).await;
    let tried: Vec<(i64, bool)> = app
        .sf
        .hub()
        .subscribe_history()
        .iter()
        .map(|s| (s.replay_from, s.successful))
        .collect();
    let n = tried.len();
    assert!(n >= 2, "{tried:?}");
    assert_eq!(
        tried[n - 2..],
        [(saved, false), (-1, true)],
        "the stale checkpoint was refused, then latest"
    );
    assert_eq!(
        applies(&app),
        2,
        "the missed booking once, the first not redone"
    );
    let later = create_booking(&app, &trainer, 34, 35, true);
    assert_gets_its_meeting(&app, &later).await;
    assert_eq!(applies(&app), 3);
}

#[tokio::test]
async fn a_gap_event_gets_its_booking_processed_by_id() {
    let (app, trainer) = running().await;
    let booking = create_booking(&app, &trainer, 40, 41, true);
    assert_gets_its_meeting(&app, &booking).await;
    wait_caught_up(&app).await;
    let rid = field(&app, &booking, RESERVATION).unwrap();

    // A change the stream does not show as work: made under the integration user, so its
    // own event is skipped as one of ours.
    app.sf.update(
        BOOKING,
        &booking,
        json!({ "Training_End__c": crate::helpers::sf_time_in(43) }),
        SF_INTEGRATION_USER_ID,
    );
    wait_caught_up(&app).await;
    assert_eq!(
        app.lark.requests().count(&Method::PUT, "/reserves/"),
        0,
        "invisible so far"
    );

    app.sf.hub().inject_gap(BOOKING, "GAP_UPDATE", &[&booking]);
    let want = booking_time(&app, &booking, "Training_End__c");
    wait_until("Lark holds the new end time", || async {
        app.lark
            .reserves()
            .iter()
            .any(|r| r.id == rid && r.end_time == want)
    })
    .await;
    wait_caught_up(&app).await;
    assert_eq!(app.lark.requests().count(&Method::PUT, "/reserves/"), 1);
    assert_eq!(
        field(&app, &booking, RESERVATION),
        Some(rid),
        "same reservation"
    );
}

#[tokio::test]
async fn a_gap_overflow_runs_a_sweep() {
    let (app, trainer) = running().await;
    // A booking whose CREATE event the service skips (written by the integration user).
    let unseen = app.sf.insert(
        BOOKING,
        json!({
            "Name": "Imported", "Trainer__c": trainer,
            "Training_Start__c": crate::helpers::sf_time_in(50),
            "Training_End__c": crate::helpers::sf_time_in(51),
            "Service_Type__c": "Remote", "Status__c": "Scheduled", "Merchant_Name__c": "Acme",
        }),
        SF_INTEGRATION_USER_ID,
    );
    wait_caught_up(&app).await;
    assert_eq!(
        field(&app, &unseen, LINK),
        None,
        "not seen through its own event"
    );
    assert_eq!(applies(&app), 1);

    app.sf.hub().inject_gap(BOOKING, "GAP_OVERFLOW", &[]);
    assert_gets_its_meeting(&app, &unseen).await;
    wait_caught_up(&app).await;
    assert_eq!(applies(&app), 2, "the sweep redid nothing already done");
}

#[tokio::test]
async fn server_errors_and_rate_limits_from_both_sides_are_waited_out() {
    let (app, trainer) = running().await;
    let lark_faults = app.lark.faults();
    lark_faults.inject(
        Some(Method::POST),
        APPLY,
        2,
        500,
        r#"{"code":121001,"msg":"internal error"}"#,
        &[],
    );
    lark_faults.inject(
        Some(Method::POST),
        APPLY,
        1,
        429,
        r#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
        &[("x-ogw-ratelimit-reset", "1")],
    );
    // Lark sometimes says "rate limited" with HTTP 400 (design §4).
    lark_faults.inject(
        Some(Method::POST),
        APPLY,
        1,
        400,
        r#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
        &[("x-ogw-ratelimit-reset", "1")],
    );
    let unavailable = r#"[{"message":"Service Unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#;
    app.sf
        .faults()
        .inject(Some(Method::GET), "/queryAll", 2, 503, unavailable, &[]);
    app.sf.faults().inject(
        Some(Method::PATCH),
        "/composite/sobjects",
        2,
        503,
        unavailable,
        &[],
    );

    let bookings: Vec<String> = (0..3)
        .map(|n| create_booking(&app, &trainer, 30 + n, 31 + n, true))
        .collect();
    for b in &bookings {
        assert_gets_its_meeting(&app, b).await;
    }
    wait_caught_up(&app).await;
    let statuses: Vec<u16> = app
        .lark
        .requests()
        .matching(|r| r.path == APPLY)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s != 200).count(),
        4,
        "{statuses:?}"
    );
    let sf_503 = app.sf.requests().matching(|r| r.status == 503).len();
    assert_eq!(sf_503, 4, "every injected Salesforce fault was met");
    assert_eq!(
        applies(&app),
        4,
        "one reservation per booking, no duplicates"
    );
    assert_eq!(app.lark.reserves().iter().filter(|r| !r.deleted).count(), 4);
}

#[tokio::test]
async fn a_malformed_event_is_logged_with_its_replay_id_and_skipped() {
    let (app, trainer) = running().await;
    // Move the replay ids far from other tests' (they share the log capture) by
    // publishing on a channel nobody listens to.
    let filler = format!("/event/Filler{}__e", rand_suffix());
    for _ in 0..(4_000 + rand_suffix() % 1_000) {
        app.sf.hub().publish_platform_event(&filler, json!({}));
    }
    let channel = app.settings.salesforce.streaming.channel.clone();
    let bad = app.sf.hub().last_replay_id() + 1;
    app.sf.hub().publish_raw(
        &channel,
        json!({"schema": "x", "payload": {"Name": "no header"}, "event": {"replayId": bad}}),
    );
    let next = create_booking(&app, &trainer, 30, 31, true);
    assert_gets_its_meeting(&app, &next).await;
    wait_caught_up(&app).await;
    assert!(checkpoint(&app).unwrap() > bad, "the stream moved past it");
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("malformed") && l.contains(&bad.to_string())),
        "a log line names replay id {bad}"
    );
    assert!(metric(&app, "lvb_events_skipped_total{reason=\"malformed\"}").await >= 1.0);
}

fn rand_suffix() -> u64 {
    u64::from(std::process::id()) ^ (chrono::Utc::now().timestamp_subsec_nanos() as u64)
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_booking_in_flight_and_saves_the_checkpoint() {
    let (app, trainer) = running().await;
    // A slow Lark keeps the next booking in flight while shutdown is asked for.
    app.lark.faults().set_latency(Duration::from_millis(800));
    let received = metric(&app, "lvb_events_received_total").await;
    let booking = create_booking(&app, &trainer, 30, 31, true);
    let event = last_booking_event(&app.sf, &app.settings.salesforce.streaming.channel);
    wait_until("the event reached the processor", || async {
        metric(&app, "lvb_events_received_total").await > received
    })
    .await;
    assert!(
        field_of(&app.sf, &booking, LINK).is_none(),
        "the booking is still in flight when shutdown is asked for"
    );
    let grace = app.settings.processing.shutdown_timeout;
    app.shutdown.trigger();
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(grace + Duration::from_secs(5), app.task)
        .await
        .expect("stopped within the grace period")
        .expect("task did not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(started.elapsed() < grace, "{:?}", started.elapsed());
    assert!(
        field_of(&app.sf, &booking, LINK).is_some(),
        "in-flight booking finished"
    );
    let saved = app
        .store
        .checkpoint(&app.settings.salesforce.streaming.channel)
        .unwrap()
        .map(|c| c.resume);
    assert_eq!(
        saved,
        Some(ReplayId::After(event)),
        "checkpoint is the last processed event"
    );
    assert_eq!(app.sf.hub().client_count(), 0, "said goodbye to the hub");
}

fn field_of(
    sf: &lvb_simulators::salesforce::SalesforceSim,
    booking: &str,
    name: &str,
) -> Option<String> {
    sf.get(BOOKING, booking)?
        .get(name)?
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn a_restart_after_an_outage_longer_than_retention_sweeps() {
    let (app, trainer) = running().await;
    let saved = checkpoint(&app).expect("checkpoint");
    let channel = app.settings.salesforce.streaming.channel.clone();
    let (sf, lark, settings, dir) = app.stop().await;
    // The checkpoint was saved 73 hours ago: its events are past the 72-hour retention.
    let store = Store::open(&settings.store.path).unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(73);
    store
        .save_checkpoint(&channel, ReplayId::After(saved), long_ago)
        .unwrap();
    drop(store);
    let missed = insert_booking(&sf, &trainer, 30, 31, true);
    sf.hub().forget_events_before(sf.hub().last_replay_id() + 1);

    let app = start_app(sf, lark, settings, dir).await;
    assert_gets_its_meeting(&app, &missed).await;
    let last = app.sf.hub().subscribe_history().last().cloned().unwrap();
    assert_eq!(
        (last.replay_from, last.successful),
        (-1, true),
        "started from latest"
    );
    assert_eq!(applies(&app), 2, "the sweep redid nothing already done");
}

#[tokio::test]
async fn a_platform_event_channel_names_the_booking_to_process() {
    let sf = SalesforceSim::start(0).await.unwrap();
    let lark = LarkSim::start(0).await.unwrap();
    sf.hub().register_platform_event("/event/Booking_Change__e");
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        sim_settings(&sf.base_url(), &lark.base_url(), &dir.path().join("s.db")).unwrap();
    settings.salesforce.streaming.channel = "/event/Booking_Change__e".into();
    let app = start_app(sf, lark, settings, dir).await;
    let (trainer, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    wait_ready(&app).await;

    let booking = create_booking(&app, &trainer, 24, 25, true);
    assert_eq!(
        applies(&app),
        0,
        "CDC is not what this service listens to now"
    );
    let replay = app.sf.hub().publish_platform_event(
        "/event/Booking_Change__e",
        json!({ "Booking_Id__c": booking }),
    );
    assert_gets_its_meeting(&app, &booking).await;
    wait_until("the platform event is checkpointed", || async {
        checkpoint(&app) == Some(replay)
    })
    .await;
    assert_eq!(applies(&app), 1);
}

/// Design §3 rule 7: a reservation capped at Lark's 30 days is renewed (`PUT end_time`,
/// same link) as the booking's date nears — by the service's periodic sweep, with no
/// booking edit and no stream event. Time passing is modelled by the journal: it says the
/// reservation was made 20 days ago (its end time is 10 days out, where the cap would now
/// allow 30). The sweep is asked for through the handle the app's timer uses
/// (`app::SWEEP_INTERVAL` is an hour).
#[tokio::test]
async fn a_capped_reservation_is_renewed_by_the_periodic_sweep_with_the_same_link() {
    let app = spawn_app().await;
    let (trainer, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    let (sf, lark, settings, dir) = app.stop().await;
    let app = start_app(sf, lark, settings, dir).await;
    wait_ready(&app).await;
    let processor = app.processor.clone();
    let booking = create_booking(&app, &trainer, 60 * 24, 60 * 24 + 1, true);
    assert_gets_its_meeting(&app, &booking).await;
    wait_caught_up(&app).await;
    let mut entry = app
        .store
        .reservation(&bid(&booking))
        .unwrap()
        .expect("journalled");
    let link = field(&app, &booking, LINK);

    entry.end_time = chrono::Utc::now() + chrono::Duration::days(10);
    app.store
        .record_reservation(&entry, chrono::Utc::now())
        .unwrap();
    processor.request_reconcile();
    wait_until("the reservation is renewed with a PUT", || async {
        app.lark.requests().count(&Method::PUT, "/reserves/") > 0
    })
    .await;
    let r = app
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == entry.reservation_id)
        .unwrap();
    assert!(
        r.end_time > chrono::Utc::now().timestamp() + 29 * 86_400,
        "renewed to the cap"
    );
    assert_eq!(field(&app, &booking, LINK), link, "same link");
    assert_eq!(app.lark.requests().count(&Method::PUT, "/reserves/"), 1);
    assert_eq!(applies(&app), 1, "renewed, not re-created");
}

/// Design §3 rules 4 and 8: a booking deleted while its event can no longer be replayed
/// still loses its Lark reservation — the sweep that replaces the lost events must see
/// deletions too (the booking is gone from `query`; only `queryAll` or the journal knows).
#[tokio::test]
async fn a_booking_deleted_during_an_unreplayable_outage_still_loses_its_meeting() {
    let (app, trainer) = running().await;
    let booking = create_booking(&app, &trainer, 40, 41, true);
    assert_gets_its_meeting(&app, &booking).await;
    wait_caught_up(&app).await;
    let rid = field(&app, &booking, RESERVATION).unwrap();
    let (sf, lark, settings, dir) = app.stop().await;

    sf.delete(BOOKING, &booking, SF_HUMAN_USER_ID);
    sf.hub().forget_events_before(sf.hub().last_replay_id() + 1);

    let app = start_app(sf, lark, settings, dir).await;
    wait_until(
        "the deleted booking's reservation is deleted in Lark",
        || async { app.lark.reserves().iter().any(|r| r.id == rid && r.deleted) },
    )
    .await;
    assert_eq!(applies(&app), 2, "nothing re-created");
}
