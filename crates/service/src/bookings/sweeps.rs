//! Sweeps: the bounded reconciliation of upcoming bookings (hourly, after a replay gap,
//! at a start without a usable checkpoint), re-deciding a trainer's bookings when they
//! connect or disconnect, and the refresh timer's pass over trainers' tokens.

use std::collections::HashSet;

use chrono::Utc;
use futures::StreamExt;

use super::engine::{Engine, Summary};
use super::outcome::PipelineError;
use super::queries::TrainerBookings;
use crate::ids::BookingId;
use crate::tokens::{RefreshOutcome, TrainerEvent};

/// Applies in doubt are remembered this long (Lark keeps a reservation at most 30 days).
const IN_DOUBT_KEPT_DAYS: i64 = 31;
/// Trainers refreshed at once by a refresh pass (each is one Lark call and one write).
const REFRESH_CONCURRENCY: usize = 4;

/// Counts of one refresh pass.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefreshSummary {
    pub refreshed: usize,
    /// Trainers unchecked in Salesforce whose leftover tokens were cleared.
    pub cleared: usize,
    pub disconnected: usize,
    pub failed: usize,
    pub skipped: usize,
    /// What failed, trainer by trainer (and pass-wide failures with no trainer).
    pub failures: Vec<TrainerFailure>,
}

/// A refresh-pass step that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrainerFailure {
    /// The trainer's record id; `None` for a step of the whole pass.
    pub trainer: Option<String>,
    pub reason: String,
}

impl RefreshSummary {
    /// The one-line summary `refresh-tokens` prints.
    pub fn line(&self) -> String {
        format!(
            "refreshed: {}  failed: {}  disconnected: {}  skipped: {}  unchecked-cleared: {}",
            self.refreshed, self.failed, self.disconnected, self.skipped, self.cleared
        )
    }

    /// True when no step of the pass failed.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.failures.is_empty()
    }

    fn fail(&mut self, trainer: Option<&str>, reason: impl std::fmt::Display) {
        self.failures.push(TrainerFailure {
            trainer: trainer.map(str::to_string),
            reason: reason.to_string(),
        });
    }
}

impl Engine {
    /// One bounded, batched sweep of upcoming bookings whose meeting state may be
    /// missing or stale.
    pub async fn reconcile(&self) -> Result<Summary, PipelineError> {
        let now = Utc::now();
        let bookings = self.upcoming_bookings(now).await?;
        // Bookings with a journalled reservation that the live query did not return may
        // have been deleted while events could not be replayed: read them with queryAll.
        let seen: HashSet<&str> = bookings.iter().map(|b| b.id.as_str()).collect();
        let ended = (now - chrono::Duration::days(2)).timestamp();
        self.store.prune_reservations(ended)?;
        // A meeting an apply in doubt may have made lapses within Lark's 30 days.
        let lapsed = now - chrono::Duration::days(IN_DOUBT_KEPT_DAYS);
        self.store.prune_in_doubt(lapsed.timestamp_millis())?;
        self.prune_app_hosted_state(now.timestamp())?;
        let vanished: Vec<BookingId> = self
            .store
            .reservation_booking_ids()?
            .into_iter()
            .filter(|id| !seen.contains(id.as_str()))
            // Journalled from a typed id; anything else is not ours to chase.
            .filter_map(|id| BookingId::parse(&id).ok())
            .collect();
        self.progress.add_total(bookings.len() + vanished.len());
        let census = self.census(&bookings, now);
        let mut summary = self.process_bookings(bookings).await?;
        if !vanished.is_empty() {
            summary.add(&self.process_ids(&vanished).await?);
        }
        // Gauges, and alerts for bookings near their start still without a meeting.
        self.after_sweep(census).await;
        tracing::info!(?summary, "reconciliation sweep done");
        Ok(summary)
    }

    /// A trainer connected: their pending bookings get meetings now. Disconnected:
    /// their upcoming bookings are re-decided (those needing Lark become pending).
    pub(super) async fn on_trainer_event(
        &self,
        event: &TrainerEvent,
    ) -> Result<Summary, PipelineError> {
        let (trainer, which) = match event {
            // With the calendar on, a (re)connect also puts meetings that already exist
            // on the trainer's calendar (a trainer who lacked the calendar scopes until
            // now); those already on it decide `Nothing` and cost no Lark call.
            TrainerEvent::Connected(id) if self.settings.calendar.enabled => {
                (id, TrainerBookings::PendingOrMeeting)
            }
            TrainerEvent::Connected(id) => (id, TrainerBookings::Pending),
            TrainerEvent::Disconnected(id) => (id, TrainerBookings::All),
        };
        let bookings = self.trainer_bookings(trainer, which).await?;
        let summary = self.process_bookings(bookings).await?;
        tracing::info!(trainer = %trainer, ?summary, "processed the trainer's bookings");
        Ok(summary)
    }

    /// One pass of the refresh timer.
    pub async fn refresh_pass(&self) -> RefreshSummary {
        let mut summary = RefreshSummary::default();
        // Rotated tokens Salesforce refused earlier are retried until they land.
        if let Err(e) = self.tokens.replay_unconfirmed().await {
            tracing::warn!(error = %e, "some journalled tokens are still not in Salesforce");
            summary.fail(
                None,
                format_args!("rotated tokens still not written to Salesforce: {e}"),
            );
        }
        // Trainers an admin unchecked keep no tokens.
        match self.tokens.trainers_unchecked_with_tokens().await {
            Ok(unchecked) => {
                for t in unchecked {
                    match self.tokens.forget_unchecked(&t).await {
                        Ok(()) => summary.cleared += 1,
                        Err(e) => {
                            tracing::warn!(trainer = %t.id, error = %e, "could not clear an unchecked trainer's tokens");
                            summary.fail(
                                Some(&t.id),
                                format_args!(
                                    "could not clear the tokens of an unchecked trainer: {e}"
                                ),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh pass: could not list unchecked trainers");
                summary.fail(None, format_args!("could not list unchecked trainers: {e}"));
            }
        }
        let trainers = match self.tokens.trainers_due().await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "refresh pass: could not list trainers");
                summary.failed += 1;
                summary.fail(None, format_args!("could not list trainers: {e}"));
                return summary;
            }
        };
        let outcomes = futures::stream::iter(trainers.into_iter().map(|t| {
            let tokens = self.tokens.clone();
            async move { (tokens.refresh_now(&t).await, t.id) }
        }))
        .buffer_unordered(REFRESH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for (o, trainer) in outcomes {
            match o {
                RefreshOutcome::Refreshed => summary.refreshed += 1,
                RefreshOutcome::Disconnected(_) => summary.disconnected += 1,
                RefreshOutcome::Failed(reason) => {
                    summary.failed += 1;
                    summary.fail(Some(trainer.as_str()), reason);
                }
                RefreshOutcome::Skipped(_) => summary.skipped += 1,
            }
        }
        tracing::info!(?summary, "refresh pass done");
        summary
    }
}
