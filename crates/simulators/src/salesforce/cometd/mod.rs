//! CometD (Bayeux) long-polling endpoint of the Salesforce simulator and the event log it
//! serves: Change Data Capture events raised by every record change, gap and overflow
//! events, and platform events.
//!
//! It owns the Bayeux client registry (handshake, subscribe, long-poll connect, cookies,
//! advice), the replay log (monotonic replay ids, retention, `-1`/`-2`/`N` replay), and the
//! fault knobs tests turn (drop every client, forget old events, inject gap events, short
//! timeouts). It must not know anything about bookings or the service: the record store
//! calls [`CometdHub::publish`] after each write, and the hub only formats and delivers.
//!
//! Wire behaviour follows what Salesforce actually sends (sources cited inline):
//! - Bayeux-level errors (`401::`, `403::`, `400::`) come back inside a message with HTTP
//!   200. jsforce's `AuthFailure` extension and emp-connector's `401::Authentication invalid`
//!   listener read them from the message body, which Faye and CometD clients only parse for
//!   a 2xx response. Only a body that is not a JSON array (and a missing/unsupported API
//!   version in the URI) is refused at the HTTP level, with 400.
//! - Missing `BAYEUX_BROWSER` cookie on a message of an existing client →
//!   `400::Client {clientId} has established a session, but no BAYEUX_BROWSER cookie
//!   present` (Streaming API Developer Guide, "Streaming API Error Codes"). A cookie that is
//!   present but belongs to another browser is answered `403::Unknown client` with
//!   `advice.reconnect = handshake`: the server cannot find this client for that browser,
//!   and a re-handshake is what fixes it.
//! - Cookies are set without `Secure`/`SameSite=None` (real Salesforce sets them) because
//!   the simulator speaks plain HTTP on loopback and common third-party cookie jars (Python
//!   `http.cookiejar`, aiohttp) never send a `Secure` cookie over `http://`.
//!
//! - `hub.rs` — the hub's state: clients, the replay log, retention, and the knobs
//! - `bayeux.rs` — the `/cometd/{version}` endpoint: handshake, subscribe, connect, disconnect
//! - `events.rs` — change events as Salesforce formats them
//! - `tests.rs` — the endpoint driven over HTTP

mod bayeux;
mod events;
mod hub;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use bayeux::*;
use events::*;
use hub::*;

/// How long a `/meta/connect` is held when nothing is queued (Salesforce: 110 s, "Clients
/// and Timeouts", Streaming API Developer Guide).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(110);
/// A client that sends nothing this long after its last response is dropped (Salesforce:
/// reconnect within 40 s).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long events stay replayable (72 hours for CDC and high-volume platform events).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 3600);
/// Name of the cookie that binds a Bayeux client to its browser.
pub const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";
/// Name of Salesforce's streaming load-balancer cookie (seen in the wild as
/// `Set-Cookie: sfdc-stream=!…; path=/; …`, kdcllc/CometD.NetCore.Salesforce issue #43).
pub const LB_COOKIE: &str = "sfdc-stream";
/// The "empty" record id an overflow event carries in `recordIds` (Change Data Capture
/// Developer Guide, "Overflow Events": "always set to 000000000000000AAA").
pub use crate::wire::EMPTY_RECORD_ID;
/// The channel that carries change events of every CDC-enabled object.
pub const ALL_CHANGE_EVENTS_CHANNEL: &str = "/data/ChangeEvents";
/// `changeOrigin` of changes made through the simulator's REST API, unless set otherwise.
pub const DEFAULT_CHANGE_ORIGIN: &str = "com/salesforce/api/rest/62.0";
/// Oldest API version `/cometd/{version}` accepts ("Streaming API Error Codes").
const MIN_API_VERSION: f64 = 37.0;
/// The booking object of the default configuration; CDC is enabled for it from the start so
/// a subscriber can subscribe before the first booking exists.
const DEFAULT_CDC_ENTITY: &str = "Training_Booking__c";
/// Fields a change event body never carries (Change Event Message Structure: no `IsDeleted`,
/// no `SystemModstamp`; the record id travels in the header only).
const FIELDS_NOT_IN_EVENTS: &[&str] = &["Id", "attributes", "IsDeleted", "SystemModstamp"];

/// Kind of a record change, as in `ChangeEventHeader.changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `CREATE`
    Create,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `UNDELETE`
    Undelete,
}

impl ChangeKind {
    /// The `changeType` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "CREATE",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Undelete => "UNDELETE",
        }
    }
}

/// One committed record change, published by the record store after every write.
#[derive(Debug, Clone)]
pub struct RecordChange {
    /// Object API name, e.g. `Training_Booking__c`.
    pub entity: String,
    /// What happened to the record.
    pub kind: ChangeKind,
    /// 18-char record id.
    pub record_id: String,
    /// Fields whose value changed (UPDATE), or every non-null field (CREATE).
    pub changed_fields: Vec<String>,
    /// User id of the writer (`commitUser`).
    pub commit_user: String,
    /// New values of the changed fields (CREATE: every non-null field).
    pub values: Map<String, Value>,
}

/// Validates a bearer token; returns the user id it belongs to, or None when invalid.
pub type SessionCheck = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the events of a `/meta/connect` go in the response array. Real servers put them
/// before the connect reply; clients must not rely on that, so tests can move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventPlacement {
    /// Events, then the replies (what CometD servers do).
    #[default]
    First,
    /// Replies, then the events.
    Last,
    /// Events and replies interleaved at random, each keeping its own order.
    Random,
}

/// One `/meta/subscribe` the hub answered, for tests that check where a client resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRecord {
    /// Bayeux client id.
    pub client_id: String,
    /// The channel asked for.
    pub channel: String,
    /// The replay id asked for (`-1` when the message had no replay extension).
    pub replay_from: i64,
    /// Whether the subscription was accepted.
    pub successful: bool,
}

/// The event log and Bayeux client registry.
pub struct CometdHub {
    state: Mutex<HubState>,
}

impl Default for CometdHub {
    fn default() -> Self {
        CometdHub {
            state: Mutex::new(HubState::default()),
        }
    }
}

impl std::fmt::Debug for CometdHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("CometdHub")
            .field("last_replay_id", &st.last_replay_id)
            .field("retained_events", &st.events.len())
            .field("clients", &st.clients.len())
            .finish()
    }
}

/// `Foo__c` → `/data/Foo__ChangeEvent`, `Account` → `/data/AccountChangeEvent`.
pub fn cdc_channel(entity: &str) -> String {
    match entity.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{entity}ChangeEvent"),
    }
}
