//! Trainer tokens: the at-rest [`vault`], the trainer record's token fields ([`trainer`])
//! and the single-flight token [`service`] (use, refresh, save, clear). The refresh timer
//! that calls the service is wired in `app`; the redacted token types are Lark's
//! ([`crate::lark::secret`]), re-exported here.
//!
//! This module owns every decision about a trainer's Lark tokens; nothing else decrypts,
//! refreshes or clears them.

pub mod service;
pub mod trainer;
pub mod vault;

// The token types are Lark's (the client layer below issues and sends them).
pub use crate::lark::secret::{AccessToken, RefreshToken};
pub use service::{RefreshOutcome, TokenError, TokenService, TrainerEvent};
pub use vault::{Vault, VaultError};
