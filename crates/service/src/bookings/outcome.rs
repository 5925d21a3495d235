//! What processing bookings came to: one booking's [`Outcome`], a batch's or sweep's
//! [`Summary`] with the bookings that failed ([`BookingFailure`]), and why work could not be
//! finished now ([`PipelineError`], keeping the source error). Plain data, at the bottom of
//! the pipeline: every other file may use it, it uses none of them.

use chrono::{DateTime, Utc};

use super::model::MeetingStatus;
use crate::ids::{BookingId, TrainerId};
use crate::lark::LarkError;
use crate::salesforce::SalesforceError;
use crate::store::StoreError;
use crate::tokens::TokenError;

/// Where one booking ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already right: nothing was called or written.
    Unchanged,
    /// It has a meeting (new, moved, or only its write-back was missing).
    Created,
    /// Its meeting was rescheduled or renewed.
    Updated,
    /// Its meeting was deleted and the link cleared.
    Cancelled,
    /// It waits for its trainer to connect.
    Pending,
    /// It cannot get a meeting; the reason is on the booking.
    Failed,
}

/// Counts of one batch or sweep.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub bookings: usize,
    pub created: usize,
    pub updated: usize,
    pub cancelled: usize,
    pub pending: usize,
    pub failed: usize,
    pub unchanged: usize,
    pub write_failures: usize,
    /// Bookings whose work failed and waits on the retry list for its own next try.
    pub retrying: usize,
    /// Every booking counted in `failed` or `write_failures`, with the reason.
    pub failures: Vec<BookingFailure>,
}

/// A booking a batch or sweep could not bring in step, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookingFailure {
    pub booking: BookingId,
    pub kind: BookingFailureKind,
    /// Salesforce's error codes and messages, or the reason written on the booking.
    pub reason: String,
}

/// What went wrong for one booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingFailureKind {
    /// Salesforce refused the booking's write-back (a validation rule, a locked record);
    /// the booking is on the retry list, too.
    WriteRefused,
    /// The booking is now `Failed` (the reason is on the booking, too).
    MeetingFailed,
}

impl Summary {
    /// True when no booking failed and every write-back landed.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.write_failures == 0 && self.failures.is_empty()
    }

    /// The one-line summary `reconcile` prints.
    pub fn line(&self) -> String {
        format!(
            "reconciled {} bookings: {} created, {} updated, {} cancelled, {} pending, {} failed, {} unchanged, {} write-backs refused, {} retrying",
            self.bookings,
            self.created,
            self.updated,
            self.cancelled,
            self.pending,
            self.failed,
            self.unchanged,
            self.write_failures,
            self.retrying
        )
    }

    /// Adds another batch's counts to these.
    pub fn add(&mut self, other: &Summary) {
        self.bookings += other.bookings;
        self.created += other.created;
        self.updated += other.updated;
        self.cancelled += other.cancelled;
        self.pending += other.pending;
        self.failed += other.failed;
        self.unchanged += other.unchanged;
        self.write_failures += other.write_failures;
        self.retrying += other.retrying;
        self.failures.extend(other.failures.iter().cloned());
    }

    /// Counts one booking's outcome.
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Pending => self.pending += 1,
            Outcome::Failed => self.failed += 1,
        }
    }
}

/// Why a booking (or a batch) could not be brought in step now; tried again later.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading or writing Salesforce failed.
    #[error("Salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    /// The booking object's describe (for the topic template's fields) failed.
    #[error("describe {object}: {source}")]
    Describe {
        object: String,
        #[source]
        source: SalesforceError,
    },
    /// A Lark call for one booking failed in a way worth trying again.
    #[error("Lark call for booking {booking}: {source}")]
    Lark {
        booking: BookingId,
        #[source]
        source: LarkError,
    },
    /// No access token could be had for a trainer, for now.
    #[error("token for trainer {trainer}: {source}")]
    Token {
        trainer: TrainerId,
        #[source]
        source: TokenError,
    },
    /// A reserve apply's answer was lost (rule 13): the booking waits until `retry_at`
    /// before another apply.
    #[error("booking {booking}: the answer to reserve apply {applies} was lost; applying again after the in-doubt delay")]
    ApplyInDoubt {
        booking: BookingId,
        applies: u32,
        retry_at: DateTime<Utc>,
    },
    /// Lark reserved a meeting, but the store could not record it (rule 23): the engine
    /// writes it to the booking in Salesforce before anything else, then the pipeline
    /// pauses as for any store failure.
    #[error("booking {}: Lark reserved meeting {}, but the store could not record it: {}", .0.booking, .0.reservation_id, .0.source)]
    AnsweredNotRecorded(Box<Unrecorded>),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A meeting Lark reserved that the store could not record (rule 23).
#[derive(Debug)]
pub struct Unrecorded {
    pub booking: BookingId,
    pub reservation_id: String,
    pub url: String,
    /// `Created` or `Created by App`.
    pub status: MeetingStatus,
    pub source: StoreError,
}
