//! The embedded SQLite store: everything the service must remember across restarts that
//! does not belong in Salesforce — replay checkpoints, OAuth nonces (single use) and PKCE
//! verifiers, the token journal (rotated tokens land here before anywhere else), the
//! reservation journal (idempotency for Lark applies), reminder timestamps, the
//! pipeline's per-booking retry list and in-doubt applies (`retries`), and the Lark events
//! and each booking's attendance (`attendance`).
//!
//! It stores secrets only encrypted (the callers pass vault ciphertext) and never talks to
//! the network. Operations are short and synchronous; a single connection behind a mutex
//! is plenty for this workload, and WAL keeps a crash from losing committed rows.
//!
//! The store file is created `0600` (SQLite gives its `-wal` file the same mode; the
//! connection holds its locks, so there is no `-shm` file, though older versions made
//! one), and every open tightens the three to `0600` where an older version left them
//! wider (rule 27); [`lock`] keeps a second process off it (design §3 rule 16).

pub mod lock;

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::ids::{BookingId, ReplayId, TrainerId};
use cached::Cached;
use values::{at_secs, secs};

mod alerts;
mod attendance;
mod backup;
mod cached;
mod calendar;
mod contacts;
mod health;
mod owed;
mod retries;
mod schema;
mod values;
pub use attendance::{AttendanceEntry, EventRecorded, NewLarkEvent, Owed, StoredLarkEvent};
pub use calendar::{CalendarEventEntry, TrainerCalendar};
pub use contacts::{AppHostedEntry, CachedContact};
pub use health::Unwritable;
pub use owed::{OwedDeletion, OwedItem};
pub use retries::{InDoubtApply, RetryEntry, RetryKind};

/// A store failure. SQLite errors never contain our secrets (we only bind ciphertext).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: cannot create directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("store: cannot create {path} or make it private (0600): {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("store: cannot back up to {path}: {reason}")]
    Backup { path: String, reason: String },
    /// A write the store refused earlier (the disk is full, say); the first error is in
    /// the log and in `Store::unwritable`.
    #[error("store: it cannot be written")]
    Unwritable,
    /// The error of one commit that several callers shared (applies recorded together,
    /// `bookings::intents`): each of them is told the same error.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    health: Arc<health::Health>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// A PKCE verifier and trainer recorded when an OAuth flow started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuth {
    pub trainer_id: TrainerId,
    pub verifier_enc: String,
    pub expires_at: DateTime<Utc>,
}

/// Connect flows started and not yet expired, across all trainers; past it a start is
/// refused (nothing written, nothing evicted) until some expire (design §3 rule 27).
/// Far more than trainers ever connect at once (it is ten minutes of the default
/// per-address limit, 60 starts a minute, from 17 addresses).
pub const MAX_PENDING_AUTHS: i64 = 10_000;

/// Outcome of recording a started OAuth flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingSaved {
    Saved,
    /// [`MAX_PENDING_AUTHS`] flows are open: nothing was written.
    Full,
}

/// Where a channel's work is done up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Where a resubscription resumes (right after the last event whose work is done).
    pub resume: ReplayId,
    /// When it was saved (whole seconds).
    pub saved_at: DateTime<Utc>,
}

/// Outcome of consuming an OAuth nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceUse {
    /// First use: here is what the start recorded.
    Fresh(PendingAuth),
    /// Seen before: the state was replayed.
    AlreadyUsed,
    /// Never issued by this service (or pruned long ago).
    Unknown,
}

/// Rotated tokens for one trainer, encrypted, as journalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalledTokens {
    pub trainer_id: TrainerId,
    pub access_enc: String,
    pub refresh_enc: Option<String>,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// When they were refreshed (kept in whole seconds: it also names this rotation).
    pub refreshed_at: DateTime<Utc>,
    /// True once Salesforce holds these tokens.
    pub confirmed: bool,
}

/// The reservation journal's row for one booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationEntry {
    pub booking_id: BookingId,
    pub reservation_id: String,
    /// The host: whose token changes or deletes it.
    pub trainer_id: TrainerId,
    pub url: String,
    /// The end time Lark holds (whole seconds, as Lark keeps it).
    pub end_time: DateTime<Utc>,
    /// The meeting topic as last set in Lark; None when not journalled (entries written
    /// before topics were kept).
    pub topic: Option<String>,
    /// The reservation's nine-digit meeting number (from the apply's or an update's
    /// answer): how Lark's meeting events name the meeting (rule 29). None for entries
    /// written before it was kept, until their next update.
    pub meeting_no: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // Created here first so that it is private from its first byte; SQLite opens the
        // existing file and derives its journal files' mode from it. Files an older
        // version left `0644` are tightened before SQLite reads them, and again once it
        // has opened (or created) its `-wal` (rule 27).
        lock::private_file(path).map_err(|source| StoreError::File {
            path: path.display().to_string(),
            source,
        })?;
        make_journal_files_private(path)?;
        let conn = Connection::open(path)?;
        let store = Self::init(conn)?;
        make_journal_files_private(path)?;
        Ok(store)
    }

    /// An in-memory store (unit tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        // One process owns the store ([`lock`]) and it holds one connection, so SQLite's
        // own file locks guard against nobody: `EXCLUSIVE` takes them once and keeps
        // them, and, set before the first WAL access, keeps the WAL index in the heap
        // instead of a `-shm` file. With the default every transaction took and dropped
        // its locks with `fcntl` — 44 calls per booking in the benchmark's burst, about
        // 6 % of the service's CPU (measured: README "Benchmark").
        // https://www.sqlite.org/pragma.html#pragma_locking_mode, https://www.sqlite.org/wal.html#noshm
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(cached::STATEMENT_CACHE);
        schema::apply(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            health: Arc::default(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| {
            // A write the disk refused (full, I/O error, read-only): the store cannot
            // record, so nothing that would change Lark or Salesforce may go on (rule 23).
            if health::cannot_write(&e) {
                self.health.failed(&e);
            }
            StoreError::Sqlite(e)
        })
    }

    /// [`Store::with`] for a commit on disk when this returns (`synchronous = FULL` for it
    /// alone; WAL's `NORMAL` survives a kill, not a power cut): rotated tokens, an apply's
    /// intent, a Lark event about to be acknowledged.
    fn durably<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with(|c| {
            c.pragma_update(None, "synchronous", "FULL")?;
            let done = f(c);
            c.pragma_update(None, "synchronous", "NORMAL")?;
            done
        })
    }

    // --- OAuth -------------------------------------------------------------------------

    /// Records a started OAuth flow under its own nonce. Bounded (rules 18 and 27):
    /// expired flows are purged first (an expired state is refused before its nonce is
    /// looked up, so nothing is lost), and with [`MAX_PENDING_AUTHS`] open in all nothing
    /// is written. No open flow is ever dropped to make room: a stranger's start must not
    /// break a trainer's connect in progress.
    pub fn save_pending_auth(
        &self,
        nonce: &str,
        pending: &PendingAuth,
        now: DateTime<Utc>,
    ) -> Result<PendingSaved, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM oauth_pending WHERE expires_at < ?1",
                params![secs(now)],
            )?;
            let open: i64 =
                c.query_row_cached("SELECT COUNT(*) FROM oauth_pending", [], |r| r.get(0))?;
            if open >= MAX_PENDING_AUTHS {
                return Ok(PendingSaved::Full);
            }
            c.execute_cached(
                "INSERT INTO oauth_pending (nonce, trainer_id, verifier_enc, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![nonce, pending.trainer_id, pending.verifier_enc, secs(pending.expires_at)],
            )?;
            Ok(PendingSaved::Saved)
        })
    }

    /// Forgets the open flow recorded under `nonce`, if it was never finished: the browser
    /// that holds it (its cookie is the nonce) started over, and its new cookie replaces
    /// the old one, so that flow can no longer finish. A finished flow stays, so that its
    /// replay is still told apart from a forgery.
    pub fn forget_pending_auth(&self, nonce: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM oauth_pending WHERE nonce = ?1 AND consumed_at IS NULL",
                params![nonce],
            )?;
            Ok(())
        })
    }

    /// Open connect flows (started, not yet finished, not expired).
    pub fn pending_auths(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT COUNT(*) FROM oauth_pending WHERE expires_at >= ?1 AND consumed_at IS NULL",
                params![secs(now)],
                |r| r.get(0),
            )
        })
    }

    /// Marks a nonce used, atomically; a second call for the same nonce says `AlreadyUsed`.
    pub fn consume_nonce(&self, nonce: &str, now: DateTime<Utc>) -> Result<NonceUse, StoreError> {
        self.with(|c| {
            let updated = c.execute_cached(
                "UPDATE oauth_pending SET consumed_at = ?2 WHERE nonce = ?1 AND consumed_at IS NULL",
                params![nonce, secs(now)],
            )?;
            let row = c
                .query_row_cached(
                    "SELECT trainer_id, verifier_enc, expires_at FROM oauth_pending WHERE nonce = ?1",
                    params![nonce],
                    |r| {
                        Ok(PendingAuth {
                            trainer_id: r.get(0)?,
                            verifier_enc: r.get(1)?,
                            expires_at: at_secs(r.get(2)?),
                        })
                    },
                )
                .optional()?;
            Ok(match (updated, row) {
                (1, Some(p)) => NonceUse::Fresh(p),
                (_, Some(_)) => NonceUse::AlreadyUsed,
                (_, None) => NonceUse::Unknown,
            })
        })
    }

    // --- Checkpoints -------------------------------------------------------------------

    /// Where a channel's work is done up to, and when that was saved.
    pub fn checkpoint(&self, channel: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT replay_id, updated_at FROM checkpoints WHERE channel = ?1",
                params![channel],
                |r| {
                    Ok(Checkpoint {
                        resume: ReplayId::from_wire(r.get(0)?),
                        saved_at: at_secs(r.get(1)?),
                    })
                },
            )
            .optional()
        })
    }

    /// Saves a channel's checkpoint: a resubscription resumes from `resume`.
    pub fn save_checkpoint(
        &self,
        channel: &str,
        resume: ReplayId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO checkpoints (channel, replay_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(channel) DO UPDATE SET replay_id = excluded.replay_id, updated_at = excluded.updated_at",
                params![channel, resume.wire(), secs(now)],
            )?;
            Ok(())
        })
    }

    // --- Token journal -----------------------------------------------------------------

    /// Journals rotated tokens (unconfirmed) before anything else happens with them.
    /// The write is durable when this returns: rotated refresh tokens are the only copy
    /// until Salesforce has them (design §3 rule 16), so this one commit is fsynced
    /// ([`Store::durably`]).
    pub fn journal_tokens(&self, t: &JournalledTokens) -> Result<(), StoreError> {
        self.durably(|c| {
            c.execute_cached(
                "INSERT INTO token_journal (trainer_id, access_enc, refresh_enc, access_expires_at, refresh_expires_at, refreshed_at, confirmed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(trainer_id) DO UPDATE SET access_enc = excluded.access_enc, refresh_enc = excluded.refresh_enc,
                   access_expires_at = excluded.access_expires_at, refresh_expires_at = excluded.refresh_expires_at,
                   refreshed_at = excluded.refreshed_at, confirmed = excluded.confirmed",
                params![
                    t.trainer_id,
                    t.access_enc,
                    t.refresh_enc,
                    secs(t.access_expires_at),
                    t.refresh_expires_at.map(secs),
                    secs(t.refreshed_at),
                    t.confirmed as i64
                ],
            )
            .map(|_| ())
        })
    }

    /// Marks a trainer's journalled tokens as held by Salesforce, if they are still the
    /// ones refreshed at `refreshed_at` (a newer rotation stays unconfirmed).
    pub fn confirm_tokens(
        &self,
        trainer: &TrainerId,
        refreshed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "UPDATE token_journal SET confirmed = 1 WHERE trainer_id = ?1 AND refreshed_at = ?2",
                params![trainer, secs(refreshed_at)],
            )?;
            Ok(())
        })
    }

    /// A trainer's journalled tokens.
    pub fn journalled_tokens(
        &self,
        trainer: &TrainerId,
    ) -> Result<Option<JournalledTokens>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT trainer_id, access_enc, refresh_enc, access_expires_at, refresh_expires_at, refreshed_at, confirmed
                 FROM token_journal WHERE trainer_id = ?1",
                params![trainer],
                row_to_tokens,
            )
            .optional()
        })
    }

    /// Journalled tokens not yet confirmed in Salesforce (written first at start-up).
    pub fn unconfirmed_tokens(&self) -> Result<Vec<JournalledTokens>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT trainer_id, access_enc, refresh_enc, access_expires_at, refresh_expires_at, refreshed_at, confirmed
                 FROM token_journal WHERE confirmed = 0 ORDER BY refreshed_at",
            )?;
            let rows = stmt.query_map([], row_to_tokens)?;
            rows.collect()
        })
    }

    /// Forgets a trainer's journalled tokens (disconnect).
    pub fn forget_tokens(&self, trainer: &TrainerId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM token_journal WHERE trainer_id = ?1",
                params![trainer],
            )?;
            // What their grant allowed goes with the tokens (the calendar's cache, too).
            c.execute_cached(
                "DELETE FROM trainer_calendars WHERE trainer_id = ?1",
                params![trainer],
            )?;
            Ok(())
        })
    }

    /// Re-encrypts every journalled token with `reencrypt` (None = leave as is).
    /// Returns how many rows changed.
    pub fn reencrypt_tokens(
        &self,
        reencrypt: impl Fn(&str) -> Option<String>,
    ) -> Result<usize, StoreError> {
        self.with(|c| {
            let rows: Vec<(String, String, Option<String>)> = {
                let mut stmt =
                    c.prepare_cached("SELECT trainer_id, access_enc, refresh_enc FROM token_journal")?;
                let mapped = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                mapped.collect::<rusqlite::Result<_>>()?
            };
            let mut changed = 0;
            for (trainer, access, refresh) in rows {
                let new_access = reencrypt(&access);
                let new_refresh = refresh.as_deref().and_then(&reencrypt);
                if new_access.is_none() && new_refresh.is_none() {
                    continue;
                }
                c.execute_cached(
                    "UPDATE token_journal SET access_enc = ?2, refresh_enc = ?3 WHERE trainer_id = ?1",
                    params![
                        trainer,
                        new_access.unwrap_or(access),
                        new_refresh.or(refresh)
                    ],
                )?;
                changed += 1;
            }
            Ok(changed)
        })
    }

    // --- Reservation journal -----------------------------------------------------------

    /// Records the reservation Lark just created or changed for a booking.
    pub fn record_reservation(
        &self,
        e: &ReservationEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| write_reservation(c, e, now))
    }

    /// What an answered apply leaves in the store, in one transaction: the app's record of
    /// a meeting it made (so the journal never names one the store does not know the app
    /// made), the journal entry, and the apply no longer in doubt.
    pub fn record_answered_apply(
        &self,
        e: &ReservationEntry,
        app_hosted: Option<&AppHostedEntry>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            if let Some(app) = app_hosted {
                contacts::write_app_hosted(&tx, app)?;
            }
            write_reservation(&tx, e, now)?;
            retries::delete_in_doubt(&tx, &e.booking_id)?;
            tx.commit()
        })
    }

    /// The journalled reservation of a booking.
    pub fn reservation(&self, booking: &BookingId) -> Result<Option<ReservationEntry>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT booking_id, reservation_id, trainer_id, url, end_time, topic, meeting_no FROM reservations WHERE booking_id = ?1",
                params![booking],
                |r| {
                    Ok(ReservationEntry {
                        booking_id: r.get(0)?,
                        reservation_id: r.get(1)?,
                        trainer_id: r.get(2)?,
                        url: r.get(3)?,
                        end_time: at_secs(r.get(4)?),
                        topic: r.get(5)?,
                        meeting_no: r.get(6)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Every journalled reservation's booking id (sweeps look for bookings that vanished).
    /// Rows are written from typed ids; one that does not read as an id is not ours to
    /// chase and is left out.
    pub fn reservation_booking_ids(&self) -> Result<Vec<BookingId>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT booking_id FROM reservations ORDER BY booking_id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|id| BookingId::parse(&id).ok()))
                .filter_map(Result::transpose)
                .collect()
        })
    }

    /// Forgets reservations that ended before `before`: Lark has let them lapse, and
    /// sweeps need not look at them again. Returns how many.
    pub fn prune_reservations(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM reservations WHERE end_time < ?1",
                params![secs(before)],
            )
        })
    }

    /// Forgets a booking's reservation (it was deleted in Lark).
    pub fn forget_reservation(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM reservations WHERE booking_id = ?1",
                params![booking],
            )?;
            Ok(())
        })
    }

    // --- Reminders ---------------------------------------------------------------------

    /// When the last reconnect reminder went to this trainer.
    pub fn last_reminder(&self, trainer: &TrainerId) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|c| {
            c.query_row_cached(
                "SELECT sent_at FROM reminders WHERE trainer_id = ?1",
                params![trainer],
                |r| r.get(0).map(at_secs),
            )
            .optional()
        })
    }

    /// Remembers that a reminder went out now.
    pub fn record_reminder(
        &self,
        trainer: &TrainerId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_cached(
                "INSERT INTO reminders (trainer_id, sent_at) VALUES (?1, ?2)
                 ON CONFLICT(trainer_id) DO UPDATE SET sent_at = excluded.sent_at",
                params![trainer, secs(now)],
            )?;
            Ok(())
        })
    }
}

fn write_reservation(
    c: &Connection,
    e: &ReservationEntry,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    c.execute_cached(
        "INSERT INTO reservations (booking_id, reservation_id, trainer_id, url, end_time, topic, meeting_no, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(booking_id) DO UPDATE SET reservation_id = excluded.reservation_id,
           trainer_id = excluded.trainer_id, url = excluded.url, end_time = excluded.end_time,
           topic = excluded.topic,
           meeting_no = COALESCE(excluded.meeting_no, reservations.meeting_no),
           updated_at = excluded.updated_at",
        params![e.booking_id, e.reservation_id, e.trainer_id, e.url, secs(e.end_time), e.topic, e.meeting_no, secs(now)],
    )?;
    Ok(())
}

fn row_to_tokens(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalledTokens> {
    Ok(JournalledTokens {
        trainer_id: r.get(0)?,
        access_enc: r.get(1)?,
        refresh_enc: r.get(2)?,
        access_expires_at: at_secs(r.get(3)?),
        refresh_expires_at: r.get::<_, Option<i64>>(4)?.map(at_secs),
        refreshed_at: at_secs(r.get(5)?),
        confirmed: r.get::<_, i64>(6)? != 0,
    })
}

/// Makes the store's `-wal` and `-shm` files `0600` where they exist.
fn make_journal_files_private(path: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        lock::make_private(&file).map_err(|source| StoreError::File {
            path: file.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
