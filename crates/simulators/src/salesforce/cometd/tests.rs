use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::common::{serve, Faults, Recorder, RequestLog, RunningServer};
use crate::{SF_HUMAN_USER_ID, SF_INTEGRATION_USER_ID};

const TOKEN: &str = "00Dsim!valid-token";
const BOOKING_CHANNEL: &str = "/data/Training_Booking__ChangeEvent";
const BOOKING_ID: &str = "a0B5g00000Kx1AbEAJ";

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/cdc/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn accept_one_token() -> SessionCheck {
    Arc::new(|t: &str| (t == TOKEN).then(|| SF_INTEGRATION_USER_ID.to_string()))
}

async fn start(hub: &Arc<CometdHub>) -> RunningServer {
    let recorder = Recorder {
        log: RequestLog::default(),
        faults: Faults::default(),
    };
    serve(hub.router(accept_one_token()), recorder, 0)
        .await
        .expect("serve")
}

/// A bare Bayeux client that manages cookies by hand, so tests can leave them out.
struct Raw {
    http: reqwest::Client,
    url: String,
    token: Option<&'static str>,
    cookies: Vec<String>,
    client_id: String,
}

impl Raw {
    fn new(server: &RunningServer) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            url: format!("{}/cometd/62.0", server.base_url()),
            token: Some(TOKEN),
            cookies: Vec::new(),
            client_id: String::new(),
        }
    }

    async fn send(&mut self, body: Value) -> (u16, Value) {
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        if !self.cookies.is_empty() {
            request = request.header("Cookie", self.cookies.join("; "));
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
            self.cookies.push(pair);
        }
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn handshake(&mut self) -> Value {
        let (status, body) = self
            .send(json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"], "ext": {"replay": true}, "id": "1"}]))
            .await;
        assert_eq!(status, 200);
        let reply = body[0].clone();
        self.client_id = reply["clientId"].as_str().unwrap_or_default().to_string();
        reply
    }

    async fn subscribe(&mut self, channel: &str, replay_from: Option<i64>) -> Value {
        let mut message = json!({"channel": "/meta/subscribe", "clientId": self.client_id,
            "subscription": channel, "id": "2"});
        if let Some(from) = replay_from {
            message["ext"] = json!({"replay": {channel: from}});
        }
        let (status, body) = self.send(json!([message])).await;
        assert_eq!(status, 200);
        body[0].clone()
    }

    async fn connect(&mut self, immediate: bool) -> Vec<Value> {
        let mut message = json!({"channel": "/meta/connect", "clientId": self.client_id,
            "connectionType": "long-polling", "id": "3"});
        if immediate {
            message["advice"] = json!({"timeout": 0});
        }
        let (status, body) = self.send(json!([message])).await;
        assert_eq!(status, 200);
        body.as_array().expect("array").clone()
    }
}

fn booking_change(kind: ChangeKind, changed: &[(&str, Value)]) -> RecordChange {
    RecordChange {
        entity: "Training_Booking__c".into(),
        kind,
        record_id: BOOKING_ID.into(),
        changed_fields: changed.iter().map(|(k, _)| k.to_string()).collect(),
        commit_user: SF_HUMAN_USER_ID.into(),
        values: changed
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn reply_on<'a>(messages: &'a [Value], channel: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} reply in {messages:?}"))
}

#[tokio::test]
async fn only_a_json_array_posted_to_a_versioned_path_is_served() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let http = reqwest::Client::new();
    let url = format!("{}/cometd/62.0", server.base_url());

    let object = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "/meta/handshake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(object.status().as_u16(), 400);

    let not_json = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);

    let get = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);

    let no_version = http
        .post(format!("{}/cometd", server.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status().as_u16(), 400);
    assert!(no_version
        .text()
        .await
        .unwrap()
        .contains("API version in the URI is mandatory"));

    let old = http
        .post(format!("{}/cometd/36.0", server.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status().as_u16(), 400);
}

#[tokio::test]
async fn handshake_looks_like_salesforce_and_sets_both_cookies() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    let reply = raw.handshake().await;
    assert_eq!(keys(&reply), keys(&fixture("bayeux_handshake_ok.json")[0]));
    assert_eq!(reply["successful"], true);
    assert_eq!(
        reply["ext"],
        json!({"replay": true, "payload.format": true})
    );
    assert_eq!(reply["supportedConnectionTypes"], json!(["long-polling"]));
    let names: Vec<&str> = raw
        .cookies
        .iter()
        .map(|c| c.split('=').next().unwrap())
        .collect();
    assert!(names.contains(&BROWSER_COOKIE), "{names:?}");
    assert!(names.contains(&LB_COOKIE), "{names:?}");

    // A second handshake from the same browser reuses its cookies.
    let before = raw.cookies.len();
    raw.handshake().await;
    assert_eq!(
        raw.cookies.len(),
        before,
        "no new cookies for a known browser"
    );
    assert_eq!(hub.client_count(), 2);
}

#[tokio::test]
async fn websocket_only_handshake_is_refused() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    let (status, body) = raw
        .send(json!([{"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["websocket"], "id": "1"}]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["successful"], false);
    assert_eq!(body[0]["error"], "400::Invalid connection type websocket");
    assert_eq!(hub.client_count(), 0);
}

#[tokio::test]
async fn messages_need_the_browser_cookie_of_their_client() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    let cookies = std::mem::take(&mut raw.cookies);

    let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
    assert_eq!(reply["successful"], false);
    assert_eq!(
        reply["error"],
        format!(
            "400::Client {} has established a session, but no BAYEUX_BROWSER cookie present",
            raw.client_id
        )
    );

    raw.cookies = vec![format!("{BROWSER_COOKIE}=someoneelse")];
    let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
    assert_eq!(reply["error"], "403::Unknown client");
    assert_eq!(reply["advice"]["reconnect"], "handshake");

    raw.cookies = cookies;
    let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["subscription"], BOOKING_CHANNEL);
}

#[tokio::test]
async fn bad_or_missing_tokens_are_refused_like_salesforce_does() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;

    let mut raw = Raw::new(&server);
    raw.token = Some("expired");
    let reply = raw.handshake().await;
    let recorded = &fixture("bayeux_handshake_denied.json")[0];
    assert_eq!(reply["error"], "403::Handshake denied");
    assert_eq!(reply["ext"], recorded["ext"]);
    assert_eq!(reply["advice"], recorded["advice"]);

    raw.token = None;
    let reply = raw.handshake().await;
    assert_eq!(
        reply["ext"]["sfdc"]["failureReason"],
        "401::Request requires authentication"
    );

    // A valid client whose token stops working gets 401 on connect and is forgotten.
    raw.token = Some(TOKEN);
    raw.handshake().await;
    raw.token = Some("revoked");
    let replies = raw.connect(true).await;
    let reply = reply_on(&replies, "/meta/connect");
    let recorded = &fixture("bayeux_connect_auth_invalid.json")[0];
    assert_eq!(keys(reply), keys(recorded));
    assert_eq!(reply["error"], recorded["error"]);
    assert_eq!(reply["advice"], recorded["advice"]);
    assert_eq!(hub.client_count(), 0);
}

#[tokio::test]
async fn connect_batches_queued_events_and_advises_only_once() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    assert_eq!(
        raw.subscribe(BOOKING_CHANNEL, Some(-1)).await["successful"],
        true
    );

    let first = raw.connect(true).await;
    let reply = reply_on(&first, "/meta/connect");
    assert_eq!(keys(reply), keys(&fixture("bayeux_connect_first.json")[0]));
    assert_eq!(
        reply["advice"],
        json!({"interval": 0, "timeout": 110000, "reconnect": "retry"})
    );

    for status in ["Scheduled", "Rescheduled", "Cancelled"] {
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!(status))],
        ));
    }
    let batch = raw.connect(false).await;
    assert_eq!(batch.len(), 4, "{batch:?}");
    // Default placement: events first, in replay order, then the reply.
    let ids: Vec<i64> = batch[..3]
        .iter()
        .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(batch[2]["data"]["payload"]["Status__c"], "Cancelled");
    let reply = &batch[3];
    assert_eq!(keys(reply), keys(&fixture("bayeux_connect_later.json")[0]));

    hub.set_event_placement(EventPlacement::Last);
    hub.publish(booking_change(
        ChangeKind::Update,
        &[("Status__c", json!("Done"))],
    ));
    let batch = raw.connect(false).await;
    assert_eq!(batch[0]["channel"], "/meta/connect");
    assert_eq!(batch[1]["data"]["event"]["replayId"], 4);
}

#[tokio::test]
async fn the_first_connect_is_answered_at_once_even_without_timeout_zero() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    raw.subscribe(BOOKING_CHANNEL, None).await;

    // Held, it would take the default 110 s; the deadline only bounds a failure.
    let first = tokio::time::timeout(Duration::from_secs(20), raw.connect(false))
        .await
        .expect("the first connect is not held");
    let reply = reply_on(&first, "/meta/connect");
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["advice"]["reconnect"], "retry");

    // Later connects are held until an event or the hold ends.
    hub.set_connect_timeout(Duration::from_secs(30));
    let hub2 = Arc::clone(&hub);
    let publisher = tokio::spawn(async move {
        while hub2.lock().clients.values().all(|c| c.polling == 0) {
            tokio::task::yield_now().await;
        }
        hub2.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("Held"))],
        ));
    });
    let second = raw.connect(false).await;
    publisher.await.unwrap();
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[0]["data"]["payload"]["Status__c"], "Held");
}

#[tokio::test]
async fn a_request_may_carry_several_messages_answered_in_order() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    hub.publish(booking_change(
        ChangeKind::Update,
        &[("Status__c", json!("a"))],
    ));
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    let id = raw.client_id.clone();
    let (status, body) = raw
        .send(json!([
            {"channel": "/meta/subscribe", "clientId": id, "subscription": BOOKING_CHANNEL,
             "ext": {"replay": {BOOKING_CHANNEL: -2}}, "id": "10"},
            {"channel": "/meta/subscribe", "clientId": id, "subscription": "/data/Nope__ChangeEvent", "id": "11"},
            {"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
             "advice": {"timeout": 0}, "id": "12"},
        ]))
        .await;
    assert_eq!(status, 200);
    let messages = body.as_array().unwrap();
    assert_eq!(messages.len(), 4, "{messages:?}");
    // The replayed event first, then the three replies in request order.
    assert_eq!(messages[0]["channel"], BOOKING_CHANNEL);
    let ids: Vec<&str> = messages[1..]
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["10", "11", "12"]);
    assert_eq!(messages[1]["successful"], true);
    assert_eq!(messages[2]["successful"], false);
    assert_eq!(messages[3]["successful"], true);
}

#[tokio::test]
async fn a_held_connect_returns_when_an_event_arrives_or_the_hold_ends() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    raw.subscribe(BOOKING_CHANNEL, None).await;
    raw.connect(true).await;

    hub.set_connect_timeout(Duration::from_millis(50));
    let empty = raw.connect(false).await;
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0]["successful"], true);

    hub.set_connect_timeout(Duration::from_secs(30));
    let hub2 = Arc::clone(&hub);
    let publisher = tokio::spawn(async move {
        // Publish only once the connect is really being held.
        while hub2.lock().clients.values().all(|c| c.polling == 0) {
            tokio::task::yield_now().await;
        }
        hub2.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("X"))],
        ));
    });
    let started = std::time::Instant::now();
    let batch = raw.connect(false).await;
    publisher.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(batch.len(), 2, "{batch:?}");
}

#[tokio::test]
async fn dropped_clients_get_unknown_client_even_mid_poll() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    let mut raw = Raw::new(&server);
    raw.handshake().await;
    raw.subscribe(BOOKING_CHANNEL, None).await;
    raw.connect(true).await;

    let hub2 = Arc::clone(&hub);
    let dropper = tokio::spawn(async move {
        while hub2.lock().clients.values().all(|c| c.polling == 0) {
            tokio::task::yield_now().await;
        }
        hub2.drop_clients();
    });
    let replies = raw.connect(false).await;
    dropper.await.unwrap();
    let reply = reply_on(&replies, "/meta/connect");
    let recorded = &fixture("bayeux_connect_unknown_client.json")[0];
    assert_eq!(keys(reply), keys(recorded));
    assert_eq!(reply["error"], recorded["error"]);
    assert_eq!(reply["advice"], recorded["advice"]);

    let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
    assert_eq!(reply["error"], "403::Unknown client");
}

#[tokio::test]
async fn subscribe_checks_the_channel_and_the_replay_id() {
    let hub = Arc::new(CometdHub::new());
    let server = start(&hub).await;
    for n in 0..5 {
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!(n))],
        ));
    }
    hub.forget_events_before(3);
    let mut raw = Raw::new(&server);
    raw.handshake().await;

    let reply = raw.subscribe("/data/Nope__ChangeEvent", None).await;
    assert_eq!(
        reply["error"],
        "400::The channel you requested to subscribe to does not exist /data/Nope__ChangeEvent"
    );
    assert_eq!(
        raw.subscribe("data/X", None).await["error"],
        "400::Channel subscriptions must start with a leading '/'"
    );

    for bad in [1, 2, 6, 99, -3] {
        let reply = raw.subscribe(BOOKING_CHANNEL, Some(bad)).await;
        assert_eq!(reply["successful"], false, "{bad}");
        assert_eq!(
            reply["error"],
            format!("400::The replayId {bad} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.")
        );
        assert_eq!(
            keys(&reply),
            keys(&fixture("bayeux_subscribe_invalid_replay.json")[0])
        );
    }

    // From 3: events 4 and 5 are replayed on the next connect.
    assert_eq!(
        raw.subscribe(BOOKING_CHANNEL, Some(3)).await["successful"],
        true
    );
    let batch = raw.connect(true).await;
    let ids: Vec<i64> = batch
        .iter()
        .filter(|m| m["channel"] == BOOKING_CHANNEL)
        .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 5]);

    // -2 on the all-objects channel: everything retained (3, 4, 5).
    assert_eq!(
        raw.subscribe(ALL_CHANGE_EVENTS_CHANNEL, Some(-2)).await["successful"],
        true
    );
    let batch = raw.connect(true).await;
    let ids: Vec<i64> = batch
        .iter()
        .filter(|m| m["channel"] == ALL_CHANGE_EVENTS_CHANNEL)
        .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4, 5]);

    let history = hub.subscribe_history();
    assert!(history
        .iter()
        .any(|r| r.replay_from == 2 && !r.successful && r.channel == BOOKING_CHANNEL));
    assert!(history.iter().any(|r| r.replay_from == 3 && r.successful));
}

#[tokio::test]
async fn published_changes_have_the_recorded_cdc_shape() {
    let hub = CometdHub::new();
    hub.publish(RecordChange {
        values: [
            ("Id", json!(BOOKING_ID)),
            ("Name", json!("TB-0001")),
            ("Status__c", json!("Scheduled")),
            ("Merchant_Name__c", Value::Null),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..booking_change(ChangeKind::Create, &[])
    });
    hub.publish(booking_change(
        ChangeKind::Update,
        &[
            ("Status__c", json!("Cancelled")),
            ("Lark_Meeting_Error__c", Value::Null),
        ],
    ));
    hub.publish(booking_change(ChangeKind::Delete, &[]));
    let events = hub.events();
    assert_eq!(events.len(), 3);
    let recorded_header = &fixture("booking_update.json")["data"]["payload"]["ChangeEventHeader"];

    let create = &events[0];
    assert_eq!(create["channel"], BOOKING_CHANNEL);
    assert_eq!(
        keys(&create["data"]),
        keys(&fixture("booking_create.json")["data"])
    );
    let payload = &create["data"]["payload"];
    assert_eq!(keys(&payload["ChangeEventHeader"]), keys(recorded_header));
    assert_eq!(payload["ChangeEventHeader"]["changedFields"], json!([]));
    assert_eq!(payload["Name"], "TB-0001");
    assert!(
        payload.get("Id").is_none(),
        "the id travels in the header only"
    );
    assert!(
        payload.get("Merchant_Name__c").is_none(),
        "null fields are left out of a create"
    );
    assert!(payload["CreatedDate"].as_str().unwrap().ends_with('Z'));

    let update = &events[1]["data"]["payload"];
    let header = &update["ChangeEventHeader"];
    assert_eq!(
        header["changedFields"],
        json!(["Status__c", "Lark_Meeting_Error__c", "LastModifiedDate"])
    );
    assert_eq!(header["nulledFields"], json!(["Lark_Meeting_Error__c"]));
    assert_eq!(header["commitUser"], SF_HUMAN_USER_ID);
    assert_eq!(header["changeOrigin"], DEFAULT_CHANGE_ORIGIN);
    assert!(
        update.get("Name").is_none(),
        "an update carries only changed fields"
    );
    assert!(
        header["commitNumber"].as_i64()
            > events[0]["data"]["payload"]["ChangeEventHeader"]["commitNumber"].as_i64()
    );

    let delete = events[2]["data"]["payload"].as_object().unwrap();
    assert_eq!(delete.keys().collect::<Vec<_>>(), vec!["ChangeEventHeader"]);

    // (The service's own tests check that its parser reads what the hub sends.)
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| {
            e["data"]["payload"]["ChangeEventHeader"]["changeType"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, vec!["CREATE", "UPDATE", "DELETE"]);
    assert_eq!(hub.last_replay_id(), 3);
}

#[tokio::test]
async fn gap_overflow_and_platform_events_have_their_documented_shapes() {
    let hub = CometdHub::new();
    let gap = hub.inject_gap("Training_Booking__c", "GAP_UPDATE", &[BOOKING_ID]);
    let overflow = hub.inject_gap("Training_Booking__c", "GAP_OVERFLOW", &[BOOKING_ID]);
    let pe = hub.publish_platform_event(
        "/event/Booking_Change__e",
        json!({"Booking_Id__c": BOOKING_ID}),
    );
    assert_eq!((gap, overflow, pe), (1, 2, 3));
    let events = hub.events();

    let gap_payload = events[0]["data"]["payload"].as_object().unwrap();
    assert_eq!(gap_payload.len(), 1, "a gap event has no field values");
    let header = &events[0]["data"]["payload"]["ChangeEventHeader"];
    assert_eq!(header["changeType"], "GAP_UPDATE");
    assert_eq!(header["recordIds"], json!([BOOKING_ID]));

    assert_eq!(
        events[1]["data"]["payload"]["ChangeEventHeader"]["recordIds"],
        json!([EMPTY_RECORD_ID])
    );
    assert_eq!(
        events[1]["data"]["payload"]["ChangeEventHeader"]["changeType"],
        "GAP_OVERFLOW"
    );

    assert_eq!(
        keys(&events[2]["data"]["event"]),
        keys(&fixture("booking_platform_event.json")["data"]["event"])
    );
    assert_eq!(events[2]["channel"], "/event/Booking_Change__e");
    assert_eq!(events[2]["data"]["payload"]["Booking_Id__c"], BOOKING_ID);
}

fn context(token: &str, browser: Option<&str>) -> RequestContext {
    RequestContext {
        auth: Auth::Valid {
            token: token.into(),
            user_id: SF_INTEGRATION_USER_ID.into(),
        },
        browser_cookie: browser.map(str::to_string),
        has_lb_cookie: true,
        set_cookies: Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn silent_clients_are_dropped_after_the_client_timeout() {
    let hub = CometdHub::new();
    let mut rc = context(TOKEN, None);
    let reply = hub.handshake(
        &json!({"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}),
        &mut rc,
    );
    assert_eq!(reply["successful"], true);
    assert_eq!(hub.client_count(), 1);
    tokio::time::advance(DEFAULT_CLIENT_TIMEOUT - Duration::from_secs(1)).await;
    assert_eq!(hub.client_count(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        hub.client_count(),
        0,
        "40 s without a reconnect drops the client"
    );

    let connect = json!({"channel": "/meta/connect", "clientId": reply["clientId"]});
    let (reply, _) = hub.connect(&connect, &rc, &accept_one_token()).await;
    assert_eq!(reply["error"], "403::Unknown client");
}

#[tokio::test(start_paused = true)]
async fn old_events_leave_the_replay_window() {
    let hub = CometdHub::new();
    hub.set_retention(Duration::from_secs(60));
    hub.publish(booking_change(
        ChangeKind::Update,
        &[("Status__c", json!("a"))],
    ));
    tokio::time::advance(Duration::from_secs(61)).await;
    hub.publish(booking_change(
        ChangeKind::Update,
        &[("Status__c", json!("b"))],
    ));
    assert_eq!(hub.events().len(), 1);
    let st = hub.lock();
    assert!(!st.replay_valid(1));
    assert!(st.replay_valid(2));
    assert!(!st.replay_valid(3), "never issued");
}

#[test]
fn cdc_channel_names_follow_salesforce() {
    assert_eq!(cdc_channel("Training_Booking__c"), BOOKING_CHANNEL);
    assert_eq!(cdc_channel("Account"), "/data/AccountChangeEvent");
}

#[test]
fn random_placement_keeps_both_orders() {
    let events: Vec<Value> = (0..5).map(|i| json!({"e": i})).collect();
    let replies: Vec<Value> = (0..3).map(|i| json!({"r": i})).collect();
    for _ in 0..20 {
        let out = arrange(events.clone(), replies.clone(), EventPlacement::Random);
        let e: Vec<&Value> = out.iter().filter(|v| v.get("e").is_some()).collect();
        let r: Vec<&Value> = out.iter().filter(|v| v.get("r").is_some()).collect();
        assert_eq!(e, events.iter().collect::<Vec<_>>());
        assert_eq!(r, replies.iter().collect::<Vec<_>>());
    }
}
