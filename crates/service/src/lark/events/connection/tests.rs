//! Tests of [`super`] (connection.rs) against the scripted Lark of `test_support.rs`. The
//! clock is paused and held still (`FrozenClock`): only `advance` moves it.

use std::time::Duration;

use serde_json::json;
use tokio::time::advance;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::lark::events::frame::HEADER_BIZ_RT;
use crate::lark::events::frame::{Frame, HEADER_TYPE, METHOD_CONTROL, TYPE_PING};
use crate::lark::events::session::CLOSE_TIMEOUT;
use crate::lark::events::test_support::{
    data_frame, envelope, within, FakeLark, Logs, TestSink, ACCESS_KEY, SERVICE_ID, TICKET,
};
use crate::lark::test_support::{eventually, settle, FrozenClock};

/// The server's settings in these tests: ping every 10 s, reconnect at once, 2 s apart.
fn config() -> serde_json::Value {
    json!({"PingInterval": 10, "ReconnectNonce": 0, "ReconnectInterval": 2, "ReconnectCount": -1})
}

/// One attempt per bootstrap call, so that calls can be counted per connection attempt.
fn one_try() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..crate::lark::test_support::fast_policy()
    }
}

struct Running {
    lark: FakeLark,
    sink: TestSink,
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), EventsError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(lark: FakeLark, sink: TestSink, policy: RetryPolicy) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let settings = lark.settings(&dir);
        let connection =
            LongConnection::with_retry_policy(&settings.lark, metrics.clone(), policy).unwrap();
        let cancel = CancellationToken::new();
        // Spawned: also proves `run` is Send + 'static, as the app needs.
        let task = tokio::spawn(connection.run(sink.clone(), cancel.clone()));
        Running {
            lark,
            sink,
            metrics,
            cancel,
            task,
            _dir: dir,
        }
    }

    fn events(&self, kind: &str, outcome: &str) -> u64 {
        self.metrics
            .get(names::LARK_EVENTS, &[("type", kind), ("outcome", outcome)])
    }

    fn dropped(&self, reason: &str) -> u64 {
        self.metrics
            .get(names::LARK_EVENT_FRAMES_DROPPED, &[("reason", reason)])
    }

    /// Cancels on a paused clock: the close handshake waits (up to CLOSE_TIMEOUT) for a
    /// close frame the test's server side does not send.
    async fn stop_paused(&mut self) -> Result<(), EventsError> {
        self.cancel.cancel();
        settle().await;
        advance(CLOSE_TIMEOUT).await;
        self.result().await
    }

    async fn result(&mut self) -> Result<(), EventsError> {
        within("run to return", &mut self.task).await.unwrap()
    }
}

fn is_ping(frame: &Frame) -> bool {
    frame.method == METHOD_CONTROL && frame.header(HEADER_TYPE) == Some(TYPE_PING)
}

#[tokio::test(start_paused = true)]
async fn pings_at_once_then_every_ping_interval_with_the_urls_service_id() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut server = run.lark.next_connection().await;
    assert!(server.query.contains("device_id=dev-1"), "{}", server.query);
    assert!(server.query.contains(&format!("ticket={TICKET}")));

    let ping = server.recv().await.unwrap();
    assert!(is_ping(&ping), "{ping:?}");
    assert_eq!(
        ping,
        Frame::ping(SERVICE_ID),
        "SeqID 0, LogID 0, one header"
    );

    advance(Duration::from_secs(9)).await;
    assert!(server.nothing_more().await, "no ping before 10 s");
    advance(Duration::from_secs(1)).await;
    assert!(is_ping(&server.recv().await.unwrap()));
    // Lark answers pings, so the watchdog never fires on a healthy connection.
    for _ in 0..5 {
        server.send_pong(None).await;
        advance(Duration::from_secs(10)).await;
        assert!(is_ping(&server.recv().await.unwrap()));
    }
    assert_eq!(run.lark.bootstrap_calls(), 1);
    assert_eq!(run.metrics.gauge(names::LARK_EVENTS_CONNECTED, &[]), 1.0);

    let bodies = run.lark.bootstrap_bodies();
    assert_eq!(
        bodies[0],
        json!({"AppID": lvb_simulators::LARK_APP_ID, "AppSecret": lvb_simulators::LARK_APP_SECRET})
    );
    assert!(
        !run.lark.saw_authorization(),
        "the bootstrap takes no Authorization header"
    );
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pong_with_a_client_config_changes_the_ping_interval() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut server = run.lark.next_connection().await;
    assert!(is_ping(&server.recv().await.unwrap()));
    server
        .send_pong(Some(json!({"PingInterval": 30, "ReconnectCount": 3})))
        .await;
    settle().await;
    // The ping already scheduled (10 s) goes out; from then on, every 30 s.
    advance(Duration::from_secs(10)).await;
    assert!(is_ping(&server.recv().await.unwrap()));
    server.send_pong(Some(json!({"PingInterval": "abc"}))).await;
    advance(Duration::from_secs(29)).await;
    assert!(server.nothing_more().await, "no ping before the new 30 s");
    advance(Duration::from_secs(1)).await;
    assert!(is_ping(&server.recv().await.unwrap()));
    assert_eq!(run.dropped("bad_client_config"), 1);
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_event_is_acknowledged_only_after_the_sink_recorded_it() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::gated(), one_try()).await;
    let mut server = run.lark.next_connection().await;
    assert!(is_ping(&server.recv().await.unwrap()));

    let sent = data_frame(
        41,
        "msg-41",
        1,
        0,
        &envelope("ev-1", "vc.meeting.join_meeting_v1", "235812466"),
    );
    server.send(&sent).await;
    eventually("the sink to be called", || run.sink.calls() == 1).await;
    assert!(
        server.nothing_more().await,
        "no answer while the sink works"
    );
    assert_eq!(run.events("join_meeting", "recorded"), 0);

    advance(Duration::from_millis(1500)).await;
    run.sink.release(1);
    let ack = server.recv_non_ping().await.unwrap();
    assert_eq!(
        (ack.seq_id, ack.log_id, ack.service, ack.method),
        (sent.seq_id, sent.log_id, sent.service, sent.method)
    );
    assert_eq!(ack.headers[..sent.headers.len()], sent.headers[..]);
    assert_eq!(
        ack.header(HEADER_BIZ_RT),
        Some("1500"),
        "the sink's time, in ms"
    );
    assert_eq!(ack.payload(), br#"{"code":200}"#);
    assert_eq!(run.events("join_meeting", "recorded"), 1);
    let recorded = run.sink.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].header.event_id, "ev-1");
    assert_eq!(
        recorded[0].kind.meeting().map(|m| m.meeting_no.as_str()),
        Some("235812466")
    );
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn events_are_recorded_in_order_and_a_failed_record_is_answered_500() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut server = run.lark.next_connection().await;
    for (seq, id, kind) in [
        (1, "ev-a", "vc.meeting.meeting_started_v1"),
        (2, "ev-b", "vc.meeting.join_meeting_v1"),
        (3, "ev-c", "im.message.receive_v1"),
    ] {
        server
            .send_event(seq, &envelope(id, kind, "111222333"))
            .await;
    }
    let acks: Vec<u64> = [
        server.recv_non_ping().await.unwrap(),
        server.recv_non_ping().await.unwrap(),
        server.recv_non_ping().await.unwrap(),
    ]
    .iter()
    .map(|f| f.seq_id)
    .collect();
    assert_eq!(acks, vec![1, 2, 3]);
    let ids: Vec<String> = run
        .sink
        .recorded()
        .into_iter()
        .map(|e| e.header.event_id)
        .collect();
    assert_eq!(ids, vec!["ev-a", "ev-b", "ev-c"], "in arrival order");
    assert_eq!(
        run.events("other", "recorded"),
        1,
        "an unknown type is still recorded"
    );

    run.sink.set_failing(true);
    server
        .send_event(
            4,
            &envelope("ev-d", "vc.meeting.meeting_ended_v1", "111222333"),
        )
        .await;
    let ack = server.recv_non_ping().await.unwrap();
    assert_eq!(ack.seq_id, 4);
    assert_eq!(ack.payload(), br#"{"code":500}"#);
    assert_eq!(run.events("meeting_ended", "sink_failed"), 1);
    assert_eq!(run.sink.recorded().len(), 3);
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fragments_are_joined_before_the_sink_sees_the_event() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut server = run.lark.next_connection().await;
    assert!(is_ping(&server.recv().await.unwrap()));
    let payload = envelope("ev-big", "vc.meeting.recording_ready_v1", "987654321");
    let parts: Vec<&[u8]> = payload.chunks(payload.len() / 3 + 1).collect();
    assert_eq!(parts.len(), 3);
    // Out of order: 2, 0, 1.
    server.send(&data_frame(10, "big", 3, 2, parts[2])).await;
    server.send(&data_frame(11, "big", 3, 0, parts[0])).await;
    assert!(server.nothing_more().await);
    server.send(&data_frame(12, "big", 3, 1, parts[1])).await;
    let ack = server.recv_non_ping().await.unwrap();
    assert_eq!(
        ack.seq_id, 12,
        "the frame that completed the message is answered"
    );
    assert_eq!(ack.payload(), br#"{"code":200}"#);
    assert_eq!(run.sink.recorded().len(), 1);
    assert_eq!(run.sink.recorded()[0].header.event_id, "ev-big");

    // A set that never completes is dropped after 5 s, and counted.
    server.send(&data_frame(20, "lost", 2, 0, b"{\"sch")).await;
    settle().await;
    advance(Duration::from_secs(5)).await;
    eventually("the incomplete set to expire", || {
        run.dropped("fragment_expired") == 1
    })
    .await;
    // A late last fragment cannot complete it.
    server
        .send(&data_frame(21, "lost", 2, 1, b"ema\":1}"))
        .await;
    assert!(server.nothing_more().await);
    assert_eq!(run.sink.calls(), 1);
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_frames_are_counted_and_dropped_without_stalling_the_connection() {
    let _clock = FrozenClock::hold();
    let logs = Logs::capture();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut server = run.lark.next_connection().await;

    for _ in 0..3 {
        server
            .send_bytes(b"\xff\xff\xff not protobuf".to_vec())
            .await;
    }
    let mut card = data_frame(2, "card-1", 1, 0, b"{}");
    card.headers[0].value = "card".into();
    server.send(&card).await;
    let mut odd_method = data_frame(3, "m-3", 1, 0, b"{}");
    odd_method.method = 7;
    server.send(&odd_method).await;
    server.send(&data_frame(4, "m-4", 9999, 0, b"{}")).await;
    // Not JSON, and JSON without a header: answered 500 (as the SDKs' dispatchers fail).
    server.send_event(5, b"not json at all").await;
    server
        .send_event(6, br#"{"schema":"2.0","event":{}}"#)
        .await;
    for seq in [5, 6] {
        let ack = server.recv_non_ping().await.unwrap();
        assert_eq!((ack.seq_id, ack.payload()), (seq, &br#"{"code":500}"#[..]));
    }
    // The connection still works.
    server
        .send_event(
            7,
            &envelope("ev-ok", "vc.meeting.leave_meeting_v1", "123123123"),
        )
        .await;
    let ack = server.recv_non_ping().await.unwrap();
    assert_eq!((ack.seq_id, ack.payload()), (7, &br#"{"code":200}"#[..]));

    assert_eq!(run.dropped("undecodable_frame"), 3);
    assert_eq!(run.dropped("unknown_type"), 2, "the card and method 7");
    assert_eq!(run.dropped("fragment_invalid"), 1);
    assert_eq!(run.events("unknown", "invalid"), 2);
    assert_eq!(run.sink.calls(), 1);
    assert!(
        server.nothing_more().await,
        "the card is left unanswered, like the SDKs do"
    );
    let text = logs.text();
    assert_eq!(
        text.matches("reason=\"undecodable_frame\"").count(),
        1,
        "logged once a minute, not per frame:\n{text}"
    );
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_dropped_after_three_pings_and_reopened_with_a_fresh_url() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let mut first = run.lark.next_connection().await;
    assert!(is_ping(&first.recv().await.unwrap()));
    // Lark never answers: the client pings at 10 and 20 s, gives up at 30 s.
    for _ in 0..2 {
        advance(Duration::from_secs(10)).await;
        assert!(is_ping(&first.recv().await.unwrap()));
    }
    assert_eq!(run.lark.bootstrap_calls(), 1);
    advance(Duration::from_secs(10)).await;
    let second = run.lark.next_connection().await;
    assert_eq!(second.n, 2);
    assert!(
        second.query.contains("device_id=dev-2"),
        "a fresh URL: {}",
        second.query
    );
    assert_eq!(run.lark.bootstrap_calls(), 2);
    assert_eq!(run.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]), 1);
    // The ping due at 30 s may go out before the watchdog's verdict; then the close.
    while let Some(frame) = first.recv().await {
        assert!(is_ping(&frame), "{frame:?}");
    }
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_closed_connection_is_reopened_after_a_random_part_of_the_nonce() {
    let _clock = FrozenClock::hold();
    let lark =
        FakeLark::start(json!({"PingInterval": 100, "ReconnectNonce": 5, "ReconnectInterval": 60}))
            .await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let first = run.lark.next_connection().await;
    first.close().await;
    eventually("the loss to be seen", || {
        run.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]) == 1
    })
    .await;
    assert_eq!(run.metrics.gauge(names::LARK_EVENTS_CONNECTED, &[]), 0.0);
    // The first reconnect waits at most ReconnectNonce (5 s), never ReconnectInterval.
    advance(Duration::from_secs(5)).await;
    let second = run.lark.next_connection().await;
    assert_eq!(second.n, 2);
    assert_eq!(run.lark.bootstrap_calls(), 2);
    eventually("connected again", || {
        run.metrics.gauge(names::LARK_EVENTS_CONNECTED, &[]) == 1.0
    })
    .await;
    run.stop_paused().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reconnects_are_reconnect_interval_apart_and_stop_after_reconnect_count() {
    let _clock = FrozenClock::hold();
    let lark = FakeLark::start(
        json!({"PingInterval": 100, "ReconnectNonce": 0, "ReconnectInterval": 60, "ReconnectCount": 2}),
    )
    .await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let first = run.lark.next_connection().await;
    for _ in 0..2 {
        run.lark
            .answer_next(200, json!({"code": 1, "msg": "system busy"}));
    }
    first.close().await;
    eventually("the first reconnect attempt", || {
        run.lark.bootstrap_calls() == 2
    })
    .await;
    settle().await;
    advance(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(run.lark.bootstrap_calls(), 2, "the next attempt waits 60 s");
    advance(Duration::from_secs(1)).await;
    eventually("the second reconnect attempt", || {
        run.lark.bootstrap_calls() == 3
    })
    .await;
    settle().await;
    advance(Duration::from_secs(60)).await;
    let err = run.result().await.unwrap_err();
    assert!(
        matches!(err, EventsError::GaveUp { attempts: 2 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_busy_endpoint_is_retried_with_backoff_within_one_attempt() {
    let lark = FakeLark::start(config()).await;
    lark.answer_next(200, json!({"code": 1, "msg": "system busy"}));
    lark.answer_next(200, json!({"code": 1000040343, "msg": "internal error"}));
    lark.answer_next(503, json!({}));
    let mut run = Running::start(
        lark,
        TestSink::default(),
        crate::lark::test_support::fast_policy(),
    )
    .await;
    let server = run.lark.next_connection().await;
    assert_eq!(server.n, 1);
    assert_eq!(run.lark.bootstrap_calls(), 4);
    assert_eq!(run.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]), 0);
    run.cancel.cancel();
    run.result().await.unwrap();
}

#[tokio::test]
async fn a_final_endpoint_code_stops_run_with_the_code_and_message() {
    let lark = FakeLark::start(config()).await;
    lark.answer_next(
        200,
        json!({"code": 1000040344, "msg": "app_id or app_secret is invalid"}),
    );
    let mut run = Running::start(
        lark,
        TestSink::default(),
        crate::lark::test_support::fast_policy(),
    )
    .await;
    let err = run.result().await.unwrap_err();
    assert!(
        matches!(&err, EventsError::Refused { code: 1000040344, msg } if msg.contains("invalid")),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert_eq!(run.lark.bootstrap_calls(), 1, "a final code is not retried");
}

#[tokio::test]
async fn a_refused_upgrade_is_final_for_a_ban_or_the_connection_limit() {
    let lark = FakeLark::start(config()).await;
    lark.refuse_upgrades(vec![
        ("Handshake-Status", "514".into()),
        ("Handshake-Msg", "exceed connection limit".into()),
        ("Handshake-Autherrcode", "1000040350".into()),
    ]);
    let mut run = Running::start(
        lark,
        TestSink::default(),
        crate::lark::test_support::fast_policy(),
    )
    .await;
    let err = run.result().await.unwrap_err();
    assert!(
        matches!(
            &err,
            EventsError::Handshake {
                status: 514,
                auth_code: Some(1000040350),
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn shutdown_lets_the_record_under_way_finish_then_closes() {
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(
        lark,
        TestSink::gated(),
        crate::lark::test_support::fast_policy(),
    )
    .await;
    let mut server = run.lark.next_connection().await;
    server
        .send_event(
            1,
            &envelope("ev-1", "vc.meeting.meeting_ended_v1", "555666777"),
        )
        .await;
    server
        .send_event(
            2,
            &envelope("ev-2", "vc.meeting.recording_ready_v1", "555666777"),
        )
        .await;
    eventually("the sink to be called", || run.sink.calls() == 1).await;
    run.cancel.cancel();
    settle().await;
    assert!(
        !run.task.is_finished(),
        "the record under way is let finish"
    );
    run.sink.release(1);
    let ack = server.recv_non_ping().await.unwrap();
    assert_eq!((ack.seq_id, ack.payload()), (1, &br#"{"code":200}"#[..]));
    assert_eq!(
        server.recv_non_ping().await,
        None,
        "then the close; ev-2 is left to Lark"
    );
    run.result().await.unwrap();
    assert_eq!(run.sink.calls(), 1);
    assert_eq!(run.metrics.gauge(names::LARK_EVENTS_CONNECTED, &[]), 0.0);
}

#[tokio::test]
async fn cancelled_while_reconnecting_returns_at_once() {
    let lark = FakeLark::start(
        json!({"PingInterval": 100, "ReconnectNonce": 3600, "ReconnectInterval": 3600}),
    )
    .await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    run.lark.next_connection().await.close().await;
    eventually("the loss to be seen", || {
        run.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]) == 1
    })
    .await;
    run.cancel.cancel();
    run.result().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn neither_the_secret_nor_the_url_query_is_logged() {
    let _clock = FrozenClock::hold();
    let logs = Logs::capture();
    let lark = FakeLark::start(config()).await;
    let mut run = Running::start(lark, TestSink::default(), one_try()).await;
    let first = run.lark.next_connection().await;
    first.close().await;
    let _second = run.lark.next_connection().await;
    run.stop_paused().await.unwrap();
    let text = logs.text();
    assert!(text.contains("connected to Lark for events"), "{text}");
    assert!(text.contains("/ws"), "the URL's path is shown: {text}");
    for secret in [lvb_simulators::LARK_APP_SECRET, ACCESS_KEY, TICKET] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
