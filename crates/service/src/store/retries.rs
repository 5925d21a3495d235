//! The pipeline's durable per-booking lists (design §3 rules 13 and 14): bookings whose
//! work failed and waits for its own next try, and reserve applies whose answer was lost.
//! Both survive restarts, so a restart resumes where the last run stopped.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS booking_retries (
    booking_id  TEXT PRIMARY KEY,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    last_reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS booking_retries_next_at ON booking_retries (next_at);
CREATE TABLE IF NOT EXISTS in_doubt_applies (
    booking_id TEXT PRIMARY KEY,
    trainer_id TEXT NOT NULL,
    applies    INTEGER NOT NULL,
    last_at    INTEGER NOT NULL
);
"#;

/// One booking on the retry list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEntry {
    pub booking_id: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When to try again (unix seconds).
    pub next_at: i64,
    /// Why the last attempt failed (shown on the booking if it ends `Failed`).
    pub last_reason: String,
}

/// Reserve applies for one booking whose answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubtApply {
    pub booking_id: String,
    /// The trainer whose token applied (whose Lark may hold the meeting).
    pub trainer_id: String,
    /// Applies in doubt so far.
    pub applies: u32,
    /// When the last one was sent (unix seconds).
    pub last_at: i64,
}

impl Store {
    /// Records one more failed attempt for a booking, to be tried again at `next_at`;
    /// returns the attempts so far (this one included).
    pub fn record_failed_attempt(
        &self,
        booking_id: &str,
        next_at: i64,
        reason: &str,
    ) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO booking_retries (booking_id, attempts, next_at, last_reason) VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT(booking_id) DO UPDATE SET attempts = attempts + 1, next_at = excluded.next_at,
                   last_reason = excluded.last_reason
                 RETURNING attempts",
                params![booking_id, next_at, reason],
                |r| r.get(0),
            )
        })
    }

    /// Puts off a booking's next try to `next_at` without counting an attempt (an apply
    /// in doubt waits out its delay).
    pub fn defer_retry(
        &self,
        booking_id: &str,
        next_at: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO booking_retries (booking_id, attempts, next_at, last_reason) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT(booking_id) DO UPDATE SET next_at = excluded.next_at, last_reason = excluded.last_reason",
                params![booking_id, next_at, reason],
            )?;
            Ok(())
        })
    }

    /// A booking's retry entry.
    pub fn retry_entry(&self, booking_id: &str) -> Result<Option<RetryEntry>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT booking_id, attempts, next_at, last_reason FROM booking_retries WHERE booking_id = ?1",
                params![booking_id],
                row_to_retry,
            )
            .optional()
        })
    }

    /// Bookings whose next try is due at `now` (unix seconds), soonest first.
    pub fn due_retries(&self, now: i64, limit: usize) -> Result<Vec<RetryEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT booking_id, attempts, next_at, last_reason FROM booking_retries
                 WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], row_to_retry)?;
            rows.collect()
        })
    }

    /// When the soonest retry is due, if any.
    pub fn next_retry_at(&self) -> Result<Option<i64>, StoreError> {
        self.with(|c| c.query_row("SELECT MIN(next_at) FROM booking_retries", [], |r| r.get(0)))
    }

    /// Takes a booking off the retry list (its work is done, or it is `Failed`).
    pub fn clear_retry(&self, booking_id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM booking_retries WHERE booking_id = ?1",
                params![booking_id],
            )?;
            Ok(())
        })
    }

    /// Journals an apply whose answer was lost, before anything else is tried; returns
    /// the applies in doubt for this booking so far.
    pub fn record_in_doubt_apply(
        &self,
        booking_id: &str,
        trainer_id: &str,
        now: i64,
    ) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO in_doubt_applies (booking_id, trainer_id, applies, last_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(booking_id) DO UPDATE SET applies = applies + 1, trainer_id = excluded.trainer_id,
                   last_at = excluded.last_at
                 RETURNING applies",
                params![booking_id, trainer_id, now],
                |r| r.get(0),
            )
        })
    }

    /// A booking's applies in doubt.
    pub fn in_doubt_apply(&self, booking_id: &str) -> Result<Option<InDoubtApply>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT booking_id, trainer_id, applies, last_at FROM in_doubt_applies WHERE booking_id = ?1",
                params![booking_id],
                |r| {
                    Ok(InDoubtApply {
                        booking_id: r.get(0)?,
                        trainer_id: r.get(1)?,
                        applies: r.get(2)?,
                        last_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Forgets applies in doubt last sent before `before` (unix milliseconds): any meeting
    /// they made has lapsed in Lark by now. Returns how many bookings were forgotten.
    pub fn prune_in_doubt(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM in_doubt_applies WHERE last_at < ?1",
                params![before],
            )
        })
    }

    /// Forgets a booking's applies in doubt (an apply was confirmed, or the booking no
    /// longer needs a meeting).
    pub fn clear_in_doubt(&self, booking_id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM in_doubt_applies WHERE booking_id = ?1",
                params![booking_id],
            )?;
            Ok(())
        })
    }
}

fn row_to_retry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetryEntry> {
    Ok(RetryEntry {
        booking_id: r.get(0)?,
        attempts: r.get(1)?,
        next_at: r.get(2)?,
        last_reason: r.get(3)?,
    })
}

#[cfg(test)]
mod tests;
