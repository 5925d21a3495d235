//! Attendance's durable state (design §3 rules 28–30):
//!
//! - `lark_events` — every event the long connection brought, recorded *before* it is
//!   acknowledged (so a kill -9 after the ack loses nothing) and kept 7 days under its
//!   `event_id`, so that Lark's redelivery of one (it delivers at least once) is a no-op.
//!   An event is marked processed in the same transaction that saves what it changed, so
//!   it is applied exactly once however often it arrives or the process restarts.
//! - `attendance` — per booking: its session's schedule, what its meeting has come to (the
//!   facts the events and Lark's answers gave), what was last written to the booking, what
//!   is owed (a write, the participants call, the post-end lookup, rule 29) and the no-show
//!   alert's claim (rule 30), plus one `due_at` the processor's timer sleeps until.
//!
//! It stores and answers; what a fact means, what is owed and when it is due are the
//! pipeline's (`bookings::attendance`), which hands whole rows back. Times are unix
//! **milliseconds**; the meeting's facts hold whole seconds (Lark's precision) in them.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::cached::Cached;
use super::values::{at_millis, millis};
use super::{ReservationEntry, Store, StoreError};
use crate::ids::{BookingId, TrainerId};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS lark_events (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    meeting_no   TEXT,
    body         TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    processed_at INTEGER,
    outcome      TEXT
);
CREATE INDEX IF NOT EXISTS lark_events_unprocessed ON lark_events (processed_at)
    WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS lark_events_received ON lark_events (received_at);
CREATE TABLE IF NOT EXISTS attendance (
    booking_id        TEXT PRIMARY KEY,
    meeting_no        TEXT,
    trainer_id        TEXT,
    scheduled_start   INTEGER,
    scheduled_end     INTEGER,
    closed            INTEGER NOT NULL DEFAULT 0,
    meeting_id        TEXT,
    owner_open_id     TEXT,
    started_at        INTEGER,
    ended_at          INTEGER,
    host_joined_at    INTEGER,
    participant_ids   TEXT NOT NULL DEFAULT '[]',
    recording_url     TEXT,
    no_show           INTEGER NOT NULL DEFAULT 0,
    details_at        INTEGER,
    details_attempts  INTEGER NOT NULL DEFAULT 0,
    details_settled   INTEGER NOT NULL DEFAULT 0,
    lookup_at         INTEGER,
    lookup_attempts   INTEGER NOT NULL DEFAULT 0,
    lookup_done       INTEGER NOT NULL DEFAULT 0,
    write_at          INTEGER,
    write_attempts    INTEGER NOT NULL DEFAULT 0,
    written           TEXT NOT NULL DEFAULT '{}',
    alert_checked     INTEGER NOT NULL DEFAULT 0,
    alert_claimed_at  INTEGER,
    alert_done        INTEGER NOT NULL DEFAULT 0,
    due_at            INTEGER,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attendance_due ON attendance (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS attendance_meeting_no ON attendance (meeting_no);
CREATE INDEX IF NOT EXISTS reservations_meeting_no ON reservations (meeting_no);
"#;

/// An event as the sink records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLarkEvent<'a> {
    /// `header.event_id`: the same on every delivery of one event.
    pub event_id: &'a str,
    /// `header.event_type`, as Lark sent it (for the log).
    pub event_type: &'a str,
    /// The pipeline's short label for it.
    pub kind: &'a str,
    /// The meeting number it names, if any.
    pub meeting_no: Option<&'a str>,
    /// What the pipeline needs of it, in its own encoding.
    pub body: &'a str,
    /// Set for an event nothing will be done with: recorded (so a redelivery is still
    /// known) and processed at once, with this outcome.
    pub settled: Option<&'a str>,
}

/// Whether an event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRecorded {
    /// Recorded now.
    New,
    /// Its `event_id` was recorded before: nothing was written.
    Duplicate,
}

/// A recorded event waiting to be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLarkEvent {
    /// `header.event_id`.
    pub event_id: String,
    /// `header.event_type`, as Lark sent it.
    pub event_type: String,
    /// The pipeline's short label for it.
    pub kind: String,
    /// The meeting number it names, if any.
    pub meeting_no: Option<String>,
    /// What the pipeline keeps of it, in its own encoding.
    pub body: String,
    /// When it was recorded.
    pub received_at: DateTime<Utc>,
}

/// Work that is owed for a booking: due then, tried so many times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owed {
    /// When it is due; None when nothing is owed (or it waits for news).
    pub at: Option<DateTime<Utc>>,
    /// Tries that failed so far.
    pub attempts: u32,
}

/// The attendance row of one booking. Every field is the pipeline's to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceEntry {
    /// The booking whose session this is.
    pub booking_id: BookingId,
    /// The reservation's nine-digit meeting number: how events name the meeting.
    pub meeting_no: Option<String>,
    /// The reservation's host (whose user token is the fallback where Lark refuses the app).
    pub trainer_id: Option<TrainerId>,
    /// The session as scheduled on the booking.
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    /// The booking no longer has a meeting (cancelled, deleted, not remote): nothing more
    /// is done for it, and events of its meeting are ignored.
    pub closed: bool,
    /// The meeting (19 digits) last seen, once one started.
    pub meeting_id: Option<String>,
    /// The meeting owner's open_id: the host whose join counts as the trainer's.
    pub owner_open_id: Option<String>,
    /// When the session's first meeting started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its last meeting ended (None while one runs).
    pub ended_at: Option<DateTime<Utc>>,
    /// The host's first join into the session.
    pub host_joined_at: Option<DateTime<Utc>>,
    /// Everyone seen taking part (open_ids), the host included.
    pub participant_ids: Vec<String>,
    /// The recording's link, once Lark said it is ready.
    pub recording_url: Option<String>,
    /// Lark had no meeting for the session (status `No Show`).
    pub no_show: bool,
    /// The participants call after the end.
    pub details: Owed,
    /// The participants are known (from the call, or given up on and taken from events).
    pub details_settled: bool,
    /// The post-end lookup; `lookup.at` overrides the scheduled end + grace (a repeat).
    pub lookup: Owed,
    pub lookup_done: bool,
    /// The write-back of the attendance fields.
    pub write: Owed,
    /// The fields last written to the booking, as a JSON object.
    pub written: String,
    /// The no-show check ran (host present, or alerted, or no longer relevant).
    pub alert_checked: bool,
    /// When the no-show alert was claimed (before anything was sent).
    pub alert_claimed_at: Option<DateTime<Utc>>,
    /// The no-show message and alert went out (or were tried).
    pub alert_done: bool,
    /// The soonest moment something is due for this booking.
    pub due_at: Option<DateTime<Utc>>,
}

impl AttendanceEntry {
    /// A row with nothing known yet.
    pub fn new(booking_id: BookingId) -> AttendanceEntry {
        AttendanceEntry {
            booking_id,
            meeting_no: None,
            trainer_id: None,
            scheduled_start: None,
            scheduled_end: None,
            closed: false,
            meeting_id: None,
            owner_open_id: None,
            started_at: None,
            ended_at: None,
            host_joined_at: None,
            participant_ids: Vec::new(),
            recording_url: None,
            no_show: false,
            details: Owed::default(),
            details_settled: false,
            lookup: Owed::default(),
            lookup_done: false,
            write: Owed::default(),
            written: "{}".into(),
            alert_checked: false,
            alert_claimed_at: None,
            alert_done: false,
            due_at: None,
        }
    }
}

const COLUMNS: &str = "booking_id, meeting_no, trainer_id, scheduled_start, scheduled_end, closed, \
    meeting_id, owner_open_id, started_at, ended_at, host_joined_at, participant_ids, recording_url, \
    no_show, details_at, details_attempts, details_settled, lookup_at, lookup_attempts, lookup_done, \
    write_at, write_attempts, written, alert_checked, alert_claimed_at, alert_done, due_at";

fn time(value: Option<i64>) -> Option<DateTime<Utc>> {
    value.map(at_millis)
}

fn owed(at: Option<i64>, attempts: i64) -> Owed {
    Owed {
        at: time(at),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    }
}

fn row_to_entry(r: &Row<'_>) -> rusqlite::Result<AttendanceEntry> {
    let ids: String = r.get(11)?;
    Ok(AttendanceEntry {
        booking_id: r.get(0)?,
        meeting_no: r.get(1)?,
        // A trainer id the store cannot read back is one we no longer use.
        trainer_id: r
            .get::<_, Option<String>>(2)?
            .and_then(|t| TrainerId::parse(&t).ok()),
        scheduled_start: time(r.get(3)?),
        scheduled_end: time(r.get(4)?),
        closed: r.get::<_, i64>(5)? != 0,
        meeting_id: r.get(6)?,
        owner_open_id: r.get(7)?,
        started_at: time(r.get(8)?),
        ended_at: time(r.get(9)?),
        host_joined_at: time(r.get(10)?),
        participant_ids: serde_json::from_str(&ids).unwrap_or_default(),
        recording_url: r.get(12)?,
        no_show: r.get::<_, i64>(13)? != 0,
        details: owed(r.get(14)?, r.get(15)?),
        details_settled: r.get::<_, i64>(16)? != 0,
        lookup: owed(r.get(17)?, r.get(18)?),
        lookup_done: r.get::<_, i64>(19)? != 0,
        write: owed(r.get(20)?, r.get(21)?),
        written: r.get(22)?,
        alert_checked: r.get::<_, i64>(23)? != 0,
        alert_claimed_at: time(r.get(24)?),
        alert_done: r.get::<_, i64>(25)? != 0,
        due_at: time(r.get(26)?),
    })
}

fn save_entry(c: &Connection, e: &AttendanceEntry, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let ids = serde_json::to_string(&e.participant_ids).unwrap_or_else(|_| "[]".into());
    c.execute_cached(
        &format!(
            "INSERT OR REPLACE INTO attendance ({COLUMNS}, updated_at) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
              ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"
        ),
        params![
            e.booking_id,
            e.meeting_no,
            e.trainer_id,
            e.scheduled_start.map(millis),
            e.scheduled_end.map(millis),
            e.closed as i64,
            e.meeting_id,
            e.owner_open_id,
            e.started_at.map(millis),
            e.ended_at.map(millis),
            e.host_joined_at.map(millis),
            ids,
            e.recording_url,
            e.no_show as i64,
            e.details.at.map(millis),
            e.details.attempts,
            e.details_settled as i64,
            e.lookup.at.map(millis),
            e.lookup.attempts,
            e.lookup_done as i64,
            e.write.at.map(millis),
            e.write.attempts,
            e.written,
            e.alert_checked as i64,
            e.alert_claimed_at.map(millis),
            e.alert_done as i64,
            e.due_at.map(millis),
            millis(now),
        ],
    )?;
    Ok(())
}

impl Store {
    // --- Lark events -------------------------------------------------------------------

    /// Records an event unless its `event_id` was recorded before. Durable when this
    /// returns ([`Store::durably`]): the caller
    /// acknowledges the event to Lark next, and Lark will not send it again.
    pub fn record_lark_event(
        &self,
        e: &NewLarkEvent<'_>,
        now: DateTime<Utc>,
    ) -> Result<EventRecorded, StoreError> {
        self.durably(|c| {
            let inserted = c.execute_cached(
                "INSERT OR IGNORE INTO lark_events
                   (event_id, event_type, kind, meeting_no, body, received_at, processed_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    e.event_id,
                    e.event_type,
                    e.kind,
                    e.meeting_no,
                    e.body,
                    millis(now),
                    e.settled.map(|_| millis(now)),
                    e.settled,
                ],
            )?;
            Ok(match inserted {
                0 => EventRecorded::Duplicate,
                _ => EventRecorded::New,
            })
        })
    }

    /// Recorded events not yet processed, oldest first.
    pub fn unprocessed_lark_events(
        &self,
        limit: usize,
    ) -> Result<Vec<StoredLarkEvent>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT event_id, event_type, kind, meeting_no, body, received_at FROM lark_events
                 WHERE processed_at IS NULL ORDER BY rowid LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| {
                Ok(StoredLarkEvent {
                    event_id: r.get(0)?,
                    event_type: r.get(1)?,
                    kind: r.get(2)?,
                    meeting_no: r.get(3)?,
                    body: r.get(4)?,
                    received_at: at_millis(r.get(5)?),
                })
            })?;
            rows.collect()
        })
    }

    /// How many recorded events ended with `outcome` (tests and `/metrics` reasoning).
    pub fn lark_events_with_outcome(&self, outcome: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT COUNT(*) FROM lark_events WHERE outcome = ?1",
                params![outcome],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
        })
    }

    /// Forgets events received before `before` (processed or not): Lark's redelivery
    /// schedule ends long before (its last retry comes about 7 hours after the event).
    pub fn prune_lark_events(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM lark_events WHERE received_at < ?1",
                params![millis(before)],
            )
        })
    }

    // --- Attendance rows ---------------------------------------------------------------

    /// The attendance rows of these bookings (those that have one).
    pub fn attendance(&self, bookings: &[BookingId]) -> Result<Vec<AttendanceEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM attendance WHERE booking_id = ?1"
            ))?;
            let mut out = Vec::new();
            for id in bookings {
                if let Some(e) = stmt.query_row(params![id], row_to_entry).optional()? {
                    out.push(e);
                }
            }
            Ok(out)
        })
    }

    /// The attendance row that holds this meeting number, an open one before a closed one.
    pub fn attendance_by_meeting_no(
        &self,
        meeting_no: &str,
    ) -> Result<Option<AttendanceEntry>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                &format!(
                    "SELECT {COLUMNS} FROM attendance WHERE meeting_no = ?1
                     ORDER BY closed, updated_at DESC LIMIT 1"
                ),
                params![meeting_no],
                row_to_entry,
            )
            .optional()
        })
    }

    /// The journalled reservation with this meeting number (rule 29: how an event finds its
    /// booking).
    pub fn reservation_by_meeting_no(
        &self,
        meeting_no: &str,
    ) -> Result<Option<ReservationEntry>, StoreError> {
        let booking: Option<BookingId> = self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id FROM reservations WHERE meeting_no = ?1
                 ORDER BY updated_at DESC LIMIT 1",
                params![meeting_no],
                |r| r.get(0),
            )
            .optional()
        })?;
        match booking {
            Some(id) => self.reservation(&id),
            None => Ok(None),
        }
    }

    /// Saves whole rows and marks events processed with their outcomes, in one
    /// transaction: an event's effect and its "done" land together or not at all.
    pub fn save_attendance(
        &self,
        entries: &[AttendanceEntry],
        processed: &[(String, &str)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for e in entries {
                save_entry(&tx, e, now)?;
            }
            for (event_id, outcome) in processed {
                tx.execute_cached(
                    "UPDATE lark_events SET processed_at = ?2, outcome = ?3 WHERE event_id = ?1",
                    params![event_id, millis(now), outcome],
                )?;
            }
            tx.commit()
        })
    }

    /// Rows with something due at or before `now`, soonest first.
    pub fn due_attendance(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<AttendanceEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM attendance WHERE due_at IS NOT NULL AND due_at <= ?1
                 ORDER BY due_at LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![millis(now), limit as i64], row_to_entry)?;
            rows.collect()
        })
    }

    /// When the soonest attendance work is due, if any.
    pub fn next_attendance_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT MIN(due_at) FROM attendance WHERE due_at IS NOT NULL",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(time)
        })
    }

    /// Every open row (the pipeline recomputes their due times at start, in case the
    /// timings changed), at most `limit`.
    pub fn open_attendance(&self, limit: usize) -> Result<Vec<AttendanceEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM attendance WHERE closed = 0 OR due_at IS NOT NULL
                 ORDER BY booking_id LIMIT ?1"
            ))?;
            let rows = stmt.query_map(params![limit as i64], row_to_entry)?;
            rows.collect()
        })
    }

    /// Claims the booking's no-show alert (rule 30) before anything is sent: true only for
    /// the first claim ever, so it is never sent twice, across restarts too.
    pub fn claim_no_show_alert(
        &self,
        booking: &BookingId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c.execute_cached(
                "UPDATE attendance SET alert_claimed_at = ?2
                 WHERE booking_id = ?1 AND alert_claimed_at IS NULL",
                params![booking, millis(now)],
            )?;
            Ok(changed == 1)
        })
    }

    /// Forgets rows of sessions that ended before `before` with nothing owed. Returns how
    /// many.
    pub fn prune_attendance(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM attendance WHERE due_at IS NULL
                   AND COALESCE(scheduled_end, updated_at) < ?1 AND updated_at < ?1",
                params![millis(before)],
            )
        })
    }
}

#[cfg(test)]
mod tests;
