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
//!
//! - `answer.rs` — a connect answer split into its messages as it arrives
//! - `cometd.rs` — the transport: HTTP, session, cookies, backoff, the conversation's phases
//! - `bayeux.rs` — the Bayeux messages: handshake, subscribe, connect, `advice`, refusals
//! - `failure.rs` — the conversation's phases and what a failed step means
//! - `subscriber.rs` — the loop that moves items onto the processor's channel

mod answer;
mod bayeux;
mod cometd;
mod failure;
mod subscriber;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::error::SalesforceError;
use super::events::ChangeEvent;
use crate::ids::ReplayId;

pub use bayeux::{MAX_ADVICE_INTERVAL, MAX_CONNECT_HOLD, MAX_EVENTS_PER_ANSWER};
pub use cometd::CometdTransport;
pub use subscriber::{check_subscription, pump, run_subscriber};

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
pub(super) const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        /// Where it subscribed from (`-1`, `-2` or a checkpoint).
        replay_from: ReplayId,
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
