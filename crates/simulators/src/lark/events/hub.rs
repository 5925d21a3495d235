//! [`LongConnection`]: the connections, the events and their delivery, the acks, and the
//! test knobs. Time is `tokio::time::Instant`, so a paused test clock drives redelivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::frame::{
    header, Frame, HEADER_BIZ_RT, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TRACE_ID,
    HEADER_TYPE, METHOD_CONTROL, METHOD_DATA, TYPE_EVENT, TYPE_PING, TYPE_PONG,
};
use super::{
    CODE_INVALID_CREDENTIAL, CODE_NO_CREDENTIAL, CODE_OK, DEFAULT_FRAGMENT_SIZE, MAX_CONNECTIONS,
    RETRY_DELAYS, SOCKET_PATH,
};
use crate::lark::SIM_TENANT_KEY;
use crate::{LARK_APP_ID, LARK_APP_SECRET};

/// The connection parameters the server hands out, in seconds (`ClientConfig` of
/// `lark_oapi/ws/model.py`; the JSON keys are PascalCase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientConfig {
    /// Reconnect attempts; negative = forever.
    pub reconnect_count: i64,
    /// Seconds between reconnect attempts.
    pub reconnect_interval: u64,
    /// Upper bound of the random delay (seconds) before the first reconnect.
    pub reconnect_nonce: u64,
    /// Seconds between pings.
    pub ping_interval: u64,
}

impl Default for ClientConfig {
    /// The SDKs' own defaults (`NewClient` in `ws/client.go`, `Client.__init__` in
    /// `lark_oapi/ws/client.py`): reconnect forever, every 120 s after up to 30 s of
    /// jitter, ping every 120 s.
    fn default() -> Self {
        ClientConfig {
            reconnect_count: -1,
            reconnect_interval: 120,
            reconnect_nonce: 30,
            ping_interval: 120,
        }
    }
}

/// An acknowledgement a client sent back, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAck {
    /// The event it acknowledges; `None` when its `message_id` names no push.
    pub event_id: Option<String>,
    /// The `message_id` header of the frame.
    pub message_id: String,
    /// `code` of the `{"code": …}` payload (200 = handled); `None` when unreadable.
    pub code: Option<i64>,
    /// The `biz_rt` header, when sent.
    pub biz_rt: Option<String>,
    /// Which connection sent it (1, 2, … in the order they opened).
    pub connection: u64,
}

/// An event raised, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// `header.event_id`.
    pub event_id: String,
    /// `header.event_type`.
    pub event_type: String,
    /// The whole JSON envelope, as pushed.
    pub envelope: Value,
    /// Push attempts so far (an attempt with no client connected counts).
    pub pushes: u32,
    /// Pushes that reached a connected client.
    pub delivered: u32,
    /// Acknowledged with code 200.
    pub acked: bool,
    /// The retry schedule ran out without a 200.
    pub given_up: bool,
}

/// Counters of the long connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Calls of the bootstrap endpoint.
    pub endpoint_calls: u64,
    /// WebSocket connections accepted so far.
    pub connections_opened: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Handshakes refused (unknown or used URL, too many connections).
    pub connections_refused: u64,
    /// Pings received.
    pub pings: u64,
    /// Pongs sent.
    pub pongs: u64,
    /// Event frames sent (each fragment counts).
    pub event_frames: u64,
    /// Acknowledgements received (any code).
    pub acks: u64,
    /// Client messages that were not a decodable frame.
    pub bad_frames: u64,
}

/// What a connection task is told to do.
pub(super) enum Outgoing {
    /// Send this binary message.
    Bytes(Vec<u8>),
    /// Drop the connection at once, with no close frame.
    Abort,
}

/// A handshake the simulator refuses: `Handshake-Status`, `Handshake-Msg` and, when
/// set, `Handshake-Autherrcode` (read by `parseErr` in `ws/client.go`).
pub(super) struct HandshakeRefusal {
    pub status: i64,
    pub msg: &'static str,
    pub auth_code: Option<i64>,
}

/// The bootstrap's answer: `code`, `msg`, and the URL and config on success.
pub(super) struct Bootstrap {
    pub code: i64,
    pub msg: String,
    pub data: Option<(String, ClientConfig)>,
}

struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    service: i32,
    /// Set by [`LongConnection::go_silent`]: no pongs, no pushes reach it.
    silent: bool,
}

struct Pending {
    record: EventRecord,
    payload: Vec<u8>,
    /// When the next push is due; `None` once acknowledged or given up.
    next_at: Option<Instant>,
    /// The last push found no client connected (a new client gets it at once).
    missed: bool,
}

struct EndpointFault {
    code: i64,
    msg: String,
    remaining: usize,
}

struct HubState {
    config: ClientConfig,
    /// A config set by a test: also carried by every pong from then on.
    pong_config: bool,
    endpoint_faults: Vec<EndpointFault>,
    /// URL tickets handed out and not yet used, with the connection's service id.
    tickets: HashMap<String, i32>,
    connections: BTreeMap<u64, Connection>,
    next_connection: u64,
    round_robin: usize,
    max_connections: usize,
    events: Vec<Pending>,
    /// Every push's `message_id` → index in `events`.
    message_ids: HashMap<String, usize>,
    acks: Vec<SimAck>,
    stats: EventStats,
    retry_delays: Vec<Duration>,
    retry_scale: f64,
    fragment_size: usize,
    next_seq_id: u64,
}

struct Inner {
    state: Mutex<HubState>,
    /// Wakes the dispatcher when something became due earlier.
    wake: Notify,
    /// Flips to true when the simulator stops: every connection task ends.
    shutdown: watch::Sender<bool>,
}

/// The long connection of the simulated app: knobs and records for tests, and what the
/// bootstrap endpoint and the WebSocket handler use. Clones share state.
#[derive(Clone)]
pub struct LongConnection {
    inner: Arc<Inner>,
}

/// Stops the dispatcher and every connection when the last `LarkSim` clone goes.
pub(in crate::lark) struct Stopper {
    hub: LongConnection,
    dispatcher: JoinHandle<()>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.hub.inner.shutdown.send_replace(true);
    }
}

impl LongConnection {
    /// A hub with nothing connected, and its dispatcher running on the current runtime.
    pub(in crate::lark) fn start() -> (LongConnection, Stopper) {
        let hub = LongConnection {
            inner: Arc::new(Inner {
                state: Mutex::new(HubState {
                    config: ClientConfig::default(),
                    pong_config: false,
                    endpoint_faults: Vec::new(),
                    tickets: HashMap::new(),
                    connections: BTreeMap::new(),
                    next_connection: 1,
                    round_robin: 0,
                    max_connections: MAX_CONNECTIONS,
                    events: Vec::new(),
                    message_ids: HashMap::new(),
                    acks: Vec::new(),
                    stats: EventStats::default(),
                    retry_delays: RETRY_DELAYS.to_vec(),
                    retry_scale: 1.0,
                    fragment_size: DEFAULT_FRAGMENT_SIZE,
                    next_seq_id: 1,
                }),
                wake: Notify::new(),
                shutdown: watch::Sender::new(false),
            }),
        };
        let dispatcher = tokio::spawn(hub.clone().dispatch());
        let stopper = Stopper {
            hub: hub.clone(),
            dispatcher,
        };
        (hub, stopper)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.inner.state.lock().expect("long connection state")
    }

    // -----------------------------------------------------------------------------------
    // Knobs and records for tests.

    /// Raises an event of `event_type` with this `event` body, wrapped in the v2.0
    /// envelope (`schema`, `header {event_id, event_type, create_time (ms, string), token,
    /// app_id, tenant_key}`); it is pushed at once and redelivered until acknowledged
    /// with 200. Returns the event id.
    pub fn raise(&self, event_type: &str, event: Value) -> String {
        let event_id = crate::wire::random_hex(16);
        let envelope = json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": event_type,
                "create_time": chrono::Utc::now().timestamp_millis().to_string(),
                "token": crate::lark::SIM_VERIFICATION_TOKEN,
                "app_id": LARK_APP_ID,
                "tenant_key": SIM_TENANT_KEY,
            },
            "event": event,
        });
        let payload = envelope.to_string().into_bytes();
        self.lock().events.push(Pending {
            record: EventRecord {
                event_id: event_id.clone(),
                event_type: event_type.to_string(),
                envelope,
                pushes: 0,
                delivered: 0,
                acked: false,
                given_up: false,
            },
            payload,
            next_at: Some(Instant::now()),
            missed: false,
        });
        self.inner.wake.notify_one();
        event_id
    }

    /// Every event raised, in order.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock()
            .events
            .iter()
            .map(|p| p.record.clone())
            .collect()
    }

    /// Every acknowledgement received, in order.
    pub fn acks(&self) -> Vec<SimAck> {
        self.lock().acks.clone()
    }

    /// The counters.
    pub fn stats(&self) -> EventStats {
        self.lock().stats
    }

    /// Multiplies [`super::RETRY_DELAYS`] by `factor` (1.0 = Lark's schedule; 0.001 makes
    /// 3 s into 3 ms) for pushes scheduled from now on.
    pub fn scale_retry_schedule(&self, factor: f64) {
        self.lock().retry_scale = factor.max(0.0);
    }

    /// Delays between consecutive pushes of an unacknowledged event (default
    /// [`RETRY_DELAYS`]); one push more than delays, then it is given up.
    pub fn set_retry_delays(&self, delays: Vec<Duration>) {
        self.lock().retry_delays = delays;
    }

    /// Largest payload of one frame (at least 1 byte); larger events are fragmented.
    pub fn set_fragment_size(&self, bytes: usize) {
        self.lock().fragment_size = bytes.max(1);
    }

    /// Connections the app may hold at once (default [`MAX_CONNECTIONS`]).
    pub fn set_max_connections(&self, max: usize) {
        self.lock().max_connections = max;
    }

    /// The config the bootstrap hands out from now on; every pong carries it as well
    /// (a pong's payload is a new `ClientConfig`).
    pub fn set_client_config(&self, config: ClientConfig) {
        let mut state = self.lock();
        state.config = config;
        state.pong_config = true;
    }

    /// The next `times` bootstrap calls answer `{code, msg}` (HTTP 200) instead of a URL:
    /// [`super::CODE_SYSTEM_BUSY`] or [`super::CODE_INTERNAL_ERROR`] are retryable, any
    /// other code is final for the SDKs.
    pub fn fail_endpoint(&self, code: i64, msg: &str, times: usize) {
        self.lock().endpoint_faults.push(EndpointFault {
            code,
            msg: msg.to_string(),
            remaining: times,
        });
    }

    /// Drops every open connection at once, with no close frame (as a network failure
    /// would); returns how many. Events pushed to them and not acknowledged wait for
    /// their next retry.
    pub fn drop_connections(&self) -> usize {
        let state = self.lock();
        for connection in state.connections.values() {
            let _ = connection.tx.send(Outgoing::Abort);
        }
        state.connections.len()
    }

    /// Every open connection goes silent: its pings get no pong and nothing is pushed to
    /// it (what reaches it is lost), though it stays open. Connections opened later are
    /// served as usual. Returns how many went silent.
    pub fn go_silent(&self) -> usize {
        let mut state = self.lock();
        for connection in state.connections.values_mut() {
            connection.silent = true;
        }
        state.connections.len()
    }

    /// Sends these bytes as one binary message to every open, not silent connection (for
    /// bad-input tests: an undecodable frame, a frame of unknown `type`, a fragment set
    /// that never completes). Returns how many connections it went to.
    pub fn send_raw(&self, bytes: &[u8]) -> usize {
        let state = self.lock();
        let mut sent = 0;
        for connection in state.connections.values().filter(|c| !c.silent) {
            if connection.tx.send(Outgoing::Bytes(bytes.to_vec())).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Sends `frame` (its `service` set to each connection's) to every open, not silent
    /// connection; returns how many.
    pub fn send_frame(&self, frame: &Frame) -> usize {
        let state = self.lock();
        let mut sent = 0;
        for connection in state.connections.values().filter(|c| !c.silent) {
            let mut frame = frame.clone();
            frame.service = connection.service;
            if connection
                .tx
                .send(Outgoing::Bytes(frame.to_bytes()))
                .is_ok()
            {
                sent += 1;
            }
        }
        sent
    }

    /// Pushes an event again now, acknowledged or not (a duplicate delivery, as Lark's
    /// at-least-once delivery may make). False when no such event or nobody connected.
    pub fn push_again(&self, event_id: &str) -> bool {
        let mut state = self.lock();
        let Some(index) = state
            .events
            .iter()
            .position(|p| p.record.event_id == event_id)
        else {
            return false;
        };
        state.push(index)
    }

    /// Forgets every event not yet acknowledged: nothing more is pushed for them (as if
    /// Lark had given up). Returns how many.
    pub fn discard_pending(&self) -> usize {
        let mut state = self.lock();
        let mut discarded = 0;
        for pending in state.events.iter_mut().filter(|p| p.next_at.is_some()) {
            pending.next_at = None;
            pending.record.given_up = true;
            discarded += 1;
        }
        discarded
    }

    // -----------------------------------------------------------------------------------
    // For the bootstrap endpoint and the WebSocket handler.

    /// `POST /callback/ws/endpoint` with `{AppID, AppSecret}`: a fresh single-use URL on
    /// `host`, or the refusal.
    pub(super) fn bootstrap(
        &self,
        app_id: Option<&str>,
        app_secret: Option<&str>,
        host: &str,
    ) -> Bootstrap {
        let mut state = self.lock();
        state.stats.endpoint_calls += 1;
        if let Some(pos) = state.endpoint_faults.iter().position(|f| f.remaining > 0) {
            let fault = &mut state.endpoint_faults[pos];
            fault.remaining -= 1;
            let (code, msg) = (fault.code, fault.msg.clone());
            if fault.remaining == 0 {
                state.endpoint_faults.remove(pos);
            }
            return Bootstrap {
                code,
                msg,
                data: None,
            };
        }
        let (app_id, app_secret) = (app_id.unwrap_or(""), app_secret.unwrap_or(""));
        if app_id.is_empty() || app_secret.is_empty() {
            return Bootstrap {
                code: CODE_NO_CREDENTIAL,
                msg: "the App ID or App Secret is empty".to_string(),
                data: None,
            };
        }
        if app_id != LARK_APP_ID || app_secret != LARK_APP_SECRET {
            return Bootstrap {
                code: CODE_INVALID_CREDENTIAL,
                msg: "the App ID or App Secret is invalid".to_string(),
                data: None,
            };
        }
        let ticket = uuid::Uuid::new_v4().to_string();
        let service_id: i32 = rand::Rng::gen_range(&mut rand::thread_rng(), 10_000_000..99_999_999);
        state.tickets.insert(ticket.clone(), service_id);
        // The shape of the real URL (wss://msg-frontier.feishu.cn/ws/v2?fpid=…&aid=…&
        // device_id=…&access_key=…&service_id=…&ticket=…): `device_id` and `service_id` are
        // what the SDKs read; `fpid` comes first because node-sdk parses the whole URL as
        // a query string, so the first key carries the URL's head.
        let url = format!(
            "ws://{host}{SOCKET_PATH}?fpid=493&aid=552564&device_id={}&access_key={}&service_id={service_id}&ticket={ticket}",
            crate::lark::random_digits(19),
            crate::wire::random_hex(16),
        );
        Bootstrap {
            code: CODE_OK,
            msg: "ok".to_string(),
            data: Some((url, state.config)),
        }
    }

    /// Admits a WebSocket handshake for a URL the bootstrap handed out (each once), while
    /// the app has room for another connection; answers the connection's service id.
    pub(super) fn admit(&self, ticket: Option<&str>) -> Result<i32, HandshakeRefusal> {
        let mut state = self.lock();
        let Some(service) = ticket.and_then(|t| state.tickets.remove(t)) else {
            state.stats.connections_refused += 1;
            // Lark does not document the code of an unknown ticket; the SDKs only branch
            // on 1000040350, so any other auth code means "get a fresh URL and retry".
            return Err(HandshakeRefusal {
                status: super::HANDSHAKE_AUTH_FAILED,
                msg: "invalid ticket",
                auth_code: Some(0),
            });
        };
        if state.connections.len() >= state.max_connections {
            state.stats.connections_refused += 1;
            return Err(HandshakeRefusal {
                status: super::HANDSHAKE_AUTH_FAILED,
                msg: "exceed connection limit",
                auth_code: Some(super::AUTH_EXCEED_CONN_LIMIT),
            });
        }
        Ok(service)
    }

    /// A new connection: events whose last push found nobody go to it at once.
    pub(super) fn register(&self, service: i32, tx: mpsc::UnboundedSender<Outgoing>) -> u64 {
        let mut state = self.lock();
        let id = state.next_connection;
        state.next_connection += 1;
        state.connections.insert(
            id,
            Connection {
                tx,
                service,
                silent: false,
            },
        );
        state.stats.connections_opened += 1;
        state.stats.connections_open = state.connections.len() as u64;
        let now = Instant::now();
        for pending in state.events.iter_mut().filter(|p| p.missed) {
            if pending.next_at.is_some() {
                pending.next_at = Some(now);
            }
        }
        drop(state);
        self.inner.wake.notify_one();
        id
    }

    /// The connection closed.
    pub(super) fn unregister(&self, id: u64) {
        let mut state = self.lock();
        state.connections.remove(&id);
        state.stats.connections_open = state.connections.len() as u64;
    }

    /// A receiver that turns true when the simulator stops.
    pub(super) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// One binary message from connection `id`: a ping gets a pong (unless the
    /// connection is silent); a data frame is an acknowledgement. Answers what to send
    /// back, if anything.
    pub(super) fn on_message(&self, id: u64, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let Ok(frame) = Frame::from_bytes(bytes) else {
            state.stats.bad_frames += 1;
            return None;
        };
        match (frame.method, frame.header(HEADER_TYPE)) {
            (METHOD_CONTROL, Some(TYPE_PING)) => {
                state.stats.pings += 1;
                let connection = state.connections.get(&id)?;
                if connection.silent {
                    return None;
                }
                let payload = state
                    .pong_config
                    .then(|| serde_json::to_vec(&state.config).expect("a config serializes"));
                state.stats.pongs += 1;
                Some(Frame::control(frame.service, TYPE_PONG, payload).to_bytes())
            }
            (METHOD_DATA, _) => {
                state.ack(id, &frame);
                None
            }
            _ => None,
        }
    }

    /// A client message that is not a frame at all (a text message).
    pub(super) fn count_bad_message(&self) {
        self.lock().stats.bad_frames += 1;
    }

    /// Pushes what is due, until the simulator stops.
    async fn dispatch(self) {
        let mut shutdown = self.shutdown_signal();
        loop {
            let next = {
                let mut state = self.lock();
                state.push_due(Instant::now());
                state.events.iter().filter_map(|p| p.next_at).min()
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.inner.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl HubState {
    /// Pushes every event whose time has come, and schedules its next push.
    fn push_due(&mut self, now: Instant) {
        for index in 0..self.events.len() {
            if self.events[index].next_at.is_some_and(|at| at <= now) {
                self.push(index);
                let pending = &mut self.events[index];
                let attempt = pending.record.pushes as usize;
                match self.retry_delays.get(attempt - 1).copied() {
                    Some(delay) if !pending.record.acked => {
                        pending.next_at = Some(now + delay.mul_f64(self.retry_scale));
                    }
                    _ => {
                        pending.next_at = None;
                        pending.record.given_up = !pending.record.acked;
                    }
                }
            }
        }
    }

    /// One push of event `index` to one connected client (round robin); true when a
    /// client was there to take it.
    fn push(&mut self, index: usize) -> bool {
        self.events[index].record.pushes += 1;
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        if ids.is_empty() {
            self.events[index].missed = true;
            return false;
        }
        self.events[index].missed = false;
        let id = ids[self.round_robin % ids.len()];
        self.round_robin = self.round_robin.wrapping_add(1);
        let message_id = crate::wire::random_hex(16);
        self.message_ids.insert(message_id.clone(), index);
        let connection = &self.connections[&id];
        if connection.silent {
            // Pushed into a connection that stopped carrying anything: lost.
            return true;
        }
        let (service, tx) = (connection.service, connection.tx.clone());
        let trace_id = crate::wire::random_hex(16);
        let chunks: Vec<Vec<u8>> = self.events[index]
            .payload
            .chunks(self.fragment_size)
            .map(<[u8]>::to_vec)
            .collect();
        let sum = chunks.len().to_string();
        for (seq, chunk) in chunks.into_iter().enumerate() {
            let frame = Frame {
                seq_id: self.next_seq_id,
                log_id: rand::random::<u64>() >> 1,
                service,
                method: METHOD_DATA,
                headers: vec![
                    header(HEADER_TYPE, TYPE_EVENT),
                    header(HEADER_MESSAGE_ID, &message_id),
                    header(HEADER_SUM, &sum),
                    header(HEADER_SEQ, &seq.to_string()),
                    header(HEADER_TRACE_ID, &trace_id),
                ],
                payload_encoding: None,
                payload_type: None,
                payload: Some(chunk),
                log_id_new: None,
            };
            self.next_seq_id += 1;
            self.stats.event_frames += 1;
            let _ = tx.send(Outgoing::Bytes(frame.to_bytes()));
        }
        self.events[index].record.delivered += 1;
        true
    }

    /// Records an acknowledgement; code 200 ends the event's redelivery.
    fn ack(&mut self, connection: u64, frame: &Frame) {
        self.stats.acks += 1;
        let message_id = frame.header(HEADER_MESSAGE_ID).unwrap_or("").to_string();
        let code = serde_json::from_slice::<Value>(frame.payload_bytes())
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_i64));
        let index = self.message_ids.get(&message_id).copied();
        let event_id = index.map(|i| self.events[i].record.event_id.clone());
        if let (Some(index), Some(200)) = (index, code) {
            let pending = &mut self.events[index];
            pending.record.acked = true;
            pending.record.given_up = false;
            pending.next_at = None;
        }
        self.acks.push(SimAck {
            event_id,
            message_id,
            code,
            biz_rt: frame.header(HEADER_BIZ_RT).map(str::to_string),
            connection,
        });
    }
}
