//! Whether the store can be written (design §3 rule 23). Any operation whose write the
//! disk refuses — full, an I/O error, a read-only file — marks the store unwritable from
//! that moment; only a successful [`Store::probe`] write marks it writable again (reads
//! keep working on a full disk, so they prove nothing). The pipeline reads this to pause
//! everything that would change Lark or Salesforce, and to give up after a while.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::ErrorCode;

use super::cached::Cached;
use super::values::secs;
use super::{Store, StoreError};

/// The probe's table: one row, rewritten by every probe.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS store_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
"#;

/// Since when the store has been unwritable, and why.
#[derive(Debug, Default)]
pub(super) struct Health {
    failing: Mutex<Option<Unwritable>>,
}

/// The store could not be written from `since`, the first refusal saying `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    pub since: DateTime<Utc>,
    pub reason: String,
    /// Writes refused since then.
    pub refusals: u64,
}

/// True for an error that says the store cannot be written (as opposed to a bad query or
/// a missing row): `SQLITE_FULL`, `SQLITE_IOERR*`, `SQLITE_READONLY*`, `SQLITE_CANTOPEN`.
pub(super) fn cannot_write(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
        )
    )
}

impl Health {
    pub(super) fn failed(&self, e: &rusqlite::Error) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match failing.as_mut() {
            Some(f) => f.refusals += 1,
            None => {
                *failing = Some(Unwritable {
                    since: Utc::now(),
                    reason: e.to_string(),
                    refusals: 1,
                })
            }
        }
    }
}

impl Store {
    /// Since when the store cannot be written, when it cannot.
    pub fn unwritable(&self) -> Option<Unwritable> {
        self.health
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tries one small write; on success the store counts as writable again.
    pub fn probe(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO store_probe (id, probed_at) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET probed_at = excluded.probed_at",
                rusqlite::params![secs(Utc::now())],
            )?;
            Ok(())
        })?;
        *self
            .health
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}
