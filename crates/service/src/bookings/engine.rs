//! The engine: what every path into the pipeline shares (stream batches, sweeps, trainer
//! events, one-shot commands) — read bookings fresh, `decide`, `act` (up to
//! `processing.concurrency` bookings at once) and hand write-backs to the batched writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::Rng;
use tokio::sync::{mpsc, OnceCell};

use super::act::Actor;
use super::calendar::{CalendarDone, CalendarStep};
use super::decide::{decide, Context};
use super::model::{Booking, MeetingStatus};
use super::outcome::{Acted, Outcome, PipelineError};
use super::status::PipelineStatus;
use super::writeback::{WriteBack, Written, WRITES_PER_CALL};
use crate::config::Settings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::progress::Progress;
use crate::salesforce::SalesforceClient;
use crate::store::Store;
use crate::tokens::trainer::clip;
use crate::tokens::TokenService;

/// Where one booking ended up and, when only its calendar step failed, why.
type Processed = (Outcome, Option<String>);

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
    pub booking: String,
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

    pub(super) fn add(&mut self, other: &Summary) {
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
    /// Bookings a sweep found and has done (a one-shot `reconcile` shows it).
    pub(super) progress: Progress,
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
            progress: Progress::default(),
        }
    }

    /// Bookings found and done by sweeps so far (for `reconcile`'s progress).
    pub fn progress(&self) -> Progress {
        self.progress.clone()
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
        let (present, missing) = self.topic_fields().await?;
        self.prefetch_open_ids(&bookings).await;
        let settings = &self.settings;
        let actor = Actor {
            settings: &settings.salesforce.booking,
            processing: &settings.processing,
            lark: &self.lark,
            tokens: &self.tokens,
            store: &self.store,
            metrics: &self.metrics,
            meetings: &settings.meetings,
        };
        let calendar = CalendarStep {
            actor: &actor,
            settings,
            field_present: present.contains(&settings.salesforce.booking.calendar_event_field),
        };
        let calendar = &calendar;
        let mut summary = Summary {
            bookings: bookings.len(),
            ..Summary::default()
        };
        let starts: HashMap<BookingId, Option<DateTime<Utc>>> =
            bookings.iter().map(|b| (b.id.clone(), b.start)).collect();
        let (tx, rx) = mpsc::channel::<WriteBack>(WRITES_PER_CALL * 2);
        let now = Utc::now();
        let concurrency = settings.processing.concurrency;
        let actor = &actor;
        let progress = &self.progress;
        let work = async move {
            let results: Vec<(BookingId, Result<Processed, PipelineError>)> =
                futures::stream::iter(bookings)
                    .map(|booking| {
                        let tx = tx.clone();
                        async move {
                            let result = async {
                                let journal = actor.store.reservation(booking.id.as_str())?;
                                let app_hosted = actor.store.app_hosted(booking.id.as_str())?;
                                let decision = decide(
                                    &booking,
                                    &Context {
                                        settings: &settings.salesforce.booking,
                                        now,
                                        journal: journal.as_ref(),
                                        missing_topic_fields: missing,
                                        require_trainer_email: settings
                                            .security
                                            .require_email_match,
                                        unconnected: settings.meetings.unconnected,
                                        app_hosted: app_hosted.as_ref(),
                                    },
                                );
                                let Acted { outcome, write } =
                                    actor.act(&booking, decision).await?;
                                let CalendarDone { write, retry } =
                                    calendar.follow(&booking, write).await?;
                                if let Some(w) = write {
                                    let _ = tx.send(w).await;
                                }
                                Ok((outcome, retry))
                            }
                            .await;
                            progress.tick(1);
                            (booking.id, result)
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
        // The collection call itself failed (Salesforce down): the whole batch retries,
        // and the journal makes that retry reuse what Lark already created.
        let Written { refused, failed } = refused?;
        summary.write_failures = refused.len();
        summary.failures = failed;
        summary.failures.extend(refused.iter().map(|r| r.failure()));
        let mut failing: Vec<(BookingId, String)> = refused
            .into_iter()
            .map(|r| {
                let reason = format!("Salesforce refused the meeting fields: {}", r.reason);
                (r.booking_id, reason)
            })
            .collect();
        for (id, result) in results {
            match result {
                Ok((outcome, calendar_retry)) => {
                    summary.count(outcome);
                    if !failing.iter().any(|(f, _)| f == &id) {
                        match calendar_retry {
                            Some(reason) => {
                                let start = starts.get(&id).copied().flatten();
                                self.retry_calendar_later(&id, start, now, &reason)?;
                            }
                            None => self.store.clear_retry(id.as_str())?,
                        }
                    }
                }
                Err(PipelineError::ApplyInDoubt { retry_at, .. }) => {
                    summary.retrying += 1;
                    let reason =
                        "Waiting to reserve again after a reservation whose answer was lost.";
                    self.store.defer_retry(id.as_str(), retry_at, reason)?;
                }
                // Not one booking's failure: nothing can go on until the store works.
                Err(e @ PipelineError::Store(_)) => return Err(e),
                Err(e) => failing.push((id, e.to_string())),
            }
        }
        summary.retrying += failing.len();
        let starts = &starts;
        let gave_up = failing
            .into_iter()
            .filter_map(|(id, reason)| {
                let start = starts.get(&id).copied().flatten();
                self.retry_later(&id, start, now, &reason).transpose()
            })
            .collect::<Result<Vec<WriteBack>, PipelineError>>()?;
        if !gave_up.is_empty() {
            summary.retrying -= gave_up.len();
            summary.failed += gave_up.len();
            let failures = self.write_failed(gave_up).await;
            summary.failures.extend(failures);
        }
        Ok(summary)
    }

    /// Puts a booking whose work failed on the retry list with a jittered backoff, or,
    /// after `processing.max_attempts` or once its session has started, returns the
    /// `Failed` write that ends its retries (rule 14).
    fn retry_later(
        &self,
        id: &BookingId,
        start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let p = &self.settings.processing;
        let attempts = self.attempts_so_far(id, false)? + 1;
        let started = start.is_some_and(|s| s <= now);
        if attempts >= p.max_attempts || started {
            self.store.clear_retry(id.as_str())?;
            self.metrics
                .inc(names::FAILURES, &[("kind", "retries_exhausted")]);
            tracing::error!(booking = %id, attempts, started, reason, "giving up on the booking");
            let tries = if attempts == 1 { "attempt" } else { "attempts" };
            let reason = clip(&format!("Gave up after {attempts} {tries}: {reason}"));
            return Ok(Some(WriteBack::status(
                &self.settings.salesforce.booking,
                id,
                MeetingStatus::Failed,
                Some(&reason),
            )));
        }
        let delay = retry_delay(attempts, p.retry_max_delay);
        let next_at = now.timestamp_millis() + delay.as_millis() as i64;
        self.store
            .record_failed_attempt(id.as_str(), next_at, reason)?;
        self.metrics
            .inc(names::FAILURES, &[("kind", "booking_retry")]);
        tracing::warn!(booking = %id, attempts, retry_in_ms = delay.as_millis() as u64, reason, "booking work failed; retrying on its own backoff");
        Ok(None)
    }

    /// Writes the `Failed` status of bookings given up on; a refusal of even that write
    /// (or Salesforce down) is logged and counted, and the booking leaves the list anyway.
    /// Returns each booking given up on, with why.
    async fn write_failed(&self, writes: Vec<WriteBack>) -> Vec<BookingFailure> {
        let given_up: Vec<(BookingId, String)> = writes
            .iter()
            .map(|w| {
                (
                    w.booking_id.clone(),
                    w.failed_reason(&self.settings.salesforce.booking)
                        .unwrap_or_default(),
                )
            })
            .collect();
        match self.write(writes).await {
            Ok(Written {
                refused,
                failed: mut failures,
            }) => {
                // Rule 22: these became Failed just now (the batch's links are out).
                self.alert_failed(&failures).await;
                for r in refused {
                    failures.push(BookingFailure {
                        booking: r.booking_id.to_string(),
                        kind: BookingFailureKind::WriteRefused,
                        reason: format!("Salesforce refused even the Failed status: {}", r.reason),
                    });
                    self.metrics
                        .inc(names::FAILURES, &[("kind", "failed_status_refused")]);
                    tracing::error!(booking = %r.booking_id, reason = %r.reason, "Salesforce refused even the Failed status; the booking needs an admin");
                }
                failures
            }
            Err(e) => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "failed_status_refused")]);
                tracing::error!(error = %e, "could not write the Failed status of bookings given up on");
                given_up
                    .into_iter()
                    .map(|(id, reason)| BookingFailure {
                        booking: id.to_string(),
                        kind: BookingFailureKind::MeetingFailed,
                        reason: format!("{reason} (the Failed status could not be written: {e})"),
                    })
                    .collect()
            }
        }
    }

    /// Processes the bookings whose retry is due; returns how many were due.
    pub(super) async fn run_due_retries(&self) -> Result<usize, PipelineError> {
        let now = Utc::now().timestamp_millis();
        let due = self.store.due_retries(now, RETRIES_PER_BATCH)?;
        let ids: Vec<BookingId> = due
            .iter()
            .filter_map(|e| BookingId::parse(&e.booking_id).ok())
            .collect();
        if ids.len() < due.len() {
            // Never written by us; drop what cannot be a booking.
            for e in due
                .iter()
                .filter(|e| BookingId::parse(&e.booking_id).is_err())
            {
                self.store.clear_retry(&e.booking_id)?;
            }
        }
        if let Err(e) = self.process_ids(&ids).await {
            // Reading the bookings failed (Salesforce down): not these bookings' fault, so
            // no attempt is counted; they wait a little and come again.
            let later = now + RETRY_READ_FAILURE_DELAY.as_millis() as i64;
            for entry in &due {
                self.store
                    .defer_retry(&entry.booking_id, later, &entry.last_reason)?;
            }
            return Err(e);
        }
        Ok(due.len())
    }
}

/// First wait before a failing booking is tried again (doubling from here).
const RETRY_BASE_DELAY: Duration = Duration::from_secs(2);
/// Due retries taken at once.
const RETRIES_PER_BATCH: usize = 200;
/// Wait before due retries are read again after the read itself failed.
const RETRY_READ_FAILURE_DELAY: Duration = Duration::from_secs(5);

/// The wait before attempt `attempts + 1`: doubling from [`RETRY_BASE_DELAY`], capped at
/// `max`, with "equal jitter" (between half and all of it) so failing bookings spread out.
pub(super) fn retry_delay(attempts: u32, max: Duration) -> Duration {
    let exp = RETRY_BASE_DELAY.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

#[cfg(test)]
mod tests;
