//! The Streaming API subscriber: a CometD (Bayeux) long-polling client that turns the
//! booking channel into typed [`StreamItem`]s on a bounded channel.
//!
//! It owns the wire conversation — handshake (`ext.replay`), subscribe (replay id keyed by
//! the exact channel), the connect loop honouring `advice`, cookies, re-login on
//! `401::…`, re-handshake on `403::Unknown client`, fallback to `-1` on an invalid replay
//! id, jittered capped backoff on transport and 5xx failures — and the readiness status.
//! It must not decide anything about bookings or save checkpoints: the processor does
//! that, and hands back the last saved replay id through the `checkpoint` closure so a
//! resubscription resumes from work that is really done (design §3 rules 1, 8, 9).
//!
//! The conversation sits behind [`EventTransport`], so a Pub/Sub API (gRPC) transport can
//! be added later without touching [`pump`] or its consumers.
//!
//! Log lines carry the channel, replay ids and the Bayeux client id; never the access
//! token or cookies.

use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::auth::Session;
use super::error::SalesforceError;
use super::events::{parse_event, ChangeEvent};
use super::rest::{http_client_builder, SalesforceClient};
use crate::config::StreamingSettings;
use crate::retry::{RetryHint, Retryable};

/// Connect hold Salesforce advises when it has not said otherwise (110 s).
pub const DEFAULT_CONNECT_HOLD: Duration = Duration::from_secs(110);
/// Extra time allowed on top of the server's connect hold before a long poll counts as
/// lost (so 110 s + 20 s = 130 s by default).
pub const LONG_POLL_MARGIN: Duration = Duration::from_secs(20);
/// Time allowed for handshake, subscribe and disconnect requests.
pub const META_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// First delay after a failure that is not retried at once.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between attempts: short enough to be back quickly after an outage, long
/// enough not to hammer an org that is down.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Time allowed for the goodbye `/meta/disconnect` at shutdown.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One thing the subscriber hands to the processor, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// A change (CDC, gap, overflow, or platform event).
    Event(ChangeEvent),
    /// An event that could not be parsed: log it and move past it.
    Malformed {
        /// The replay id, when it could be read (then the checkpoint may move past it).
        replay_id: Option<i64>,
        /// What was wrong with it.
        reason: String,
    },
    /// The saved replay id was no longer valid; the subscriber resubscribed from `-1`, so
    /// events may have been missed and a reconciliation sweep is due (design §3 rule 8).
    ReplayGap {
        /// Salesforce's error text.
        reason: String,
    },
    /// A (re)subscription succeeded; events after `replay_from` follow.
    Subscribed {
        /// The replay id subscribed from (`-1`, `-2` or a checkpoint).
        replay_from: i64,
    },
}

impl StreamItem {
    /// The replay id this item moves the stream to, if any.
    pub fn replay_id(&self) -> Option<i64> {
        match self {
            StreamItem::Event(e) => Some(e.replay_id),
            StreamItem::Malformed { replay_id, .. } => *replay_id,
            _ => None,
        }
    }
}

/// Subscriber health, for `/readyz` and the lag metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// True while a subscription is established and being polled.
    pub subscribed: bool,
    /// When the last event was handed to the processor.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Replay id of the last event handed to the processor.
    pub last_replay_id: Option<i64>,
}

/// Shares the status between the transport (subscribed or not) and [`pump`] (last event).
#[derive(Debug, Clone)]
pub struct StatusReporter(Arc<watch::Sender<StreamStatus>>);

impl StatusReporter {
    /// Wraps the sender `/readyz` watches.
    pub fn new(sender: watch::Sender<StreamStatus>) -> Self {
        StatusReporter(Arc::new(sender))
    }

    /// A reporter nobody watches (tools such as `check`).
    pub fn detached() -> Self {
        Self::new(watch::channel(StreamStatus::default()).0)
    }

    /// Marks the subscription up or down.
    pub fn set_subscribed(&self, subscribed: bool) {
        self.0.send_if_modified(|s| {
            let changed = s.subscribed != subscribed;
            s.subscribed = subscribed;
            changed
        });
    }

    /// Records that the event with `replay_id` was handed over.
    pub fn event_delivered(&self, replay_id: i64) {
        self.0.send_modify(|s| {
            s.last_event_at = Some(Utc::now());
            s.last_replay_id = Some(replay_id);
        });
    }

    /// The current status.
    pub fn current(&self) -> StreamStatus {
        self.0.borrow().clone()
    }
}

/// Why the subscriber stopped. Transient trouble (timeouts, 5xx, dropped clients, expired
/// sessions) never surfaces here: the transport recovers from it.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Logging in (or again after `401::…`) failed in a way retrying cannot fix.
    #[error("Salesforce login for streaming failed: {0}")]
    Login(SalesforceError),
    /// The handshake was refused for good (e.g. `400::Invalid connection type`).
    #[error("Streaming API refused the handshake: {error}")]
    HandshakeRefused {
        /// Salesforce's error text.
        error: String,
    },
    /// The subscription was refused for good (unknown channel, no permission).
    #[error("Streaming API refused the subscription to {channel}: {error}")]
    SubscribeRefused {
        /// The channel asked for.
        channel: String,
        /// Salesforce's error text.
        error: String,
    },
    /// The server advised `reconnect: none` for a reason re-login cannot fix.
    #[error("Streaming API told the client to stop: {error}")]
    Stopped {
        /// Salesforce's error text.
        error: String,
    },
    /// An HTTP answer that says the request itself is wrong (4xx other than 401).
    #[error("unexpected Streaming API response {status}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the streaming HTTP client: {0}")]
    Setup(String),
    /// The processor dropped its receiver.
    #[error("the stream receiver was dropped")]
    ReceiverGone,
    /// [`check_subscription`] got no subscription in the time allowed.
    #[error("no streaming subscription within {0:?}")]
    NotSubscribedWithin(Duration),
}

/// A source of stream items: CometD today, perhaps the Pub/Sub API later.
#[allow(async_fn_in_trait)]
pub trait EventTransport {
    /// The next items, in stream order (never an empty batch). Waits as long as it takes,
    /// recovering from transient failures itself; an error means it gave up for good.
    /// Dropping the future mid-wait is allowed (shutdown does it).
    async fn next(&mut self) -> Result<Vec<StreamItem>, StreamError>;

    /// Says goodbye to the server, best effort.
    async fn close(&mut self);
}

/// Moves items from `transport` onto `tx` until `shutdown` turns true (or its sender is
/// dropped), the receiver goes away, or the transport fails. While `tx` is full the next
/// poll waits, so a slow processor slows the stream instead of growing memory.
pub async fn pump<T: EventTransport>(
    transport: &mut T,
    tx: &mpsc::Sender<StreamItem>,
    shutdown: &mut watch::Receiver<bool>,
    status: &StatusReporter,
) -> Result<(), StreamError> {
    let outcome = 'run: loop {
        let items = tokio::select! {
            biased;
            _ = shutdown_requested(shutdown) => break 'run Ok(()),
            next = transport.next() => match next {
                Ok(items) => items,
                Err(e) => break 'run Err(e),
            },
        };
        for item in items {
            let replay_id = item.replay_id();
            tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => break 'run Ok(()),
                sent = tx.send(item) => {
                    if sent.is_err() {
                        break 'run Err(StreamError::ReceiverGone);
                    }
                }
            }
            if let Some(replay_id) = replay_id {
                status.event_delivered(replay_id);
            }
        }
    };
    status.set_subscribed(false);
    transport.close().await;
    outcome
}

async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender can never say "stop" any more: take it as the signal.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Subscribes to `settings.channel` over CometD and feeds `tx` until shutdown.
///
/// `start_from` is where the first subscription starts (`-1`, `-2`, or the saved
/// checkpoint). `checkpoint` returns the last replay id whose work is done; every
/// resubscription (after a dropped client, a re-login, a server restart) starts from it,
/// or from the last event already handed over when nothing is saved yet. An invalid
/// replay id falls back to `-1` with a [`StreamItem::ReplayGap`]. Events the processor
/// already received in this run are not handed over twice.
pub async fn run_subscriber(
    client: SalesforceClient,
    settings: StreamingSettings,
    start_from: i64,
    checkpoint: impl Fn() -> Option<i64> + Send + Sync + 'static,
    tx: mpsc::Sender<StreamItem>,
    mut shutdown: watch::Receiver<bool>,
    status: watch::Sender<StreamStatus>,
) -> Result<(), StreamError> {
    let status = StatusReporter::new(status);
    let mut transport =
        CometdTransport::new(client, &settings, start_from, checkpoint, status.clone())?;
    pump(&mut transport, &tx, &mut shutdown, &status).await
}

/// For `check`: handshakes, subscribes to `settings.channel` for new events only, and
/// disconnects. Transient trouble is retried until `within` runs out.
pub async fn check_subscription(
    client: SalesforceClient,
    settings: &StreamingSettings,
    within: Duration,
) -> Result<(), StreamError> {
    let mut transport =
        CometdTransport::new(client, settings, -1, || None, StatusReporter::detached())?;
    let outcome = tokio::time::timeout(within, async {
        loop {
            let items = transport.next().await?;
            if items
                .iter()
                .any(|i| matches!(i, StreamItem::Subscribed { .. }))
            {
                return Ok(());
            }
        }
    })
    .await
    .unwrap_or(Err(StreamError::NotSubscribedWithin(within)));
    transport.close().await;
    outcome
}

/// Where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Log in again (after `401::…`), then handshake.
    Relogin,
    Handshake,
    /// Subscribe from the checkpoint, or from `-1` after an invalid replay id.
    Subscribe {
        fallback: Option<String>,
    },
    Connect,
}

/// How long to wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delay {
    /// The server said what to do (re-handshake, log in again): do it at once — unless
    /// the previous attempt failed too, then back off so it never spins.
    Now,
    /// Transport failure, timeout, 5xx: jittered exponential backoff, capped.
    Backoff,
    /// Exactly this long (a server hint).
    Exactly(Duration),
}

/// What to do after a failed step.
enum Failure {
    /// Go to `phase` after `delay`.
    Retry { phase: Phase, delay: Delay },
    /// Give up.
    Fatal(StreamError),
}

/// The CometD long-polling transport.
pub struct CometdTransport {
    client: SalesforceClient,
    http: reqwest::Client,
    channel: String,
    booking_id_field: String,
    start_from: i64,
    checkpoint: Box<dyn Fn() -> Option<i64> + Send + Sync>,
    status: StatusReporter,
    session: Option<Arc<Session>>,
    client_id: Option<String>,
    phase: Phase,
    next_message_id: u64,
    /// Highest replay id handed over in this run (dedupes replays after resubscribing).
    last_delivered: Option<i64>,
    /// Whether a subscription has succeeded in this run.
    subscribed_once: bool,
    connect_hold: Duration,
    /// `advice.interval` to wait before the next connect.
    pending_interval: Duration,
    consecutive_failures: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    backoff: backon::ExponentialBackoff,
}

impl std::fmt::Debug for CometdTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CometdTransport")
            .field("channel", &self.channel)
            .field("client_id", &self.client_id)
            .field("phase", &self.phase)
            .field("last_delivered", &self.last_delivered)
            .finish_non_exhaustive()
    }
}

impl CometdTransport {
    /// A transport for `settings.channel`. Builds its own HTTP client (with a cookie
    /// store: Salesforce requires `BAYEUX_BROWSER` and its load-balancer cookie back) from
    /// the shared builder; does not connect yet.
    pub fn new(
        client: SalesforceClient,
        settings: &StreamingSettings,
        start_from: i64,
        checkpoint: impl Fn() -> Option<i64> + Send + Sync + 'static,
        status: StatusReporter,
    ) -> Result<Self, StreamError> {
        let http = http_client_builder()
            .cookie_store(true)
            .timeout(DEFAULT_CONNECT_HOLD + LONG_POLL_MARGIN)
            .build()
            .map_err(|e| StreamError::Setup(e.to_string()))?;
        Ok(CometdTransport {
            client,
            http,
            channel: settings.channel.clone(),
            booking_id_field: settings.booking_id_field.clone(),
            start_from,
            checkpoint: Box::new(checkpoint),
            status,
            session: None,
            client_id: None,
            phase: Phase::Handshake,
            next_message_id: 0,
            last_delivered: None,
            subscribed_once: false,
            connect_hold: DEFAULT_CONNECT_HOLD,
            pending_interval: Duration::ZERO,
            consecutive_failures: 0,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            backoff: crate::retry::backoff(DEFAULT_MIN_BACKOFF, DEFAULT_MAX_BACKOFF),
        })
    }

    /// Changes the backoff bounds (tests use short ones).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self.backoff = crate::retry::backoff(min, max);
        self
    }

    /// `{instance_url}/cometd/{api_version}`.
    fn endpoint(&self, session: &Session) -> String {
        format!(
            "{}/cometd/{}",
            session.instance_url.as_str().trim_end_matches('/'),
            self.client.api_version()
        )
    }

    fn message_id(&mut self) -> String {
        self.next_message_id += 1;
        self.next_message_id.to_string()
    }

    /// Where a subscription starts: `start_from` the first time; afterwards the
    /// processor's checkpoint, else what this run already handed over, else `start_from`.
    fn resume_from(&self) -> i64 {
        if !self.subscribed_once {
            return self.start_from;
        }
        (self.checkpoint)()
            .or(self.last_delivered)
            .unwrap_or(self.start_from)
    }

    async fn session(&mut self) -> Result<Arc<Session>, Failure> {
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        match self.client.session().await {
            Ok(session) => {
                self.session = Some(session.clone());
                Ok(session)
            }
            Err(e) => Err(login_failure(e, Phase::Handshake)),
        }
    }

    /// Sends `messages`, returns the answer array. Turns HTTP-level trouble into a
    /// [`Failure`] that repeats `retry_phase`.
    async fn post(
        &mut self,
        messages: Value,
        timeout: Duration,
        retry_phase: Phase,
    ) -> Result<Vec<Value>, Failure> {
        let session = self.session().await?;
        let response = self
            .http
            .post(self.endpoint(&session))
            .bearer_auth(session.access_token.expose_secret())
            .timeout(timeout)
            .json(&messages)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "streaming request failed");
                return Err(Failure::Retry {
                    phase: retry_phase,
                    delay: Delay::Backoff,
                });
            }
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "streaming response lost");
                return Err(Failure::Retry {
                    phase: retry_phase,
                    delay: Delay::Backoff,
                });
            }
        };
        match status {
            200..=299 => {}
            401 => {
                tracing::info!(channel = %self.channel, "streaming request unauthorized; logging in again");
                return Err(Failure::Retry {
                    phase: Phase::Relogin,
                    delay: Delay::Now,
                });
            }
            408 | 429 | 500..=599 => {
                tracing::warn!(channel = %self.channel, status, "Streaming API server error");
                return Err(Failure::Retry {
                    phase: retry_phase,
                    delay: Delay::Backoff,
                });
            }
            _ => {
                return Err(Failure::Fatal(StreamError::Http {
                    status,
                    body: super::error::truncate(&String::from_utf8_lossy(&body)),
                }))
            }
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(messages)) => Ok(messages),
            _ => {
                tracing::warn!(channel = %self.channel, "Streaming API answer is not a JSON array");
                Err(Failure::Retry {
                    phase: retry_phase,
                    delay: Delay::Backoff,
                })
            }
        }
    }

    async fn relogin(&mut self) -> Result<Vec<StreamItem>, Failure> {
        self.client_id = None;
        let result = match self.session.take() {
            Some(stale) => self.client.relogin(&stale).await,
            None => self.client.session().await,
        };
        match result {
            Ok(session) => {
                tracing::info!(channel = %self.channel, generation = session.generation, "logged in again for streaming");
                self.session = Some(session);
                self.phase = Phase::Handshake;
                Ok(Vec::new())
            }
            Err(e) => Err(login_failure(e, Phase::Relogin)),
        }
    }

    async fn handshake(&mut self) -> Result<Vec<StreamItem>, Failure> {
        self.client_id = None;
        let id = self.message_id();
        let request = json!([{
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "ext": {"replay": true},
            "id": id,
        }]);
        let replies = self
            .post(request, META_REQUEST_TIMEOUT, Phase::Handshake)
            .await?;
        let reply =
            find_reply(&replies, "/meta/handshake").ok_or_else(|| protocol(Phase::Handshake))?;
        if !successful(reply) {
            return Err(self.classify(reply, Phase::Handshake));
        }
        let Some(client_id) = reply.get("clientId").and_then(Value::as_str) else {
            return Err(protocol(Phase::Handshake));
        };
        tracing::debug!(channel = %self.channel, client_id, "streaming handshake done");
        self.client_id = Some(client_id.to_string());
        self.apply_advice(reply);
        self.phase = Phase::Subscribe { fallback: None };
        Ok(Vec::new())
    }

    async fn subscribe(&mut self, fallback: Option<String>) -> Result<Vec<StreamItem>, Failure> {
        let replay_from = if fallback.is_some() {
            -1
        } else {
            self.resume_from()
        };
        let id = self.message_id();
        let channel = self.channel.clone();
        let mut replay = serde_json::Map::new();
        replay.insert(channel.clone(), json!(replay_from));
        let request = json!([{
            "channel": "/meta/subscribe",
            "clientId": self.client_id,
            "subscription": channel,
            "ext": {"replay": replay},
            "id": id,
        }]);
        let retry = Phase::Subscribe {
            fallback: fallback.clone(),
        };
        let replies = self
            .post(request, META_REQUEST_TIMEOUT, retry.clone())
            .await?;
        let reply =
            find_reply(&replies, "/meta/subscribe").ok_or_else(|| protocol(retry.clone()))?;
        if successful(reply) {
            tracing::info!(channel = %self.channel, replay_from, "subscribed");
            self.phase = Phase::Connect;
            self.subscribed_once = true;
            self.succeeded();
            self.status.set_subscribed(true);
            let mut items = Vec::new();
            if let Some(reason) = fallback {
                items.push(StreamItem::ReplayGap { reason });
            }
            items.push(StreamItem::Subscribed { replay_from });
            return Ok(items);
        }
        let error = error_text(reply);
        if fallback.is_none() && is_invalid_replay_error(&error) {
            tracing::warn!(
                channel = %self.channel,
                replay_id = replay_from,
                error = %error,
                "replay id no longer valid; resubscribing for new events only"
            );
            self.phase = Phase::Subscribe {
                fallback: Some(error),
            };
            return Ok(Vec::new());
        }
        Err(self.classify(reply, retry))
    }

    async fn connect(&mut self) -> Result<Vec<StreamItem>, Failure> {
        if !self.pending_interval.is_zero() {
            tokio::time::sleep(std::mem::take(&mut self.pending_interval)).await;
        }
        let id = self.message_id();
        let request = json!([{
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
            "id": id,
        }]);
        let timeout = self.connect_hold + LONG_POLL_MARGIN;
        let messages = self.post(request, timeout, Phase::Connect).await?;
        // Events may come before, after or around the connect reply, several at once.
        let items = self.take_events(&messages);
        let Some(reply) = find_reply(&messages, "/meta/connect") else {
            if items.is_empty() {
                return Err(protocol(Phase::Connect));
            }
            return Ok(items);
        };
        if !successful(reply) {
            let failure = self.classify(reply, Phase::Connect);
            if items.is_empty() {
                return Err(failure);
            }
            // Hand over what arrived; the failure is met again on the next connect.
            return Ok(items);
        }
        self.succeeded();
        self.apply_advice(reply);
        match advice_reconnect(reply) {
            Some("handshake") => self.phase = Phase::Handshake,
            Some("none") => {
                return Err(Failure::Fatal(StreamError::Stopped {
                    error: "advice.reconnect = none on a successful connect".into(),
                }))
            }
            _ => {}
        }
        Ok(items)
    }

    /// The events in a connect response, parsed, in order, without those already handed
    /// over in this run.
    fn take_events(&mut self, messages: &[Value]) -> Vec<StreamItem> {
        let mut items = Vec::new();
        for message in messages {
            let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
            if channel.starts_with("/meta/") {
                continue;
            }
            if channel != self.channel {
                tracing::warn!(channel = %self.channel, other = channel, "event on a channel not subscribed; ignored");
                continue;
            }
            let item = match parse_event(message, &self.booking_id_field) {
                Ok(event) => StreamItem::Event(event),
                Err(bad) => {
                    tracing::debug!(channel = %self.channel, replay_id = ?bad.replay_id, reason = %bad.reason, "malformed event");
                    StreamItem::Malformed {
                        replay_id: bad.replay_id,
                        reason: bad.reason,
                    }
                }
            };
            if let Some(replay_id) = item.replay_id() {
                if self.last_delivered.is_some_and(|last| replay_id <= last) {
                    tracing::debug!(channel = %self.channel, replay_id, "replayed event already handed over; skipped");
                    continue;
                }
                self.last_delivered = Some(replay_id);
            }
            items.push(item);
        }
        items
    }

    /// Reads `advice.timeout` and `advice.interval`.
    fn apply_advice(&mut self, reply: &Value) {
        if let Some(timeout) = reply.pointer("/advice/timeout").and_then(Value::as_u64) {
            self.connect_hold = Duration::from_millis(timeout);
        }
        if let Some(interval) = reply.pointer("/advice/interval").and_then(Value::as_u64) {
            self.pending_interval = Duration::from_millis(interval);
        }
    }

    /// Decides what an unsuccessful meta reply means (design §3 rule 9).
    fn classify(&self, reply: &Value, same_phase: Phase) -> Failure {
        let error = error_text(reply);
        let reason = reply
            .pointer("/ext/sfdc/failureReason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let advice = advice_reconnect(reply);
        tracing::warn!(
            channel = %self.channel,
            client_id = self.client_id.as_deref().unwrap_or(""),
            error = %error,
            failure_reason = reason,
            advice = advice.unwrap_or(""),
            "Streaming API refused a message"
        );
        if error.starts_with("401") || reason.starts_with("401") {
            return Failure::Retry {
                phase: Phase::Relogin,
                delay: Delay::Now,
            };
        }
        if error.starts_with("403::Unknown client") || advice == Some("handshake") {
            return Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Now,
            };
        }
        if error.contains("cookie present") {
            // The session lost its BAYEUX_BROWSER cookie: a new handshake sets it again.
            return Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Backoff,
            };
        }
        // Limits and load pass ("Organization concurrent user limit exceeded", "Server is
        // too busy", too many simultaneous connections): wait and try again.
        let passing = error.contains("limit exceeded")
            || reason.contains("limit")
            || error.starts_with("503")
            || reason.starts_with("503");
        match same_phase {
            Phase::Handshake if error.starts_with("400::Invalid connection type") => {
                Failure::Fatal(StreamError::HandshakeRefused { error })
            }
            // A denied handshake without a 401 reason is load or a limit.
            Phase::Handshake => Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Backoff,
            },
            // Unknown channel, no permission: only an admin can fix these.
            Phase::Subscribe { .. }
                if !passing && (error.starts_with("400") || error.starts_with("403")) =>
            {
                Failure::Fatal(StreamError::SubscribeRefused {
                    channel: self.channel.clone(),
                    error,
                })
            }
            _ if !passing && advice == Some("none") => {
                Failure::Fatal(StreamError::Stopped { error })
            }
            phase => Failure::Retry {
                phase,
                delay: Delay::Backoff,
            },
        }
    }

    fn succeeded(&mut self) {
        self.consecutive_failures = 0;
        self.backoff = crate::retry::backoff(self.min_backoff, self.max_backoff);
    }

    /// Sleeps before retrying. A server-directed recovery right after a success runs at
    /// once (a dropped client or an expired session is fixed by acting); anything else,
    /// and any second failure in a row, waits a jittered exponential backoff capped at
    /// `max_backoff`, so the loop never spins.
    async fn wait_before_retry(&mut self, delay: Delay) {
        self.consecutive_failures += 1;
        let delay = match delay {
            Delay::Exactly(d) => d,
            Delay::Now if self.consecutive_failures == 1 => Duration::ZERO,
            Delay::Now | Delay::Backoff => self.backoff.next().unwrap_or(self.max_backoff),
        };
        if !delay.is_zero() {
            tracing::info!(
                channel = %self.channel,
                attempt = self.consecutive_failures,
                wait_ms = delay.as_millis() as u64,
                "streaming retry after backoff"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

impl EventTransport for CometdTransport {
    async fn next(&mut self) -> Result<Vec<StreamItem>, StreamError> {
        loop {
            let step = match self.phase.clone() {
                Phase::Relogin => self.relogin().await,
                Phase::Handshake => self.handshake().await,
                Phase::Subscribe { fallback } => self.subscribe(fallback).await,
                Phase::Connect => self.connect().await,
            };
            match step {
                Ok(items) if !items.is_empty() => return Ok(items),
                Ok(_) => {}
                Err(Failure::Fatal(e)) => {
                    tracing::error!(channel = %self.channel, error = %e, "streaming subscriber gave up");
                    self.status.set_subscribed(false);
                    return Err(e);
                }
                Err(Failure::Retry { phase, delay }) => {
                    if phase != Phase::Connect {
                        self.status.set_subscribed(false);
                    }
                    self.phase = phase;
                    self.wait_before_retry(delay).await;
                }
            }
        }
    }

    async fn close(&mut self) {
        let (Some(client_id), Some(session)) = (self.client_id.take(), self.session.clone()) else {
            return;
        };
        let id = self.message_id();
        let request = json!([{"channel": "/meta/disconnect", "clientId": client_id, "id": id}]);
        let sent = self
            .http
            .post(self.endpoint(&session))
            .bearer_auth(session.access_token.expose_secret())
            .timeout(DISCONNECT_TIMEOUT)
            .json(&request)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::debug!(channel = %self.channel, error = %e, "disconnect not delivered");
        }
    }
}

/// A login failure: fatal when retrying cannot help (bad credentials), else retried.
fn login_failure(e: SalesforceError, phase: Phase) -> Failure {
    match e.retry_hint() {
        RetryHint::Never => Failure::Fatal(StreamError::Login(e)),
        RetryHint::Backoff => Failure::Retry {
            phase,
            delay: Delay::Backoff,
        },
        RetryHint::After(after) => Failure::Retry {
            phase,
            delay: Delay::Exactly(after),
        },
    }
}

fn protocol(phase: Phase) -> Failure {
    tracing::warn!("Streaming API answer without the expected reply");
    Failure::Retry {
        phase,
        delay: Delay::Backoff,
    }
}

fn find_reply<'a>(messages: &'a [Value], channel: &str) -> Option<&'a Value> {
    messages
        .iter()
        .find(|m| m.get("channel").and_then(Value::as_str) == Some(channel))
}

fn successful(reply: &Value) -> bool {
    reply.get("successful").and_then(Value::as_bool) == Some(true)
}

fn error_text(reply: &Value) -> String {
    reply
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("(no error text)")
        .to_string()
}

fn advice_reconnect(reply: &Value) -> Option<&str> {
    reply.pointer("/advice/reconnect").and_then(Value::as_str)
}

/// `400::The replayId {N} you provided was invalid.  Please provide a valid ID, …`
fn is_invalid_replay_error(error: &str) -> bool {
    error.contains("The replayId") && error.contains("was invalid")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::Method;

    use super::*;
    use crate::config::Settings;
    use crate::retry::RetryPolicy;
    use crate::salesforce::events::ChangeKind as EventKind;
    use lvb_simulators::salesforce::cometd::{CometdHub, EventPlacement};
    use lvb_simulators::salesforce::schema::BOOKING_OBJECT;
    use lvb_simulators::salesforce::SalesforceSim;
    use lvb_simulators::SF_HUMAN_USER_ID;

    const CHANNEL: &str = "/data/Training_Booking__ChangeEvent";
    /// The longest a test waits for something that should take milliseconds.
    const DEADLINE: Duration = Duration::from_secs(15);
    const STATUSES: [&str; 4] = ["Scheduled", "Confirmed", "Completed", "Cancelled"];

    /// The real Salesforce simulator with three bookings created before anyone listens.
    struct Org {
        sim: SalesforceSim,
        hub: Arc<CometdHub>,
        bookings: Vec<String>,
        settings: Settings,
        /// Replay id of the last event published before the test starts.
        base: i64,
        _dir: tempfile::TempDir,
    }

    impl Org {
        async fn start() -> Org {
            let sim = SalesforceSim::start(0).await.expect("simulator");
            let bookings = (0..3)
                .map(|n| {
                    sim.insert(
                        BOOKING_OBJECT,
                        json!({"Status__c": "Scheduled", "Merchant_Name__c": format!("Merchant {n}")}),
                        SF_HUMAN_USER_ID,
                    )
                })
                .collect();
            let dir = tempfile::tempdir().expect("tempdir");
            let settings = Settings::for_simulators(
                &sim.base_url(),
                "http://127.0.0.1:9",
                &dir.path().join("store.db"),
            )
            .expect("settings");
            let hub = sim.hub().clone();
            let base = hub.last_replay_id();
            Org {
                sim,
                hub,
                bookings,
                settings,
                base,
                _dir: dir,
            }
        }

        fn client(&self) -> SalesforceClient {
            let policy = RetryPolicy {
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                ..RetryPolicy::default()
            };
            SalesforceClient::with_retry_policy(&self.settings.salesforce, policy).expect("client")
        }

        /// A human edits booking `n` (an UPDATE change event).
        fn change(&self, n: usize, status: &str) {
            self.sim.update(
                BOOKING_OBJECT,
                &self.bookings[n],
                json!({"Status__c": status}),
                SF_HUMAN_USER_ID,
            );
        }

        fn logins(&self) -> usize {
            self.sim
                .requests()
                .count(&Method::POST, "/services/oauth2/token")
        }

        /// Bayeux messages on this meta channel the simulator has answered.
        fn answered(&self, meta: &str) -> usize {
            self.sim
                .requests()
                .matching(|r| r.method == Method::POST && r.path.starts_with("/cometd/"))
                .iter()
                .filter(|r| r.body.contains(&format!("\"{meta}\"")))
                .count()
        }
    }

    struct Subscriber {
        rx: mpsc::Receiver<StreamItem>,
        shutdown: watch::Sender<bool>,
        status: watch::Receiver<StreamStatus>,
        checkpoint: Arc<Mutex<Option<i64>>>,
        task: tokio::task::JoinHandle<Result<(), StreamError>>,
    }

    fn spawn_subscriber(org: &Org, channel: &str, start_from: i64, capacity: usize) -> Subscriber {
        let (tx, rx) = mpsc::channel(capacity);
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(StreamStatus::default());
        let checkpoint: Arc<Mutex<Option<i64>>> = Arc::default();
        let saved = checkpoint.clone();
        let mut streaming = org.settings.salesforce.streaming.clone();
        streaming.channel = channel.to_string();
        let reporter = StatusReporter::new(status_tx);
        let mut transport = CometdTransport::new(
            org.client(),
            &streaming,
            start_from,
            move || *saved.lock().unwrap(),
            reporter.clone(),
        )
        .expect("transport")
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100));
        let task =
            tokio::spawn(
                async move { pump(&mut transport, &tx, &mut shutdown_rx, &reporter).await },
            );
        Subscriber {
            rx,
            shutdown,
            status,
            checkpoint,
            task,
        }
    }

    impl Subscriber {
        async fn next(&mut self) -> StreamItem {
            tokio::time::timeout(DEADLINE, self.rx.recv())
                .await
                .expect("an item within the deadline")
                .expect("stream open")
        }

        async fn next_event(&mut self) -> ChangeEvent {
            match self.next().await {
                StreamItem::Event(e) => e,
                other => panic!("expected an event, got {other:?}"),
            }
        }

        async fn stop(self) -> Result<(), StreamError> {
            self.shutdown.send(true).unwrap();
            tokio::time::timeout(DEADLINE, self.task)
                .await
                .expect("stops within the deadline")
                .expect("task not panicked")
        }
    }

    /// Waits (with a deadline) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn delivers_changes_in_order_whatever_their_place_in_the_response() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        assert!(sub.status.borrow().subscribed);

        let mut expected_replay = org.base;
        for (round, placement) in [
            EventPlacement::First,
            EventPlacement::Last,
            EventPlacement::Random,
        ]
        .into_iter()
        .enumerate()
        {
            org.hub.set_event_placement(placement);
            let connects_before = org.answered("/meta/connect");
            // Written back to back on this single-threaded runtime: one connect response
            // carries all three.
            for n in 0..3 {
                org.change(n, STATUSES[round + 1]);
            }
            for n in 0..3 {
                expected_replay += 1;
                let event = sub.next_event().await;
                assert_eq!(event.replay_id, expected_replay, "{placement:?}");
                assert_eq!(event.record_ids, vec![org.bookings[n].clone()]);
                assert_eq!(event.kind, EventKind::Update);
                assert_eq!(event.entity, BOOKING_OBJECT);
                assert_eq!(event.channel, CHANNEL);
                assert_eq!(event.commit_user.as_deref(), Some(SF_HUMAN_USER_ID));
                assert_eq!(event.changed_fields, vec!["Status__c", "LastModifiedDate"]);
                assert!(event.commit_timestamp.is_some() && event.transaction_key.is_some());
            }
            assert_eq!(
                org.answered("/meta/connect") - connects_before,
                1,
                "{placement:?}: the three events came in one connect response"
            );
        }

        org.sim
            .delete(BOOKING_OBJECT, &org.bookings[2], SF_HUMAN_USER_ID);
        let deleted = sub.next_event().await;
        assert_eq!(deleted.kind, EventKind::Delete);
        assert_eq!(deleted.record_ids, vec![org.bookings[2].clone()]);

        assert_eq!(
            sub.status.borrow().last_replay_id,
            Some(expected_replay + 1)
        );
        assert!(sub.status.borrow().last_event_at.is_some());
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn a_dropped_client_resubscribes_from_the_checkpoint_without_loss_or_duplicates() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });

        org.change(0, "Confirmed");
        org.change(1, "Confirmed");
        let a = sub.next_event().await;
        let b = sub.next_event().await;
        // The processor has finished only the first.
        *sub.checkpoint.lock().unwrap() = Some(a.replay_id);

        org.hub.drop_clients();
        // Written while the client is gone: only replay can bring it back.
        org.change(2, "Confirmed");

        assert_eq!(
            sub.next().await,
            StreamItem::Subscribed {
                replay_from: a.replay_id
            }
        );
        let c = sub.next_event().await;
        assert_eq!(c.record_ids, vec![org.bookings[2].clone()]);
        assert_eq!(c.replay_id, b.replay_id + 1, "b was not handed over twice");

        let history = org.hub.subscribe_history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].replay_from, a.replay_id);
        assert!(history[1].successful);
        assert_eq!(org.answered("/meta/handshake"), 2);
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn an_expired_replay_id_falls_back_to_new_events_and_reports_the_gap() {
        let org = Org::start().await;
        org.change(0, "Confirmed");
        org.change(1, "Confirmed");
        let stale = org.base + 1;
        org.hub.forget_events_before(org.base + 2);

        let mut sub = spawn_subscriber(&org, CHANNEL, stale, 16);
        match sub.next().await {
            StreamItem::ReplayGap { reason } => assert_eq!(
                reason,
                format!("400::The replayId {stale} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.")
            ),
            other => panic!("expected a replay gap, got {other:?}"),
        }
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });

        org.change(2, "Confirmed");
        let event = sub.next_event().await;
        assert_eq!(event.replay_id, org.base + 3);

        let tried: Vec<(i64, bool)> = org
            .hub
            .subscribe_history()
            .iter()
            .map(|r| (r.replay_from, r.successful))
            .collect();
        assert_eq!(tried, vec![(stale, false), (-1, true)]);
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn an_expired_session_logs_in_once_more_and_carries_on() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        org.change(0, "Confirmed");
        let first = sub.next_event().await;
        assert_eq!(org.logins(), 1);

        org.sim.expire_sessions();
        assert_eq!(
            sub.next().await,
            StreamItem::Subscribed {
                replay_from: first.replay_id
            },
            "resumes after the last event handed over"
        );
        assert_eq!(org.logins(), 2, "exactly one re-login");
        assert_eq!(org.answered("/meta/handshake"), 2);

        org.change(1, "Confirmed");
        let after = sub.next_event().await;
        assert_eq!(after.record_ids, vec![org.bookings[1].clone()]);
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn gap_overflow_and_malformed_events_flow_through_and_the_stream_goes_on() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });

        let ids = [org.bookings[0].as_str(), org.bookings[1].as_str()];
        org.hub.inject_gap(BOOKING_OBJECT, "GAP_UPDATE", &ids);
        org.hub.inject_gap(BOOKING_OBJECT, "GAP_OVERFLOW", &[]);
        let bad = org.hub.last_replay_id() + 1;
        org.hub.publish_raw(
            CHANNEL,
            json!({"schema": "x", "payload": {"Name": "no header"}, "event": {"replayId": bad}}),
        );
        org.change(2, "Confirmed");

        let gap = sub.next_event().await;
        assert_eq!(gap.kind, EventKind::GapUpdate);
        assert_eq!(gap.record_ids, ids);
        let overflow = sub.next_event().await;
        assert_eq!(overflow.kind, EventKind::GapOverflow);
        assert!(overflow.record_ids.is_empty());
        match sub.next().await {
            StreamItem::Malformed { replay_id, reason } => {
                assert_eq!(replay_id, Some(bad));
                assert!(reason.contains("ChangeEventHeader"), "{reason}");
            }
            other => panic!("expected malformed, got {other:?}"),
        }
        let fine = sub.next_event().await;
        assert_eq!(fine.replay_id, bad + 1);
        assert_eq!(sub.status.borrow().last_replay_id, Some(bad + 1));
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn an_empty_long_poll_just_reconnects() {
        let org = Org::start().await;
        org.hub.set_connect_timeout(Duration::from_millis(100));
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });

        until("four empty long polls", || {
            org.answered("/meta/connect") >= 4
        })
        .await;
        assert!(sub.status.borrow().subscribed);
        assert!(!sub.task.is_finished());
        assert!(sub.rx.try_recv().is_err(), "no item for an empty poll");
        assert_eq!(org.answered("/meta/handshake"), 1, "no re-handshake");

        org.change(0, "Confirmed");
        assert_eq!(sub.next_event().await.replay_id, org.base + 1);
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff() {
        let org = Org::start().await;
        org.sim.faults().inject(
            Some(Method::POST),
            "/cometd/",
            3,
            503,
            "<html>busy</html>",
            &[],
        );
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        let statuses: Vec<u16> = org
            .sim
            .requests()
            .matching(|r| r.path.starts_with("/cometd/"))
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(&statuses[..4], &[503, 503, 503, 200]);
        sub.stop().await.expect("clean stop");
    }

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

    #[tokio::test]
    async fn check_subscription_probes_and_says_goodbye() {
        let org = Org::start().await;
        let streaming = org.settings.salesforce.streaming.clone();
        check_subscription(org.client(), &streaming, DEADLINE)
            .await
            .expect("subscribes");
        assert_eq!(org.answered("/meta/subscribe"), 1);
        assert_eq!(org.hub.client_count(), 0, "disconnected after the probe");

        let mut wrong = streaming.clone();
        wrong.channel = "/data/Nope__ChangeEvent".into();
        let err = check_subscription(org.client(), &wrong, DEADLINE)
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::SubscribeRefused { .. }), "{err}");

        org.sim
            .faults()
            .inject(Some(Method::POST), "/cometd/", 1000, 503, "busy", &[]);
        let err = check_subscription(org.client(), &streaming, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::NotSubscribedWithin(_)), "{err}");
    }

    #[tokio::test]
    async fn a_full_channel_holds_the_stream_without_losing_events() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 1);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        for n in 0..5 {
            org.change(n % 3, STATUSES[n % 4]);
        }
        for expected in 1..=5 {
            assert_eq!(sub.next_event().await.replay_id, org.base + expected);
        }
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn shutdown_disconnects_and_marks_the_stream_down() {
        let org = Org::start().await;
        let mut sub = spawn_subscriber(&org, CHANNEL, -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        assert_eq!(org.hub.client_count(), 1);
        let status = sub.status.clone();
        sub.stop().await.expect("clean stop");
        assert!(!status.borrow().subscribed);
        assert_eq!(
            org.hub.client_count(),
            0,
            "said goodbye with /meta/disconnect"
        );
        assert_eq!(org.answered("/meta/disconnect"), 1);
    }

    #[tokio::test]
    async fn an_unknown_channel_stops_the_subscriber_with_the_reason() {
        let org = Org::start().await;
        let sub = spawn_subscriber(&org, "/data/Nope__ChangeEvent", -1, 16);
        let result = tokio::time::timeout(DEADLINE, sub.task)
            .await
            .unwrap()
            .unwrap();
        match result {
            Err(StreamError::SubscribeRefused { channel, error }) => {
                assert_eq!(channel, "/data/Nope__ChangeEvent");
                assert!(error.contains("does not exist"), "{error}");
            }
            other => panic!("expected a refused subscription, got {other:?}"),
        }
        assert!(!sub.status.borrow().subscribed);
    }

    #[tokio::test]
    async fn platform_event_channels_name_the_booking() {
        let org = Org::start().await;
        org.hub.register_platform_event("/event/Booking_Change__e");
        let mut sub = spawn_subscriber(&org, "/event/Booking_Change__e", -1, 16);
        assert_eq!(sub.next().await, StreamItem::Subscribed { replay_from: -1 });
        org.hub.publish_platform_event(
            "/event/Booking_Change__e",
            json!({"Booking_Id__c": org.bookings[0]}),
        );
        let event = sub.next_event().await;
        assert_eq!(event.kind, EventKind::Update);
        assert_eq!(event.record_ids, vec![org.bookings[0].clone()]);
        sub.stop().await.expect("clean stop");
    }

    #[tokio::test]
    async fn run_subscriber_is_spawnable_and_keeps_the_token_out_of_debug() {
        let org = Org::start().await;
        let (tx, mut rx) = mpsc::channel(4);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(StreamStatus::default());
        let task = tokio::spawn(run_subscriber(
            org.client(),
            org.settings.salesforce.streaming.clone(),
            -1,
            || None,
            tx,
            shutdown_rx,
            status_tx,
        ));
        let item = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
        assert_eq!(item, Some(StreamItem::Subscribed { replay_from: -1 }));
        assert!(status.borrow().subscribed);
        shutdown.send(true).unwrap();
        tokio::time::timeout(DEADLINE, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();

        let client = org.client();
        let session = client.session().await.unwrap();
        let mut transport = CometdTransport::new(
            client,
            &org.settings.salesforce.streaming,
            -1,
            || None,
            StatusReporter::detached(),
        )
        .unwrap();
        transport.session = Some(session.clone());
        let debug = format!("{transport:?}");
        assert!(
            !debug.contains(secrecy::ExposeSecret::expose_secret(&session.access_token)),
            "{debug}"
        );
    }
}
