//! The engine: what every path into the pipeline shares (stream batches, sweeps, trainer
//! events, due retries, one-shot commands) — read bookings fresh, `decide`, `act` (up to
//! `processing.concurrency` bookings at once), follow with the calendar step, hand the
//! write-backs to the [`WriteBatcher`], and put what failed on the [`RetryList`].
//!
//! Its one verb is [`Engine::process`] (and [`Engine::process_ids`], which reads the
//! bookings first); the parts it is built from are reachable read-only for the sweeps,
//! the stream intake and the commands, which are free functions over it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::act::{Acted, Actor};
use super::app_host::AppHost;
use super::attendance;
use super::calendar::{CalendarDone, CalendarStep, PrimaryCalendars};
use super::decide::{decide, Context};
use super::host_token::HostTokens;
use super::meetings::Meetings;
use super::model::{Booking, MeetingStatus};
use super::notices::BookingAlerts;
use super::outcome::{
    BookingFailure, BookingFailureKind, Outcome, PipelineError, Summary, Unrecorded,
};
use super::owed::OwedDeletions;
use super::reader::{BookingReader, TemplateFields};
use super::retries::{RetryList, Verdict};
use super::status::PipelineStatus;
use super::writeback::{WriteBack, WriteBatcher, Written, WRITES_PER_CALL};
use crate::config::Settings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::{Failure, Metrics};
use crate::progress::Progress;
use crate::salesforce::values::clip;
use crate::salesforce::SalesforceClient;
use crate::store::{RetryKind, Store};
use crate::tokens::TokenService;

/// Due retries taken at once.
const RETRIES_PER_BATCH: usize = 200;
/// Wait before due retries are read again after the read itself failed.
const RETRY_READ_FAILURE_DELAY: chrono::Duration = chrono::Duration::seconds(5);

/// Where one booking ended up and, when only its calendar step failed, why.
type Handled = (Outcome, Option<String>);
/// A booking worked on: its id, its start (for the retry list's rules), its session's times
/// (for attendance) and how it went.
type Done = (
    BookingId,
    Option<DateTime<Utc>>,
    Vec<attendance::SessionTimes>,
    Result<Handled, PipelineError>,
);

/// Up to a query's worth of a batch's ids, and which of them someone other than the
/// service changed (rule 26).
#[derive(Debug, Default)]
pub struct IdChunk {
    pub ids: Vec<BookingId>,
    pub edited: HashSet<BookingId>,
}

impl IdChunk {
    /// `ids`, with those of them in `edited`.
    pub fn of(ids: Vec<BookingId>, edited: &HashSet<BookingId>) -> IdChunk {
        let edited = ids
            .iter()
            .filter(|id| edited.contains(*id))
            .cloned()
            .collect();
        IdChunk { ids, edited }
    }
}

/// Everything a batch needs; shared by the processor loop and one-shot commands.
pub struct Engine {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
    lark: LarkClient,
    tokens: TokenService,
    store: Store,
    metrics: Metrics,
    status: Arc<PipelineStatus>,
    reader: BookingReader,
    hosts: HostTokens,
    app: AppHost,
    meetings: Meetings,
    owed: OwedDeletions,
    calendars: PrimaryCalendars,
    writer: WriteBatcher,
    retries: RetryList,
    alerts: BookingAlerts,
    /// Bookings a sweep found and has done (a one-shot `reconcile` shows it).
    progress: Progress,
}

impl Engine {
    /// Builds the engine and the parts it owns.
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        lark: LarkClient,
        tokens: TokenService,
        store: Store,
        metrics: Metrics,
        status: Arc<PipelineStatus>,
    ) -> Engine {
        let reader = BookingReader::new(settings.clone(), salesforce.clone());
        let hosts = HostTokens::new(lark.clone(), tokens.clone());
        let app = AppHost::new(
            settings.meetings.unconnected,
            lark.clone(),
            store.clone(),
            metrics.clone(),
        );
        let alerts = BookingAlerts::new(
            settings.clone(),
            tokens.alerter().clone(),
            salesforce.clone(),
        );
        let owed = OwedDeletions::new(
            store.clone(),
            hosts.clone(),
            alerts.clone(),
            metrics.clone(),
        );
        let meetings = Meetings::new(
            settings.clone(),
            lark.clone(),
            store.clone(),
            metrics.clone(),
            hosts.clone(),
            app.clone(),
            owed.clone(),
        );
        let calendars = PrimaryCalendars::new(store.clone());
        let writer = WriteBatcher::new(settings.clone(), salesforce.clone(), metrics.clone());
        let retries = RetryList::new(store.clone(), &settings.processing, metrics.clone());
        Engine {
            settings,
            salesforce,
            lark,
            tokens,
            store,
            metrics,
            status,
            reader,
            hosts,
            app,
            meetings,
            owed,
            calendars,
            writer,
            retries,
            alerts,
            progress: Progress::default(),
        }
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads bookings fresh.
    pub fn reader(&self) -> &BookingReader {
        &self.reader
    }

    /// The Lark client (attendance's meetings calls and messages).
    pub fn lark(&self) -> &LarkClient {
        &self.lark
    }

    /// The Salesforce client (the stream's session, the integration user).
    pub fn salesforce(&self) -> &SalesforceClient {
        &self.salesforce
    }

    /// The token service (reminders, refresh passes).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// The store (checkpoints, journals).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The pipeline status `/readyz` reports.
    pub fn status(&self) -> &Arc<PipelineStatus> {
        &self.status
    }

    /// Admin alerts about bookings.
    pub fn alerts(&self) -> &BookingAlerts {
        &self.alerts
    }

    /// App-hosted meetings' lookups (sweeps prune them).
    pub fn app_host(&self) -> &AppHost {
        &self.app
    }

    /// The deletions owed while hosts are not connected (rule 25).
    pub fn owed(&self) -> &OwedDeletions {
        &self.owed
    }

    /// The host tokens (a trainer's record and token).
    pub fn hosts(&self) -> &HostTokens {
        &self.hosts
    }

    /// The retry list.
    pub fn retries(&self) -> &RetryList {
        &self.retries
    }

    /// Bookings found and done by sweeps so far (for `reconcile`'s progress).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Reads the given bookings fresh and brings each in step.
    pub async fn process_ids(&self, ids: &[BookingId]) -> Result<Summary, PipelineError> {
        self.process_changes(ids, &HashSet::new()).await
    }

    /// As [`Engine::process_ids`], for bookings someone other than the service changed:
    /// those in `edited` that are `Failed` are re-armed first (rule 26) — their attempts
    /// and applies in doubt forgotten — so the edit gets them processed afresh.
    pub async fn process_changes(
        &self,
        ids: &[BookingId],
        edited: &HashSet<BookingId>,
    ) -> Result<Summary, PipelineError> {
        if ids.is_empty() {
            return Ok(Summary::default());
        }
        let chunks: Vec<IdChunk> = ids
            .chunks(self.reader.ids_per_query().await?)
            .map(|chunk| IdChunk::of(chunk.to_vec(), edited))
            .collect();
        self.process_chunks(futures::stream::iter(chunks)).await
    }

    /// As [`Engine::process_changes`], for ids handed over a query's worth at a time as
    /// the batch goes (the stream intake takes in what arrives while a batch runs). The
    /// reads run beside the bookings, one query ahead: the first apply leaves after the
    /// first query, not the last, and no more than two queries' rows are held at once (the
    /// one being worked on and the next), however many bookings the batch names. Each
    /// answer is read as it comes, even while every booking waits (for Lark's minute
    /// window, say): an answer left half-read that long timed out and was asked again.
    pub async fn process_chunks(
        &self,
        chunks: impl futures::Stream<Item = IdChunk>,
    ) -> Result<Summary, PipelineError> {
        let (tx, rx) = mpsc::channel(1);
        let reads = async move {
            let mut chunks = std::pin::pin!(chunks);
            // Room for the next query's rows first: the one before is being worked on.
            while let Ok(room) = tx.reserve().await {
                let Some(chunk) = chunks.next().await else {
                    break;
                };
                let read = self.read_chunk(chunk).await;
                let failed = read.is_err();
                room.send(read);
                if failed {
                    break;
                }
            }
        };
        let rows = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|read| (read, rx))
        });
        let bookings = rows
            .map_ok(|chunk| futures::stream::iter(chunk).map(Ok))
            .try_flatten();
        let ((), summary) = tokio::join!(reads, self.process_stream(bookings));
        summary
    }

    /// One query's worth of a batch, read, with its edited `Failed` bookings re-armed and
    /// its app-hosted lookups made.
    async fn read_chunk(&self, chunk: IdChunk) -> Result<Vec<Booking>, PipelineError> {
        let bookings = self.reader.by_ids(&chunk.ids).await?;
        for b in bookings.iter().filter(|b| {
            b.meeting_status == Some(MeetingStatus::Failed) && chunk.edited.contains(&b.id)
        }) {
            self.rearm(b)?;
        }
        self.app.prefetch(&bookings).await;
        Ok(bookings)
    }

    /// A user edited a `Failed` booking: its count of attempts and of applies in doubt
    /// start over (rule 26). After lost answers the README asks the admin to look in the
    /// trainer's Lark first: a meeting may exist there.
    fn rearm(&self, booking: &Booking) -> Result<(), PipelineError> {
        let _span = tracing::info_span!("booking", booking = %booking.id).entered();
        self.retries.clear(&booking.id)?;
        self.meetings.forget_applies_in_doubt(booking)?;
        tracing::info!("a Failed booking was edited: re-armed, processing it afresh");
        Ok(())
    }

    /// Decides and acts for each booking (bounded concurrency), batching write-backs;
    /// puts what failed on the retry list, and writes `Failed` for what it gave up on.
    pub async fn process(&self, bookings: Vec<Booking>) -> Result<Summary, PipelineError> {
        self.app.prefetch(&bookings).await;
        self.process_stream(futures::stream::iter(bookings).map(Ok))
            .await
    }

    /// [`Engine::process`] for bookings as they are read. A read that fails ends the
    /// stream: the bookings already started are finished and written, then the error is
    /// returned, and the batch is tried again (the journal makes that reuse what Lark
    /// already made). Nothing is kept of a booking but its id, start and outcome once its
    /// write-back is handed over.
    async fn process_stream(
        &self,
        bookings: impl futures::Stream<Item = Result<Booking, PipelineError>>,
    ) -> Result<Summary, PipelineError> {
        let fields = self.reader.template_fields().await?;
        let mut summary = Summary::default();
        let now = Utc::now();
        let failed_read = std::sync::Mutex::new(None);
        let bookings = bookings.scan((), |_, read| {
            futures::future::ready(match read {
                Ok(booking) => Some(booking),
                Err(e) => {
                    *failed_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    None
                }
            })
        });
        let (tx, rx) = mpsc::channel::<WriteBack>(WRITES_PER_CALL * 2);
        // Bookings being worked on: the batcher waits longer to share a call while many are.
        let busy = AtomicUsize::new(0);
        let busy = &busy;
        let work = async move {
            let results: Vec<Done> = bookings
                .map(|booking| {
                    let tx = tx.clone();
                    async move {
                        busy.fetch_add(1, Ordering::Relaxed);
                        let session =
                            attendance::sessions(std::slice::from_ref(&booking), &self.settings);
                        let result = self.handle(&booking, fields, now, &tx).await;
                        self.progress.tick(1);
                        busy.fetch_sub(1, Ordering::Relaxed);
                        (booking.id, booking.start, session, result)
                    }
                })
                .buffer_unordered(self.settings.processing.concurrency)
                .collect()
                .await;
            // Every sender is gone now: the batcher sees the end of the batch.
            drop(tx);
            results
        };
        let (results, written) = tokio::join!(work, self.flush(rx, busy));
        summary.bookings = results.len();
        // Rules 29 and 30: attendance's timers follow each booking's times, as read.
        let sessions: Vec<attendance::SessionTimes> = results
            .iter()
            .flat_map(|(_, _, session, _)| session.iter().cloned())
            .collect();
        if let Err(e) = attendance::note_sessions(&self.store, &self.settings, &sessions, now) {
            // The next time the bookings are processed notes them again.
            tracing::error!(error = %e, "could not note the bookings' session times for attendance");
        }
        // The collection call itself failed (Salesforce down): the whole batch retries,
        // and the journal makes that retry reuse what Lark already created.
        let Written { refused, failed } = written?;
        if let Some(e) = failed_read.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let starts: HashMap<BookingId, Option<DateTime<Utc>>> = results
            .iter()
            .map(|(id, start, ..)| (id.clone(), *start))
            .collect();
        summary.write_failures = refused.len();
        summary.failures = failed;
        summary.failures.extend(refused.iter().map(|r| r.failure()));
        let mut failing: Vec<(BookingId, RetryKind, String)> = refused
            .into_iter()
            .map(|r| {
                let reason = format!("Salesforce refused the meeting fields: {}", r.reason);
                (r.booking_id, RetryKind::WriteBack, reason)
            })
            .collect();
        // Done with: off the retry list, in one transaction.
        let mut done = Vec::new();
        for (id, start, _, result) in results {
            match result {
                Ok((outcome, calendar_retry)) => {
                    summary.count(outcome);
                    if failing.iter().any(|(f, ..)| f == &id) {
                        continue;
                    }
                    match calendar_retry {
                        Some(reason) => self.retry_calendar(&id, start, now, &reason)?,
                        None => done.push(id),
                    }
                }
                Err(PipelineError::ApplyInDoubt { retry_at, .. }) => {
                    summary.retrying += 1;
                    let reason =
                        "Waiting to reserve again after a reservation whose answer was lost.";
                    self.retries
                        .wait(&id, RetryKind::InDoubt, retry_at, reason)?;
                }
                // Not one booking's failure: nothing can go on until the store works.
                Err(e @ PipelineError::Store(_)) => return Err(e),
                Err(e) => failing.push((id, RetryKind::Meeting, e.to_string())),
            }
        }
        self.retries.clear_all(&done)?;
        summary.retrying += failing.len();
        let mut gave_up = Vec::new();
        for (id, kind, reason) in failing {
            let start = starts.get(&id).copied().flatten();
            if let Some(write) = self.retry_later(&id, kind, start, now, &reason)? {
                gave_up.push(write);
            }
        }
        if !gave_up.is_empty() {
            summary.retrying -= gave_up.len();
            summary.failed += gave_up.len();
            let failures = self.write_failed(gave_up).await;
            summary.failures.extend(failures);
        }
        Ok(summary)
    }

    /// One booking: decide from its current state and the journal, act, follow with the
    /// calendar step, and hand the write-back to the batcher.
    #[tracing::instrument(name = "booking", skip_all, fields(booking = %booking.id))]
    async fn handle(
        &self,
        booking: &Booking,
        fields: &TemplateFields,
        now: DateTime<Utc>,
        writes: &mpsc::Sender<WriteBack>,
    ) -> Result<Handled, PipelineError> {
        let settings = &self.settings;
        let journal = self.store.reservation(&booking.id)?;
        let app_hosted = self.store.app_hosted(&booking.id)?;
        let decision = decide(
            booking,
            &Context {
                settings: &settings.salesforce.booking,
                now,
                journal: journal.as_ref(),
                missing_topic_fields: &fields.missing_topic,
                require_trainer_email: settings.security.require_email_match,
                unconnected: settings.meetings.unconnected,
                app_hosted: app_hosted.as_ref(),
            },
        );
        tracing::debug!(?decision, "decided");
        let actor = Actor {
            settings: &settings.salesforce.booking,
            meetings: &self.meetings,
            hosts: &self.hosts,
            metrics: &self.metrics,
        };
        let Acted { outcome, write } = match actor.act(booking, decision).await {
            Ok(acted) => acted,
            Err(PipelineError::AnsweredNotRecorded(unrecorded)) => {
                return Err(self.write_unrecorded(*unrecorded).await)
            }
            Err(e) => return Err(e),
        };
        let calendar = CalendarStep {
            settings,
            store: &self.store,
            lark: &self.lark,
            hosts: &self.hosts,
            calendars: &self.calendars,
            owed: &self.owed,
            metrics: &self.metrics,
            field_present: fields
                .present
                .contains(&settings.salesforce.booking.calendar_event_field),
        };
        let CalendarDone { write, retry } = calendar.follow(booking, write).await?;
        if let Some(w) = write {
            // The receiver lives until every booking of the batch is done.
            let _ = writes.send(w).await;
        }
        Ok((outcome, retry))
    }

    /// A meeting Lark reserved but the store could not record (rule 23): its link and
    /// reservation id go to the booking in Salesforce at once, on their own (the batch may
    /// never be written), so the restart — or the next pass — finds the reservation on the
    /// booking instead of reserving another. Returns the store's error: the pipeline pauses.
    async fn write_unrecorded(&self, unrecorded: Unrecorded) -> PipelineError {
        let Unrecorded {
            booking: id,
            reservation_id,
            url,
            status,
            source,
        } = unrecorded;
        let (id, reservation_id, url) = (&id, reservation_id.as_str(), url.as_str());
        let b = &self.settings.salesforce.booking;
        let write = WriteBack::meeting(b, id, Some((reservation_id, url)), status, None);
        match self.writer.write(vec![write]).await {
            Ok(w) if w.refused.is_empty() => {
                tracing::error!(reservation = %reservation_id, error = %source, "the store could not record a reserved meeting; its link went to the booking first");
            }
            Ok(w) => {
                let reasons: Vec<&str> = w.refused.iter().map(|r| r.reason.as_str()).collect();
                tracing::error!(reservation = %reservation_id, error = %source, refused = ?reasons, "the store could not record a reserved meeting, and Salesforce refused its link");
            }
            Err(e) => {
                tracing::error!(reservation = %reservation_id, error = %source, salesforce = %e, "the store could not record a reserved meeting, and Salesforce could not be written either");
            }
        }
        PipelineError::Store(source)
    }

    /// Sends the batch's write-backs; admins hear of each booking that became `Failed`
    /// (rule 22) once they are out — also those that landed before a later call failed —
    /// never between them: an alert is a Lark call, and no link waits for one (rule 14).
    async fn flush(
        &self,
        rx: mpsc::Receiver<WriteBack>,
        busy: &AtomicUsize,
    ) -> Result<Written, PipelineError> {
        let mut written = Written::default();
        let result = self.writer.flush(rx, busy, &mut written).await;
        self.alerts.failed(&written.failed).await;
        result.map(|()| written)
    }

    /// Puts a booking whose work failed back on the retry list, or, after
    /// `processing.max_attempts` or once its session has started, returns the `Failed`
    /// write that ends its retries (rule 14).
    fn retry_later(
        &self,
        id: &BookingId,
        kind: RetryKind,
        start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let _span = tracing::info_span!("booking", booking = %id).entered();
        match self.retries.failed(id, kind, start, now, reason)? {
            Verdict::Later => Ok(None),
            Verdict::GiveUp { attempts } => {
                self.metrics.failure(Failure::RetriesExhausted);
                tracing::error!(attempts, reason, "giving up on the booking");
                let tries = if attempts == 1 { "attempt" } else { "attempts" };
                let reason = clip(&format!("Gave up after {attempts} {tries}: {reason}"));
                Ok(Some(WriteBack::status(
                    &self.settings.salesforce.booking,
                    id,
                    MeetingStatus::Failed,
                    Some(&reason),
                )))
            }
        }
    }

    /// A booking whose meeting is fine but whose calendar step failed: back on the retry
    /// list on its own count — never `Failed` for the calendar's sake. Once the session
    /// has started the event no longer matters: the retries end, the reason stays.
    fn retry_calendar(
        &self,
        id: &BookingId,
        start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), PipelineError> {
        let _span = tracing::info_span!("booking", booking = %id).entered();
        if let Verdict::GiveUp { .. } =
            self.retries
                .failed(id, RetryKind::Calendar, start, now, reason)?
        {
            tracing::warn!(reason, "session started; no more calendar retries");
        }
        Ok(())
    }

    /// Writes the `Failed` status of bookings given up on; a refusal of even that write
    /// (or Salesforce down) is logged and counted, and the booking leaves the list anyway.
    /// Returns each booking given up on, with why.
    async fn write_failed(&self, writes: Vec<WriteBack>) -> Vec<BookingFailure> {
        let b = &self.settings.salesforce.booking;
        let given_up: Vec<(BookingId, String)> = writes
            .iter()
            .map(|w| (w.booking_id.clone(), w.failed_reason(b).unwrap_or_default()))
            .collect();
        match self.writer.write(writes).await {
            Ok(Written {
                refused,
                failed: mut failures,
            }) => {
                // Rule 22: these became Failed just now (the batch's links are out).
                self.alerts.failed(&failures).await;
                for r in refused {
                    self.metrics.failure(Failure::FailedStatusRefused);
                    tracing::error!(booking = %r.booking_id, reason = %r.reason, "Salesforce refused even the Failed status; the booking needs an admin");
                    failures.push(BookingFailure {
                        booking: r.booking_id,
                        kind: BookingFailureKind::WriteRefused,
                        reason: format!("Salesforce refused even the Failed status: {}", r.reason),
                    });
                }
                failures
            }
            Err(e) => {
                self.metrics.failure(Failure::FailedStatusRefused);
                tracing::error!(error = %e, "could not write the Failed status of bookings given up on");
                given_up
                    .into_iter()
                    .map(|(id, reason)| BookingFailure {
                        booking: id,
                        kind: BookingFailureKind::MeetingFailed,
                        reason: format!("{reason} (the Failed status could not be written: {e})"),
                    })
                    .collect()
            }
        }
    }

    /// Processes the bookings whose retry is due; returns how many were due.
    pub async fn run_due_retries(&self) -> Result<usize, PipelineError> {
        let now = Utc::now();
        let due = self.retries.due(now, RETRIES_PER_BATCH)?;
        let ids: Vec<BookingId> = due.iter().map(|e| e.booking_id.clone()).collect();
        if let Err(e) = self.process_ids(&ids).await {
            // Reading the bookings failed (Salesforce down): not these bookings' fault, so
            // no attempt is counted; they wait a little and come again.
            let later = now + RETRY_READ_FAILURE_DELAY;
            for entry in &due {
                self.retries
                    .wait(&entry.booking_id, entry.kind, later, &entry.last_reason)?;
            }
            return Err(e);
        }
        Ok(due.len())
    }

    /// When the soonest booking on the retry list is due, if any.
    pub fn next_retry(&self) -> Option<tokio::time::Instant> {
        let at = match self.retries.next_due() {
            Ok(at) => at?,
            Err(e) => {
                tracing::error!(error = %e, "could not read the retry list");
                return None;
            }
        };
        Some(crate::retry::timer_at(at))
    }
}
