//! What app-hosted meetings (design §3 rule 21) remember: the Lark open_id found for a
//! trainer's email (`contact/v3/users/batch_get_id`), with the time it was looked up so
//! answers expire, and which bookings' reservations the app made with its tenant token
//! (so their updates and deletes use the tenant token too, whoever connects later).
//! Kept apart from the reservation journal, which stays as it is: the journal names the
//! trainer as host for every reservation, app-hosted or not.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::cached::Cached;
use super::values::{at_secs, secs};
use super::{Store, StoreError};
use crate::ids::{BookingId, TrainerId};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS lark_contacts (
    email      TEXT PRIMARY KEY,
    open_id    TEXT,
    checked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS app_hosted (
    booking_id     TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    owner_open_id  TEXT NOT NULL,
    trainer_id     TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
"#;

/// A remembered answer of the email → open_id lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedContact {
    /// None: Lark knew no (active) user by this email when asked.
    pub open_id: Option<String>,
    /// When Lark was asked (whole seconds).
    pub checked_at: DateTime<Utc>,
}

/// A reservation the app applied with its tenant token, owned by `owner_open_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHostedEntry {
    pub booking_id: BookingId,
    pub reservation_id: String,
    /// The trainer's open_id, named as `owner_id` in apply, update and delete.
    pub owner_open_id: String,
    /// The trainer it was made for.
    pub trainer_id: TrainerId,
    /// When it was made (whole seconds).
    pub created_at: DateTime<Utc>,
}

/// Emails are matched case-insensitively, as Lark does.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Store {
    /// The remembered lookup for `email`, whatever its age (the caller decides what is
    /// fresh enough).
    pub fn cached_contact(&self, email: &str) -> Result<Option<CachedContact>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT open_id, checked_at FROM lark_contacts WHERE email = ?1",
                params![email_key(email)],
                |r| {
                    Ok(CachedContact {
                        open_id: r.get(0)?,
                        checked_at: at_secs(r.get(1)?),
                    })
                },
            )
            .optional()
        })
    }

    /// Remembers what Lark answered for `email` (None: no such user) at `now`.
    pub fn remember_contact(
        &self,
        email: &str,
        open_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO lark_contacts (email, open_id, checked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(email) DO UPDATE SET open_id = excluded.open_id, checked_at = excluded.checked_at",
                params![email_key(email), open_id, secs(now)],
            )?;
            Ok(())
        })
    }

    /// Forgets lookups made before `before`; returns how many.
    pub fn prune_contacts(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM lark_contacts WHERE checked_at < ?1",
                params![secs(before)],
            )
        })
    }

    /// Records that the app made this booking's reservation with its tenant token.
    pub fn record_app_hosted(&self, e: &AppHostedEntry) -> Result<(), StoreError> {
        self.with(|c| write_app_hosted(c, e))
    }

    /// The booking's app-hosted reservation record, if the app made one for it. The
    /// caller compares `reservation_id` with the reservation the booking has now: a record
    /// of an older one does not count.
    pub fn app_hosted(&self, booking: &BookingId) -> Result<Option<AppHostedEntry>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id, reservation_id, owner_open_id, trainer_id, created_at FROM app_hosted
                 WHERE booking_id = ?1",
                params![booking],
                |r| {
                    Ok(AppHostedEntry {
                        booking_id: r.get(0)?,
                        reservation_id: r.get(1)?,
                        owner_open_id: r.get(2)?,
                        trainer_id: r.get(3)?,
                        created_at: at_secs(r.get(4)?),
                    })
                },
            )
            .optional()
        })
    }

    /// Forgets app-hosted records made before `before` whose booking no
    /// longer has a journalled reservation (ended and pruned from the journal); returns how
    /// many. A record is written just before its journal entry, so a fresh one is kept.
    pub fn prune_app_hosted(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM app_hosted WHERE created_at < ?1
                   AND booking_id NOT IN (SELECT booking_id FROM reservations)",
                params![secs(before)],
            )
        })
    }

    /// Forgets that the booking's reservation was app-hosted (it was deleted, or replaced).
    pub fn forget_app_hosted(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM app_hosted WHERE booking_id = ?1",
                params![booking],
            )?;
            Ok(())
        })
    }
}

pub(super) fn write_app_hosted(c: &Connection, e: &AppHostedEntry) -> rusqlite::Result<()> {
    c.execute_cached(
        "INSERT INTO app_hosted (booking_id, reservation_id, owner_open_id, trainer_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(booking_id) DO UPDATE SET reservation_id = excluded.reservation_id,
           owner_open_id = excluded.owner_open_id, trainer_id = excluded.trainer_id,
           created_at = excluded.created_at",
        params![
            e.booking_id,
            e.reservation_id,
            e.owner_open_id,
            e.trainer_id,
            secs(e.created_at)
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
