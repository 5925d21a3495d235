//! The booking pipeline: bookings → Lark meetings. Files from the bottom up; each uses
//! only those above it in this list (`.ci/layers` checks):
//!
//! - `status`     — the pipeline status `/readyz` reports
//! - `model`      — a booking as read, parsed into typed fields
//! - `outcome`    — what processing came to: outcome, summary, failures, the pipeline's error
//! - `decide`     — the pure decision from a booking's current state, naming whose token acts
//! - `changes`    — which bookings a change event is about
//! - `retries`    — the durable retry list's rules: kinds, counts, backoff, giving up
//! - `writeback`  — the output fields and their batched delivery (`WriteBatcher`)
//! - `reader`     — every booking SOQL (by id, upcoming, a trainer's) and the one describe
//! - `notices`    — admin alerts about bookings (Failed, no meeting near start)
//! - `host_token` — a host's user token: calls with it, the host's record, reminders
//! - `owed`       — deletions owed while a host is not connected, made when they return (rule 25)
//! - `app_host`   — trainers' open_ids for meetings the app reserves (rule 21)
//! - `intents`    — each apply recorded before it leaves, one fsync for those leaving together
//! - `meetings`   — reservations in Lark with the named token, the journal, applies in doubt
//! - `act`        — carrying a decision out into a reservation and a write-back
//! - `calendar`   — the meeting's event on the host's Lark calendar (rule 20)
//! - `attendance` — what happened in each meeting, back on its booking; the no-show alert
//!   (rules 28–30; its own folder)
//! - `engine`     — the one verb: read, decide, act, calendar, write back, retry list
//! - `pause`      — the pipeline paused while the store cannot be written (rule 23)
//! - `watch`      — the sweep's gauges and its "still no meeting" alerts
//! - `sweeps`     — reconciliation, a trainer's bookings on (dis)connect
//! - `intake`     — stream batches: coalescing, taking in what arrives while one runs, the
//!   replay checkpoint, where to start
//! - `remind`     — the `remind` command: reminders to trainers not connected
//! - `processor`  — the loop that owns the pipeline's turn

pub mod act;
pub mod app_host;
pub mod attendance;
pub mod calendar;
pub mod changes;
pub mod decide;
pub mod engine;
pub mod host_token;
pub mod intake;
pub mod intents;
pub mod meetings;
pub mod model;
pub mod notices;
pub mod outcome;
pub mod owed;
pub mod pause;
pub mod processor;
pub mod reader;
pub mod remind;
pub mod retries;
pub mod status;
pub mod sweeps;
pub mod watch;
pub mod writeback;

pub use engine::Engine;
pub use model::{Booking, MeetingStatus};
pub use outcome::{BookingFailure, BookingFailureKind, Outcome, PipelineError, Summary};
pub use processor::{AbortOnDrop, Processor, ProcessorHandle, ReconcileError};
pub use remind::{remind_unconnected, RemindSummary, RemindedTrainer};
pub use status::PipelineStatus;
pub use sweeps::reconcile;
