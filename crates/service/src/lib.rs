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
//! - [`metrics`]    — counters, gauges, histograms and process metrics for `/metrics`
//! - [`app`]        — wiring: `App::build(settings)`, `local_url()`, `run_until_stopped()`,
//!   and the shutdown signal
//! - [`check`]      — `check`: the set-up checklist against a real org and Lark app
//! - [`progress`]   — items done of a long one-shot command, for its progress lines
//!
//! The command line (`src/main.rs` of the workspace root) calls into this library; the
//! simulators (`lvb-simulators`) and the benchmark (`lvb-bench`) are crates of their own,
//! and nothing here depends on them.

pub mod app;
pub mod bookings;
pub mod check;
pub mod config;
pub mod http;
pub mod lark;
pub mod metrics;
pub mod progress;
pub mod retry;
pub mod salesforce;
pub mod store;
pub mod telemetry;
pub mod tokens;
