//! Attendance on the booking, from Lark's meeting events (design §3 rules 28–30).
//!
//! **What it owns.** Turning the VC meeting events the long connection brings, and Lark's
//! answers about a meeting, into the seven attendance fields of each booking (§2.4) and
//! the no-show alert. It owns the sink the connection records into, each booking's
//! attendance row in the store, and the timers that row carries. It never touches the
//! meeting itself (`meetings`, `act`) nor decides anything about a booking's reservation;
//! its only writes to Salesforce are the attendance fields, which count as the service's
//! own output (rule 2), so they never come back as work.
//!
//! **How an event travels.** The connection hands it to [`AttendanceSink`], which records
//! it in the store (deduplicated by `event_id`, kept 7 days) and only then lets it be
//! acknowledged; the processor, woken, runs [`Attendance::turn`] in its own turn: the
//! event is matched by meeting number to the booking whose reservation has it, applied to
//! the booking's row and marked processed in one transaction, so it counts once however
//! often Lark sends it and wherever the process dies. Events of meetings that are not a
//! booking's, of bookings since cancelled, of other types or without a meeting number are
//! acknowledged, logged once, counted and ignored.
//!
//! **What the booking shows** (`plan`): started → `In Progress` + started at (+ the
//! trainer's join when it came with the start); ended → one participants call (the app's
//! token, the host's where Lark refuses the app) → `Completed` + ended at, trainer joined
//! at, participants, guest joined; recording ready → the recording URL. At most three
//! writes a meeting, each through the batched write-back.
//!
//! **Timers** (`plan::refresh`, run by [`Attendance::turn`] when the processor's timer
//! fires; the timer only wakes the loop): the post-end lookup at scheduled end +
//! `attendance.grace` for a session whose end was not heard of (`list_by_no` + the
//! meetings' participants; no meeting at all → `No Show`); the no-show check at start +
//! `alerts.no_show_after` for a host whose join was not heard of (Lark asked first; then a
//! claim in the store, one message to the trainer, one admin alert — never twice for a
//! booking); retries of failed calls and writes on their own backoff. The engine tells
//! attendance each processed booking's times (`schedule`), so the timers follow
//! reschedules; a booking rescheduled after `No Show` starts over.
//!
//! Files, bottom up (each uses only those above it):
//!
//! - `record`   — the part of an event attendance keeps, and its encoding for the store
//! - `plan`     — pure: events and Lark's answers applied to a row, the fields, the writes
//!   owed, what is due when
//! - `schedule` — the engine's hook: processed bookings' times into their rows
//! - `sink`     — [`AttendanceSink`]: record, then acknowledge; wake the processor
//! - `lookup`   — Lark's meetings calls, app token first, the host's on 121005
//! - `no_show`  — the trainer's message and the admin alert of a no-show
//! - `step`     — [`Attendance`]: the processor's attendance turn

pub mod lookup;
pub mod no_show;
pub mod plan;
pub mod record;
pub mod schedule;
pub mod sink;
pub mod step;

pub use plan::SessionTimes;
pub use schedule::{note_sessions, sessions};
pub use sink::AttendanceSink;
pub use step::{Attendance, AttendanceParts};
