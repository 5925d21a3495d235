//! lark-vc-bridge gives every remote training booking in Salesforce a Lark video meeting
//! hosted by its trainer. Module map:
//!
//! - [`config`]     — layered settings (design §2.2), validated into typed values
//! - [`telemetry`]  — tracing set-up (human or JSON logs)
//! - [`retry`]      — the one retry helper: classification, jittered capped backoff, server hints
//! - [`ids`]        — typed record ids (booking, trainer) and replay ids, parsed once where they enter
//! - [`alerts`]     — admin alerts to a Lark group chat, each subject at most once a day
//! - [`store`]      — embedded SQLite: OAuth nonces, checkpoints, token and reservation journals
//! - [`tokens`]     — the AES-GCM vault, the trainer's token fields, the single-flight token
//!   service, the connect flow (`begin`/`finish`)
//! - [`bookings`]   — the booking pipeline: intake, queries, the pure `decide`, `act`, write-back, sweeps,
//!   and each meeting's attendance back on its booking (`bookings::attendance`)
//! - [`salesforce`] — Salesforce auth, REST (query, update, collections) and streaming (CometD)
//! - [`lark`]       — Lark app token, user OAuth, VC reserves and meetings, bot messages, redacted
//!   token types, and the long connection that brings the app's events (`lark::events`)
//! - [`http`]       — the axum routes: OAuth start/callback, health, readiness, metrics; their
//!   bounds (rate limit, timeouts, body size, security headers) and the server loop
//! - [`metrics`]    — counters, gauges, histograms and process metrics for `/metrics`
//! - [`outbound`]   — answers from Salesforce and Lark read within a size cap
//! - [`app`]        — wiring: `App::build(settings)`, `local_url()`, `run_until_stopped()`,
//!   and the shutdown signal
//! - [`check`]      — `check`: the set-up checklist against a real org and Lark app
//! - [`control`]    — admin commands beside a running service: done by it over the control
//!   socket, or here under the store lock
//! - [`progress`]   — items done of a long one-shot command, for its progress lines
//! - [`tasks`]      — the running service's named background tasks, waited for at shutdown
//!
//! Layers, bottom to top — a module uses only modules below it (`.ci/layers` checks; test
//! code may wire any of them): ids → config, retry, metrics, store, telemetry, outbound,
//! progress → salesforce, lark → alerts → tokens → bookings → http, control → app, check.
//! Inside a module folder the files import each other without a cycle.
//!
//! The command line (`src/main.rs` of the workspace root) calls into this library; the
//! simulators (`lvb-simulators`) and the benchmark (`lvb-bench`) are crates of their own,
//! and nothing here depends on them.

pub mod alerts;
pub mod app;
pub mod bookings;
pub mod check;
pub mod config;
pub mod control;
pub mod http;
pub mod ids;
pub mod lark;
pub mod metrics;
pub mod outbound;
pub mod progress;
pub mod retry;
pub mod salesforce;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tokens;
