//! The long connection on the wire, with a plain `tokio-tungstenite` client speaking
//! `pbbp2` frames as the SDKs do: bootstrap, ping/pong, pushes, fragments, acks,
//! redelivery, the connection limit and the knobs.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frame::*;
use super::*;
use crate::lark::{LarkSim, SIM_TENANT_KEY, SIM_VERIFICATION_TOKEN};
use crate::test_support::{eventually, FrozenClock};
use crate::{LARK_APP_ID, LARK_APP_SECRET};

/// How long a test waits (real time) for a frame it expects.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client as the SDKs make one: bootstrap, then the URL's WebSocket.
struct Client {
    socket: Socket,
    service: i32,
}

async fn bootstrap(sim: &LarkSim, app_id: &str, app_secret: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{ENDPOINT_PATH}", sim.base_url()))
        .header("locale", "zh")
        .json(&json!({ "AppID": app_id, "AppSecret": app_secret }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn url_of(sim: &LarkSim) -> String {
    let (_, body) = bootstrap(sim, LARK_APP_ID, LARK_APP_SECRET).await;
    body["data"]["URL"].as_str().unwrap().to_string()
}

async fn connect_to(url: &str) -> Client {
    let service = url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "service_id")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client { socket, service }
}

/// Connects and waits until the simulator has registered the connection.
async fn connect(sim: &LarkSim) -> Client {
    let hub = sim.long_connection().clone();
    let opened = hub.stats().connections_opened;
    let client = connect_to(&url_of(sim).await).await;
    eventually("the connection is registered", || {
        hub.stats().connections_opened > opened
    })
    .await;
    client
}

impl Client {
    async fn send(&mut self, frame: &Frame) {
        self.socket
            .send(Message::Binary(frame.to_bytes().into()))
            .await
            .unwrap();
    }

    /// The next binary message, decoded.
    async fn frame(&mut self) -> Frame {
        let message = tokio::time::timeout(FRAME_DEADLINE, self.socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Binary(bytes) => Frame::from_bytes(&bytes).expect("a pbbp2 frame"),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    async fn ping(&mut self) {
        self.send(&Frame::control(self.service, TYPE_PING, None))
            .await;
    }

    /// Acknowledges `frame` the way the SDKs do: the same frame back, `biz_rt` added,
    /// payload `{"code": code}`.
    async fn ack(&mut self, frame: &Frame, code: i64) {
        let mut answer = frame.clone();
        answer.headers.push(header(HEADER_BIZ_RT, "3"));
        answer.payload = Some(json!({ "code": code }).to_string().into_bytes());
        self.send(&answer).await;
    }
}

#[tokio::test]
async fn bootstrap_hands_out_a_url_and_config_and_refuses_bad_credentials() {
    let sim = LarkSim::start(0).await.unwrap();
    let (status, body) = bootstrap(&sim, LARK_APP_ID, LARK_APP_SECRET).await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(0)), "{body}");
    let url = url::Url::parse(body["data"]["URL"].as_str().unwrap()).unwrap();
    assert_eq!(url.scheme(), "ws");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(query["device_id"].chars().all(|c| c.is_ascii_digit()));
    assert!(query["service_id"].parse::<i32>().is_ok(), "{url}");
    assert_eq!(
        body["data"]["ClientConfig"],
        json!({ "ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120 })
    );

    let (status, body) = bootstrap(&sim, LARK_APP_ID, "wrong").await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], CODE_INVALID_CREDENTIAL, "{body}");
    assert!(body.get("data").is_none());
    let (_, body) = bootstrap(&sim, LARK_APP_ID, "").await;
    assert_eq!(body["code"], CODE_NO_CREDENTIAL, "{body}");

    sim.long_connection()
        .fail_endpoint(CODE_SYSTEM_BUSY, "system busy", 2);
    for _ in 0..2 {
        let (_, body) = bootstrap(&sim, LARK_APP_ID, LARK_APP_SECRET).await;
        assert_eq!(
            (body["code"].as_i64(), body["msg"].as_str()),
            (Some(1), Some("system busy"))
        );
    }
    let (_, body) = bootstrap(&sim, LARK_APP_ID, LARK_APP_SECRET).await;
    assert_eq!(body["code"], 0);
    assert_eq!(sim.long_connection().stats().endpoint_calls, 6);
    assert_eq!(
        sim.requests()
            .count(&axum::http::Method::POST, ENDPOINT_PATH),
        6
    );
}

#[tokio::test]
async fn a_ping_gets_a_pong_carrying_a_new_config_once_one_is_set() {
    let sim = LarkSim::start(0).await.unwrap();
    let mut client = connect(&sim).await;
    client.ping().await;
    let pong = client.frame().await;
    assert_eq!(
        (pong.method, pong.header(HEADER_TYPE), pong.service),
        (METHOD_CONTROL, Some(TYPE_PONG), client.service)
    );
    assert!(pong.payload_bytes().is_empty());

    let config = ClientConfig {
        reconnect_count: 3,
        reconnect_interval: 5,
        reconnect_nonce: 0,
        ping_interval: 7,
    };
    sim.long_connection().set_client_config(config);
    client.ping().await;
    let pong = client.frame().await;
    let carried: Value = serde_json::from_slice(pong.payload_bytes()).unwrap();
    assert_eq!(
        carried,
        json!({ "ReconnectCount": 3, "ReconnectInterval": 5, "ReconnectNonce": 0, "PingInterval": 7 })
    );
    let (_, body) = bootstrap(&sim, LARK_APP_ID, LARK_APP_SECRET).await;
    assert_eq!(body["data"]["ClientConfig"]["PingInterval"], 7);
    let stats = sim.long_connection().stats();
    assert_eq!((stats.pings, stats.pongs), (2, 2));
}

#[tokio::test]
async fn an_event_is_one_data_frame_and_a_200_ack_ends_its_delivery() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    hub.scale_retry_schedule(0.01);
    let mut client = connect(&sim).await;
    let event_id = hub.raise(
        "vc.meeting.join_meeting_v1",
        json!({ "meeting": { "meeting_no": "123456789" } }),
    );

    let frame = client.frame().await;
    assert_eq!(
        (frame.method, frame.service, frame.header(HEADER_TYPE)),
        (METHOD_DATA, client.service, Some(TYPE_EVENT))
    );
    assert_eq!(
        (frame.header(HEADER_SUM), frame.header(HEADER_SEQ)),
        (Some("1"), Some("0"))
    );
    assert!(frame
        .header(HEADER_MESSAGE_ID)
        .is_some_and(|m| !m.is_empty()));
    assert!(frame.header(HEADER_TRACE_ID).is_some_and(|t| !t.is_empty()));
    let envelope: Value = serde_json::from_slice(frame.payload_bytes()).unwrap();
    assert_eq!(envelope["schema"], "2.0");
    let header = &envelope["header"];
    assert_eq!(header["event_id"], event_id.as_str());
    assert_eq!(header["event_type"], "vc.meeting.join_meeting_v1");
    assert_eq!(header["app_id"], LARK_APP_ID);
    assert_eq!(header["tenant_key"], SIM_TENANT_KEY);
    assert_eq!(header["token"], SIM_VERIFICATION_TOKEN);
    let created: i64 = header["create_time"].as_str().unwrap().parse().unwrap();
    assert!((created - chrono::Utc::now().timestamp_millis()).abs() < 60_000);
    assert_eq!(envelope["event"]["meeting"]["meeting_no"], "123456789");

    client.ack(&frame, 200).await;
    eventually("the ack is recorded", || hub.events()[0].acked).await;
    let acks = hub.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].event_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(
        (acks[0].code, acks[0].biz_rt.as_deref()),
        (Some(200), Some("3"))
    );
    assert_eq!(hub.events()[0].pushes, 1);
}

#[tokio::test(start_paused = true)]
async fn an_event_not_acknowledged_within_three_seconds_is_pushed_again() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let mut client = connect(&sim).await;
    let event_id = hub.raise("vc.meeting.meeting_started_v1", json!({}));
    let first = client.frame().await;

    tokio::time::advance(Duration::from_millis(2900)).await;
    tokio::task::yield_now().await;
    assert_eq!(hub.events()[0].pushes, 1, "not before 3 s");
    tokio::time::advance(Duration::from_millis(200)).await;
    let second = client.frame().await;
    assert_ne!(
        first.header(HEADER_MESSAGE_ID),
        second.header(HEADER_MESSAGE_ID),
        "each push is its own message"
    );
    assert_eq!(first.payload, second.payload, "the same event");

    // A 500 is no acknowledgement: the next retry comes 15 s later.
    client.ack(&second, 500).await;
    eventually("the 500 is recorded", || hub.acks().len() == 1).await;
    tokio::time::advance(Duration::from_secs(15)).await;
    let third = client.frame().await;
    // A late 200 for any push of the event ends it.
    client.ack(&first, 200).await;
    eventually("the late 200 is recorded", || hub.events()[0].acked).await;
    tokio::time::advance(Duration::from_secs(301)).await;
    tokio::task::yield_now().await;
    let record = &hub.events()[0];
    assert_eq!(
        (record.event_id.as_str(), record.pushes),
        (event_id.as_str(), 3)
    );
    assert_eq!(third.payload, first.payload);
    let codes: Vec<_> = hub.acks().iter().map(|a| a.code).collect();
    assert_eq!(codes, [Some(500), Some(200)]);
}

#[tokio::test]
async fn the_retry_schedule_runs_out() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    // 3 s … 6 h become 0.3 ms … 2.16 s; no client ever answers.
    hub.scale_retry_schedule(0.0001);
    let _client = connect(&sim).await;
    hub.raise("vc.meeting.meeting_ended_v1", json!({}));
    eventually("the schedule runs out", || hub.events()[0].given_up).await;
    assert_eq!(hub.events()[0].pushes, 6, "the first push and five retries");
    assert!(!hub.events()[0].acked);

    // The Feishu page's reading: four retries in all.
    hub.set_retry_delays(vec![Duration::from_millis(1); 4]);
    hub.raise("vc.meeting.meeting_ended_v1", json!({}));
    eventually("the shorter schedule runs out", || hub.events()[1].given_up).await;
    assert_eq!(hub.events()[1].pushes, 5);
}

#[tokio::test]
async fn a_large_event_comes_in_fragments_of_one_message() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    hub.set_fragment_size(100);
    let mut client = connect(&sim).await;
    hub.raise(
        "vc.meeting.recording_ready_v1",
        json!({ "url": "x".repeat(450) }),
    );
    let mut frames = vec![client.frame().await];
    let sum: usize = frames[0].header(HEADER_SUM).unwrap().parse().unwrap();
    assert!(sum >= 5, "{sum}");
    for _ in 1..sum {
        frames.push(client.frame().await);
    }
    let message_id = frames[0].header(HEADER_MESSAGE_ID).unwrap().to_string();
    let mut joined = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.header(HEADER_MESSAGE_ID), Some(message_id.as_str()));
        assert_eq!(frame.header(HEADER_SEQ), Some(i.to_string().as_str()));
        assert!(frame.payload_bytes().len() <= 100);
        joined.extend_from_slice(frame.payload_bytes());
    }
    let envelope: Value = serde_json::from_slice(&joined).unwrap();
    assert_eq!(envelope["event"]["url"].as_str().unwrap().len(), 450);
    // One acknowledgement, of the last fragment, covers the message (as the SDKs send it).
    client.ack(frames.last().unwrap(), 200).await;
    eventually("acked", || hub.events()[0].acked).await;
}

#[tokio::test]
async fn an_event_raised_while_nobody_is_connected_goes_to_the_next_client() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let event_id = hub.raise("vc.meeting.join_meeting_v1", json!({}));
    eventually("the first push finds nobody", || {
        hub.events()[0].pushes == 1
    })
    .await;
    assert_eq!(hub.events()[0].delivered, 0);
    let mut client = connect(&sim).await;
    let frame = client.frame().await;
    let envelope: Value = serde_json::from_slice(frame.payload_bytes()).unwrap();
    assert_eq!(envelope["header"]["event_id"], event_id.as_str());
    assert_eq!(hub.events()[0].delivered, 1);
}

#[tokio::test]
async fn each_event_goes_to_one_client() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let mut a = connect(&sim).await;
    let mut b = connect(&sim).await;
    eventually("two connections", || hub.stats().connections_open == 2).await;
    for _ in 0..4 {
        hub.raise("vc.meeting.join_meeting_v1", json!({}));
    }
    eventually("four pushes", || hub.stats().event_frames == 4).await;
    let mut seen = Vec::new();
    for client in [&mut a, &mut b] {
        for _ in 0..2 {
            let frame = client.frame().await;
            let envelope: Value = serde_json::from_slice(frame.payload_bytes()).unwrap();
            seen.push(envelope["header"]["event_id"].as_str().unwrap().to_string());
            client.ack(&frame, 200).await;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "every event once, none twice");
    eventually("all acked", || hub.events().iter().all(|e| e.acked)).await;
}

#[tokio::test]
async fn a_url_serves_one_connection_and_the_app_has_a_connection_limit() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let url = url_of(&sim).await;
    let _first = connect_to(&url).await;
    let refused = |error: tokio_tungstenite::tungstenite::Error| match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            let h = |k: &str| {
                response
                    .headers()
                    .get(k)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            (
                h("Handshake-Status"),
                h("Handshake-Autherrcode"),
                h("Handshake-Msg"),
            )
        }
        other => panic!("expected a refused handshake, got {other}"),
    };
    let again = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert_eq!(refused(again).0.as_deref(), Some("514"));

    eventually("one connection", || hub.stats().connections_open == 1).await;
    hub.set_max_connections(1);
    let over = tokio_tungstenite::connect_async(url_of(&sim).await)
        .await
        .unwrap_err();
    let (status, code, msg) = refused(over);
    assert_eq!(
        (status.as_deref(), code.as_deref()),
        (Some("514"), Some("1000040350"))
    );
    assert_eq!(msg.as_deref(), Some("exceed connection limit"));
    assert_eq!(hub.stats().connections_refused, 2);
}

#[tokio::test]
async fn connections_can_be_dropped_or_go_silent() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let mut client = connect(&sim).await;
    assert_eq!(hub.drop_connections(), 1);
    // Abrupt: the stream ends or fails without a close frame.
    let end = tokio::time::timeout(FRAME_DEADLINE, client.socket.next())
        .await
        .expect("the connection ends in time");
    assert!(
        !matches!(end, Some(Ok(Message::Close(_)))),
        "no close frame: {end:?}"
    );
    eventually("closed", || hub.stats().connections_open == 0).await;

    let mut client = connect(&sim).await;
    assert_eq!(hub.go_silent(), 1);
    client.ping().await;
    hub.raise("vc.meeting.join_meeting_v1", json!({}));
    eventually("the ping is seen and the push made", || {
        hub.stats().pings == 1 && hub.events()[0].pushes == 1
    })
    .await;
    let stats = hub.stats();
    assert_eq!(
        (stats.pongs, stats.event_frames),
        (0, 0),
        "a silent connection gets nothing"
    );
    assert_eq!(hub.events()[0].delivered, 0, "pushed, and lost on the way");
    assert!(futures::FutureExt::now_or_never(client.socket.next()).is_none());

    // A new connection is served as usual.
    let mut fresh = connect(&sim).await;
    fresh.ping().await;
    assert_eq!(fresh.frame().await.header(HEADER_TYPE), Some(TYPE_PONG));
}

#[tokio::test]
async fn raw_frames_duplicates_and_bad_client_messages() {
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    let mut client = connect(&sim).await;

    assert_eq!(hub.send_raw(&[0xff, 0x01, 0x02]), 1);
    match tokio::time::timeout(FRAME_DEADLINE, client.socket.next()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => assert_eq!(&bytes[..], [0xff, 0x01, 0x02]),
        other => panic!("{other:?}"),
    }
    let mut unknown = Frame::control(0, "mystery", None);
    unknown.method = METHOD_DATA;
    assert_eq!(hub.send_frame(&unknown), 1);
    let got = client.frame().await;
    assert_eq!(
        (got.header(HEADER_TYPE), got.service),
        (Some("mystery"), client.service)
    );

    let event_id = hub.raise("vc.meeting.join_meeting_v1", json!({}));
    let first = client.frame().await;
    client.ack(&first, 200).await;
    eventually("acked", || hub.events()[0].acked).await;
    assert!(hub.push_again(&event_id));
    let duplicate = client.frame().await;
    assert_eq!(duplicate.payload, first.payload);
    assert!(!hub.push_again("no-such-event"));

    client
        .socket
        .send(Message::Binary(vec![0xff, 0xff, 0xff].into()))
        .await
        .unwrap();
    client
        .socket
        .send(Message::Text("hello".into()))
        .await
        .unwrap();
    eventually("two bad messages counted", || hub.stats().bad_frames == 2).await;
    // The connection survives bad input.
    client.ping().await;
    assert_eq!(client.frame().await.header(HEADER_TYPE), Some(TYPE_PONG));
}

#[tokio::test(start_paused = true)]
async fn discarded_events_are_pushed_no_more() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    let hub = sim.long_connection().clone();
    hub.raise("vc.meeting.join_meeting_v1", json!({}));
    eventually("pushed once", || hub.events()[0].pushes == 1).await;
    assert_eq!(hub.discard_pending(), 1);
    tokio::time::advance(Duration::from_secs(8 * 3600)).await;
    tokio::task::yield_now().await;
    assert_eq!(hub.events()[0].pushes, 1);
    assert!(hub.events()[0].given_up);
}
