//! The phases of the Bayeux conversation and what a failed step means for it: go to a
//! phase after a delay, or give up. Shared by the transport (`cometd.rs`) and the
//! messages (`bayeux.rs`), below both.

use std::time::Duration;

use super::StreamError;
use crate::retry::{RetryHint, Retryable};
use crate::salesforce::error::SalesforceError;

/// Where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) enum Delay {
    /// The server said what to do (re-handshake, log in again): do it at once — unless
    /// the previous attempt failed too, then back off so it never spins.
    Now,
    /// Transport failure, timeout, 5xx: jittered exponential backoff, capped.
    Backoff,
    /// Exactly this long (a server hint).
    Exactly(Duration),
}

/// What to do after a failed step.
pub(super) enum Failure {
    /// Go to `phase` after `delay`.
    Retry { phase: Phase, delay: Delay },
    /// Give up.
    Fatal(StreamError),
}

/// A login failure: fatal when retrying cannot help (bad credentials), else retried.
pub(super) fn login_failure(e: SalesforceError, phase: Phase) -> Failure {
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

pub(super) fn protocol(phase: Phase) -> Failure {
    tracing::warn!("Streaming API answer without the expected reply");
    Failure::Retry {
        phase,
        delay: Delay::Backoff,
    }
}
