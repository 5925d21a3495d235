//! The two HTTP faces of the long connection: the bootstrap endpoint and the WebSocket
//! upgrade, with one task per connection that carries frames between the socket and the
//! hub ([`LongConnection`]). Nothing here decides what is delivered.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::hub::{LongConnection, Outgoing};
use crate::lark::Shared;

/// `POST /callback/ws/endpoint`, body `{"AppID", "AppSecret"}` (as `getConnURL` in
/// `ws/client.go` and `_get_conn_url` in `lark_oapi/ws/client.py` send it): HTTP 200 with
/// `{code, msg, data: {URL, ClientConfig}}`, or `{code, msg}` when refused.
pub(in crate::lark) async fn endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let answer = shared
        .long_connection
        .bootstrap(field("AppID"), field("AppSecret"), host);
    let body = match answer.data {
        Some((url, config)) => json!({
            "code": answer.code,
            "msg": answer.msg,
            "data": { "URL": url, "ClientConfig": config },
        }),
        None => json!({ "code": answer.code, "msg": answer.msg }),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /ws/v2?…&service_id=…&ticket=…`: the WebSocket, for a URL the bootstrap handed
/// out. A refusal carries `Handshake-Status`, `Handshake-Msg` and
/// `Handshake-Autherrcode`, the headers both SDKs read when the upgrade fails.
pub(in crate::lark) async fn websocket(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = shared.long_connection.clone();
    match hub.admit(query.get("ticket").map(String::as_str)) {
        Ok(service) => upgrade.on_upgrade(move |socket| serve(hub, socket, service)),
        Err(refusal) => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            let headers = response.headers_mut();
            headers.insert(
                "Handshake-Status",
                HeaderValue::from_str(&refusal.status.to_string()).expect("digits"),
            );
            headers.insert("Handshake-Msg", HeaderValue::from_static(refusal.msg));
            if let Some(code) = refusal.auth_code {
                headers.insert(
                    "Handshake-Autherrcode",
                    HeaderValue::from_str(&code.to_string()).expect("digits"),
                );
            }
            response
        }
    }
}

/// One connection: client messages go to the hub (a pong may come back), pushes from the
/// hub go to the client, until either side closes, the hub aborts it or the simulator
/// stops. Returning drops the socket without a close frame.
async fn serve(hub: LongConnection, socket: WebSocket, service: i32) {
    let (tx, mut outgoing) = mpsc::unbounded_channel();
    let id = hub.register(service, tx);
    let mut shutdown = hub.shutdown_signal();
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(reply) = hub.on_message(id, &bytes) {
                        if sink.send(Message::Binary(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
                // Every message of the long connection is binary; a text message is a
                // client's mistake, counted like an undecodable frame.
                Some(Ok(Message::Text(_))) => hub.count_bad_message(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            push = outgoing.recv() => match push {
                Some(Outgoing::Bytes(bytes)) => {
                    if sink.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Abort) | None => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    hub.unregister(id);
}
