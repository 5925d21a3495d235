use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::OversizedAnswer;
use crate::salesforce::SalesforceSim;
use crate::{SF_CLIENT_ID, SF_CLIENT_SECRET};

async fn token_request(sim: &SalesforceSim) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", SF_CLIENT_ID),
            ("client_secret", SF_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap()
}

async fn wait_finished(sim: &SalesforceSim, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.oversized_answers_finished() < n {
        assert!(
            Instant::now() < deadline,
            "the oversized answer never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_armed_token_answer_has_the_set_size_streamed_chunked_and_is_recorded() {
    let sim = SalesforceSim::start(0).await.unwrap();
    sim.stream_oversized_answers(OversizedAnswer::TokenEndpoint, 200_000, 1);
    let response = token_request(&sim).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.content_length(),
        None,
        "chunked: no declared length"
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 200_000);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "invalid_grant");
    wait_finished(&sim, 1).await;
    assert_eq!(sim.oversized_bytes_sent(), 200_000);
    assert_eq!(sim.requests().count_path("/services/oauth2/token"), 1);
    // Disarmed after `times`: the real endpoint answers again.
    assert_eq!(token_request(&sim).await.status(), 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_stops_the_stream() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let huge = 300 * 1024 * 1024;
    sim.stream_oversized_answers(OversizedAnswer::TokenEndpoint, huge, 1);
    let mut response = token_request(&sim).await;
    let mut read = 0;
    while read < 1024 * 1024 {
        read += response.chunk().await.unwrap().unwrap().len();
    }
    drop(response);
    wait_finished(&sim, 1).await;
    let sent = sim.oversized_bytes_sent();
    assert!(
        sent < 64 * 1024 * 1024,
        "only what the client read and the sockets buffered: {sent}"
    );
}

#[tokio::test]
async fn only_a_connect_gets_the_oversized_cometd_answer() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let token: Value = token_request(&sim).await.json().await.unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let endpoint = format!("{}/cometd/62.0", sim.base_url());
    let post = |body: Value| {
        http.post(&endpoint)
            .header("authorization", &bearer)
            .json(&body)
            .send()
    };
    sim.stream_oversized_answers(OversizedAnswer::CometdConnect, 100_000, 1);
    let handshake: Value = post(json!([{"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"], "id": "1"}]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(handshake[0]["successful"], true, "{handshake}");
    let client_id = handshake[0]["clientId"].as_str().unwrap().to_string();
    let connect = json!([{"channel": "/meta/connect", "clientId": client_id,
        "connectionType": "long-polling", "id": "2", "advice": {"timeout": 0}}]);
    let answer = post(connect.clone()).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.unwrap();
    assert_eq!(body.len(), 100_000);
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply[0]["channel"], "/meta/connect");
    // The next connect reaches the hub.
    let next: Value = post(connect).await.unwrap().json().await.unwrap();
    assert!(next[0].get("padding").is_none(), "{next}");
}
