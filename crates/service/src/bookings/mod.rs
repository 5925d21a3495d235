//! The booking pipeline: bookings → Lark meetings.
//!
//! - `intake`    — the processor task: stream batches, coalescing, the replay checkpoint
//! - `changes`   — which bookings a change event is about
//! - `queries`   — every booking SOQL (by id, upcoming, a trainer's)
//! - `model`     — a booking as read, parsed into typed fields
//! - `decide`    — the pure decision from a booking's current state
//! - `act`       — carrying a decision out (Lark calls with the right token, the journal)
//! - `apply`     — reserving a new meeting, and applies whose answer was lost
//! - `app_hosted` — meetings the app reserves for a trainer who has not connected (rule 21)
//! - `calendar`  — the meeting's event on the host's Lark calendar (rule 20)
//! - `writeback` — the output fields and their batched delivery
//! - `sweeps`    — reconciliation, a trainer's bookings on (dis)connect, refresh passes
//! - `outcome`   — what processing a booking came to, and the pipeline's error
//! - `status`    — the pipeline status `/readyz` reports
//! - `watch`     — the sweep's gauges and the booking alerts (Failed, no meeting near start)
//! - `remind`    — the `remind` command: reminders to trainers not connected

pub mod act;
pub mod app_hosted;
pub mod apply;
pub mod calendar;
pub mod changes;
pub mod decide;
pub mod engine;
pub mod intake;
pub mod model;
pub mod outcome;
pub mod queries;
pub mod remind;
pub mod status;
pub mod sweeps;
pub mod watch;
pub mod writeback;

pub use engine::{BookingFailure, BookingFailureKind, Engine, Summary};
pub use intake::{AbortOnDrop, Processor, ProcessorHandle};
pub use model::{Booking, MeetingStatus};
pub use outcome::{Outcome, PipelineError};
pub use remind::{RemindSummary, RemindedTrainer};
pub use status::PipelineStatus;
pub use sweeps::{RefreshSummary, TrainerFailure};
