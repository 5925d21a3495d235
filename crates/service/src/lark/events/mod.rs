//! Lark events over the long connection (design §3 rule 28, §4): the one WebSocket a
//! self-built app opens to Lark, and the typed events that arrive on it.
//!
//! - `endpoint.rs` — the bootstrap `POST {base_url}/callback/ws/endpoint` and the server's
//!   `ClientConfig` (ping and reconnect timings)
//! - `frame.rs` — the `pbbp2.Frame` protobuf every WebSocket message carries
//! - `fragments.rs` — joining a message Lark split into `sum` fragments (bounded cache)
//! - `event.rs` — the event envelope and the five VC meeting events, typed
//! - `session.rs` — one open connection: read, join, ping, record, acknowledge, watchdog
//! - `connection.rs` — [`LongConnection`]: bootstrap, open a session, reconnect, shut down
//! - `throttle.rs` — one log line per kind of bad input per minute
//!
//! It owns the connection and nothing else: it decides nothing about bookings and stores
//! nothing. An event is acknowledged only once the sink says it is durably recorded (the
//! sink also drops duplicates: Lark delivers at least once). Bad input from Lark — a
//! frame that does not decode, an unknown type, an envelope that is not JSON — is logged
//! (rate-limited), counted and dropped; it never panics and never stalls the connection.
//! The app secret and the connection URL's query (it carries Lark's access key and ticket)
//! never reach a log line or an error.

mod connection;
mod endpoint;
mod event;
mod fragments;
mod frame;
mod session;
mod throttle;

use std::future::Future;

pub use connection::LongConnection;
pub use endpoint::{ClientConfig, EndpointInfo, ENDPOINT_PATH};
pub use event::{
    EventHeader, EventKind, EventUser, LarkEvent, LeaveReason, Meeting, MeetingActivity, Recording,
    UserType, EVENT_TYPES,
};

/// Where the connection hands each event.
pub trait EventSink: Send + Sync + 'static {
    /// Records the event durably; dropping a duplicate `event_id` is the sink's job (Lark
    /// delivers at least once). `Ok` → the event is acknowledged (`{"code":200}`), `Err` →
    /// answered `{"code":500}` and Lark pushes it again later. Lark expects an answer
    /// within 3 s (design §4), so this should be a local write, not the event's work.
    fn record(&self, event: LarkEvent) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Why a sink could not record an event (said in the log, never sent to Lark).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// What can stop the long connection, or keep it from opening.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The endpoint refused the app for good (a code other than 0, 1 and 1000040343, e.g.
    /// wrong credentials, or an app that may not use the long connection): no retry helps.
    #[error("Lark refused the event connection (code {code}): {msg}")]
    Refused { code: i64, msg: String },
    /// The endpoint is busy (code 1, or 1000040343 "internal error"): try again later.
    #[error("Lark's event endpoint is busy (code {code}): {msg}")]
    Busy { code: i64, msg: String },
    /// The endpoint answered an HTTP status other than 200.
    #[error("Lark's event endpoint answered HTTP {status}")]
    Status { status: u16 },
    /// An answer that does not parse, or a connection URL that is not usable.
    #[error("unexpected answer from Lark's event endpoint: {0}")]
    Unexpected(String),
    /// The WebSocket upgrade was refused with Lark's handshake headers. `permanent` for a
    /// ban (403) or the app's connection limit (514 with 1000040350), as the SDKs decide.
    #[error("Lark refused the WebSocket (status {status}, code {auth_code:?}): {msg}")]
    Handshake {
        status: i64,
        auth_code: Option<i64>,
        msg: String,
        permanent: bool,
    },
    /// The request or the WebSocket failed (connection refused, reset, TLS...).
    #[error("event connection transport error: {0}")]
    Transport(String),
    /// The bootstrap or the WebSocket handshake took too long.
    #[error("the event connection timed out")]
    Timeout,
    /// The server's `ReconnectCount` attempts all failed.
    #[error("no event connection after {attempts} attempts (Lark's ReconnectCount)")]
    GaveUp { attempts: u64 },
}

impl EventsError {
    /// True when trying again cannot help; the service then runs without events.
    pub fn is_permanent(&self) -> bool {
        match self {
            EventsError::Refused { .. } | EventsError::GaveUp { .. } => true,
            EventsError::Handshake { permanent, .. } => *permanent,
            EventsError::Busy { .. }
            | EventsError::Status { .. }
            | EventsError::Unexpected(_)
            | EventsError::Transport(_)
            | EventsError::Timeout => false,
        }
    }
}

impl crate::retry::Retryable for EventsError {
    fn retry_hint(&self) -> crate::retry::RetryHint {
        if self.is_permanent() {
            crate::retry::RetryHint::Never
        } else {
            crate::retry::RetryHint::Backoff
        }
    }

    fn timed_out(_after: std::time::Duration) -> Self {
        EventsError::Timeout
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
