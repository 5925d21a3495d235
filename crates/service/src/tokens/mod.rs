//! Trainer tokens: the redacted token types, the at-rest [`vault`], and (later) the
//! single-flight token service and the refresh timer.
//!
//! This module owns every decision about a trainer's Lark tokens; nothing else decrypts,
//! refreshes or clears them.

pub mod secret;
pub mod service;
pub mod trainer;
pub mod vault;

pub use secret::{AccessToken, RefreshToken};
pub use service::{RefreshOutcome, RotationSummary, TokenError, TokenService, TrainerEvent};
pub use vault::{Vault, VaultError};
