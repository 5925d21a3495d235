//! Which admin alerts (design §3 rule 22) went out today: one row per subject, so each
//! subject is alerted at most once a UTC day, across restarts. A send is first *claimed*
//! (so two paths of one process, or a delegated command, never both send it) and then
//! marked sent; a failed send is released, so a later pass tries again.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::params;

use super::cached::Cached;
use super::values::secs;
use super::{Store, StoreError};

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS admin_alerts (
    subject    TEXT PRIMARY KEY,
    day        INTEGER NOT NULL,
    sent       INTEGER NOT NULL,
    claimed_at INTEGER NOT NULL
);
"#;

/// Rows of days this far back are dropped (only today's matter).
const KEPT_DAYS: i64 = 7;

/// A UTC day as the `day` column holds it: days since 1970-01-01.
fn day_number(day: NaiveDate) -> i64 {
    (day - NaiveDate::default()).num_days()
}

impl Store {
    /// Claims the alert of `subject` for the UTC day of `now`: true when it may be sent —
    /// no row for that day yet, or only a claim older than `stale` that was never marked
    /// sent (its sender died mid-send). False when it was sent that day or is being sent.
    pub fn claim_alert(
        &self,
        subject: &str,
        now: DateTime<Utc>,
        stale: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let day = day_number(now.date_naive());
        let stale_before = secs(now) - stale.as_secs().min(i64::MAX as u64) as i64;
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM admin_alerts WHERE day < ?1",
                params![day - KEPT_DAYS],
            )?;
            let changed = c.execute_cached(
                "INSERT INTO admin_alerts (subject, day, sent, claimed_at) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT(subject) DO UPDATE SET day = excluded.day, sent = 0,
                   claimed_at = excluded.claimed_at
                 WHERE admin_alerts.day <> excluded.day
                    OR (admin_alerts.sent = 0 AND admin_alerts.claimed_at <= ?4)",
                params![subject, day, secs(now), stale_before],
            )?;
            Ok(changed == 1)
        })
    }

    /// Lark accepted the claimed alert: it is not sent again that day.
    pub fn mark_alert_sent(&self, subject: &str, day: NaiveDate) -> Result<(), StoreError> {
        let day = day_number(day);
        self.with(|c| {
            c.execute_cached(
                "UPDATE admin_alerts SET sent = 1 WHERE subject = ?1 AND day = ?2",
                params![subject, day],
            )?;
            Ok(())
        })
    }

    /// The claimed alert could not be sent: forget the claim, so it is tried again.
    pub fn release_alert(&self, subject: &str, day: NaiveDate) -> Result<(), StoreError> {
        let day = day_number(day);
        self.with(|c| {
            c.execute_cached(
                "DELETE FROM admin_alerts WHERE subject = ?1 AND day = ?2 AND sent = 0",
                params![subject, day],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
