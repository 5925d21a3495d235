//! Trainer tokens: the redacted secret types, the at-rest [`vault`], the single-flight
//! token [`service`] (refresh, disconnect) and the [`connect`] flow.
//!
//! This module owns every decision about a trainer's Lark tokens; nothing else decrypts,
//! refreshes or clears them.

pub mod connect;
pub mod secret;
pub mod service;
pub mod trainer;
pub mod vault;

pub use connect::{ConnectError, ConnectFlow};
pub use secret::{AccessToken, AuthCode, OAuthState, PkceVerifier, RefreshToken};
pub use service::{RefreshOutcome, TokenError, TokenService, TrainerEvent};
pub use vault::{Vault, VaultError};
