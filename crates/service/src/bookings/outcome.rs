//! What processing one booking came to ([`Outcome`], with the write-back it needs), and
//! why it could not be finished ([`PipelineError`], keeping the source error).

use super::decide::Decision;
use super::model::MeetingStatus;
use super::writeback::WriteBack;
use crate::ids::BookingId;
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

impl Outcome {
    /// The outcome a decision aims at, before anything is tried.
    pub fn planned(decision: &Decision) -> Outcome {
        match decision {
            Decision::Nothing => Outcome::Unchanged,
            Decision::Create { .. } | Decision::Move { .. } | Decision::WriteBack { .. } => {
                Outcome::Created
            }
            Decision::Update { .. } => Outcome::Updated,
            Decision::Cancel { .. } => Outcome::Cancelled,
            Decision::Pending { .. } | Decision::Release { .. } => Outcome::Pending,
            Decision::Fail { .. } => Outcome::Failed,
        }
    }
}

/// A decision carried out: where the booking ended up and what to write on it.
#[derive(Debug)]
pub struct Acted {
    pub outcome: Outcome,
    pub write: Option<WriteBack>,
}

impl Acted {
    /// The planned outcome, unless the status written says otherwise (a create that found
    /// the trainer disconnected writes Pending; one Lark refused writes Failed) — or, when
    /// nothing needed writing, the status the booking `shows` already says so.
    pub fn new(planned: Outcome, write: Option<WriteBack>, shows: Option<MeetingStatus>) -> Acted {
        let status = match &write {
            Some(w) => w.status,
            None if matches!(planned, Outcome::Created | Outcome::Updated) => shows,
            None => None,
        };
        let outcome = match status {
            Some(MeetingStatus::PendingTrainerConnection) => Outcome::Pending,
            Some(MeetingStatus::Failed) => Outcome::Failed,
            Some(MeetingStatus::Cancelled) => Outcome::Cancelled,
            Some(MeetingStatus::Created | MeetingStatus::CreatedByApp) | None => planned,
        };
        Acted { outcome, write }
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
        trainer: String,
        #[source]
        source: TokenError,
    },
    /// A reserve apply's answer was lost (rule 13): the booking waits until `retry_at`
    /// (unix milliseconds) before another apply.
    #[error("booking {booking}: the answer to reserve apply {applies} was lost; applying again after the in-doubt delay")]
    ApplyInDoubt {
        booking: BookingId,
        applies: u32,
        retry_at: i64,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
