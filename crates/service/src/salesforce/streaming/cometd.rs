//! The CometD long-polling transport: the HTTP client (with the cookie store Salesforce
//! requires), the login session, the conversation's phases, and how long to wait after a
//! failure. The Bayeux messages themselves are built and read in `bayeux.rs`. Every
//! answer is read under [`STREAMING_BODY_CAP`] (design §3 rule 18).

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::failure::{login_failure, Delay, Failure, Phase};
use super::{
    EventTransport, StatusReporter, StreamError, StreamItem, DEFAULT_CONNECT_HOLD,
    DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, DISCONNECT_TIMEOUT, LONG_POLL_MARGIN,
};
use crate::config::StreamingSettings;
use crate::ids::ReplayId;
use crate::outbound::{read_capped, ReadError, STREAMING_BODY_CAP};
use crate::salesforce::auth::Session;
use crate::salesforce::rest::{http_client_builder, SalesforceClient};

/// The CometD long-polling transport.
pub struct CometdTransport {
    pub(super) client: SalesforceClient,
    pub(super) http: reqwest::Client,
    pub(super) channel: String,
    pub(super) booking_id_field: String,
    pub(super) start_from: ReplayId,
    pub(super) checkpoint: Box<dyn Fn() -> Option<ReplayId> + Send + Sync>,
    pub(super) status: StatusReporter,
    pub(super) session: Option<Arc<Session>>,
    pub(super) client_id: Option<String>,
    pub(super) phase: Phase,
    pub(super) next_message_id: u64,
    /// Highest replay id handed over in this run (dedupes replays after resubscribing).
    pub(super) last_delivered: Option<i64>,
    /// Whether a subscription has succeeded in this run.
    pub(super) subscribed_once: bool,
    pub(super) connect_hold: Duration,
    /// `advice.interval` to wait before the next connect.
    pub(super) pending_interval: Duration,
    pub(super) consecutive_failures: u32,
    pub(super) min_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) backoff: backon::ExponentialBackoff,
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
        start_from: ReplayId,
        checkpoint: impl Fn() -> Option<ReplayId> + Send + Sync + 'static,
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
    pub(super) fn endpoint(&self, session: &Session) -> String {
        format!(
            "{}/cometd/{}",
            session.instance_url.as_str().trim_end_matches('/'),
            self.client.api_version()
        )
    }

    pub(super) fn message_id(&mut self) -> String {
        self.next_message_id += 1;
        self.next_message_id.to_string()
    }

    /// Where a subscription starts: `start_from` the first time; afterwards the
    /// processor's checkpoint, else what this run already handed over, else `start_from`.
    pub(super) fn resume_from(&self) -> ReplayId {
        if !self.subscribed_once {
            return self.start_from;
        }
        (self.checkpoint)()
            .or(self.last_delivered.map(ReplayId::After))
            .unwrap_or(self.start_from)
    }

    pub(super) async fn session(&mut self) -> Result<Arc<Session>, Failure> {
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
    pub(super) async fn post(
        &mut self,
        messages: Value,
        timeout: Duration,
        retry_phase: Phase,
    ) -> Result<Vec<Value>, Failure> {
        let response = self.send(messages, timeout, retry_phase.clone()).await?;
        let body = match read_capped(response, STREAMING_BODY_CAP).await {
            Ok(b) => b,
            Err(ReadError::Transport(e)) => return Err(self.answer_lost(&e, retry_phase)),
            Err(e @ ReadError::TooLarge { .. }) => return Err(self.too_large(&e)),
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(messages)) => Ok(messages),
            _ => Err(self.not_an_array(retry_phase)),
        }
    }

    /// The answer is not a JSON array of messages: tried again after a pause.
    pub(super) fn not_an_array(&self, retry_phase: Phase) -> Failure {
        tracing::warn!(channel = %self.channel, "Streaming API answer is not a JSON array");
        Failure::Retry {
            phase: retry_phase,
            delay: Delay::Backoff,
        }
    }

    /// The answer broke off: tried again after a pause.
    pub(super) fn answer_lost(&self, e: &reqwest::Error, retry_phase: Phase) -> Failure {
        tracing::warn!(channel = %self.channel, error = %e, "streaming response lost");
        Failure::Retry {
            phase: retry_phase,
            delay: Delay::Backoff,
        }
    }

    /// An answer (or one message of it) past the cap: whatever events it held were sent
    /// and not read, so shake hands again: the subscription resumes from the checkpoint
    /// and they are replayed.
    pub(super) fn too_large(&self, e: &dyn std::fmt::Display) -> Failure {
        tracing::warn!(channel = %self.channel, error = %e, "Streaming API answer too large; not read, subscribing again from the checkpoint after a pause");
        Failure::Retry {
            phase: Phase::Handshake,
            delay: Delay::Backoff,
        }
    }

    /// Sends `messages`; a 2xx answer comes back unread, anything else is classified (its
    /// body read under [`STREAMING_BODY_CAP`] for the error text).
    pub(super) async fn send(
        &mut self,
        messages: Value,
        timeout: Duration,
        retry_phase: Phase,
    ) -> Result<reqwest::Response, Failure> {
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
        if (200..=299).contains(&status) {
            return Ok(response);
        }
        let body = match read_capped(response, STREAMING_BODY_CAP).await {
            Ok(b) => b,
            Err(ReadError::Transport(e)) => return Err(self.answer_lost(&e, retry_phase)),
            // Statuses that need no body are classified below as usual.
            Err(e) => e.to_string().into_bytes(),
        };
        match status {
            401 => {
                tracing::info!(channel = %self.channel, "streaming request unauthorized; logging in again");
                Err(Failure::Retry {
                    phase: Phase::Relogin,
                    delay: Delay::Now,
                })
            }
            408 | 429 | 500..=599 => {
                tracing::warn!(channel = %self.channel, status, "Streaming API server error");
                Err(Failure::Retry {
                    phase: retry_phase,
                    delay: Delay::Backoff,
                })
            }
            _ => Err(Failure::Fatal(StreamError::Http {
                status,
                body: crate::salesforce::error::truncate(&String::from_utf8_lossy(&body)),
            })),
        }
    }

    pub(super) async fn relogin(&mut self) -> Result<Vec<StreamItem>, Failure> {
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
}

impl CometdTransport {
    pub(super) fn succeeded(&mut self) {
        self.consecutive_failures = 0;
        self.backoff = crate::retry::backoff(self.min_backoff, self.max_backoff);
    }

    /// Sleeps before retrying. A server-directed recovery right after a success runs at
    /// once (a dropped client or an expired session is fixed by acting); anything else,
    /// and any second failure in a row, waits a jittered exponential backoff capped at
    /// `max_backoff`, so the loop never spins.
    pub(super) async fn wait_before_retry(&mut self, delay: Delay) {
        self.consecutive_failures += 1;
        let delay = match delay {
            // A server hint, capped like every server-sent wait (design §3 rule 18).
            Delay::Exactly(d) => d.min(self.max_backoff),
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
