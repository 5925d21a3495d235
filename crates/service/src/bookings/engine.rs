//! The engine: what every path into the pipeline shares (stream batches, sweeps, trainer
//! events, one-shot commands) — read bookings fresh, `decide`, `act` (up to
//! `processing.concurrency` bookings at once) and hand write-backs to the batched writer.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{mpsc, OnceCell};

use super::act::Actor;
use super::decide::{decide, Context};
use super::model::Booking;
use super::outcome::{Acted, Outcome, PipelineError};
use super::status::PipelineStatus;
use super::writeback::{WriteBack, WRITES_PER_CALL};
use crate::config::Settings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::Metrics;
use crate::salesforce::SalesforceClient;
use crate::store::Store;
use crate::tokens::TokenService;

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
}

impl Summary {
    pub(super) fn add(&mut self, other: &Summary) {
        self.bookings += other.bookings;
        self.created += other.created;
        self.updated += other.updated;
        self.cancelled += other.cancelled;
        self.pending += other.pending;
        self.failed += other.failed;
        self.unchanged += other.unchanged;
        self.write_failures += other.write_failures;
    }

    fn count(&mut self, outcome: Outcome) {
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

/// Everything a batch needs; shared by the processor loop and one-shot commands.
pub struct Engine {
    pub(super) settings: Arc<Settings>,
    pub(super) salesforce: SalesforceClient,
    pub(super) lark: LarkClient,
    pub(super) tokens: TokenService,
    pub(super) store: Store,
    pub(super) metrics: Metrics,
    pub(super) status: Arc<PipelineStatus>,
    /// Template fields that exist on the booking object, and those that do not.
    pub(super) topic_fields: OnceCell<(Vec<String>, Vec<String>)>,
}

impl Engine {
    /// Builds the engine.
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        lark: LarkClient,
        tokens: TokenService,
        store: Store,
        metrics: Metrics,
        status: Arc<PipelineStatus>,
    ) -> Engine {
        Engine {
            settings,
            salesforce,
            lark,
            tokens,
            store,
            metrics,
            status,
            topic_fields: OnceCell::new(),
        }
    }

    /// Reads the given bookings fresh and brings each in step.
    pub async fn process_ids(&self, ids: &[BookingId]) -> Result<Summary, PipelineError> {
        if ids.is_empty() {
            return Ok(Summary::default());
        }
        let bookings = self.bookings_by_id(ids).await?;
        self.process_bookings(bookings).await
    }

    /// Decides and acts for each booking (bounded concurrency), batching write-backs.
    pub(super) async fn process_bookings(
        &self,
        bookings: Vec<Booking>,
    ) -> Result<Summary, PipelineError> {
        let (_, missing) = self.topic_fields().await?;
        let settings = &self.settings;
        let actor = Actor {
            settings: &settings.salesforce.booking,
            lark: &self.lark,
            tokens: &self.tokens,
            store: &self.store,
            metrics: &self.metrics,
        };
        let mut summary = Summary {
            bookings: bookings.len(),
            ..Summary::default()
        };
        let (tx, rx) = mpsc::channel::<WriteBack>(WRITES_PER_CALL * 2);
        let now = Utc::now();
        let concurrency = settings.processing.concurrency;
        let actor = &actor;
        let work = async move {
            let results: Vec<Result<Outcome, PipelineError>> = futures::stream::iter(bookings)
                .map(|booking| {
                    let tx = tx.clone();
                    async move {
                        let journal = actor.store.reservation(booking.id.as_str())?;
                        let decision = decide(
                            &booking,
                            &Context {
                                settings: &settings.salesforce.booking,
                                now,
                                journal: journal.as_ref(),
                                missing_topic_fields: missing,
                                require_trainer_email: settings.security.require_email_match,
                            },
                        );
                        let Acted { outcome, write } = actor.act(&booking, decision).await?;
                        if let Some(w) = write {
                            let _ = tx.send(w).await;
                        }
                        Ok(outcome)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            // Every sender is gone now: the flusher sees the end of the batch.
            drop(tx);
            results
        };
        let (results, refused) = tokio::join!(work, self.flush_writes(rx));
        let mut first_error = None;
        for r in results {
            match r {
                Ok(outcome) => summary.count(outcome),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        summary.write_failures = refused?.len();
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}
