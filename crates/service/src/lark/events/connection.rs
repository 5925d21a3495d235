//! [`LongConnection`]: the one WebSocket to Lark that brings the app's events (rule 28),
//! following what the official SDKs' clients do (larksuite/oapi-sdk-python
//! `lark_oapi/ws/client.py`, larksuite/oapi-sdk-go `ws/client.go`):
//!
//! - get a URL from the endpoint (a fresh one for every connection), open it;
//! - ping every `PingInterval` (the first at once); a pong may carry a new `ClientConfig`;
//! - join fragments, read the event, hand it to the [`EventSink`] and acknowledge the
//!   frame only once the sink has recorded it (`{"code":500}` when it could not);
//! - when the connection is lost: wait a random part of `ReconnectNonce`, then try up to
//!   `ReconnectCount` times (-1: forever), `ReconnectInterval` apart;
//! - a connection silent for three ping intervals is dropped (the SDKs have no such
//!   watchdog; a half-open TCP connection would otherwise keep us deaf until the
//!   keep-alive noticed).
//!
//! Events are recorded one at a time, in the order they arrive (a meeting's start before
//! its joins), while reading and pinging go on; at most [`MAX_QUEUED_EVENTS`] wait, and
//! one beyond that is left unacknowledged for Lark to push again. Nothing is spawned: the
//! loop polls the sink's future itself, so shutdown lets an in-flight record finish and
//! acknowledges it before the close frame.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::endpoint::{parse_config_update, ClientConfig, EndpointInfo, ENDPOINT_PATH};
use super::event::LarkEvent;
use super::fragments::{Fragments, Joined, MAX_MESSAGE_BYTES};
use super::frame::{
    Frame, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TRACE_ID, HEADER_TYPE, METHOD_CONTROL,
    METHOD_DATA, TYPE_EVENT, TYPE_PING, TYPE_PONG,
};
use super::throttle::LogThrottle;
use super::{EventSink, EventsError, SinkError};
use crate::config::LarkSettings;
use crate::metrics::{names, Metrics};
use crate::retry::{with_retry, RetryPolicy};

/// Time allowed to open a TCP connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the whole bootstrap request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// Time allowed for the WebSocket connect (TCP, TLS and the upgrade).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed to write one frame; a peer that stops reading loses the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the close handshake at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Ping intervals of silence after which the connection is taken for dead (rule 28).
const WATCHDOG_PINGS: u32 = 3;
/// Events read but not yet recorded, at most; beyond, an event is left unacknowledged and
/// Lark pushes it again (after 3 s, design §4).
pub(crate) const MAX_QUEUED_EVENTS: usize = 256;
/// Sent on the bootstrap request so Lark's logs name us.
const USER_AGENT: &str = concat!("lark-vc-bridge/", env!("CARGO_PKG_VERSION"));

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The long connection of one Lark app. [`LongConnection::run`] keeps it open until
/// cancelled; [`LongConnection::probe`] asks the endpoint once (for `check`).
pub struct LongConnection {
    http: reqwest::Client,
    /// `{lark.base_url}/callback/ws/endpoint`.
    endpoint: String,
    app_id: String,
    app_secret: SecretString,
    metrics: Metrics,
    /// Retries of a busy endpoint within one connection attempt.
    policy: RetryPolicy,
}

impl fmt::Debug for LongConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongConnection")
            .field("endpoint", &self.endpoint)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl LongConnection {
    /// The connection for the app of `settings` (`lark.base_url`, `lark.app_id`,
    /// `lark.app_secret`), counting in `metrics`.
    pub fn new(settings: &LarkSettings, metrics: Metrics) -> Result<LongConnection, EventsError> {
        Self::with_retry_policy(settings, metrics, RetryPolicy::default())
    }

    /// As [`LongConnection::new`], with a chosen policy for retrying a busy endpoint within
    /// one attempt (tests).
    pub fn with_retry_policy(
        settings: &LarkSettings,
        metrics: Metrics,
        policy: RetryPolicy,
    ) -> Result<LongConnection, EventsError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EventsError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(LongConnection {
            http,
            endpoint: format!(
                "{}{ENDPOINT_PATH}",
                settings.base_url.as_str().trim_end_matches('/')
            ),
            app_id: settings.app_id.clone(),
            app_secret: settings.app_secret.clone(),
            metrics,
            policy,
        })
    }

    /// One bootstrap call, no retry: whether Lark gives this app a connection URL (`check`).
    pub async fn probe(&self) -> Result<EndpointInfo, EventsError> {
        self.bootstrap_once().await
    }

    /// Keeps the connection open, handing every event to `sink`, until `cancel` fires
    /// (then `Ok`: an in-flight record is let finish and acknowledged, the close frame is
    /// sent). Returns an error only when the endpoint refuses the app for good or the
    /// server's `ReconnectCount` runs out: the caller reports it and runs on without
    /// events (the sweep fills attendance, rule 29).
    pub async fn run(
        self,
        sink: impl EventSink,
        cancel: CancellationToken,
    ) -> Result<(), EventsError> {
        let mut config = ClientConfig::default();
        let mut throttle = LogThrottle::default();
        let mut first = true;
        loop {
            let Some((ws, endpoint)) = self.establish(&mut config, first, &cancel).await? else {
                return Ok(());
            };
            first = false;
            tracing::info!(
                url = %endpoint.display_url(),
                device_id = %endpoint.device_id,
                "connected to Lark for events"
            );
            let end = {
                let _gauge = ConnectedGauge::up(&self.metrics);
                let mut session = Session {
                    metrics: &self.metrics,
                    sink: &sink,
                    config: &mut config,
                    throttle: &mut throttle,
                    service_id: endpoint.service_id,
                    fragments: Fragments::default(),
                    queue: VecDeque::new(),
                };
                session.serve(ws, &cancel).await
            };
            match end {
                End::Cancelled => {
                    tracing::info!(device_id = %endpoint.device_id, "closed the Lark event connection");
                    return Ok(());
                }
                End::Lost(reason) => {
                    self.metrics.inc(names::LARK_EVENTS_RECONNECTS, &[]);
                    tracing::warn!(
                        device_id = %endpoint.device_id,
                        %reason,
                        "lost the Lark event connection; reconnecting"
                    );
                }
            }
        }
    }

    /// Opens a connection: the first try at once; after a failure or a lost connection,
    /// the SDKs' reconnect (a random part of `ReconnectNonce`, then `ReconnectCount`
    /// attempts `ReconnectInterval` apart). `None` when cancelled meanwhile.
    async fn establish(
        &self,
        config: &mut ClientConfig,
        first: bool,
        cancel: &CancellationToken,
    ) -> Result<Option<(Ws, EndpointInfo)>, EventsError> {
        if first {
            match self.attempt(config, cancel).await {
                None => return Ok(None),
                Some(Ok(opened)) => return Ok(Some(opened)),
                Some(Err(e)) if e.is_permanent() => return Err(e),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not open the Lark event connection")
                }
            }
        }
        let jitter = config.reconnect_nonce.mul_f64(rand::random::<f64>());
        if !wait(jitter, cancel).await {
            return Ok(None);
        }
        let mut attempts = 0u64;
        loop {
            if config
                .reconnect_count
                .is_some_and(|limit| attempts >= limit)
            {
                return Err(EventsError::GaveUp { attempts });
            }
            attempts += 1;
            match self.attempt(config, cancel).await {
                None => return Ok(None),
                Some(Ok(opened)) => return Ok(Some(opened)),
                Some(Err(e)) if e.is_permanent() => return Err(e),
                Some(Err(e)) => tracing::warn!(
                    attempt = attempts,
                    error = %e,
                    wait_s = config.reconnect_interval.as_secs(),
                    "could not reopen the Lark event connection"
                ),
            }
            if !wait(config.reconnect_interval, cancel).await {
                return Ok(None);
            }
        }
    }

    /// One attempt: a fresh endpoint URL (a busy endpoint retried with backoff), its
    /// `ClientConfig` applied, the WebSocket opened. `None` when cancelled meanwhile.
    async fn attempt(
        &self,
        config: &mut ClientConfig,
        cancel: &CancellationToken,
    ) -> Option<Result<(Ws, EndpointInfo), EventsError>> {
        let open = async {
            let endpoint = with_retry(&self.policy, "lark event endpoint", || {
                self.bootstrap_once()
            })
            .await?;
            config.apply(endpoint.config);
            let ws = open_websocket(endpoint.url()).await?;
            Ok((ws, endpoint))
        };
        tokio::select! {
            _ = cancel.cancelled() => None,
            result = open => Some(result),
        }
    }

    /// `POST {base_url}/callback/ws/endpoint` `{"AppID", "AppSecret"}`, no Authorization.
    async fn bootstrap_once(&self) -> Result<EndpointInfo, EventsError> {
        let body = serde_json::json!({
            "AppID": self.app_id,
            "AppSecret": self.app_secret.expose_secret(),
        });
        let response = self
            .http
            .post(&self.endpoint)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = crate::outbound::read_capped(response, crate::outbound::LARK_BODY_CAP)
            .await
            .map_err(|e| match e {
                crate::outbound::ReadError::Transport(e) => transport(e),
                crate::outbound::ReadError::TooLarge { cap } => {
                    EventsError::Unexpected(crate::outbound::ReadError::too_large_text(cap))
                }
            })?;
        EndpointInfo::from_answer(status, &body)
    }
}

/// A reqwest failure as an [`EventsError`], without the URL.
fn transport(e: reqwest::Error) -> EventsError {
    if e.is_timeout() {
        return EventsError::Timeout;
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    EventsError::Transport(crate::lark::error::truncate(&text))
}

/// Opens the WebSocket. A refused upgrade is read as the SDKs read it: Lark says why in
/// `Handshake-Status`, `Handshake-Msg` and `Handshake-Autherrcode`; 403 (the app is
/// banned) and 514 with 1000040350 (too many connections for the app) are final
/// (`_parse_ws_conn_exception`, `parseErr`).
async fn open_websocket(url: &Url) -> Result<Ws, EventsError> {
    const FORBIDDEN: i64 = 403;
    const AUTH_FAILED: i64 = 514;
    const EXCEED_CONN_LIMIT: i64 = 1_000_040_350;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
    match timeout(HANDSHAKE_TIMEOUT, connect).await {
        Err(_) => Err(EventsError::Timeout),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
            };
            let Some(status) = header("Handshake-Status").and_then(|s| s.parse::<i64>().ok())
            else {
                return Err(EventsError::Transport(format!(
                    "the WebSocket upgrade was refused with HTTP {}",
                    response.status().as_u16()
                )));
            };
            let auth_code = header("Handshake-Autherrcode").and_then(|s| s.parse::<i64>().ok());
            let permanent = status == FORBIDDEN
                || (status == AUTH_FAILED && auth_code == Some(EXCEED_CONN_LIMIT));
            Err(EventsError::Handshake {
                status,
                auth_code,
                msg: crate::lark::error::truncate(header("Handshake-Msg").unwrap_or_default()),
                permanent,
            })
        }
        Ok(Err(e)) => {
            // tokio-tungstenite's connect errors name the failure, not the URL; should one
            // ever quote it, its query (a credential) is cut out all the same.
            let mut text = e.to_string();
            if let Some(query) = url.query().filter(|q| !q.is_empty()) {
                text = text.replace(query, "[redacted]");
            }
            Err(EventsError::Transport(crate::lark::error::truncate(&text)))
        }
    }
}

/// Waits `how_long`; false when cancelled first.
async fn wait(how_long: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(how_long) => true,
    }
}

/// Sets [`names::LARK_EVENTS_CONNECTED`] to 1 while it lives (0 again however the
/// session ends, also when the `run` future is dropped).
struct ConnectedGauge<'a>(&'a Metrics);

impl<'a> ConnectedGauge<'a> {
    fn up(metrics: &'a Metrics) -> Self {
        metrics.set(names::LARK_EVENTS_CONNECTED, &[], 1.0);
        ConnectedGauge(metrics)
    }
}

impl Drop for ConnectedGauge<'_> {
    fn drop(&mut self) {
        self.0.set(names::LARK_EVENTS_CONNECTED, &[], 0.0);
    }
}

/// How one connection ended.
enum End {
    /// `cancel` fired; the connection was closed cleanly.
    Cancelled,
    /// The connection broke, Lark closed it, or the watchdog gave up on it.
    Lost(String),
}

/// An event read and waiting for the sink, with the frame that brought it (the one its
/// acknowledgement answers).
struct Received {
    frame: Frame,
    event: LarkEvent,
}

/// The sink's answer for one event.
struct Recorded {
    frame: Frame,
    label: &'static str,
    event_id: String,
    result: Result<(), SinkError>,
    took: Duration,
}

type InFlight<'a> = Pin<Box<dyn Future<Output = Recorded> + Send + 'a>>;

/// What woke the loop.
enum Step {
    Cancel,
    Recorded(Recorded),
    Message(Option<Result<Message, tungstenite::Error>>),
    Ping,
    Expire,
    Silent,
}

/// One open connection's state.
struct Session<'a, S> {
    metrics: &'a Metrics,
    sink: &'a S,
    config: &'a mut ClientConfig,
    throttle: &'a mut LogThrottle,
    service_id: i32,
    fragments: Fragments,
    queue: VecDeque<Received>,
}

impl<'a, S: EventSink> Session<'a, S> {
    /// Reads, pings and records until the connection ends.
    async fn serve(&mut self, mut ws: Ws, cancel: &CancellationToken) -> End {
        // The SDKs' ping loop pings first, then sleeps.
        let mut next_ping = Instant::now();
        let mut heard = Instant::now();
        let mut inflight: Option<InFlight<'a>> = None;
        loop {
            if inflight.is_none() {
                inflight = self.queue.pop_front().map(|r| self.record(r));
            }
            let watchdog = heard + self.config.ping_interval * WATCHDOG_PINGS;
            let expiry = self.fragments.next_expiry();
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => Step::Cancel,
                done = finished(&mut inflight) => Step::Recorded(done),
                message = ws.next() => Step::Message(message),
                _ = sleep_until(next_ping) => Step::Ping,
                _ = sleep_until(expiry.unwrap_or(watchdog)), if expiry.is_some() => Step::Expire,
                _ = sleep_until(watchdog) => Step::Silent,
            };
            let outcome = match step {
                Step::Cancel => {
                    // Rule 24: the record under way finishes and is answered; the events
                    // still queued are not (Lark pushes them again to the next client).
                    if let Some(recording) = inflight.take() {
                        let done = recording.await;
                        let _ = self.acknowledge(&mut ws, done).await;
                    }
                    close(ws).await;
                    return End::Cancelled;
                }
                Step::Recorded(done) => {
                    inflight = None;
                    self.acknowledge(&mut ws, done).await
                }
                Step::Message(message) => {
                    heard = Instant::now();
                    match message {
                        None => Err("Lark closed the connection".to_string()),
                        Some(Err(e)) => Err(format!("reading failed: {e}")),
                        Some(Ok(Message::Binary(bytes))) => match self.on_frame(&bytes) {
                            Some(reply) => send(&mut ws, reply).await,
                            None => Ok(()),
                        },
                        Some(Ok(Message::Close(_))) => {
                            Err("Lark closed the connection".to_string())
                        }
                        Some(Ok(Message::Text(_))) => {
                            self.dropped("unknown_type", "a text message");
                            Ok(())
                        }
                        // WebSocket-level pings are answered by tungstenite itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    }
                }
                Step::Ping => {
                    next_ping = Instant::now() + self.config.ping_interval;
                    send(&mut ws, Frame::ping(self.service_id)).await
                }
                Step::Expire => {
                    let expired = self.fragments.expire(Instant::now());
                    for _ in 0..expired {
                        self.dropped("fragment_expired", "a message's fragments never all came");
                    }
                    Ok(())
                }
                Step::Silent => Err(format!(
                    "nothing heard for {} ping intervals",
                    WATCHDOG_PINGS
                )),
            };
            if let Err(reason) = outcome {
                return End::Lost(reason);
            }
        }
    }

    /// The sink's work for one event, as a future the loop polls.
    fn record(&self, received: Received) -> InFlight<'a> {
        let sink = self.sink;
        Box::pin(async move {
            let Received { frame, event } = received;
            let label = event.kind.label();
            let event_id = event.header.event_id.clone();
            let started = Instant::now();
            let result = sink.record(event).await;
            Recorded {
                frame,
                label,
                event_id,
                result,
                took: started.elapsed(),
            }
        })
    }

    /// Answers the frame of a recorded event: 200 when recorded, 500 when not.
    async fn acknowledge(&mut self, ws: &mut Ws, done: Recorded) -> Result<(), String> {
        let (code, outcome) = match &done.result {
            Ok(()) => (200, "recorded"),
            Err(e) => {
                tracing::warn!(
                    event_id = %done.event_id,
                    error = %e,
                    "could not record a Lark event; answering 500 so that Lark pushes it again"
                );
                (500, "sink_failed")
            }
        };
        self.metrics.inc(
            names::LARK_EVENTS,
            &[("type", done.label), ("outcome", outcome)],
        );
        tracing::debug!(event_id = %done.event_id, code, "acknowledged a Lark event");
        let biz_rt = u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX);
        send(ws, done.frame.into_ack(code, biz_rt)).await
    }

    /// Handles one binary message; returns a frame to send back at once, if any.
    fn on_frame(&mut self, bytes: &[u8]) -> Option<Frame> {
        let frame = match Frame::from_bytes(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                self.dropped("undecodable_frame", &e.to_string());
                return None;
            }
        };
        match frame.method {
            METHOD_CONTROL => {
                self.on_control(&frame);
                None
            }
            METHOD_DATA => self.on_data(frame),
            other => {
                self.dropped("unknown_type", &format!("frame method {other}"));
                None
            }
        }
    }

    /// A pong may carry a new `ClientConfig`; a ping from the server needs no answer.
    fn on_control(&mut self, frame: &Frame) {
        match frame.header(HEADER_TYPE) {
            Some(TYPE_PONG) => {
                if frame.payload().is_empty() {
                    return;
                }
                match parse_config_update(frame.payload()) {
                    Some(update) => {
                        let before = *self.config;
                        self.config.apply(update);
                        if *self.config != before {
                            tracing::info!(config = ?self.config, "Lark changed the event connection's settings");
                        }
                    }
                    None => self.dropped(
                        "bad_client_config",
                        "a pong whose payload is not a ClientConfig",
                    ),
                }
            }
            Some(TYPE_PING) => {}
            other => {
                let detail = format!("control frame of type {:?}", other.map(short));
                self.dropped("unknown_type", &detail);
            }
        }
    }

    /// An event (or a fragment of one): joined, read, queued for the sink. An envelope
    /// that is not an event is answered 500 at once (what the SDKs answer when their
    /// dispatcher fails on it).
    fn on_data(&mut self, mut frame: Frame) -> Option<Frame> {
        match frame.header(HEADER_TYPE) {
            Some(TYPE_EVENT) => {}
            // `card` (card actions) and anything newer: the SDKs leave them unanswered.
            other => {
                let detail = format!("data frame of type {:?}", other.map(short));
                self.dropped("unknown_type", &detail);
                return None;
            }
        }
        // As oapi-sdk-go reads them: a missing or unreadable `sum` is 1, `seq` 0.
        let number = |key: &str| {
            frame
                .header(key)
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let sum = number(HEADER_SUM).unwrap_or(1);
        let seq = number(HEADER_SEQ).unwrap_or(0);
        let message_id = frame
            .header(HEADER_MESSAGE_ID)
            .unwrap_or_default()
            .to_string();
        let trace_id = frame
            .header(HEADER_TRACE_ID)
            .unwrap_or_default()
            .to_string();
        let payload = frame.payload.take().unwrap_or_default();
        let payload = match self
            .fragments
            .add(&message_id, sum, seq, payload, Instant::now())
        {
            Joined::Complete(payload) => payload,
            Joined::Waiting => return None,
            Joined::Invalid => {
                self.dropped("fragment_invalid", &format!("fragment {seq} of {sum}"));
                return None;
            }
            Joined::TooLarge => {
                self.dropped("fragment_too_large", "a message over the size cap");
                return None;
            }
        };
        let event = match LarkEvent::parse(&payload) {
            Ok(event) => event,
            Err(e) => {
                self.metrics.inc(
                    names::LARK_EVENTS,
                    &[("type", "unknown"), ("outcome", "invalid")],
                );
                if let Some(suppressed) = self.throttle.allow("invalid_envelope", Instant::now()) {
                    tracing::warn!(%message_id, %trace_id, error = %e, suppressed, "a Lark event that is not an event envelope; answered 500");
                }
                return Some(frame.into_ack(500, 0));
            }
        };
        tracing::debug!(
            event_id = %event.header.event_id,
            event_type = %short(&event.header.event_type),
            %message_id,
            %trace_id,
            "received a Lark event"
        );
        if self.queue.len() >= MAX_QUEUED_EVENTS {
            self.dropped("overloaded", "too many events waiting for the sink");
            return None;
        }
        self.queue.push_back(Received { frame, event });
        None
    }

    /// Counts a dropped frame and logs it, at most once a minute per reason.
    fn dropped(&mut self, reason: &'static str, detail: &str) {
        self.metrics
            .inc(names::LARK_EVENT_FRAMES_DROPPED, &[("reason", reason)]);
        if let Some(suppressed) = self.throttle.allow(reason, Instant::now()) {
            tracing::warn!(
                reason,
                detail,
                suppressed,
                "dropped a frame from the Lark event connection"
            );
        }
    }
}

/// The in-flight record's answer; never completes while there is none.
async fn finished(inflight: &mut Option<InFlight<'_>>) -> Recorded {
    match inflight {
        Some(recording) => recording.await,
        None => std::future::pending().await,
    }
}

/// Writes one frame within [`SEND_TIMEOUT`].
async fn send(ws: &mut Ws, frame: Frame) -> Result<(), String> {
    match timeout(SEND_TIMEOUT, ws.send(Message::binary(frame.to_bytes()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing failed: {e}")),
        Err(_) => Err("writing timed out".to_string()),
    }
}

/// Sends the close frame and waits (briefly) for Lark's.
async fn close(mut ws: Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// A value from Lark, cut short for a log line.
fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
