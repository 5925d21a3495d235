//! The durable retry list of rule 14, as the pipeline uses it: a booking whose work failed
//! waits on its own jittered, capped backoff (delays from [`crate::retry`]); its attempts
//! are counted by [`RetryKind`] — the calendar step's apart from the meeting's, so calendar
//! failures never bring a booking closer to `Failed` — until `processing.max_attempts`, or
//! until its session has started, when the list gives up on it. The store keeps the list
//! across restarts; this type owns the rules of it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::ProcessingSettings;
use crate::ids::BookingId;
use crate::metrics::{Failure, Metrics};
use crate::store::{RetryEntry, RetryKind, Store, StoreError};

/// First wait before a failing booking is tried again (doubling from here).
const RETRY_BASE_DELAY: Duration = Duration::from_secs(2);

/// What becomes of a booking whose work just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is on the list, due again later.
    Later,
    /// No more tries: the attempts are spent (`attempts` of them), or its session has
    /// started. It is off the list.
    GiveUp { attempts: u32 },
}

/// The retry list; cheap to clone.
#[derive(Clone)]
pub struct RetryList {
    store: Store,
    metrics: Metrics,
    max_attempts: u32,
    max_delay: Duration,
}

impl RetryList {
    /// The list in `store`, with `processing`'s limits.
    pub fn new(store: Store, processing: &ProcessingSettings, metrics: Metrics) -> RetryList {
        RetryList {
            store,
            metrics,
            max_attempts: processing.max_attempts,
            max_delay: processing.retry_max_delay,
        }
    }

    /// Counts a failed attempt of `kind` for `booking` (whose session starts at `start`)
    /// and schedules the next, or gives up.
    pub fn failed(
        &self,
        booking: &BookingId,
        kind: RetryKind,
        start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Verdict, StoreError> {
        let attempts = self.attempts_so_far(booking, kind)? + 1;
        let started = start.is_some_and(|s| s <= now);
        // Calendar retries end only with the session: the event no longer matters then.
        let spent = kind != RetryKind::Calendar && attempts >= self.max_attempts;
        if spent || started {
            self.store.clear_retry(booking)?;
            return Ok(Verdict::GiveUp { attempts });
        }
        let delay = crate::retry::delay_for_attempt(attempts, RETRY_BASE_DELAY, self.max_delay);
        let next_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        self.store
            .record_failed_attempt(booking, kind, next_at, reason)?;
        if kind != RetryKind::Calendar {
            self.metrics.failure(Failure::BookingRetry);
        }
        tracing::warn!(
            ?kind,
            attempts,
            retry_in_ms = delay.as_millis() as u64,
            reason,
            "booking work failed; retrying on its own backoff"
        );
        Ok(Verdict::Later)
    }

    /// Puts `booking` off until `until` without counting an attempt (an apply in doubt
    /// waits out its delay; a read that failed for the whole list).
    pub fn wait(
        &self,
        booking: &BookingId,
        kind: RetryKind,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.store.defer_retry(booking, kind, until, reason)
    }

    /// Takes `booking` off the list (its work is done).
    pub fn clear(&self, booking: &BookingId) -> Result<(), StoreError> {
        self.store.clear_retry(booking)
    }

    /// Takes every one of `bookings` off the list, in one transaction.
    pub fn clear_all(&self, bookings: &[BookingId]) -> Result<(), StoreError> {
        self.store.clear_retries(bookings)
    }

    /// Entries due at `now`, soonest first, at most `limit`.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RetryEntry>, StoreError> {
        self.store.due_retries(now, limit)
    }

    /// When the soonest entry is due, if any.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_retry_at()
    }

    /// Failed attempts on the booking's entry that count with `kind`. An entry of the
    /// other count is dropped: that work has since succeeded (or this one would not run).
    fn attempts_so_far(&self, booking: &BookingId, kind: RetryKind) -> Result<u32, StoreError> {
        match self.store.retry_entry(booking)? {
            Some(e) if e.kind.counts_with(kind) => Ok(e.attempts),
            Some(_) => {
                self.store.clear_retry(booking)?;
                Ok(0)
            }
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests;
