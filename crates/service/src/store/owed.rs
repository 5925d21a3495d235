//! Deletions owed (design §3 rule 25): a reservation or calendar event that had to go
//! (cancel, delete, not remote, trainer change) while its host's token was not available.
//! Kept until the host reconnects and the deletion is made, or until the meeting's end has
//! passed (the session is over; nothing is left to protect). Each row says whose token
//! deletes it and whether admins were told.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::cached::Cached;
use super::values::{at_secs, secs};
use super::{Store, StoreError};
use crate::ids::{BookingId, TrainerId};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS owed_deletions (
    item_id     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    booking_id  TEXT NOT NULL,
    calendar_id TEXT,
    trainer_id  TEXT NOT NULL,
    ends_at     INTEGER NOT NULL,
    owed_since  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS owed_deletions_trainer ON owed_deletions (trainer_id);
"#;

/// What is owed a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwedItem {
    /// A VC reservation (its reserve id).
    Reservation { reservation_id: String },
    /// A calendar event on the host's calendar.
    Event {
        calendar_id: String,
        event_id: String,
    },
}

impl OwedItem {
    fn kind(&self) -> &'static str {
        match self {
            OwedItem::Reservation { .. } => "reservation",
            OwedItem::Event { .. } => "event",
        }
    }

    /// The reserve id or the event id: the row's key.
    pub fn id(&self) -> &str {
        match self {
            OwedItem::Reservation { reservation_id } => reservation_id,
            OwedItem::Event { event_id, .. } => event_id,
        }
    }
}

/// One deletion owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedDeletion {
    pub item: OwedItem,
    /// The booking it belonged to.
    pub booking_id: BookingId,
    /// The host, whose user token can delete it.
    pub trainer_id: TrainerId,
    /// When the meeting ends: past it the deletion no longer matters.
    pub ends_at: DateTime<Utc>,
}

impl Store {
    /// Records a deletion owed; true when it is new (the one time admins hear of it).
    pub fn owe_deletion(&self, d: &OwedDeletion, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let calendar_id = match &d.item {
            OwedItem::Event { calendar_id, .. } => Some(calendar_id.as_str()),
            OwedItem::Reservation { .. } => None,
        };
        self.with(|c| {
            let added = c.execute_cached(
                "INSERT INTO owed_deletions (item_id, kind, booking_id, calendar_id, trainer_id, ends_at, owed_since)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(item_id) DO NOTHING",
                params![
                    d.item.id(),
                    d.item.kind(),
                    d.booking_id,
                    calendar_id,
                    d.trainer_id,
                    secs(d.ends_at),
                    secs(now)
                ],
            )?;
            Ok(added == 1)
        })
    }

    /// The deletions owed by one host, oldest first.
    pub fn owed_deletions_of(&self, trainer: &TrainerId) -> Result<Vec<OwedDeletion>, StoreError> {
        self.owed(Some(trainer))
    }

    /// Every deletion owed, oldest first.
    pub fn owed_deletions(&self) -> Result<Vec<OwedDeletion>, StoreError> {
        self.owed(None)
    }

    fn owed(&self, trainer: Option<&TrainerId>) -> Result<Vec<OwedDeletion>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT item_id, kind, booking_id, calendar_id, trainer_id, ends_at FROM owed_deletions
                 WHERE ?1 IS NULL OR trainer_id = ?1 ORDER BY owed_since, item_id",
            )?;
            let rows = stmt.query_map(params![trainer], |r| {
                let id: String = r.get(0)?;
                let item = match (r.get::<_, String>(1)?.as_str(), r.get::<_, Option<String>>(3)?) {
                    ("event", Some(calendar_id)) => OwedItem::Event {
                        calendar_id,
                        event_id: id,
                    },
                    _ => OwedItem::Reservation { reservation_id: id },
                };
                Ok(OwedDeletion {
                    item,
                    booking_id: r.get(2)?,
                    trainer_id: r.get(4)?,
                    ends_at: at_secs(r.get(5)?),
                })
            })?;
            rows.collect()
        })
    }

    /// The deletion was made (or Lark had it gone already).
    pub fn settle_owed(&self, item: &OwedItem) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM owed_deletions WHERE item_id = ?1",
                params![item.id()],
            )?;
            Ok(())
        })
    }

    /// Forgets deletions whose meeting ended before `now`; returns how many.
    pub fn prune_owed(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM owed_deletions WHERE ends_at < ?1",
                params![secs(now)],
            )
        })
    }
}

#[cfg(test)]
mod tests;
