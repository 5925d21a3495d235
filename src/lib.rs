//! lark-vc-bridge gives every remote training booking in Salesforce a Lark video meeting
//! hosted by its trainer. Module map:
//!
//! - [`config`]     — layered settings (design §2.2), validated into typed values
//! - [`telemetry`]  — tracing set-up (human or JSON logs)
//! - [`retry`]      — the one retry helper: classification, jittered capped backoff, server hints
//! - [`store`]      — embedded SQLite: OAuth nonces, checkpoints, token and reservation journals
//! - [`tokens`]     — token types with redacted `Debug`, the AES-GCM vault, the token service
//! - [`bookings`]   — booking model, the pure `decide`, `act` (Lark + write-back), processor, sweeps
//! - [`salesforce`] — Salesforce auth, REST (query, update, collections) and streaming (CometD)
//! - [`lark`]       — Lark app token, user OAuth, VC reserves, bot messages
//! - [`http`]       — the axum routes: OAuth start/callback, health, readiness, metrics
//! - [`metrics`]    — counters and gauges rendered for `/metrics`
//! - [`app`]        — wiring: `App::build(settings)`, `local_url()`, `run_until_stopped()`
//! - [`cli`]        — the commands of design §2.1
//! - [`check`]      — `check`: the set-up checklist against a real org and Lark app
//! - [`demo`]       — `demo`: the whole job against the simulators, narrated
//! - [`bench`]      — `bench`: a burst of bookings against the simulators, measured (issue 7)
//! - [`simulator`]  — in-process Salesforce and Lark simulators for demo, simulate and tests

pub mod app;
pub mod bench;
pub mod bookings;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod lark;
pub mod metrics;
pub mod retry;
pub mod salesforce;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod tokens;
