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

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::endpoint::{ClientConfig, EndpointInfo, ENDPOINT_PATH};
use super::fragments::MAX_MESSAGE_BYTES;
use super::session::{End, Session, Ws};
use super::throttle::LogThrottle;
use super::{EventSink, EventsError};
use crate::config::LarkSettings;
use crate::metrics::{names, Metrics};
use crate::retry::{with_retry, RetryPolicy};

/// Time allowed to open a TCP connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the whole bootstrap request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// Time allowed for the WebSocket connect (TCP, TLS and the upgrade).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Sent on the bootstrap request so Lark's logs name us.
const USER_AGENT: &str = concat!("lark-vc-bridge/", env!("CARGO_PKG_VERSION"));

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
                let mut session = Session::new(
                    &self.metrics,
                    &sink,
                    &mut config,
                    &mut throttle,
                    endpoint.service_id,
                );
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

#[cfg(test)]
mod tests;
