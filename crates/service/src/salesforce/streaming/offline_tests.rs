//! The transport without a server: how each refusal is classified (design §3 rule 9),
//! backoff, and the caps on waits the server asks for (rule 18).

use std::time::Duration;

use serde_json::{json, Value};

use super::bayeux::*;
use super::cometd::*;
use super::*;
use crate::config::Settings;
use crate::salesforce::rest::SalesforceClient;

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
        -1,
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
