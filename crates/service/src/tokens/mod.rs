//! Trainer tokens: the at-rest [`vault`], the trainer record's token fields ([`trainer`]),
//! each trainer's access token decrypted once ([`decrypted`]), each trainer's
//! single-flight lock ([`flights`]), rotated tokens to Salesforce ([`writeback`]), the
//! single-flight token [`service`] (use, refresh, save, clear) and the [`connect`] flow
//! (begin: authorize URL and state; finish: tokens stored). The refresh timer that calls
//! the service is wired in `app`; the redacted secret types are Lark's
//! ([`crate::lark::secret`]), re-exported here.
//!
//! This module owns every decision about a trainer's Lark tokens; nothing else decrypts,
//! refreshes or clears them.

pub mod connect;
pub mod decrypted;
pub mod flights;
pub mod grant;
pub mod refresh;
pub mod reminders;
pub mod rotate;
pub mod service;
pub mod trainer;
pub mod trainers;
pub mod vault;
pub mod writeback;

#[cfg(test)]
pub(crate) mod test_support;

// The secret types are Lark's (the client layer below issues and sends them).
pub use crate::lark::secret::{AccessToken, AuthCode, OAuthState, PkceVerifier, RefreshToken};
pub use connect::{ConnectError, ConnectFlow};
pub use refresh::{refresh_pass, RefreshSummary, TrainerFailure};
pub use reminders::{ReminderOutcome, Reminders};
pub use rotate::RotationSummary;
pub use service::{RefreshOutcome, SkipReason, TokenError, TokenService, TrainerEvent};
pub use trainers::Trainers;
pub use vault::{Vault, VaultError};
