//! The pipeline's durable per-booking lists (design §3 rules 13 and 14): bookings whose
//! work failed and waits for its own next try, and reserve applies whose answer was lost.
//! Both survive restarts, so a restart resumes where the last run stopped. Each entry says
//! what kind of work waits ([`RetryKind`]), so attempts of one kind are never counted
//! against another. Times here are unix **milliseconds**.

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};

use super::cached::Cached;
use super::values::{at_millis, millis};
use super::{Store, StoreError};
use crate::ids::{BookingId, TrainerId};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS booking_retries (
    booking_id  TEXT PRIMARY KEY,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    last_reason TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'meeting'
);
CREATE INDEX IF NOT EXISTS booking_retries_next_at ON booking_retries (next_at);
CREATE TABLE IF NOT EXISTS in_doubt_applies (
    booking_id TEXT PRIMARY KEY,
    trainer_id TEXT NOT NULL,
    applies    INTEGER NOT NULL,
    last_at    INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// What a booking on the retry list waits to do again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryKind {
    /// Its meeting work failed (Lark, a token, reading it): counts toward `Failed`.
    Meeting,
    /// Salesforce refused its write-back (a validation rule, a locked record): counts
    /// toward `Failed` with the meeting's attempts.
    WriteBack,
    /// It waits out `processing.in_doubt_delay` after an apply whose answer was lost
    /// (rule 13); waiting is no failed attempt.
    InDoubt,
    /// Only its calendar step failed: counted apart, never makes the booking `Failed`.
    Calendar,
}

impl RetryKind {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryKind::Meeting => "meeting",
            RetryKind::WriteBack => "write_back",
            RetryKind::InDoubt => "in_doubt",
            RetryKind::Calendar => "calendar",
        }
    }

    fn parse(s: &str) -> Option<RetryKind> {
        [
            RetryKind::Meeting,
            RetryKind::WriteBack,
            RetryKind::InDoubt,
            RetryKind::Calendar,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// True when attempts of `self` and `other` count together: the calendar's apart, the
    /// rest as the meeting's (they all stand between the booking and its link).
    pub fn counts_with(self, other: RetryKind) -> bool {
        (self == RetryKind::Calendar) == (other == RetryKind::Calendar)
    }
}

impl ToSql for RetryKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RetryKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        RetryKind::parse(text).ok_or_else(|| FromSqlError::Other(text.to_string().into()))
    }
}

/// One booking on the retry list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEntry {
    pub booking_id: BookingId,
    pub kind: RetryKind,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When to try again.
    pub next_at: DateTime<Utc>,
    /// Why the last attempt failed (shown on the booking if it ends `Failed`).
    pub last_reason: String,
}

/// Reserve applies for one booking whose answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubtApply {
    pub booking_id: BookingId,
    /// The trainer whose token applied (whose Lark may hold the meeting).
    pub trainer_id: TrainerId,
    /// Applies in doubt so far.
    pub applies: u32,
    /// When the last one was sent.
    pub last_at: DateTime<Utc>,
}

/// Gives the retry list of a store made by an earlier version its `kind` column, once;
/// those versions told the calendar's entries by the text their reason starts with, so
/// that text marks them here, the one time.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let present: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('booking_retries') WHERE name = 'kind'",
        [],
        |r| r.get(0),
    )?;
    if present == 0 {
        conn.execute_batch(
            "ALTER TABLE booking_retries ADD COLUMN kind TEXT NOT NULL DEFAULT 'meeting';
             UPDATE booking_retries SET kind = 'calendar'
               WHERE last_reason LIKE 'The meeting is ready, but it could not be put on the trainer''s Lark calendar: %';",
        )?;
    }
    Ok(())
}

impl Store {
    /// Records one more failed attempt for a booking, to be tried again at `next_at`;
    /// returns the attempts so far (this one included).
    pub fn record_failed_attempt(
        &self,
        booking: &BookingId,
        kind: RetryKind,
        next_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "INSERT INTO booking_retries (booking_id, kind, attempts, next_at, last_reason) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT(booking_id) DO UPDATE SET kind = excluded.kind, attempts = attempts + 1,
                   next_at = excluded.next_at, last_reason = excluded.last_reason
                 RETURNING attempts",
                params![booking, kind, millis(next_at), reason],
                |r| r.get(0),
            )
        })
    }

    /// Puts off a booking's next try to `next_at` without counting an attempt (an apply
    /// in doubt waits out its delay; a read that failed for everyone).
    pub fn defer_retry(
        &self,
        booking: &BookingId,
        kind: RetryKind,
        next_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO booking_retries (booking_id, kind, attempts, next_at, last_reason) VALUES (?1, ?2, 0, ?3, ?4)
                 ON CONFLICT(booking_id) DO UPDATE SET kind = excluded.kind, next_at = excluded.next_at,
                   last_reason = excluded.last_reason",
                params![booking, kind, millis(next_at), reason],
            )?;
            Ok(())
        })
    }

    /// A booking's retry entry.
    pub fn retry_entry(&self, booking: &BookingId) -> Result<Option<RetryEntry>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id, kind, attempts, next_at, last_reason FROM booking_retries WHERE booking_id = ?1",
                params![booking],
                row_to_retry,
            )
            .optional()
        })
    }

    /// Bookings whose next try is due at `now`, soonest first. A row that does not read
    /// (never written by this version) is dropped rather than blocking the list.
    pub fn due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RetryEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT booking_id, kind, attempts, next_at, last_reason FROM booking_retries
                 WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2",
            )?;
            let rows: Vec<(String, rusqlite::Result<RetryEntry>)> = stmt
                .query_map(params![millis(now), limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, row_to_retry(r)))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut due = Vec::with_capacity(rows.len());
            for (key, row) in rows {
                match row {
                    Ok(entry) => due.push(entry),
                    Err(_) => {
                        c.execute_cached(
                            "DELETE FROM booking_retries WHERE booking_id = ?1",
                            params![key],
                        )?;
                    }
                }
            }
            Ok(due)
        })
    }

    /// When the soonest retry is due, if any.
    pub fn next_retry_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|c| {
            c.query_row_cached("SELECT MIN(next_at) FROM booking_retries", [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.map(at_millis))
            })
        })
    }

    /// Takes a booking off the retry list (its work is done, or it is `Failed`).
    pub fn clear_retry(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM booking_retries WHERE booking_id = ?1",
                params![booking],
            )?;
            Ok(())
        })
    }

    /// Takes every one of `bookings` off the retry list, in one transaction (one commit for
    /// a whole batch instead of one per booking).
    pub fn clear_retries(&self, bookings: &[BookingId]) -> Result<(), StoreError> {
        if bookings.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for booking in bookings {
                tx.execute_cached(
                    "DELETE FROM booking_retries WHERE booking_id = ?1",
                    params![booking],
                )?;
            }
            tx.commit()
        })
    }

    /// [`Store::record_in_doubt_applies`] for one apply alone (the store's tests).
    #[cfg(test)]
    pub fn record_in_doubt_apply(
        &self,
        booking: &BookingId,
        trainer: &TrainerId,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let counts = self.record_in_doubt_applies(&[(booking, trainer)], now)?;
        Ok(counts.first().copied().unwrap_or_default())
    }

    /// Records applies about to be sent, one per `(booking, trainer)` (rule 23: before they
    /// leave), each counted as in doubt until its answer is recorded; returns each
    /// booking's applies in doubt so far, this one included, in the same order. After a
    /// crash the counts stand: the applies may have reached Lark.
    ///
    /// Durable when this returns ([`Store::durably`]): an intent lost to a power cut would
    /// let the restart apply again with nothing in doubt, a second meeting. One transaction
    /// and one fsync for the whole group, so applies that leave together share it
    /// (`bookings::intents`).
    pub fn record_in_doubt_applies(
        &self,
        applies: &[(&BookingId, &TrainerId)],
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>, StoreError> {
        self.durably(|c| {
            let tx = c.unchecked_transaction()?;
            let mut counts = Vec::with_capacity(applies.len());
            for (booking, trainer) in applies {
                counts.push(tx.query_row_cached(
                    "INSERT INTO in_doubt_applies (booking_id, trainer_id, applies, last_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT(booking_id) DO UPDATE SET applies = applies + 1, trainer_id = excluded.trainer_id,
                       last_at = excluded.last_at
                     RETURNING applies",
                    params![booking, trainer, millis(now)],
                    |r| r.get(0),
                )?);
            }
            tx.commit()?;
            Ok(counts)
        })
    }

    /// The apply last recorded for `booking` was answered with a definite refusal (it made
    /// nothing): it no longer counts as in doubt.
    pub fn settle_refused_apply(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "UPDATE in_doubt_applies SET applies = applies - 1 WHERE booking_id = ?1",
                params![booking],
            )?;
            c.execute_cached(
                "DELETE FROM in_doubt_applies WHERE booking_id = ?1 AND applies <= 0",
                params![booking],
            )?;
            Ok(())
        })
    }

    /// A booking's applies in doubt.
    pub fn in_doubt_apply(&self, booking: &BookingId) -> Result<Option<InDoubtApply>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id, trainer_id, applies, last_at FROM in_doubt_applies WHERE booking_id = ?1",
                params![booking],
                |r| {
                    Ok(InDoubtApply {
                        booking_id: r.get(0)?,
                        trainer_id: r.get(1)?,
                        applies: r.get(2)?,
                        last_at: at_millis(r.get(3)?),
                    })
                },
            )
            .optional()
        })
    }

    /// Forgets applies in doubt last sent before `before`: any meeting they made has
    /// lapsed in Lark by now. Returns how many bookings were forgotten.
    pub fn prune_in_doubt(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM in_doubt_applies WHERE last_at < ?1",
                params![millis(before)],
            )
        })
    }

    /// Forgets a booking's applies in doubt (an apply was confirmed, or the booking no
    /// longer needs a meeting).
    pub fn clear_in_doubt(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| delete_in_doubt(c, booking))
    }
}

pub(super) fn delete_in_doubt(c: &Connection, booking: &BookingId) -> rusqlite::Result<()> {
    c.execute_cached(
        "DELETE FROM in_doubt_applies WHERE booking_id = ?1",
        params![booking],
    )?;
    Ok(())
}

fn row_to_retry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetryEntry> {
    Ok(RetryEntry {
        booking_id: r.get(0)?,
        kind: r.get(1)?,
        attempts: r.get(2)?,
        next_at: at_millis(r.get(3)?),
        last_reason: r.get(4)?,
    })
}

#[cfg(test)]
mod tests;
