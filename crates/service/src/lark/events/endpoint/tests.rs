//! Tests of [`super`] (endpoint.rs): reading the bootstrap answer and the server's
//! `ClientConfig`.

use serde_json::json;

use super::*;

fn answer(body: serde_json::Value) -> Result<EndpointInfo, EventsError> {
    EndpointInfo::from_answer(200, body.to_string().as_bytes())
}

#[test]
fn the_recorded_answer_gives_the_url_ids_and_config() {
    let body = include_bytes!("../../../../../../fixtures/lark/ws_endpoint.json");
    let info = EndpointInfo::from_answer(200, body).unwrap();
    assert_eq!(info.service_id, 33554678);
    assert_eq!(info.device_id, "7312459318012345678");
    assert_eq!(info.url().query_pairs().count(), 6);
    assert_eq!(
        info.client_config(),
        ClientConfig {
            reconnect_count: None,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
        }
    );
    // The query is a credential: never shown.
    assert_eq!(info.display_url(), "wss://msg-frontier.example.test/ws/v2");
    let debug = format!("{info:?}");
    for secret in ["access-key-test-value", "ticket-test-value"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn codes_are_classified_as_the_sdks_do() {
    let busy = answer(json!({"code": 1, "msg": "system busy"})).unwrap_err();
    assert!(matches!(busy, EventsError::Busy { code: 1, .. }) && !busy.is_permanent());
    let internal = answer(json!({"code": "1000040343", "msg": "internal error"})).unwrap_err();
    assert!(matches!(
        internal,
        EventsError::Busy {
            code: 1000040343,
            ..
        }
    ));
    let refused = answer(json!({"code": 1000040344, "msg": "no credential"})).unwrap_err();
    assert!(
        matches!(&refused, EventsError::Refused { code: 1000040344, msg } if msg == "no credential")
            && refused.is_permanent()
    );
    let status = EndpointInfo::from_answer(502, b"<html>bad gateway</html>").unwrap_err();
    assert!(matches!(status, EventsError::Status { status: 502 }) && !status.is_permanent());
    let garbage = EndpointInfo::from_answer(200, b"<html>").unwrap_err();
    assert!(matches!(garbage, EventsError::Unexpected(_)) && !garbage.is_permanent());
}

#[test]
fn a_url_must_be_usable() {
    for (data, why) in [
        (json!({}), "no URL"),
        (json!({"URL": "not a url"}), "does not parse"),
        (
            json!({"URL": "ws://msg-frontier.example.test/ws?service_id=1"}),
            "plain ws off loopback",
        ),
        (
            json!({"URL": "https://example.test/ws?service_id=1"}),
            "not a WebSocket",
        ),
        (
            json!({"URL": "wss://example.test/ws?device_id=d"}),
            "no service_id",
        ),
        (
            json!({"URL": "wss://example.test/ws?service_id=x"}),
            "service_id not a number",
        ),
    ] {
        let err = answer(json!({"code": 0, "data": data})).unwrap_err();
        assert!(matches!(err, EventsError::Unexpected(_)), "{why}: {err:?}");
    }
    for url in [
        "ws://127.0.0.1:4000/ws?service_id=1",
        "ws://[::1]:4000/ws?service_id=1",
        "ws://localhost:4000/ws?service_id=1",
    ] {
        assert!(
            answer(json!({"code": 0, "data": {"URL": url}})).is_ok(),
            "{url}"
        );
    }
}

#[test]
fn client_config_updates_keep_missing_fields_and_clamp_absurd_ones() {
    let mut config = ClientConfig::default();
    config.apply(parse_config_update(br#"{"PingInterval": 30}"#).unwrap());
    assert_eq!(config.ping_interval, Duration::from_secs(30));
    assert_eq!(config.reconnect_interval, Duration::from_secs(120), "kept");

    config.apply(
        parse_config_update(
            br#"{"PingInterval": 0, "ReconnectInterval": "-4", "ReconnectNonce": 99999999999, "ReconnectCount": 3}"#,
        )
        .unwrap(),
    );
    assert_eq!(config.ping_interval, MIN_PING_INTERVAL);
    assert_eq!(config.reconnect_interval, MIN_RECONNECT_INTERVAL);
    assert_eq!(config.reconnect_nonce, MAX_SERVER_INTERVAL);
    assert_eq!(config.reconnect_count, Some(3));
    config.apply(
        parse_config_update(br#"{"ReconnectCount": -1, "PingInterval": "abc"}"#)
            .unwrap_or_default(),
    );
    assert_eq!(
        config.reconnect_count,
        Some(3),
        "an unreadable update changes nothing"
    );
    config.apply(parse_config_update(br#"{"ReconnectCount": -1}"#).unwrap());
    assert_eq!(config.reconnect_count, None, "-1: no limit");
    assert_eq!(parse_config_update(b"[1]"), None);
}
