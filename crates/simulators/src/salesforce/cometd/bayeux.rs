//! The `/cometd/{version}` endpoint: authentication and cookies, then each Bayeux message
//! (handshake, subscribe, unsubscribe, connect, disconnect) answered the way Salesforce
//! answers it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

#[derive(Clone)]
pub(super) struct HubContext {
    pub(super) hub: Arc<CometdHub>,
    pub(super) check: SessionCheck,
}

/// What the request's credentials turned out to be.
#[derive(Clone)]
pub(super) enum Auth {
    Valid { token: String, user_id: String },
    Missing,
    Invalid,
}

impl Auth {
    /// The Bayeux error text for a failed authentication ("Streaming API Error Codes").
    pub(super) fn failure(&self) -> Option<&'static str> {
        match self {
            Auth::Valid { .. } => None,
            Auth::Missing => Some("401::Request requires authentication"),
            Auth::Invalid => Some("401::Authentication invalid"),
        }
    }
}

/// What one request carried besides its messages.
pub(super) struct RequestContext {
    pub(super) auth: Auth,
    pub(super) browser_cookie: Option<String>,
    pub(super) has_lb_cookie: bool,
    /// Cookies to set on the response (only ever on a handshake).
    pub(super) set_cookies: Vec<String>,
}

pub(super) async fn version_missing() -> Response {
    // "API version in the URI is mandatory" (Streaming API Error Codes).
    plain_error(
        StatusCode::BAD_REQUEST,
        "400::API version in the URI is mandatory. URI format: '/cometd/62.0'",
    )
}

pub(super) fn plain_error(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        json!([{"error": message, "successful": false}]).to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

pub(super) async fn handle_bayeux(
    State(ctx): State<HubContext>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match version.parse::<f64>() {
        Ok(v) if v >= MIN_API_VERSION && version.contains('.') => {}
        _ => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "400::Unsupported API version. Only API versions '37.0' and later are supported. URI format: '/cometd/62.0'",
            )
        }
    }
    // Salesforce only takes an array of messages (design §4); a lone object is refused.
    let messages = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(messages)) => messages,
        Ok(_) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "400::Bayeux messages must be sent as a JSON array",
            )
        }
        Err(_) => return plain_error(StatusCode::BAD_REQUEST, "400::Request body is not JSON"),
    };

    let auth = match bearer_token(&headers) {
        None => Auth::Missing,
        Some(token) => match (ctx.check)(&token) {
            Some(user_id) => Auth::Valid { token, user_id },
            None => Auth::Invalid,
        },
    };
    let cookies = request_cookies(&headers);
    let mut rc = RequestContext {
        auth,
        browser_cookie: cookies.get(BROWSER_COOKIE).cloned(),
        has_lb_cookie: cookies.contains_key(LB_COOKIE),
        set_cookies: Vec::new(),
    };

    let mut replies = Vec::with_capacity(messages.len());
    let mut events = Vec::new();
    for message in &messages {
        let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
        let reply = match channel {
            "/meta/handshake" => ctx.hub.handshake(message, &mut rc),
            "/meta/subscribe" => ctx.hub.subscribe(message, &rc),
            "/meta/unsubscribe" => ctx.hub.unsubscribe(message, &rc),
            "/meta/disconnect" => ctx.hub.disconnect(message, &rc),
            "/meta/connect" => {
                let (reply, delivered) = ctx.hub.connect(message, &rc, &ctx.check).await;
                events.extend(delivered);
                reply
            }
            // Salesforce subscribers cannot publish through CometD.
            other => reply_to(message, other).error("403::Restricted channel"),
        };
        replies.push(reply);
    }

    let placement = ctx.hub.lock().placement;
    let body = Value::Array(arrange(events, replies, placement));
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    for cookie in rc.set_cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Salesforce accepts both `Bearer` and the older `OAuth` scheme.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))?
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

pub(super) fn request_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Puts the connect's events and the replies into one array, per `placement`.
pub(super) fn arrange(
    events: Vec<Value>,
    replies: Vec<Value>,
    placement: EventPlacement,
) -> Vec<Value> {
    match placement {
        EventPlacement::First => events.into_iter().chain(replies).collect(),
        EventPlacement::Last => replies.into_iter().chain(events).collect(),
        EventPlacement::Random => {
            let mut rng = rand::thread_rng();
            let mut out = Vec::with_capacity(events.len() + replies.len());
            let (mut e, mut r) = (
                events.into_iter().peekable(),
                replies.into_iter().peekable(),
            );
            while e.peek().is_some() || r.peek().is_some() {
                let take_event = match (e.peek(), r.peek()) {
                    (Some(_), Some(_)) => rng.gen_bool(0.5),
                    (Some(_), None) => true,
                    _ => false,
                };
                out.extend(if take_event { e.next() } else { r.next() });
            }
            out
        }
    }
}

/// Builds the reply to one message: same channel and id, plus what the handler adds.
pub(super) struct Reply(pub(super) Map<String, Value>);

pub(super) fn reply_to(message: &Value, channel: &str) -> Reply {
    let mut map = Map::new();
    if let Some(client_id) = message.get("clientId") {
        map.insert("clientId".into(), client_id.clone());
    }
    map.insert("channel".into(), json!(channel));
    if let Some(id) = message.get("id") {
        map.insert("id".into(), id.clone());
    }
    Reply(map)
}

impl Reply {
    pub(super) fn with(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_string(), value);
        self
    }

    pub(super) fn ok(self) -> Value {
        Value::Object(self.with("successful", json!(true)).0)
    }

    pub(super) fn error(self, error: &str) -> Value {
        Value::Object(
            self.with("error", json!(error))
                .with("successful", json!(false))
                .0,
        )
    }

    /// `403::Unknown client`, as recorded from Salesforce:
    /// `{"advice":{"interval":0,"reconnect":"handshake"},"channel":"/meta/connect","id":"304",
    /// "error":"403::Unknown client","successful":false}` (kdcllc/CometD.NetCore.Salesforce
    /// issue #43). The recording has no clientId.
    pub(super) fn unknown_client(mut self) -> Value {
        self.0.remove("clientId");
        self.with("advice", json!({"interval": 0, "reconnect": "handshake"}))
            .error("403::Unknown client")
    }

    /// An authentication failure on a non-handshake channel ("Handling Streaming API
    /// Errors": `401::Authentication invalid` with `advice: {reconnect: none, interval: 0}`).
    pub(super) fn auth_failed(self, error: &str) -> Value {
        self.with("advice", json!({"reconnect": "none", "interval": 0}))
            .error(error)
    }
}

/// Why a message from an existing client cannot be served.
pub(super) enum ClientProblem {
    Unknown,
    NoCookie(String),
}

impl HubState {
    /// Finds the message's client and checks its browser cookie.
    pub(super) fn client_for(
        &mut self,
        message: &Value,
        rc: &RequestContext,
    ) -> Result<(String, &mut Client), ClientProblem> {
        self.housekeep(Instant::now());
        let client_id = message
            .get("clientId")
            .and_then(Value::as_str)
            .ok_or(ClientProblem::Unknown)?;
        let client = self
            .clients
            .get_mut(client_id)
            .ok_or(ClientProblem::Unknown)?;
        match &rc.browser_cookie {
            None => Err(ClientProblem::NoCookie(client_id.to_string())),
            Some(b) if *b != client.browser => Err(ClientProblem::Unknown),
            Some(_) => Ok((client_id.to_string(), client)),
        }
    }
}

pub(super) fn problem_reply(reply: Reply, problem: ClientProblem) -> Value {
    match problem {
        ClientProblem::Unknown => reply.unknown_client(),
        ClientProblem::NoCookie(client_id) => reply.error(&format!(
            "400::Client {client_id} has established a session, but no {BROWSER_COOKIE} cookie present"
        )),
    }
}

impl CometdHub {
    pub(super) fn handshake(&self, message: &Value, rc: &mut RequestContext) -> Value {
        let reply = reply_to(message, "/meta/handshake");
        let user_id = match &rc.auth {
            Auth::Valid { user_id, .. } => user_id.clone(),
            other => {
                // "Handling Streaming API Errors": the handshake fails with
                // 403::Handshake denied, the 401 reason nested in ext.sfdc.failureReason.
                let reason = other.failure().unwrap_or("401::Authentication invalid");
                return reply
                    .with(
                        "ext",
                        json!({"sfdc": {"failureReason": reason}, "replay": true}),
                    )
                    .with("advice", json!({"reconnect": "none"}))
                    .error("403::Handshake denied");
            }
        };
        let types: Vec<&str> = message
            .get("supportedConnectionTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !types.contains(&"long-polling") {
            // Only long-polling is supported ("Invalid connection type {connection_type}").
            return reply.error(&format!("400::Invalid connection type {}", types.join(",")));
        }

        let browser = match &rc.browser_cookie {
            Some(b) => b.clone(),
            None => {
                let b = random_id(26);
                rc.set_cookies
                    .push(format!("{BROWSER_COOKIE}={b}; Path=/; HttpOnly"));
                rc.browser_cookie = Some(b.clone());
                b
            }
        };
        if !rc.has_lb_cookie {
            let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
                .format("%a, %d-%b-%Y %H:%M:%S GMT");
            rc.set_cookies.push(format!(
                "{LB_COOKIE}=!{}; path=/; Expires={expires}",
                random_id(40)
            ));
            rc.has_lb_cookie = true;
        }
        let client_id = random_id(27);
        let (wake, _) = watch::channel(());
        let mut st = self.lock();
        st.housekeep(Instant::now());
        st.clients.insert(
            client_id.clone(),
            Client {
                browser,
                user_id,
                subscriptions: BTreeSet::new(),
                queue: VecDeque::new(),
                wake,
                polling: 0,
                connect_epoch: 0,
                last_contact: Instant::now(),
                connected_once: false,
            },
        );
        // Recorded successful handshake (kdcllc/CometD.NetCore.Salesforce issue #43):
        // {"ext":{"replay":true,"payload.format":true},"minimumVersion":"1.0","clientId":…,
        //  "supportedConnectionTypes":["long-polling"],"channel":"/meta/handshake","id":…,
        //  "version":"1.0","successful":true} — no advice; the first connect carries it.
        reply
            .with("ext", json!({"replay": true, "payload.format": true}))
            .with("minimumVersion", json!("1.0"))
            .with("clientId", json!(client_id))
            .with("supportedConnectionTypes", json!(["long-polling"]))
            .with("version", json!("1.0"))
            .ok()
    }

    pub(super) fn subscribe(&self, message: &Value, rc: &RequestContext) -> Value {
        let mut reply = reply_to(message, "/meta/subscribe");
        if let Some(sub) = message.get("subscription") {
            reply = reply.with("subscription", sub.clone());
        }
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        let (client_id, client) = match st.client_for(message, rc) {
            Ok(found) => found,
            Err(problem) => return problem_reply(reply, problem),
        };
        if let Some(error) = user_mismatch(client, &rc.auth) {
            return reply.error(error);
        }
        client.last_contact = Instant::now();
        let channel = match message.get("subscription").and_then(Value::as_str) {
            None | Some("") => return reply.error("400::Channel name not specified"),
            Some(c) if !c.starts_with('/') => {
                return reply.error("400::Channel subscriptions must start with a leading '/'")
            }
            Some(c) => c.to_string(),
        };
        // The replay map is keyed by the exact channel; no entry means "new events only".
        let replay_from = message
            .pointer("/ext/replay")
            .and_then(Value::as_object)
            .and_then(|m| m.get(&channel))
            .and_then(Value::as_i64)
            .unwrap_or(-1);

        let outcome = if !st.channel_exists(&channel) {
            Err(format!(
                "400::The channel you requested to subscribe to does not exist {channel}"
            ))
        } else if !st.replay_valid(replay_from) {
            // Exact text, two spaces after "invalid." (design §4).
            Err(format!(
                "400::The replayId {replay_from} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
            ))
        } else {
            Ok(())
        };
        st.subscribe_history.push(SubscribeRecord {
            client_id: client_id.clone(),
            channel: channel.clone(),
            replay_from,
            successful: outcome.is_ok(),
        });
        if let Err(error) = outcome {
            return reply.error(&error);
        }

        let replayed: Vec<Value> = if replay_from == -1 {
            Vec::new()
        } else {
            st.events
                .iter()
                .filter(|e| e.replay_id > replay_from && e.channels.contains(&channel))
                .map(|e| json!({"channel": channel, "data": e.data}))
                .collect()
        };
        let Some(client) = st.clients.get_mut(&client_id) else {
            return reply.unknown_client();
        };
        client.subscriptions.insert(channel);
        if !replayed.is_empty() {
            client.queue.extend(replayed);
            client.wake.send_replace(());
        }
        reply.ok()
    }

    pub(super) fn unsubscribe(&self, message: &Value, rc: &RequestContext) -> Value {
        let mut reply = reply_to(message, "/meta/unsubscribe");
        if let Some(sub) = message.get("subscription") {
            reply = reply.with("subscription", sub.clone());
        }
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        match st.client_for(message, rc) {
            Ok((_, client)) => {
                client.last_contact = Instant::now();
                if let Some(channel) = message.get("subscription").and_then(Value::as_str) {
                    client.subscriptions.remove(channel);
                }
                reply.ok()
            }
            Err(problem) => problem_reply(reply, problem),
        }
    }

    pub(super) fn disconnect(&self, message: &Value, rc: &RequestContext) -> Value {
        let reply = reply_to(message, "/meta/disconnect");
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        match st.client_for(message, rc) {
            Ok((client_id, _)) => {
                if let Some(client) = st.clients.remove(&client_id) {
                    client.wake.send_replace(());
                }
                reply.ok()
            }
            Err(problem) => problem_reply(reply, problem),
        }
    }

    /// The long poll: answers at once when events are queued (or the client asked for
    /// `advice.timeout: 0`), else when one arrives, the client is dropped, a newer connect
    /// supersedes this one, or the connect timeout passes.
    pub(super) async fn connect(
        &self,
        message: &Value,
        rc: &RequestContext,
        check: &SessionCheck,
    ) -> (Value, Vec<Value>) {
        let reply = reply_to(message, "/meta/connect");
        let (client_id, epoch, mut wake, deadline) = {
            let mut st = self.lock();
            if let Some(error) = rc.auth.failure() {
                drop_client_of(&mut st, message);
                return (reply.auth_failed(error), Vec::new());
            }
            let connect_timeout = st.connect_timeout;
            let advised_interval = st.advised_interval;
            let (client_id, client) = match st.client_for(message, rc) {
                Ok(found) => found,
                Err(problem) => return (problem_reply(reply, problem), Vec::new()),
            };
            if let Some(error) = user_mismatch(client, &rc.auth) {
                return (reply.error(error), Vec::new());
            }
            let connection_type = message.get("connectionType").and_then(Value::as_str);
            if connection_type.is_some_and(|t| t != "long-polling") {
                let t = connection_type.unwrap_or_default();
                return (
                    reply.error(&format!("400::Invalid connection type {t}")),
                    Vec::new(),
                );
            }
            client.last_contact = Instant::now();
            client.connect_epoch += 1;
            // Release any older connect still held for this client.
            client.wake.send_replace(());
            let wake = client.wake.subscribe();
            // The first connect of a session is answered at once, `advice.timeout: 0` or
            // not: CometD's server (which the Streaming API runs on) only suspends a
            // connect `if (timeout > 0 && wasConnected && session.isConnected())` —
            // "Support old clients that do not send advice:{timeout:0} on the first
            // connect" (cometd/cometd, AbstractHttpTransport.processMetaConnect). Clients
            // such as aiocometd wait for that first reply before `open()` returns.
            let immediate = !client.connected_once
                || message.pointer("/advice/timeout").and_then(Value::as_i64) == Some(0);
            if immediate || !client.queue.is_empty() {
                let delivered = client.queue.drain(..).collect();
                let reply = connect_reply(reply, client, connect_timeout, advised_interval);
                return (reply, delivered);
            }
            client.polling += 1;
            (
                client_id,
                client.connect_epoch,
                wake,
                Instant::now() + connect_timeout,
            )
        };

        // Counts the poll down even when the HTTP request is dropped mid-wait.
        let _poll = PollGuard {
            hub: self,
            client_id: &client_id,
        };
        loop {
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The client (and its sender) is gone.
                        return (reply.unknown_client(), Vec::new());
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
            // Checked before taking the hub lock: the check may take the simulator's own
            // session lock, and the two must never nest.
            let still_valid = match &rc.auth {
                Auth::Valid { token, .. } => check(token).is_some(),
                _ => true,
            };
            let mut st = self.lock();
            let connect_timeout = st.connect_timeout;
            let advised_interval = st.advised_interval;
            let Some(client) = st.clients.get_mut(&client_id) else {
                return (reply.unknown_client(), Vec::new());
            };
            if client.connect_epoch != epoch {
                return (reply.ok(), Vec::new());
            }
            if !still_valid {
                st.clients.remove(&client_id);
                return (reply.auth_failed("401::Authentication invalid"), Vec::new());
            }
            if !client.queue.is_empty() || Instant::now() >= deadline {
                let delivered = client.queue.drain(..).collect();
                return (
                    connect_reply(reply, client, connect_timeout, advised_interval),
                    delivered,
                );
            }
        }
    }
}

/// The first connect reply after a handshake carries the advice, later ones do not
/// (recorded: `{"clientId":…,"advice":{"interval":0,"timeout":110000,"reconnect":"retry"},
/// "channel":"/meta/connect",…}`, then `{"clientId":…,"channel":"/meta/connect","id":"86",
/// "successful":true}`, Oyatel/CometD.NET issue #23) — unless the `advise_interval` knob is set, then every
/// successful one does.
pub(super) fn connect_reply(
    reply: Reply,
    client: &mut Client,
    connect_timeout: Duration,
    advised_interval: Option<Duration>,
) -> Value {
    client.last_contact = Instant::now();
    let first = !client.connected_once;
    client.connected_once = true;
    if first || advised_interval.is_some() {
        let interval = advised_interval.unwrap_or_default().as_millis() as u64;
        reply
            .with(
                "advice",
                json!({"interval": interval, "timeout": connect_timeout.as_millis() as u64, "reconnect": "retry"}),
            )
            .ok()
    } else {
        reply.ok()
    }
}

/// "Authenticated user id does not match the session's user id" (Streaming API Error Codes).
pub(super) fn user_mismatch(client: &Client, auth: &Auth) -> Option<&'static str> {
    match auth {
        Auth::Valid { user_id, .. } if *user_id != client.user_id => {
            Some("400::Authenticated user id does not match the session's user id")
        }
        _ => None,
    }
}

/// An unauthenticated message ends its client: after a 401 it must log in and handshake
/// again.
pub(super) fn drop_client_of(st: &mut HubState, message: &Value) {
    if let Some(id) = message.get("clientId").and_then(Value::as_str) {
        if let Some(client) = st.clients.remove(id) {
            client.wake.send_replace(());
        }
    }
}

pub(super) struct PollGuard<'a> {
    pub(super) hub: &'a CometdHub,
    pub(super) client_id: &'a str,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(client) = st.clients.get_mut(self.client_id) {
            client.polling = client.polling.saturating_sub(1);
            client.last_contact = Instant::now();
        }
    }
}
