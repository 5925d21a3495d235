//! The bootstrap of the long connection: `POST {base_url}/callback/ws/endpoint` with the
//! app's credentials returns the WebSocket URL to open and the server's `ClientConfig`
//! (`_get_conn_url` in larksuite/oapi-sdk-python `lark_oapi/ws/client.py`, `getConnURL`
//! in larksuite/oapi-sdk-go `ws/client.go`; codes in `lark_oapi/ws/const.py`).
//!
//! The path is not under `/open-apis` and takes no `Authorization` header: the body
//! `{"AppID", "AppSecret"}` is the credential. The answer is `{code, msg, data: {URL,
//! ClientConfig: {ReconnectCount, ReconnectInterval, ReconnectNonce, PingInterval}}}`
//! (seconds). Code 0 is success; 1 (system busy) and 1000040343 (internal error) are
//! worth retrying; any other code is final. The URL's query holds `device_id`,
//! `service_id` and Lark's access key and ticket: it is a credential itself, so only its
//! host and path ever reach a log line ([`EndpointInfo`]'s `Debug` included).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::EventsError;

/// The bootstrap path, under `lark.base_url`.
pub const ENDPOINT_PATH: &str = "/callback/ws/endpoint";

/// Success.
const CODE_OK: i64 = 0;
/// "system busy".
const CODE_SYSTEM_BUSY: i64 = 1;
/// "internal error", retried by the SDKs like a busy answer.
const CODE_INTERNAL_ERROR: i64 = 1_000_040_343;

/// How the client pings and reconnects, as the server sets it (in the bootstrap answer and
/// in a pong's payload). Defaults are the SDKs' before the server has spoken (`Client`
/// in `lark_oapi/ws/client.py`, `NewClient` in `ws/client.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Reconnect attempts after a connection is lost; `None` = no limit (Lark's -1).
    pub reconnect_count: Option<u64>,
    /// Wait between two reconnect attempts.
    pub reconnect_interval: Duration,
    /// The first reconnect attempt waits a random part of this (so that all clients do not
    /// come back at the same instant).
    pub reconnect_nonce: Duration,
    /// How often the client pings.
    pub ping_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            reconnect_count: None,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
        }
    }
}

/// Shortest ping interval believed: a smaller (or zero) value from the server would have
/// the client flood it.
pub(crate) const MIN_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval or nonce believed: one hour. A larger value would leave a dead
/// connection undetected for as long (the watchdog waits three ping intervals).
pub(crate) const MAX_SERVER_INTERVAL: Duration = Duration::from_secs(3600);
/// Shortest wait between reconnect attempts: a zero interval would spin.
pub(crate) const MIN_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// `ClientConfig` as it comes over the wire; a field left out keeps its current value.
/// Integers may come as numbers or as numeric strings.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
pub(crate) struct ConfigUpdate {
    #[serde(rename = "ReconnectCount", default, deserialize_with = "lenient")]
    reconnect_count: Option<i64>,
    #[serde(rename = "ReconnectInterval", default, deserialize_with = "lenient")]
    reconnect_interval: Option<i64>,
    #[serde(rename = "ReconnectNonce", default, deserialize_with = "lenient")]
    reconnect_nonce: Option<i64>,
    #[serde(rename = "PingInterval", default, deserialize_with = "lenient")]
    ping_interval: Option<i64>,
}

fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    crate::lark::error::lenient_i64(d)
}

impl ClientConfig {
    /// Applies what the server sent, clamping absurd values (design rule 17): intervals to
    /// [1 s, 1 h], the nonce to [0, 1 h]; a negative count means no limit.
    pub(crate) fn apply(&mut self, update: ConfigUpdate) {
        let seconds = |s: i64| Duration::from_secs(s.clamp(0, i64::MAX) as u64);
        if let Some(count) = update.reconnect_count {
            self.reconnect_count = u64::try_from(count).ok();
        }
        if let Some(s) = update.reconnect_interval {
            self.reconnect_interval = seconds(s).clamp(MIN_RECONNECT_INTERVAL, MAX_SERVER_INTERVAL);
        }
        if let Some(s) = update.reconnect_nonce {
            self.reconnect_nonce = seconds(s).min(MAX_SERVER_INTERVAL);
        }
        if let Some(s) = update.ping_interval {
            self.ping_interval = seconds(s).clamp(MIN_PING_INTERVAL, MAX_SERVER_INTERVAL);
        }
    }
}

/// A successful bootstrap: where to connect, and the server's settings.
#[derive(Clone)]
pub struct EndpointInfo {
    /// The whole URL, query (access key, ticket) included: only ever given to the
    /// WebSocket connect.
    url: Url,
    /// `device_id` of the URL: the connection's id in Lark's logs (and ours).
    pub device_id: String,
    /// `service_id` of the URL, sent in every ping.
    pub service_id: i32,
    pub(crate) config: ConfigUpdate,
}

impl EndpointInfo {
    /// Scheme, host and path of the connection URL, without its query: safe to log.
    pub fn display_url(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }

    /// The server's settings applied over the SDKs' defaults.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.apply(self.config);
        config
    }

    /// The full URL, for the WebSocket connect only.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// Reads the bootstrap answer (`status` and body).
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Result<EndpointInfo, EventsError> {
        if status != 200 {
            // The SDKs treat every non-200 as "system busy".
            return Err(EventsError::Status { status });
        }
        let answer: Answer = serde_json::from_slice(body).map_err(|_| {
            EventsError::Unexpected(format!("not the endpoint's JSON ({} bytes)", body.len()))
        })?;
        let code = answer.code.unwrap_or(CODE_OK);
        let msg = crate::lark::error::truncate(&answer.msg.unwrap_or_default());
        match code {
            CODE_OK => {}
            CODE_SYSTEM_BUSY | CODE_INTERNAL_ERROR => return Err(EventsError::Busy { code, msg }),
            _ => return Err(EventsError::Refused { code, msg }),
        }
        let data = answer.data.unwrap_or_default();
        let text = data.url.unwrap_or_default();
        if text.is_empty() {
            return Err(EventsError::Unexpected("the answer has no URL".into()));
        }
        let url = Url::parse(&text)
            .map_err(|_| EventsError::Unexpected("the connection URL does not parse".into()))?;
        Self::check_scheme(&url)?;
        let query = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let device_id = query("device_id").unwrap_or_default();
        let service_id = query("service_id")
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or_else(|| {
                EventsError::Unexpected("the connection URL has no numeric service_id".into())
            })?;
        Ok(EndpointInfo {
            device_id: crate::lark::error::truncate(&device_id),
            service_id,
            config: data
                .client_config
                .and_then(config_update)
                .unwrap_or_default(),
            url,
        })
    }

    /// `wss` always; plain `ws` only to this machine (the simulators): events name
    /// people and meetings, and the URL carries a credential.
    fn check_scheme(url: &Url) -> Result<(), EventsError> {
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        match url.scheme() {
            "wss" => Ok(()),
            "ws" if loopback => Ok(()),
            other => Err(EventsError::Unexpected(format!(
                "the connection URL's scheme is {other:?}; only wss (or ws on loopback) is used"
            ))),
        }
    }
}

impl fmt::Debug for EndpointInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointInfo")
            .field("url", &self.display_url())
            .field("device_id", &self.device_id)
            .field("service_id", &self.service_id)
            .field("config", &self.config)
            .finish()
    }
}

/// `{code, msg, data}` of the bootstrap answer (`EndpointResp` in `ws/model.go`).
#[derive(Deserialize)]
struct Answer {
    #[serde(default, deserialize_with = "lenient")]
    code: Option<i64>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    data: Option<AnswerData>,
}

#[derive(Deserialize, Default)]
struct AnswerData {
    #[serde(rename = "URL", default)]
    url: Option<String>,
    #[serde(rename = "ClientConfig", default)]
    client_config: Option<serde_json::Value>,
}

/// A pong's payload: a `ClientConfig` JSON (`_handle_control_frame`).
pub(crate) fn parse_config_update(payload: &[u8]) -> Option<ConfigUpdate> {
    config_update(serde_json::from_slice(payload).ok()?)
}

/// A `ClientConfig` object; anything else (serde would read an array as the fields in
/// order) is not one.
fn config_update(value: serde_json::Value) -> Option<ConfigUpdate> {
    if !value.is_object() {
        return None;
    }
    serde_json::from_value(value).ok()
}

#[cfg(test)]
mod tests;
