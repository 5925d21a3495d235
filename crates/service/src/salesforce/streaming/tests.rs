//! The streaming transport against the Salesforce simulator, and without a server: how
//! each refusal is classified (design §3 rule 9), backoff, and the caps on waits the
//! server asks for (rule 18).

use super::bayeux::*;
use super::cometd::*;
use super::failure::*;
use super::*;
use crate::config::Settings;
use crate::ids::ReplayId;
use crate::outbound::STREAMING_BODY_CAP;
use crate::retry::RetryPolicy;
use crate::salesforce::events::ChangeKind as EventKind;
use crate::salesforce::rest::SalesforceClient;
use axum::http::Method;
use lvb_simulators::salesforce::cometd::{CometdHub, EventPlacement};
use lvb_simulators::salesforce::schema::BOOKING_OBJECT;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Value};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const CHANNEL: &str = "/data/Training_Booking__ChangeEvent";
/// The longest a test waits for something that should take milliseconds.
const DEADLINE: Duration = Duration::from_secs(15);
const STATUSES: [&str; 4] = ["Scheduled", "Confirmed", "Completed", "Cancelled"];

/// The real Salesforce simulator with three bookings created before anyone listens.
struct Org {
    sim: SalesforceSim,
    hub: Arc<CometdHub>,
    bookings: Vec<String>,
    settings: Settings,
    /// Replay id of the last event published before the test starts.
    base: i64,
    _dir: tempfile::TempDir,
}

impl Org {
    async fn start() -> Org {
        let sim = SalesforceSim::start(0).await.expect("simulator");
        let bookings = (0..3)
            .map(|n| {
                sim.insert(
                    BOOKING_OBJECT,
                    json!({"Status__c": "Scheduled", "Merchant_Name__c": format!("Merchant {n}")}),
                    SF_HUMAN_USER_ID,
                )
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::for_simulators(
            &sim.base_url(),
            "http://127.0.0.1:9",
            &dir.path().join("store.db"),
        )
        .expect("settings");
        let hub = sim.hub().clone();
        let base = hub.last_replay_id();
        Org {
            sim,
            hub,
            bookings,
            settings,
            base,
            _dir: dir,
        }
    }

    fn client(&self) -> SalesforceClient {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        SalesforceClient::with_retry_policy(&self.settings.salesforce, policy).expect("client")
    }

    /// A human edits booking `n` (an UPDATE change event).
    fn change(&self, n: usize, status: &str) {
        self.sim.update(
            BOOKING_OBJECT,
            &self.bookings[n],
            json!({"Status__c": status}),
            SF_HUMAN_USER_ID,
        );
    }

    fn logins(&self) -> usize {
        self.sim
            .requests()
            .count(&Method::POST, "/services/oauth2/token")
    }

    /// Bayeux messages on this meta channel the simulator has answered.
    fn answered(&self, meta: &str) -> usize {
        self.sim
            .requests()
            .matching(|r| r.method == Method::POST && r.path.starts_with("/cometd/"))
            .iter()
            .filter(|r| r.body.contains(&format!("\"{meta}\"")))
            .count()
    }
}

struct Subscriber {
    rx: mpsc::Receiver<StreamItem>,
    shutdown: watch::Sender<bool>,
    status: watch::Receiver<StreamStatus>,
    checkpoint: Arc<Mutex<Option<i64>>>,
    task: tokio::task::JoinHandle<Result<(), StreamError>>,
}

fn spawn_subscriber(org: &Org, channel: &str, start_from: i64, capacity: usize) -> Subscriber {
    let (tx, rx) = mpsc::channel(capacity);
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let (status_tx, status) = watch::channel(StreamStatus::default());
    let checkpoint: Arc<Mutex<Option<i64>>> = Arc::default();
    let saved = checkpoint.clone();
    let mut streaming = org.settings.salesforce.streaming.clone();
    streaming.channel = channel.to_string();
    let reporter = StatusReporter::new(status_tx);
    let mut transport = CometdTransport::new(
        org.client(),
        &streaming,
        ReplayId::from_wire(start_from),
        move || saved.lock().unwrap().map(ReplayId::After),
        reporter.clone(),
    )
    .expect("transport")
    .with_backoff(Duration::from_millis(10), Duration::from_millis(100));
    let task =
        tokio::spawn(async move { pump(&mut transport, &tx, &mut shutdown_rx, &reporter).await });
    Subscriber {
        rx,
        shutdown,
        status,
        checkpoint,
        task,
    }
}

impl Subscriber {
    async fn next(&mut self) -> StreamItem {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("an item within the deadline")
            .expect("stream open")
    }

    async fn next_event(&mut self) -> ChangeEvent {
        match self.next().await {
            StreamItem::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    async fn stop(self) -> Result<(), StreamError> {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("stops within the deadline")
            .expect("task not panicked")
    }
}

/// Waits (with a deadline) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn delivers_changes_in_order_whatever_their_place_in_the_response() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    assert!(sub.status.borrow().subscribed);

    let mut expected_replay = org.base;
    for (round, placement) in [
        EventPlacement::First,
        EventPlacement::Last,
        EventPlacement::Random,
    ]
    .into_iter()
    .enumerate()
    {
        org.hub.set_event_placement(placement);
        let connects_before = org.answered("/meta/connect");
        // Written back to back on this single-threaded runtime: one connect response
        // carries all three.
        for n in 0..3 {
            org.change(n, STATUSES[round + 1]);
        }
        for n in 0..3 {
            expected_replay += 1;
            let event = sub.next_event().await;
            assert_eq!(event.replay_id, expected_replay, "{placement:?}");
            assert_eq!(event.record_ids, vec![org.bookings[n].clone()]);
            assert_eq!(event.kind, EventKind::Update);
            assert_eq!(event.entity, BOOKING_OBJECT);
            assert_eq!(event.channel, CHANNEL);
            assert_eq!(event.commit_user.as_deref(), Some(SF_HUMAN_USER_ID));
            assert_eq!(event.changed_fields, vec!["Status__c", "LastModifiedDate"]);
            assert!(event.commit_timestamp.is_some() && event.transaction_key.is_some());
        }
        assert_eq!(
            org.answered("/meta/connect") - connects_before,
            1,
            "{placement:?}: the three events came in one connect response"
        );
    }

    org.sim
        .delete(BOOKING_OBJECT, &org.bookings[2], SF_HUMAN_USER_ID);
    let deleted = sub.next_event().await;
    assert_eq!(deleted.kind, EventKind::Delete);
    assert_eq!(deleted.record_ids, vec![org.bookings[2].clone()]);

    assert_eq!(
        sub.status.borrow().last_replay_id,
        Some(expected_replay + 1)
    );
    assert!(sub.status.borrow().last_event_at.is_some());
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_dropped_client_resubscribes_from_the_checkpoint_without_loss_or_duplicates() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );

    org.change(0, "Confirmed");
    org.change(1, "Confirmed");
    let a = sub.next_event().await;
    let b = sub.next_event().await;
    // The processor has finished only the first.
    *sub.checkpoint.lock().unwrap() = Some(a.replay_id);

    org.hub.drop_clients();
    // Written while the client is gone: only replay can bring it back.
    org.change(2, "Confirmed");

    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::After(a.replay_id)
        }
    );
    let c = sub.next_event().await;
    assert_eq!(c.record_ids, vec![org.bookings[2].clone()]);
    assert_eq!(c.replay_id, b.replay_id + 1, "b was not handed over twice");

    let history = org.hub.subscribe_history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].replay_from, a.replay_id);
    assert!(history[1].successful);
    assert_eq!(org.answered("/meta/handshake"), 2);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_expired_replay_id_falls_back_to_new_events_and_reports_the_gap() {
    let org = Org::start().await;
    org.change(0, "Confirmed");
    org.change(1, "Confirmed");
    let stale = org.base + 1;
    org.hub.forget_events_before(org.base + 2);

    let mut sub = spawn_subscriber(&org, CHANNEL, stale, 16);
    match sub.next().await {
        StreamItem::ReplayGap { reason } => assert_eq!(
            reason,
            format!("400::The replayId {stale} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.")
        ),
        other => panic!("expected a replay gap, got {other:?}"),
    }
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );

    org.change(2, "Confirmed");
    let event = sub.next_event().await;
    assert_eq!(event.replay_id, org.base + 3);

    let tried: Vec<(i64, bool)> = org
        .hub
        .subscribe_history()
        .iter()
        .map(|r| (r.replay_from, r.successful))
        .collect();
    assert_eq!(tried, vec![(stale, false), (-1, true)]);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_expired_session_logs_in_once_more_and_carries_on() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    org.change(0, "Confirmed");
    let first = sub.next_event().await;
    assert_eq!(org.logins(), 1);

    org.sim.expire_sessions();
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::After(first.replay_id)
        },
        "resumes after the last event handed over"
    );
    assert_eq!(org.logins(), 2, "exactly one re-login");
    assert_eq!(org.answered("/meta/handshake"), 2);

    org.change(1, "Confirmed");
    let after = sub.next_event().await;
    assert_eq!(after.record_ids, vec![org.bookings[1].clone()]);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn gap_overflow_and_malformed_events_flow_through_and_the_stream_goes_on() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );

    let ids = [org.bookings[0].as_str(), org.bookings[1].as_str()];
    org.hub.inject_gap(BOOKING_OBJECT, "GAP_UPDATE", &ids);
    org.hub.inject_gap(BOOKING_OBJECT, "GAP_OVERFLOW", &[]);
    let bad = org.hub.last_replay_id() + 1;
    org.hub.publish_raw(
        CHANNEL,
        json!({"schema": "x", "payload": {"Name": "no header"}, "event": {"replayId": bad}}),
    );
    org.change(2, "Confirmed");

    let gap = sub.next_event().await;
    assert_eq!(gap.kind, EventKind::GapUpdate);
    assert_eq!(gap.record_ids, ids);
    let overflow = sub.next_event().await;
    assert_eq!(overflow.kind, EventKind::GapOverflow);
    assert!(overflow.record_ids.is_empty());
    match sub.next().await {
        StreamItem::Malformed { replay_id, reason } => {
            assert_eq!(replay_id, Some(bad));
            assert!(reason.contains("ChangeEventHeader"), "{reason}");
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    let fine = sub.next_event().await;
    assert_eq!(fine.replay_id, bad + 1);
    assert_eq!(sub.status.borrow().last_replay_id, Some(bad + 1));
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_empty_long_poll_just_reconnects() {
    let org = Org::start().await;
    org.hub.set_connect_timeout(Duration::from_millis(100));
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );

    until("four empty long polls", || {
        org.answered("/meta/connect") >= 4
    })
    .await;
    assert!(sub.status.borrow().subscribed);
    assert!(!sub.task.is_finished());
    assert!(sub.rx.try_recv().is_err(), "no item for an empty poll");
    assert_eq!(org.answered("/meta/handshake"), 1, "no re-handshake");

    org.change(0, "Confirmed");
    assert_eq!(sub.next_event().await.replay_id, org.base + 1);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let org = Org::start().await;
    org.sim.faults().inject(
        Some(Method::POST),
        "/cometd/",
        3,
        503,
        "<html>busy</html>",
        &[],
    );
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    let statuses: Vec<u16> = org
        .sim
        .requests()
        .matching(|r| r.path.starts_with("/cometd/"))
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(&statuses[..4], &[503, 503, 503, 200]);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn check_subscription_probes_and_says_goodbye() {
    let org = Org::start().await;
    let streaming = org.settings.salesforce.streaming.clone();
    check_subscription(org.client(), &streaming, DEADLINE)
        .await
        .expect("subscribes");
    assert_eq!(org.answered("/meta/subscribe"), 1);
    assert_eq!(org.hub.client_count(), 0, "disconnected after the probe");

    let mut wrong = streaming.clone();
    wrong.channel = "/data/Nope__ChangeEvent".into();
    let err = check_subscription(org.client(), &wrong, DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::SubscribeRefused { .. }), "{err}");

    org.sim
        .faults()
        .inject(Some(Method::POST), "/cometd/", 1000, 503, "busy", &[]);
    let err = check_subscription(org.client(), &streaming, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::NotSubscribedWithin(_)), "{err}");
}

#[tokio::test]
async fn a_full_channel_holds_the_stream_without_losing_events() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 1);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    for n in 0..5 {
        org.change(n % 3, STATUSES[n % 4]);
    }
    for expected in 1..=5 {
        assert_eq!(sub.next_event().await.replay_id, org.base + expected);
    }
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_disconnects_and_marks_the_stream_down() {
    let org = Org::start().await;
    let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    assert_eq!(org.hub.client_count(), 1);
    let status = sub.status.clone();
    sub.stop().await.expect("clean stop");
    assert!(!status.borrow().subscribed);
    assert_eq!(
        org.hub.client_count(),
        0,
        "said goodbye with /meta/disconnect"
    );
    assert_eq!(org.answered("/meta/disconnect"), 1);
}

#[tokio::test]
async fn an_unknown_channel_stops_the_subscriber_with_the_reason() {
    let org = Org::start().await;
    let sub = spawn_subscriber(&org, "/data/Nope__ChangeEvent", -1, 16);
    let result = tokio::time::timeout(DEADLINE, sub.task)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(StreamError::SubscribeRefused { channel, error }) => {
            assert_eq!(channel, "/data/Nope__ChangeEvent");
            assert!(error.contains("does not exist"), "{error}");
        }
        other => panic!("expected a refused subscription, got {other:?}"),
    }
    assert!(!sub.status.borrow().subscribed);
}

#[tokio::test]
async fn platform_event_channels_name_the_booking() {
    let org = Org::start().await;
    org.hub.register_platform_event("/event/Booking_Change__e");
    let mut sub = spawn_subscriber(&org, "/event/Booking_Change__e", -1, 16);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        }
    );
    org.hub.publish_platform_event(
        "/event/Booking_Change__e",
        json!({"Booking_Id__c": org.bookings[0]}),
    );
    let event = sub.next_event().await;
    assert_eq!(event.kind, EventKind::Update);
    assert_eq!(event.record_ids, vec![org.bookings[0].clone()]);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn run_subscriber_is_spawnable_and_keeps_the_token_out_of_debug() {
    let org = Org::start().await;
    let (tx, mut rx) = mpsc::channel(4);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (status_tx, status) = watch::channel(StreamStatus::default());
    let task = tokio::spawn(run_subscriber(
        org.client(),
        org.settings.salesforce.streaming.clone(),
        ReplayId::Latest,
        || None,
        tx,
        shutdown_rx,
        status_tx,
    ));
    let item = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
    assert_eq!(
        item,
        Some(StreamItem::Subscribed {
            replay_from: ReplayId::Latest
        })
    );
    assert!(status.borrow().subscribed);
    shutdown.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let client = org.client();
    let session = client.session().await.unwrap();
    let mut transport = CometdTransport::new(
        client,
        &org.settings.salesforce.streaming,
        ReplayId::Latest,
        || None,
        StatusReporter::detached(),
    )
    .unwrap();
    transport.session = Some(session.clone());
    let debug = format!("{transport:?}");
    assert!(
        !debug.contains(secrecy::ExposeSecret::expose_secret(&session.access_token)),
        "{debug}"
    );
}

// The transport without a server: how each refusal is classified (design §3 rule 9),
// backoff, and the caps on waits the server asks for (rule 18).

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_is_capped() {
    let mut transport =
        offline_transport().with_backoff(Duration::from_millis(100), Duration::from_secs(2));
    let mut waits = Vec::new();
    for _ in 0..8 {
        let before = tokio::time::Instant::now();
        transport.wait_before_retry(Delay::Backoff).await;
        waits.push(before.elapsed());
    }
    assert!(waits[0] >= Duration::from_millis(100), "{waits:?}");
    assert!(
        waits.iter().all(|w| *w <= Duration::from_secs(4)),
        "{waits:?}"
    );
    assert!(waits[7] >= Duration::from_secs(2), "{waits:?}");

    // A server-directed retry right after a success runs at once; a second in a row
    // backs off.
    transport.succeeded();
    let before = tokio::time::Instant::now();
    transport.wait_before_retry(Delay::Now).await;
    assert_eq!(before.elapsed(), Duration::ZERO);
    transport.wait_before_retry(Delay::Now).await;
    assert!(before.elapsed() >= Duration::from_millis(100));
}

#[test]
fn advice_waits_from_the_server_are_capped() {
    let ten_hours_ms = 10 * 3600 * 1000;
    let absurd = json!({"advice": {"timeout": ten_hours_ms, "interval": ten_hours_ms}});
    assert_eq!(
        capped_advice(&absurd),
        (Some(MAX_CONNECT_HOLD), Some(MAX_ADVICE_INTERVAL))
    );
    assert!(
        MAX_ADVICE_INTERVAL < Duration::from_secs(40),
        "reconnect within 40 s"
    );
    // Salesforce's own values pass unchanged; a reply without advice changes nothing.
    let usual = json!({"advice": {"timeout": 110_000, "interval": 0, "reconnect": "retry"}});
    assert_eq!(
        capped_advice(&usual),
        (Some(Duration::from_secs(110)), Some(Duration::ZERO))
    );
    assert_eq!(capped_advice(&json!({"successful": true})), (None, None));

    let mut transport = offline_transport();
    transport.apply_advice(&absurd);
    assert_eq!(transport.connect_hold, MAX_CONNECT_HOLD);
    assert_eq!(transport.pending_interval, MAX_ADVICE_INTERVAL);
    transport.apply_advice(&usual);
    assert_eq!(transport.connect_hold, DEFAULT_CONNECT_HOLD);
    assert_eq!(transport.pending_interval, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_wait_the_server_asks_for_is_capped_at_the_longest_backoff() {
    let mut transport =
        offline_transport().with_backoff(Duration::from_millis(100), Duration::from_secs(2));
    let before = tokio::time::Instant::now();
    transport
        .wait_before_retry(Delay::Exactly(Duration::from_secs(10 * 3600)))
        .await;
    assert_eq!(before.elapsed(), Duration::from_secs(2));
    let before = tokio::time::Instant::now();
    transport
        .wait_before_retry(Delay::Exactly(Duration::from_millis(300)))
        .await;
    assert_eq!(
        before.elapsed(),
        Duration::from_millis(300),
        "a short hint is kept"
    );
}

fn offline_transport() -> CometdTransport {
    let settings = Settings::for_simulators(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        std::path::Path::new("unused.db"),
    )
    .unwrap();
    let client = SalesforceClient::new(&settings.salesforce).unwrap();
    CometdTransport::new(
        client,
        &settings.salesforce.streaming,
        ReplayId::Latest,
        || None,
        StatusReporter::detached(),
    )
    .unwrap()
}

#[test]
fn refusals_are_classified_per_design_rule_9() {
    let transport = offline_transport();
    let subscribe = Phase::Subscribe { fallback: None };
    let table: Vec<(Value, Phase, &str)> = vec![
        (
            json!({"channel": "/meta/connect", "error": "401::Authentication invalid",
                "advice": {"reconnect": "none", "interval": 0}, "successful": false}),
            Phase::Connect,
            "retry Relogin Now",
        ),
        (
            fixture_reply("bayeux_handshake_denied.json"),
            Phase::Handshake,
            "retry Relogin Now",
        ),
        (
            fixture_reply("bayeux_connect_unknown_client.json"),
            Phase::Connect,
            "retry Handshake Now",
        ),
        (
            json!({"channel": "/meta/handshake", "error": "400::Invalid connection type websocket",
                "successful": false}),
            Phase::Handshake,
            "fatal",
        ),
        (
            json!({"channel": "/meta/handshake", "error": "403::Handshake denied",
                "ext": {"sfdc": {"failureReason": "403::Organization concurrent user limit exceeded"}},
                "advice": {"reconnect": "none"}, "successful": false}),
            Phase::Handshake,
            "retry Handshake Backoff",
        ),
        (
            json!({"channel": "/meta/subscribe",
                "error": "400::The channel you requested to subscribe to does not exist /data/X",
                "successful": false}),
            subscribe.clone(),
            "fatal",
        ),
        (
            json!({"channel": "/meta/subscribe",
                "error": "403::Organization total events daily limit exceeded", "successful": false}),
            subscribe.clone(),
            "retry Subscribe { fallback: None } Backoff",
        ),
        (
            json!({"channel": "/meta/connect", "error": "400::Client abc has established a session, but no BAYEUX_BROWSER cookie present",
                "successful": false}),
            Phase::Connect,
            "retry Handshake Backoff",
        ),
        (
            json!({"channel": "/meta/connect", "error": "403::Restricted channel",
                "advice": {"reconnect": "none"}, "successful": false}),
            Phase::Connect,
            "fatal",
        ),
        (
            json!({"channel": "/meta/connect", "error": "503::Server is too busy",
                "advice": {"reconnect": "retry"}, "successful": false}),
            Phase::Connect,
            "retry Connect Backoff",
        ),
    ];
    for (reply, phase, want) in table {
        let got = match transport.classify(&reply, phase) {
            Failure::Fatal(_) => "fatal".to_string(),
            Failure::Retry { phase, delay } => format!("retry {phase:?} {delay:?}"),
        };
        assert_eq!(got, want, "{reply}");
    }
}

fn fixture_reply(name: &str) -> Value {
    let path = format!("{}/../../fixtures/cdc/{name}", env!("CARGO_MANIFEST_DIR"));
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    all[0].clone()
}

#[tokio::test]
async fn an_oversized_connect_answer_is_not_read_and_the_events_in_it_are_replayed() {
    use lvb_simulators::salesforce::oversized::OversizedAnswer;
    let org = Org::start().await;
    org.change(0, "Confirmed");
    // The first connect, which would carry that change, gets 300 MB instead.
    org.sim
        .stream_oversized_answers(OversizedAnswer::CometdConnect, 300 * 1024 * 1024, 1);
    let mut sub = spawn_subscriber(&org, CHANNEL, org.base, 16);
    let subscribed = StreamItem::Subscribed {
        replay_from: ReplayId::After(org.base),
    };
    assert_eq!(sub.next().await, subscribed);
    assert_eq!(
        sub.next().await,
        subscribed,
        "shook hands again and subscribed from the same place"
    );
    let event = sub.next_event().await;
    assert_eq!(event.replay_id, org.base + 1, "the change is replayed");
    assert_eq!(event.record_ids, vec![org.bookings[0].clone()]);
    until("the oversized answer abandoned", || {
        org.sim.oversized_answers_finished() == 1
    })
    .await;
    let sent = org.sim.oversized_bytes_sent();
    assert!(
        sent < (STREAMING_BODY_CAP as u64) * 4,
        "read up to the cap, not to the end: {sent} bytes sent"
    );
    assert_eq!(org.answered("/meta/handshake"), 2);
    sub.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_answer_with_more_events_than_it_takes_is_read_in_part_and_the_rest_replayed_once() {
    let org = Org::start().await;
    let extra = 50;
    let total = MAX_EVENTS_PER_ANSWER + extra;
    for i in 0..total {
        org.change(i % 3, STATUSES[i % STATUSES.len()]);
    }
    let mut sub = spawn_subscriber(&org, CHANNEL, org.base, total + 16);
    // Where the processor's work is done when the subscriber comes back for the rest.
    let done_up_to = org.base + 10;
    *sub.checkpoint.lock().unwrap() = Some(done_up_to);
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::After(org.base)
        }
    );
    for n in 1..=MAX_EVENTS_PER_ANSWER as i64 {
        assert_eq!(sub.next_event().await.replay_id, org.base + n);
    }
    // The rest was left on the server: a new subscription from the checkpoint replays it,
    // and what was already handed over is not handed over again.
    assert_eq!(
        sub.next().await,
        StreamItem::Subscribed {
            replay_from: ReplayId::After(done_up_to)
        }
    );
    for n in MAX_EVENTS_PER_ANSWER as i64 + 1..=total as i64 {
        assert_eq!(sub.next_event().await.replay_id, org.base + n);
    }
    assert_eq!(org.answered("/meta/handshake"), 2);
    org.change(0, "Cancelled");
    assert_eq!(
        sub.next_event().await.replay_id,
        org.base + total as i64 + 1
    );
    assert!(sub.rx.try_recv().is_err(), "nothing handed over twice");
    sub.stop().await.expect("clean stop");
}
