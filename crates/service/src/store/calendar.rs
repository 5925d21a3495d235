//! The calendar's durable state (design §3 rule 20): per booking, the event journal (which
//! event on whose calendar belongs to which reservation, written the moment Lark answers);
//! per trainer, the primary calendar id (a cache, dropped with the trainer's tokens and
//! at every connect), the scopes their consent granted, whether they are known to lack the
//! calendar scopes, and whether their one calendar reconnect reminder went out.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::cached::Cached;
use super::values::{at_secs, secs};
use super::{Store, StoreError};
use crate::ids::{BookingId, TrainerId};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS calendar_events (
    booking_id     TEXT PRIMARY KEY,
    trainer_id     TEXT NOT NULL,
    calendar_id    TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    start_time     INTEGER NOT NULL,
    end_time       INTEGER NOT NULL,
    guest          TEXT,
    content        TEXT NOT NULL DEFAULT '',
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calendar_deleted (
    booking_id     TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    event_id       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trainer_calendars (
    trainer_id        TEXT PRIMARY KEY,
    calendar_id       TEXT,
    granted_scope     TEXT,
    lacks_scope       INTEGER NOT NULL DEFAULT 0,
    scope_reminded_at INTEGER
);
"#;

/// The event journal's row for one booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEventEntry {
    pub booking_id: BookingId,
    /// The host whose calendar holds the event (whose token can move or delete it).
    pub trainer_id: TrainerId,
    pub calendar_id: String,
    pub event_id: String,
    /// The reservation whose link the event carries.
    pub reservation_id: String,
    /// Start and end as last set in Lark (whole seconds, as Lark keeps them).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The external guest invited so far (None until the invitation went through).
    pub guest: Option<String>,
    /// A digest of the summary and description as last set in Lark
    /// (`bookings::calendar::WantedEvent::content`); empty when unknown.
    pub content: String,
}

/// What the store knows of one trainer's calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainerCalendar {
    /// Their primary calendar's id, once looked up.
    pub calendar_id: Option<String>,
    /// The `scope` their last grant carried (None when Lark did not say, or before this
    /// was recorded).
    pub granted_scope: Option<String>,
    /// Their token is known to lack the calendar scopes (from the grant, or Lark refused a
    /// calendar call for a missing scope).
    pub lacks_scope: bool,
    /// Their one calendar reconnect reminder went out.
    pub scope_reminded: bool,
}

impl Store {
    /// Records the event Lark just created or moved for a booking.
    pub fn record_calendar_event(
        &self,
        e: &CalendarEventEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO calendar_events (booking_id, trainer_id, calendar_id, event_id, reservation_id, start_time, end_time, guest, content, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(booking_id) DO UPDATE SET trainer_id = excluded.trainer_id, calendar_id = excluded.calendar_id,
                   event_id = excluded.event_id, reservation_id = excluded.reservation_id, start_time = excluded.start_time,
                   end_time = excluded.end_time, guest = excluded.guest, content = excluded.content, updated_at = excluded.updated_at",
                params![e.booking_id, e.trainer_id, e.calendar_id, e.event_id, e.reservation_id, secs(e.start), secs(e.end), e.guest, e.content, secs(now)],
            )?;
            Ok(())
        })
    }

    /// The journalled event of a booking.
    pub fn calendar_event(
        &self,
        booking: &BookingId,
    ) -> Result<Option<CalendarEventEntry>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id, trainer_id, calendar_id, event_id, reservation_id, start_time, end_time, guest, content
                 FROM calendar_events WHERE booking_id = ?1",
                params![booking],
                |r| {
                    Ok(CalendarEventEntry {
                        booking_id: r.get(0)?,
                        trainer_id: r.get(1)?,
                        calendar_id: r.get(2)?,
                        event_id: r.get(3)?,
                        reservation_id: r.get(4)?,
                        start: at_secs(r.get(5)?),
                        end: at_secs(r.get(6)?),
                        guest: r.get(7)?,
                        content: r.get(8)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Forgets a booking's event (it was deleted in Lark, or is gone).
    pub fn forget_calendar_event(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM calendar_events WHERE booking_id = ?1",
                params![booking],
            )?;
            Ok(())
        })
    }

    /// Remembers the event just deleted for a booking's reservation: an idempotency key
    /// made from the same booking and reservation would give that deleted event back.
    pub fn record_deleted_event(
        &self,
        booking: &BookingId,
        reservation_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO calendar_deleted (booking_id, reservation_id, event_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(booking_id) DO UPDATE SET reservation_id = excluded.reservation_id,
                   event_id = excluded.event_id",
                params![booking, reservation_id, event_id],
            )?;
            Ok(())
        })
    }

    /// The last event deleted for this booking's reservation, if any.
    pub fn deleted_event(
        &self,
        booking: &BookingId,
        reservation_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT event_id FROM calendar_deleted WHERE booking_id = ?1 AND reservation_id = ?2",
                params![booking, reservation_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// What is known of a trainer's calendar (all unknown when nothing is).
    pub fn trainer_calendar(&self, trainer: &TrainerId) -> Result<TrainerCalendar, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT calendar_id, granted_scope, lacks_scope, scope_reminded_at FROM trainer_calendars WHERE trainer_id = ?1",
                params![trainer],
                |r| {
                    Ok(TrainerCalendar {
                        calendar_id: r.get(0)?,
                        granted_scope: r.get(1)?,
                        lacks_scope: r.get::<_, i64>(2)? != 0,
                        scope_reminded: r.get::<_, Option<i64>>(3)?.is_some(),
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    /// Caches a trainer's primary calendar id.
    pub fn save_primary_calendar(
        &self,
        trainer: &TrainerId,
        calendar_id: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO trainer_calendars (trainer_id, calendar_id) VALUES (?1, ?2)
                 ON CONFLICT(trainer_id) DO UPDATE SET calendar_id = excluded.calendar_id",
                params![trainer, calendar_id],
            )?;
            Ok(())
        })
    }

    /// Drops a cached primary calendar id Lark no longer knows.
    pub fn forget_primary_calendar(&self, trainer: &TrainerId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "UPDATE trainer_calendars SET calendar_id = NULL WHERE trainer_id = ?1",
                params![trainer],
            )?;
            Ok(())
        })
    }

    /// A trainer (re)connected: their grant's scope, whether it lacks the calendar scopes,
    /// and a fresh start (the calendar is looked up again, a new reminder may go out).
    pub fn record_connect_scope(
        &self,
        trainer: &TrainerId,
        scope: Option<&str>,
        lacks_scope: bool,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO trainer_calendars (trainer_id, calendar_id, granted_scope, lacks_scope, scope_reminded_at)
                 VALUES (?1, NULL, ?2, ?3, NULL)
                 ON CONFLICT(trainer_id) DO UPDATE SET calendar_id = NULL, granted_scope = excluded.granted_scope,
                   lacks_scope = excluded.lacks_scope, scope_reminded_at = NULL",
                params![trainer, scope, lacks_scope as i64],
            )?;
            Ok(())
        })
    }

    /// A refresh answered with a `scope`: keep it (the reminder state stays).
    pub fn record_refreshed_scope(
        &self,
        trainer: &TrainerId,
        scope: &str,
        lacks_scope: bool,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO trainer_calendars (trainer_id, granted_scope, lacks_scope) VALUES (?1, ?2, ?3)
                 ON CONFLICT(trainer_id) DO UPDATE SET granted_scope = excluded.granted_scope,
                   lacks_scope = excluded.lacks_scope",
                params![trainer, scope, lacks_scope as i64],
            )?;
            Ok(())
        })
    }

    /// Lark refused a calendar call of this trainer for a missing scope.
    pub fn mark_lacks_calendar_scope(&self, trainer: &TrainerId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO trainer_calendars (trainer_id, lacks_scope) VALUES (?1, 1)
                 ON CONFLICT(trainer_id) DO UPDATE SET lacks_scope = 1",
                params![trainer],
            )?;
            Ok(())
        })
    }

    /// Claims the trainer's one calendar reconnect reminder: true for the one caller that
    /// may send it (concurrent bookings of one trainer race here, not in Lark).
    pub fn claim_scope_reminder(
        &self,
        trainer: &TrainerId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let claimed = c.execute_cached(
                "INSERT INTO trainer_calendars (trainer_id, scope_reminded_at) VALUES (?1, ?2)
                 ON CONFLICT(trainer_id) DO UPDATE SET scope_reminded_at = excluded.scope_reminded_at
                 WHERE scope_reminded_at IS NULL",
                params![trainer, secs(now)],
            )?;
            Ok(claimed == 1)
        })
    }

    /// Gives the claim back (the reminder could not be sent; the next booking tries).
    pub fn release_scope_reminder(&self, trainer: &TrainerId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "UPDATE trainer_calendars SET scope_reminded_at = NULL WHERE trainer_id = ?1",
                params![trainer],
            )?;
            Ok(())
        })
    }

    /// Forgets what is known of a trainer's calendar (their tokens were forgotten).
    pub fn forget_trainer_calendar(&self, trainer: &TrainerId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM trainer_calendars WHERE trainer_id = ?1",
                params![trainer],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
