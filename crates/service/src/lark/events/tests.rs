//! Tests of [`super`] (the events module as a whole): which errors end the connection for
//! good, and the real client against the real Lark simulator (`lvb_simulators::lark`):
//! a meeting's life arrives typed and acknowledged, fragments, redelivery, a dropped or
//! silent connection, refused bootstraps.

use std::time::Duration;

use lvb_simulators::lark::events::ClientConfig as SimConfig;
use lvb_simulators::lark::meetings::{LeaveReason as SimLeave, Person};
use lvb_simulators::lark::LarkSim;
use tokio_util::sync::CancellationToken;

use super::test_support::{within, TestSink};
use super::*;
use crate::lark::test_support::NoLedger;
use crate::lark::test_support::{connect, eventually, fast_policy, sim_and_client};
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::retry::{RetryHint, Retryable};

#[test]
fn only_refusals_and_spent_reconnects_are_permanent() {
    let permanent = [
        EventsError::Refused {
            code: 10003,
            msg: "app not found".into(),
        },
        EventsError::GaveUp { attempts: 3 },
        EventsError::Handshake {
            status: 403,
            auth_code: None,
            msg: "forbidden".into(),
            permanent: true,
        },
    ];
    for e in permanent {
        assert!(e.is_permanent(), "{e}");
        assert_eq!(e.retry_hint(), RetryHint::Never);
    }
    let passing = [
        EventsError::Busy {
            code: 1,
            msg: "system busy".into(),
        },
        EventsError::Status { status: 500 },
        EventsError::Unexpected("x".into()),
        EventsError::Transport("reset".into()),
        EventsError::Timeout,
        EventsError::Handshake {
            status: 514,
            auth_code: Some(1),
            msg: "auth failed".into(),
            permanent: false,
        },
    ];
    for e in passing {
        assert!(!e.is_permanent(), "{e}");
        assert_eq!(e.retry_hint(), RetryHint::Backoff);
    }
}

/// The client connected to the simulator, recording into a [`TestSink`].
struct Connected {
    sim: LarkSim,
    client: LarkClient,
    sink: TestSink,
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), EventsError>>,
    _dir: tempfile::TempDir,
}

impl Connected {
    /// Starts the connection with the simulator handing out `config`, and waits until it
    /// is open.
    async fn start(config: SimConfig) -> Connected {
        let (sim, client, dir) = sim_and_client().await;
        sim.long_connection().set_client_config(config);
        let connected = Self::spawn(sim, client, dir, TestSink::default());
        eventually("the connection to open", || {
            connected.sim.long_connection().stats().connections_open == 1
        })
        .await;
        connected
    }

    fn spawn(
        sim: LarkSim,
        client: LarkClient,
        dir: tempfile::TempDir,
        sink: TestSink,
    ) -> Connected {
        let metrics = Metrics::default();
        let settings = crate::config::Settings::for_simulators(
            "http://127.0.0.1:9",
            &sim.base_url(),
            &dir.path().join("s.db"),
        )
        .unwrap();
        let connection =
            LongConnection::with_retry_policy(&settings.lark, metrics.clone(), fast_policy())
                .unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(connection.run(sink.clone(), cancel.clone()));
        Connected {
            sim,
            client,
            sink,
            metrics,
            cancel,
            task,
            _dir: dir,
        }
    }

    /// A reservation hosted by a connected user; returns (host open_id, meeting_no).
    async fn reserve(&self) -> (String, String) {
        let host = self.sim.add_user("ana@example.com", "Ana");
        let grant = connect(&self.sim, &self.client, "ana@example.com").await;
        let end = chrono::Utc::now() + chrono::Duration::days(1);
        let reserve = self
            .client
            .apply_reserve(&grant.access_token, end, "Remote Training: Acme", &NoLedger)
            .await
            .unwrap();
        (host, reserve.meeting_no)
    }

    async fn stop(mut self) -> Result<(), EventsError> {
        self.cancel.cancel();
        within("run to return", &mut self.task).await.unwrap()
    }
}

fn quick() -> SimConfig {
    SimConfig {
        reconnect_count: -1,
        reconnect_interval: 1,
        reconnect_nonce: 0,
        ping_interval: 120,
    }
}

#[tokio::test]
async fn a_meeting_s_life_arrives_typed_in_order_and_every_event_is_acknowledged() {
    let c = Connected::start(quick()).await;
    let (host, meeting_no) = c.reserve().await;
    let life = c.sim.meetings();
    let meeting = life.start(&meeting_no, &Person::Host).unwrap();
    life.join(&meeting.id, &Person::Host).unwrap();
    life.join(&meeting.id, &Person::Guest("Merchant".into()))
        .unwrap();
    life.leave(
        &meeting.id,
        &Person::Guest("Merchant".into()),
        SimLeave::Left,
    )
    .unwrap();
    life.end(&meeting.id, &Person::Host).unwrap();
    let url = life.recording_ready(&meeting.id, 61_000).unwrap();
    // The end also makes the host leave (leave_reason 2): seven events.
    eventually("seven events recorded", || c.sink.recorded().len() == 7).await;
    eventually("seven acknowledgements", || {
        c.sim.long_connection().events().iter().all(|e| e.acked)
    })
    .await;

    let recorded = c.sink.recorded();
    let labels: Vec<&str> = recorded.iter().map(|e| e.kind.label()).collect();
    assert_eq!(
        labels,
        [
            "meeting_started",
            "join_meeting",
            "join_meeting",
            "leave_meeting",
            "leave_meeting",
            "meeting_ended",
            "recording_ready"
        ]
    );
    for event in &recorded {
        let m = event.kind.meeting().unwrap();
        assert_eq!(m.meeting_no, meeting_no);
        assert_eq!(m.id.as_deref(), Some(meeting.id.as_str()));
        assert_eq!(
            m.owner.as_ref().and_then(|o| o.open_id.as_deref()),
            Some(host.as_str())
        );
    }
    let EventKind::Joined(host_join) = &recorded[1].kind else {
        panic!("{:?}", recorded[1].kind);
    };
    let operator = host_join.operator.as_ref().unwrap();
    assert_eq!(operator.open_id.as_deref(), Some(host.as_str()));
    assert_eq!(operator.user_role, Some(2), "the host");
    assert!(recorded[0].kind.meeting().unwrap().start_time.is_some());
    let reasons: Vec<Option<LeaveReason>> = recorded[3..5]
        .iter()
        .map(|e| match &e.kind {
            EventKind::Left { reason, .. } => *reason,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [Some(LeaveReason::Left), Some(LeaveReason::MeetingEnded)]
    );
    let EventKind::RecordingReady { recording, .. } = &recorded[6].kind else {
        panic!("{:?}", recorded[6].kind);
    };
    assert_eq!(recording.url.as_deref(), Some(url.as_str()));
    assert_eq!(recording.duration, Some(Duration::from_millis(61_000)));

    let acks = c.sim.long_connection().acks();
    assert_eq!(acks.len(), 7, "one answer per event");
    assert!(
        acks.iter()
            .all(|a| a.code == Some(200) && a.biz_rt.is_some()),
        "{acks:?}"
    );
    assert_eq!(
        c.metrics.get(
            names::LARK_EVENTS,
            &[("type", "join_meeting"), ("outcome", "recorded")]
        ),
        2
    );
    assert_eq!(c.metrics.gauge(names::LARK_EVENTS_CONNECTED, &[]), 1.0);
    assert!(c.sim.long_connection().stats().pings >= 1, "pinged at once");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn a_fragmented_event_is_recorded_once() {
    let c = Connected::start(quick()).await;
    let (_, meeting_no) = c.reserve().await;
    c.sim.long_connection().set_fragment_size(97);
    c.sim.meetings().start(&meeting_no, &Person::Host).unwrap();
    eventually("the event recorded", || c.sink.recorded().len() == 1).await;
    eventually("its acknowledgement", || {
        c.sim.long_connection().acks().len() == 1
    })
    .await;
    let stats = c.sim.long_connection().stats();
    assert!(
        stats.event_frames > 5,
        "fragmented into {} frames",
        stats.event_frames
    );
    assert_eq!(c.sink.calls(), 1);
    assert_eq!(c.sink.recorded()[0].kind.label(), "meeting_started");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_answered_500_is_pushed_again_and_recorded_then() {
    let c = Connected::start(quick()).await;
    let (_, meeting_no) = c.reserve().await;
    c.sim.long_connection().scale_retry_schedule(0.01);
    c.sink.set_failing(true);
    c.sim.meetings().start(&meeting_no, &Person::Host).unwrap();
    eventually("a 500 answer", || {
        c.sim
            .long_connection()
            .acks()
            .iter()
            .any(|a| a.code == Some(500))
    })
    .await;
    c.sink.set_failing(false);
    eventually("the event acknowledged", || {
        c.sim.long_connection().events()[0].acked
    })
    .await;
    assert_eq!(c.sink.recorded().len(), 1);
    assert!(c.sim.long_connection().events()[0].pushes >= 2);
    assert!(
        c.metrics.get(
            names::LARK_EVENTS,
            &[("type", "meeting_started"), ("outcome", "sink_failed")]
        ) >= 1
    );

    // A duplicate delivery reaches the sink again (its dedupe is by event_id).
    let id = c.sim.long_connection().events()[0].event_id.clone();
    assert!(c.sim.long_connection().push_again(&id));
    eventually("the duplicate recorded", || c.sink.recorded().len() == 2).await;
    let recorded = c.sink.recorded();
    assert_eq!(recorded[0].header.event_id, recorded[1].header.event_id);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_reopened_with_a_fresh_url_and_events_flow_again() {
    let c = Connected::start(quick()).await;
    let (_, meeting_no) = c.reserve().await;
    assert_eq!(c.sim.long_connection().drop_connections(), 1);
    eventually("a second connection", || {
        let s = c.sim.long_connection().stats();
        s.connections_opened == 2 && s.connections_open == 1
    })
    .await;
    assert_eq!(
        c.sim.long_connection().stats().endpoint_calls,
        2,
        "a fresh URL"
    );
    assert_eq!(c.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]), 1);
    c.sim.meetings().start(&meeting_no, &Person::Host).unwrap();
    eventually("the event recorded", || c.sink.recorded().len() == 1).await;
    c.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_dropped_by_the_watchdog_and_reopened() {
    // The shortest ping interval believed (1 s): three of silence drop the connection.
    let c = Connected::start(SimConfig {
        ping_interval: 1,
        ..quick()
    })
    .await;
    assert_eq!(c.sim.long_connection().go_silent(), 1);
    eventually("a second connection", || {
        c.sim.long_connection().stats().connections_opened == 2
    })
    .await;
    assert_eq!(c.metrics.get(names::LARK_EVENTS_RECONNECTS, &[]), 1);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn bootstrap_codes_from_the_simulator() {
    use lvb_simulators::lark::events::{
        CODE_INTERNAL_ERROR, CODE_INVALID_CREDENTIAL, CODE_SYSTEM_BUSY,
    };
    // Busy twice: retried within the attempt, then connected.
    let (sim, client, dir) = sim_and_client().await;
    sim.long_connection().set_client_config(quick());
    sim.long_connection()
        .fail_endpoint(CODE_SYSTEM_BUSY, "system busy", 1);
    sim.long_connection()
        .fail_endpoint(CODE_INTERNAL_ERROR, "internal error", 1);
    let c = Connected::spawn(sim, client, dir, TestSink::default());
    eventually("connected", || {
        c.sim.long_connection().stats().connections_open == 1
    })
    .await;
    assert_eq!(c.sim.long_connection().stats().endpoint_calls, 3);
    c.stop().await.unwrap();

    // Wrong credentials: final, reported with Lark's code, nothing opened.
    let (sim, client, dir) = sim_and_client().await;
    sim.long_connection().fail_endpoint(
        CODE_INVALID_CREDENTIAL,
        "the App ID or App Secret is invalid",
        1,
    );
    let mut c = Connected::spawn(sim, client, dir, TestSink::default());
    let err = within("run to give up", &mut c.task)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, EventsError::Refused { code, .. } if *code == CODE_INVALID_CREDENTIAL),
        "{err:?}"
    );
    assert_eq!(c.sim.long_connection().stats().connections_opened, 0);
}

#[tokio::test]
async fn probe_asks_the_endpoint_once() {
    let (sim, _client, dir) = sim_and_client().await;
    let settings = crate::config::Settings::for_simulators(
        "http://127.0.0.1:9",
        &sim.base_url(),
        &dir.path().join("s.db"),
    )
    .unwrap();
    let connection = LongConnection::new(&settings.lark, Metrics::default()).unwrap();
    let endpoint = connection.probe().await.unwrap();
    assert!(
        endpoint.display_url().starts_with("ws://127.0.0.1:"),
        "{endpoint:?}"
    );
    assert!(!endpoint.display_url().contains('?'));
    assert_eq!(sim.long_connection().stats().endpoint_calls, 1);
    assert_eq!(
        sim.long_connection().stats().connections_opened,
        0,
        "no WebSocket"
    );
}
