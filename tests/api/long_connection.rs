//! Rule 28 from outside: the real app (or binary) against the Lark simulator's long
//! connection. `/metrics` shows the connection, its events by type and outcome and its
//! reconnects; a dropped connection is reopened from a fresh endpoint URL,
//! `ReconnectInterval` after a failed attempt, and events flow on it; a connection gone
//! silent is dropped after three ping intervals and reopened; `/readyz` does not wait for
//! it; only the process holding the store lock connects; `check` asks the endpoint and
//! names what to enable in the console.
//!
//! Not repeated here: the frame-by-frame behaviour (pings, an ack only after the record,
//! fragments, the SDKs' reconnect arithmetic on a paused clock) is tested in the service's
//! `lark/events` unit tests; redelivered, duplicated and fragmented events and `run`
//! killed after an event, in `attendance.rs`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lvb_simulators::lark::events::{
    ClientConfig, LongConnection, CODE_INVALID_CREDENTIAL, CODE_SYSTEM_BUSY,
};
use lvb_simulators::launch::Simulators;
use serde_json::json;
use tokio::time::Instant;

use crate::helpers::{
    binary_config, metric, metric_sample, run_command, spawn_app_after, start_app, wait_ready,
    wait_until, TestApp, BIN,
};

/// `lvb_lark_events_connected`: 1 while the connection is open.
const CONNECTED: &str = "lvb_lark_events_connected";
/// `lvb_lark_events_reconnects_total`: connections lost (each reopened).
const RECONNECTS: &str = "lvb_lark_events_reconnects_total";

/// What Lark hands out: reconnect forever, at once after a loss (no nonce), the given
/// seconds between failed attempts and between pings.
fn client_config(reconnect_interval: u64, ping_interval: u64) -> ClientConfig {
    ClientConfig {
        reconnect_count: -1,
        reconnect_interval,
        reconnect_nonce: 0,
        ping_interval,
    }
}

/// The app against simulators whose long connection hands out `config` from the start.
async fn spawn_with(config: ClientConfig) -> TestApp {
    spawn_app_after(
        |lark| lark.long_connection().set_client_config(config),
        |_, ()| {},
    )
    .await
}

/// Waits until `n` connections were opened so far and exactly one is open.
async fn wait_connections(hub: &LongConnection, n: u64) {
    wait_until(
        &format!("{n} connections opened, one of them open"),
        || async {
            let stats = hub.stats();
            stats.connections_opened == n && stats.connections_open == 1
        },
    )
    .await;
}

/// A join event of a meeting no booking has: recorded in the store (and so acknowledged),
/// applied to nothing. Returns its event id.
fn raise_stray_join(hub: &LongConnection) -> String {
    hub.raise(
        "vc.meeting.join_meeting_v1",
        json!({ "meeting": { "id": "7000000000000000009", "meeting_no": "999999999" } }),
    )
}

/// Waits until `event_id` is acknowledged with 200; returns the connection that did.
async fn wait_acked(hub: &LongConnection, event_id: &str) -> u64 {
    let acked = || {
        hub.acks()
            .into_iter()
            .find(|a| a.event_id.as_deref() == Some(event_id) && a.code == Some(200))
            .map(|a| a.connection)
    };
    wait_until(&format!("event {event_id} is acknowledged"), || async {
        acked().is_some()
    })
    .await;
    acked().unwrap()
}

/// `GET /readyz`'s status.
async fn readyz(app: &TestApp) -> u16 {
    reqwest::get(format!("{}/readyz", app.url))
        .await
        .expect("readyz answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_connection_its_events_by_type_and_outcome_and_its_reconnects() {
    use lvb_simulators::lark::events::frame::{header, Frame};
    let app = spawn_with(client_config(1, 120)).await;
    let hub = app.lark.long_connection();
    wait_until("/metrics shows the connection open", || async {
        metric_sample(&app, CONNECTED).await == Some(1.0)
    })
    .await;
    assert_eq!(hub.stats().connections_open, 1);
    assert_eq!(metric_sample(&app, RECONNECTS).await, Some(0.0));

    // A meeting event and an event of another type: each counted under its type once
    // recorded (and acknowledged).
    let join = raise_stray_join(hub);
    let other = hub.raise("im.message.receive_v1", json!({ "message": {} }));
    wait_acked(hub, &join).await;
    wait_acked(hub, &other).await;
    let recorded =
        |kind: &str| format!("lvb_lark_events_total{{outcome=\"recorded\",type=\"{kind}\"}}");
    wait_until("both events are counted", || async {
        metric(&app, &recorded("join_meeting")).await == 1.0
            && metric(&app, &recorded("other")).await == 1.0
    })
    .await;
    assert_eq!(app.store.lark_events_with_outcome("not_ours").unwrap(), 1);
    // An envelope that is not an event is answered 500 and counted as invalid.
    let not_an_event = Frame {
        seq_id: 7,
        log_id: 7,
        service: 0,
        method: 1,
        headers: vec![
            header("type", "event"),
            header("message_id", "m-not-json"),
            header("sum", "1"),
            header("seq", "0"),
        ],
        payload_encoding: None,
        payload_type: None,
        payload: Some(b"not json".to_vec()),
        log_id_new: None,
    };
    assert_eq!(hub.send_frame(&not_an_event), 1);
    wait_until("the invalid envelope is answered", || async {
        hub.acks().iter().any(|a| a.message_id == "m-not-json")
    })
    .await;
    let answer = hub
        .acks()
        .into_iter()
        .find(|a| a.message_id == "m-not-json")
        .unwrap();
    assert_eq!(answer.code, Some(500));
    assert_eq!(
        metric(
            &app,
            "lvb_lark_events_total{outcome=\"invalid\",type=\"unknown\"}"
        )
        .await,
        1.0
    );

    // Lost and reopened: counted once, and shown open again.
    assert_eq!(hub.drop_connections(), 1);
    wait_until(
        "the reconnect is counted and the connection open again",
        || async {
            metric(&app, RECONNECTS).await == 1.0
                && metric_sample(&app, CONNECTED).await == Some(1.0)
                && hub.stats().connections_opened == 2
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_is_reopened_from_a_fresh_url_reconnect_interval_after_a_failed_attempt(
) {
    const INTERVAL: u64 = 2;
    let app = spawn_with(client_config(INTERVAL, 120)).await;
    let hub = app.lark.long_connection();
    wait_connections(hub, 1).await;
    assert_eq!(hub.stats().endpoint_calls, 1);

    // The first attempt after the drop finds Lark busy: the service's retry helper asks
    // five times within the attempt, then the attempt fails and the next one waits
    // ReconnectInterval.
    hub.fail_endpoint(CODE_SYSTEM_BUSY, "system busy", 5);
    assert_eq!(hub.drop_connections(), 1);
    wait_until("the failed attempt's last endpoint call", || async {
        hub.stats().endpoint_calls >= 6
    })
    .await;
    let failed_at = Instant::now();
    wait_until("the next attempt's endpoint call", || async {
        hub.stats().endpoint_calls >= 7
    })
    .await;
    let waited = failed_at.elapsed();
    // Observed by polling, so up to a poll late at the start: a little slack below.
    assert!(
        waited >= Duration::from_secs(INTERVAL) - Duration::from_millis(250),
        "the next attempt waited {waited:?}, not the server's {INTERVAL} s"
    );
    assert!(
        waited < Duration::from_secs(INTERVAL + 8),
        "the next attempt waited {waited:?}: the server's interval, not the default 120 s"
    );
    wait_connections(hub, 2).await;
    let stats = hub.stats();
    assert_eq!(stats.endpoint_calls, 7, "{stats:?}");
    // Each URL admits one handshake: none refused means each connection had a fresh one.
    assert_eq!(stats.connections_refused, 0, "{stats:?}");
    assert_eq!(metric(&app, RECONNECTS).await, 1.0);

    // An event raised after the reconnect arrives on the new connection and is recorded.
    let join = raise_stray_join(hub);
    assert_eq!(
        wait_acked(hub, &join).await,
        2,
        "acknowledged on the new connection"
    );
    assert_eq!(app.store.lark_events_with_outcome("not_ours").unwrap(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_silent_for_three_ping_intervals_is_dropped_and_reopened() {
    let app = spawn_with(client_config(1, 1)).await;
    let hub = app.lark.long_connection();
    wait_connections(hub, 1).await;
    wait_until("a ping was answered", || async { hub.stats().pongs >= 1 }).await;
    // Lark pushes an unanswered event again; here every 300 ms rather than after 3 s.
    hub.set_retry_delays(vec![Duration::from_millis(300); 100]);

    // The connection stays open but carries nothing: no pongs, and the event pushed into
    // it is lost.
    assert_eq!(hub.go_silent(), 1);
    let silent_at = Instant::now();
    let join = raise_stray_join(hub);
    wait_connections(hub, 2).await;
    let after = silent_at.elapsed();
    // The last pong came at most a ping interval (1 s) before, so three intervals after it
    // is 2 to 3 s from now (with the SDKs' default interval, 6 minutes).
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "reopened {after:?} after going silent, not three 1 s ping intervals after the last pong"
    );
    let stats = hub.stats();
    assert!(
        stats.pings > stats.pongs,
        "pings went unanswered: {stats:?}"
    );
    assert_eq!(stats.endpoint_calls, 2, "a fresh URL: {stats:?}");
    assert_eq!(metric(&app, RECONNECTS).await, 1.0);
    // The event lost in the silent connection is pushed again and recorded on the new one.
    assert_eq!(wait_acked(hub, &join).await, 2);
    assert!(
        hub.acks().iter().all(|a| a.connection == 2),
        "nothing was answered on the silent connection"
    );
    assert_eq!(app.store.lark_events_with_outcome("not_ours").unwrap(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_200_while_the_long_connection_is_down_and_metrics_show_it_down() {
    let app = spawn_with(client_config(1, 120)).await;
    let hub = app.lark.long_connection();
    wait_ready(&app).await;
    wait_connections(hub, 1).await;

    // Dropped, and the endpoint busy for a whole attempt (five calls, then a second's
    // wait): down for seconds.
    hub.fail_endpoint(CODE_SYSTEM_BUSY, "system busy", 5);
    assert_eq!(hub.drop_connections(), 1);
    wait_until("the endpoint refused a reconnect", || async {
        hub.stats().endpoint_calls >= 2
    })
    .await;
    assert_eq!(
        readyz(&app).await,
        200,
        "/readyz does not wait for Lark's events"
    );
    assert_eq!(metric_sample(&app, CONNECTED).await, Some(0.0));
    let stats = hub.stats();
    assert_eq!(
        (stats.connections_opened, stats.connections_open),
        (1, 0),
        "still down when /readyz was asked: {stats:?}"
    );

    // Up again once the endpoint answers.
    wait_until("connected again", || async {
        metric_sample(&app, CONNECTED).await == Some(1.0)
    })
    .await;
    wait_connections(hub, 2).await;
    assert_eq!(readyz(&app).await, 200);
    app.stop().await;
}

/// `lark-vc-bridge run` with exactly `env` (nothing inherited from the test's own
/// `LVB_*`), its output in `log`; killed when dropped.
fn run_binary(env: &[(String, String)], log: &Path) -> tokio::process::Child {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("run");
    for (key, _) in std::env::vars() {
        if key.starts_with("LVB__") || key == "LVB_CONFIG" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .expect("run starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_process_holding_the_store_lock_connects() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = lvb_simulators::service_env(
        &sims.salesforce.base_url(),
        &sims.lark.base_url(),
        &dir.path().join("store.db"),
    );
    let hub = sims.lark.long_connection().clone();
    let settings = lark_vc_bridge::config::Settings::load_from(None, env.clone()).unwrap();
    let app = start_app(sims.salesforce, sims.lark, settings, dir).await;
    wait_connections(&hub, 1).await;

    // A second `run` on the same store refuses to start, and never asks Lark for a URL.
    let log = app.dir.path().join("second.log");
    let mut second = run_binary(&env, &log);
    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .expect("the second run exits within a minute")
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "the second run must fail:\n{said}");
    assert!(
        said.contains("is in use by another lark-vc-bridge process"),
        "{said}"
    );
    let stats = hub.stats();
    assert_eq!(
        (
            stats.endpoint_calls,
            stats.connections_opened,
            stats.connections_open
        ),
        (1, 1, 1),
        "only the holder connected: {stats:?}"
    );

    // Once the holder has stopped, the next `run` holds the lock and connects.
    let (_sf, _lark, _settings, dir) = app.stop().await;
    wait_until("the stopped app closed its connection", || async {
        hub.stats().connections_open == 0
    })
    .await;
    let _next = run_binary(&env, &dir.path().join("next.log"));
    wait_connections(&hub, 2).await;
    assert_eq!(hub.stats().endpoint_calls, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_asks_the_endpoint_and_names_the_events_and_permissions_to_enable() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(
        &sims,
        dir.path(),
        "check.toml",
        "events = \"long_connection\"\n",
        "",
    );
    let hub = sims.lark.long_connection();
    let events_line = |out: &str| {
        out.lines()
            .find(|l| l.contains(" Lark events — "))
            .unwrap_or_else(|| panic!("no Lark events line in:\n{out}"))
            .to_string()
    };
    let console_steps = [
        "receive events through a long connection",
        "vc.meeting.meeting_started_v1",
        "vc.meeting.join_meeting_v1",
        "vc.meeting.leave_meeting_v1",
        "vc.meeting.meeting_ended_v1",
        "vc.meeting.recording_ready_v1",
        "vc:meeting:readonly",
    ];

    let out = run_command(&["check"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = events_line(&stdout);
    assert!(
        line.starts_with("✓ Lark events — the long-connection endpoint answers"),
        "{line}"
    );
    for step in console_steps {
        assert!(line.contains(step), "{step} not named: {line}");
    }
    assert!(
        !line.contains("ticket="),
        "the URL's query is not shown: {line}"
    );
    let stats = hub.stats();
    assert_eq!(
        (stats.endpoint_calls, stats.connections_opened),
        (1, 0),
        "one endpoint call, no connection opened: {stats:?}"
    );

    // Lark refuses the app's credentials: `check` fails, says Lark's code and message,
    // which keys to check, and still what to enable.
    hub.fail_endpoint(
        CODE_INVALID_CREDENTIAL,
        "the App ID or App Secret is invalid",
        1,
    );
    let out = run_command(&["check"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check must fail:\n{stdout}");
    let line = events_line(&stdout);
    assert!(line.starts_with("✗ Lark events — "), "{line}");
    for needle in [
        &CODE_INVALID_CREDENTIAL.to_string(),
        "the App ID or App Secret is invalid",
        "lark.app_id and lark.app_secret",
    ] {
        assert!(line.contains(needle), "{needle} not in: {line}");
    }
    for step in console_steps {
        assert!(line.contains(step), "{step} not named: {line}");
    }
    assert!(!stdout.contains(lvb_simulators::LARK_APP_SECRET));
    assert_eq!(hub.stats().connections_opened, 0);
}
