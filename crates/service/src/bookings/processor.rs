//! The processor: stream items → coalesced booking ids → one batched fresh read →
//! `decide` → `act` (up to `processing.concurrency` bookings at once) → batched
//! write-back → checkpoint. Also runs what timers and the token service enqueue:
//! refresh passes, reconciliation sweeps, and "trainer connected/disconnected".
//!
//! Ordering and exactly-once: stream items are taken in batches; a batch is processed to
//! the end (its write-backs landed) before the checkpoint moves to its last replay id,
//! and before the next batch starts, so changes to one booking are never reordered and
//! the checkpoint never passes work still in progress. A failed batch is retried; the
//! reservation journal makes the retry reuse what Lark already created.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch, OnceCell};

use super::act::{Actor, Transient, WriteBack};
use super::decide::{decide, Context};
use super::model::{select_fields, Booking, MeetingStatus};
use crate::config::Settings;
use crate::http::Readiness;
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::progress::Progress;
use crate::salesforce::events::{ChangeEvent, ChangeKind};
use crate::salesforce::soql::{self, id_list, quote, RecordId};
use crate::salesforce::streaming::{run_subscriber, StreamItem, StreamStatus};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::store::Store;
use crate::tokens::{RefreshOutcome, TokenService, TrainerEvent};

/// Stream items buffered between the subscriber and the processor; when full, the
/// subscriber's next long-poll waits (backpressure instead of memory growth).
const STREAM_BUFFER: usize = 4_096;
/// First and longest wait before a failed batch is tried again (jittered, doubling).
const BATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const BATCH_RETRY_MAX: Duration = Duration::from_secs(60);
/// Most stream items taken into one batch.
const MAX_BATCH_ITEMS: usize = 2_000;
/// Ids per SOQL `IN (...)` list: 200 ids keep the GET URL near 5 KB, well inside limits.
const IDS_PER_QUERY: usize = 200;
/// Records per sObject Collections call (Salesforce's maximum).
const WRITES_PER_CALL: usize = 200;
/// While a batch is still running, write-backs wait at most this long to share a call.
const WRITE_LINGER: Duration = Duration::from_secs(3);
/// Trainers refreshed at once by a refresh pass (each is one Lark call and one write).
const REFRESH_CONCURRENCY: usize = 4;
/// Most bookings one reconciliation sweep looks at.
const SWEEP_LIMIT: usize = 10_000;
/// Sweeps look this far ahead (bookings further out are renewed as they come closer).
const SWEEP_HORIZON_DAYS: i64 = 366;
/// Retained events: CDC keeps 72 hours (design §4). A checkpoint older than this cannot
/// be replayed, so start-up sweeps instead.
pub const RETENTION: Duration = Duration::from_secs(72 * 3600);
/// Fields Salesforce changes on every write; a change of only these and our output
/// fields is our own.
const SYSTEM_FIELDS: [&str; 3] = ["LastModifiedDate", "SystemModstamp", "LastModifiedById"];

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
    /// Salesforce refused the booking's write-back (a validation rule, a locked record).
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
            "reconciled {} bookings: {} created, {} updated, {} cancelled, {} pending, {} failed, {} unchanged, {} write-backs refused",
            self.bookings,
            self.created,
            self.updated,
            self.cancelled,
            self.pending,
            self.failed,
            self.unchanged,
            self.write_failures
        )
    }

    fn add(&mut self, other: &Summary) {
        self.bookings += other.bookings;
        self.created += other.created;
        self.updated += other.updated;
        self.cancelled += other.cancelled;
        self.pending += other.pending;
        self.failed += other.failed;
        self.unchanged += other.unchanged;
        self.write_failures += other.write_failures;
        self.failures.extend(other.failures.iter().cloned());
    }
}

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

    fn fail(&mut self, trainer: Option<&str>, reason: impl std::fmt::Display) {
        self.failures.push(TrainerFailure {
            trainer: trainer.map(str::to_string),
            reason: reason.to_string(),
        });
    }
}

enum Control {
    RefreshPass,
    Reconcile,
}

/// Enqueues work for the processor (timers, commands, tests).
#[derive(Clone)]
pub struct ProcessorHandle {
    control: mpsc::UnboundedSender<Control>,
}

impl ProcessorHandle {
    /// Asks for a refresh pass (the refresh timer).
    pub fn request_refresh_pass(&self) {
        let _ = self.control.send(Control::RefreshPass);
    }

    /// Asks for a reconciliation sweep.
    pub fn request_reconcile(&self) {
        let _ = self.control.send(Control::Reconcile);
    }
}

/// The processor task, built by `App::build` and run by `App::run_until_stopped`.
pub struct Processor {
    engine: Arc<Engine>,
    control: mpsc::UnboundedReceiver<Control>,
    trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
}

/// Everything a batch needs; shared by the processor loop and one-shot commands.
pub struct Engine {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
    lark: LarkClient,
    tokens: TokenService,
    store: Store,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    /// Template fields that exist on the booking object, and those that do not.
    topic_fields: OnceCell<(Vec<String>, Vec<String>)>,
    /// Bookings a sweep found and has done (a one-shot `reconcile` shows it).
    progress: Progress,
}

impl Processor {
    /// Builds the processor and its handle.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        lark: LarkClient,
        tokens: TokenService,
        store: Store,
        metrics: Metrics,
        readiness: Arc<Readiness>,
        trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
    ) -> (Processor, ProcessorHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            settings,
            salesforce,
            lark,
            tokens,
            store,
            metrics,
            readiness,
            topic_fields: OnceCell::new(),
            progress: Progress::default(),
        });
        (
            Processor {
                engine,
                control: rx,
                trainer_events,
            },
            ProcessorHandle { control: tx },
        )
    }

    /// The engine, for one-shot commands (`reconcile`, `refresh-tokens`).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Runs until shutdown: starts the streaming subscriber (from the checkpoint), then
    /// consumes its items, control requests and trainer events.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let (start_from, sweep_first) = engine.start_position();
        let (tx, mut stream) = mpsc::channel(STREAM_BUFFER);
        let (status_tx, mut status_rx) = watch::channel(StreamStatus::default());
        let readiness = engine.readiness.clone();
        let forwarder = tokio::spawn(async move {
            while status_rx.changed().await.is_ok() {
                let up = status_rx.borrow().subscribed;
                readiness.streaming.store(up, Ordering::Relaxed);
                if up {
                    // A live subscription means the Salesforce login works too.
                    readiness.salesforce.store(true, Ordering::Relaxed);
                }
            }
            readiness.streaming.store(false, Ordering::Relaxed);
        });
        let store = engine.store.clone();
        let channel = engine.settings.salesforce.streaming.channel.clone();
        let checkpoint = move || store.checkpoint(&channel).ok().flatten().map(|(r, _)| r);
        let subscriber = tokio::spawn(run_subscriber(
            engine.salesforce.clone(),
            engine.settings.salesforce.streaming.clone(),
            start_from,
            checkpoint,
            tx,
            shutdown.clone(),
            status_tx,
        ));
        // If this task is dropped (aborted), its helpers go with it.
        let _guard = AbortOnDrop(vec![forwarder.abort_handle(), subscriber.abort_handle()]);
        if sweep_first {
            if let Err(e) = engine.reconcile().await {
                tracing::error!(error = %e, "start-up sweep failed; the next sweep retries");
            }
        }

        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                Some(control) = self.control.recv() => match control {
                    Control::RefreshPass => {
                        let engine = engine.clone();
                        tokio::spawn(async move { engine.refresh_pass().await });
                    }
                    Control::Reconcile => {
                        if let Err(e) = engine.reconcile().await {
                            tracing::error!(error = %e, "reconciliation sweep failed");
                        }
                    }
                },
                Some(event) = self.trainer_events.recv() => {
                    if let Err(e) = engine.on_trainer_event(&event).await {
                        tracing::error!(error = %e, ?event, "could not process the trainer's bookings");
                    }
                }
                item = stream.recv() => {
                    let Some(first) = item else {
                        match subscriber.is_finished() {
                            true => tracing::error!("the streaming subscriber stopped; restart the service"),
                            false => tracing::warn!("stream ended"),
                        }
                        break;
                    };
                    let mut items = vec![first];
                    while items.len() < MAX_BATCH_ITEMS {
                        match stream.try_recv() {
                            Ok(i) => items.push(i),
                            Err(_) => break,
                        }
                    }
                    engine.process_stream_batch(items, &shutdown).await;
                }
            }
        }
        // Stop intake: the subscriber sees the same signal; wait for it to say goodbye.
        let _ = tokio::time::timeout(Duration::from_secs(10), subscriber).await;
        tracing::info!("processor stopped");
        Ok(())
    }
}

impl Engine {
    /// Bookings found and done by sweeps so far (for `reconcile`'s progress).
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Processes a batch of stream items to the end, retrying on transient failure,
    /// then saves the checkpoint.
    async fn process_stream_batch(&self, items: Vec<StreamItem>, shutdown: &watch::Receiver<bool>) {
        let channel = self.settings.salesforce.streaming.channel.clone();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut last_replay: Option<i64> = None;
        let mut first_replay: Option<i64> = None;
        let mut events = 0u64;
        let mut sweep = false;
        let own_user = self
            .salesforce
            .session()
            .await
            .ok()
            .map(|s| s.user_id.to_string());
        for item in items {
            match item {
                StreamItem::Event(ev) => {
                    self.metrics.inc(names::EVENTS_RECEIVED, &[]);
                    if let Some(ts) = ev.commit_timestamp {
                        let lag = (Utc::now().timestamp_millis() - ts).max(0) as f64 / 1000.0;
                        self.metrics.set(names::STREAMING_LAG, &[], lag);
                    }
                    last_replay = Some(ev.replay_id);
                    first_replay.get_or_insert(ev.replay_id);
                    events += 1;
                    match self.event_ids(&ev, own_user.as_deref()) {
                        EventWork::Ids(list) => {
                            if let Some(ts) = ev.commit_timestamp {
                                for id in &list {
                                    self.metrics.change_committed(id, ts);
                                }
                            }
                            ids.extend(list)
                        }
                        EventWork::Sweep => sweep = true,
                        EventWork::Skip(reason) => {
                            self.metrics
                                .inc(names::EVENTS_SKIPPED, &[("reason", reason)]);
                        }
                    }
                }
                StreamItem::Malformed { replay_id, reason } => {
                    let replay = replay_id.map_or_else(|| "unknown".to_string(), |r| r.to_string());
                    tracing::warn!(replay_id = %replay, reason = %reason, "malformed event skipped");
                    self.metrics
                        .inc(names::EVENTS_SKIPPED, &[("reason", "malformed")]);
                    if let Some(r) = replay_id {
                        last_replay = Some(r);
                        first_replay.get_or_insert(r);
                    }
                }
                StreamItem::ReplayGap { reason } => {
                    tracing::warn!(reason = %reason, "replay gap: running a reconciliation sweep");
                    sweep = true;
                }
                // Readiness follows the subscriber's status watch (one writer).
                StreamItem::Subscribed { .. } => {}
            }
        }
        // The very first batch on a channel without a checkpoint: pin the position just
        // before it, so a crash mid-batch replays it instead of resuming at "latest".
        if let Some(first) = first_replay {
            if matches!(self.store.checkpoint(&channel), Ok(None)) {
                if let Err(e) =
                    self.store
                        .save_checkpoint(&channel, first - 1, Utc::now().timestamp())
                {
                    tracing::error!(error = %e, "could not save the initial checkpoint");
                }
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let mut delays = crate::retry::backoff(BATCH_RETRY_MIN, BATCH_RETRY_MAX);
        loop {
            let result = async {
                let mut s = self.process_ids(&ids).await?;
                if sweep {
                    s.add(&self.reconcile().await?);
                }
                Ok::<Summary, Transient>(s)
            }
            .await;
            match result {
                Ok(summary) => {
                    if summary.bookings > 0 {
                        tracing::debug!(?summary, "batch done");
                    }
                    break;
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(BATCH_RETRY_MAX);
                    self.metrics
                        .inc(names::FAILURES, &[("kind", "batch_retry")]);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        // Not checkpointed: the events come again after restart.
                        _ = stopped(&mut stop) => return,
                    }
                }
            }
        }
        self.metrics.forget_changes(&ids);
        self.metrics.add(names::EVENTS_PROCESSED, &[], events);
        if let Some(replay) = last_replay {
            if let Err(e) = self
                .store
                .save_checkpoint(&channel, replay, Utc::now().timestamp())
            {
                tracing::error!(error = %e, "could not save the checkpoint");
            }
        }
    }

    fn event_ids(&self, ev: &ChangeEvent, own_user: Option<&str>) -> EventWork {
        let booking = &self.settings.salesforce.booking;
        if self.settings.salesforce.streaming.is_platform_event() {
            return EventWork::Ids(ev.record_ids.clone());
        }
        if !ev.entity.is_empty() && ev.entity != booking.object {
            return EventWork::Skip("other_object");
        }
        // A wildcard id ("a0B*") stands for many records: only a sweep covers it.
        if ev.record_ids.iter().any(|id| id.contains('*')) {
            return EventWork::Sweep;
        }
        match ev.kind {
            ChangeKind::GapOverflow => return EventWork::Sweep,
            ChangeKind::GapCreate
            | ChangeKind::GapUpdate
            | ChangeKind::GapDelete
            | ChangeKind::GapUndelete => return EventWork::Ids(ev.record_ids.clone()),
            _ => {}
        }
        if own_user.is_some() && ev.commit_user.as_deref() == own_user {
            return EventWork::Skip("own_write");
        }
        if ev.kind == ChangeKind::Update && !ev.changed_fields.is_empty() {
            let outputs = booking.output_fields();
            let only_outputs = ev.changed_fields.iter().all(|f| {
                outputs.iter().any(|o| o.eq_ignore_ascii_case(f))
                    || SYSTEM_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(f))
            });
            if only_outputs {
                return EventWork::Skip("output_fields_only");
            }
        }
        EventWork::Ids(ev.record_ids.clone())
    }

    /// Topic template fields split into (existing, missing), from one describe.
    async fn topic_fields(&self) -> Result<&(Vec<String>, Vec<String>), Transient> {
        self.topic_fields
            .get_or_try_init(|| async {
                let b = &self.settings.salesforce.booking;
                let wanted = b.topic_fields();
                if wanted.is_empty() {
                    return Ok((vec![], vec![]));
                }
                let describe = self
                    .salesforce
                    .describe(&b.object)
                    .await
                    .map_err(|e| Transient(format!("describe {}: {e}", b.object)))?;
                let (present, missing): (Vec<String>, Vec<String>) = wanted
                    .into_iter()
                    .partition(|f| describe.field(f).is_some());
                if !missing.is_empty() {
                    tracing::error!(?missing, object = %b.object, "topic_template names fields that do not exist");
                }
                Ok((present, missing))
            })
            .await
    }

    /// Reads the given bookings fresh and brings each in step.
    pub async fn process_ids(&self, ids: &[String]) -> Result<Summary, Transient> {
        let valid: Vec<RecordId> = ids
            .iter()
            .filter_map(|id| match RecordId::parse(id) {
                Ok(r) => Some(r),
                Err(_) => {
                    tracing::warn!(id = %id, "ignoring an invalid record id from the stream");
                    None
                }
            })
            .collect();
        if valid.is_empty() {
            return Ok(Summary::default());
        }
        let (present, _) = self.topic_fields().await?;
        let b = &self.settings.salesforce.booking;
        let fields = select_fields(b, &self.settings.salesforce.trainer, present);
        let mut rows = Vec::new();
        for chunk in valid.chunks(IDS_PER_QUERY) {
            let soql = format!(
                "SELECT {fields} FROM {} WHERE Id IN {}",
                b.object,
                id_list(chunk)
            );
            rows.extend(
                self.salesforce
                    .query_all(&soql)
                    .await
                    .map_err(sf_transient)?,
            );
        }
        let mut bookings = self.parse_rows(&rows).await?;
        // Ids Salesforce no longer returns at all (purged) are treated as deleted.
        for id in &valid {
            if !bookings.iter().any(|bk| bk.id == id.as_str()) {
                bookings.push(deleted_booking(id.as_str()));
            }
        }
        self.process_bookings(bookings).await
    }

    async fn parse_rows(&self, rows: &[Map<String, Value>]) -> Result<Vec<Booking>, Transient> {
        let (present, _) = self.topic_fields().await?;
        let b = &self.settings.salesforce.booking;
        Ok(rows
            .iter()
            .filter_map(|r| Booking::from_row(b, &self.settings.salesforce.trainer, present, r))
            .collect())
    }

    /// Decides and acts for each booking (bounded concurrency), batching write-backs.
    async fn process_bookings(&self, bookings: Vec<Booking>) -> Result<Summary, Transient> {
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
        let progress = &self.progress;
        let work = async move {
            let results: Vec<Result<&'static str, Transient>> = futures::stream::iter(bookings)
                .map(|booking| {
                    let tx = tx.clone();
                    async move {
                        let journal = actor
                            .store
                            .reservation(&booking.id)
                            .map_err(|e| Transient(e.to_string()))?;
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
                        let kind = decision_kind(&decision);
                        let write = actor.act(&booking, decision).await?;
                        let outcome = match &write {
                            Some(w) => {
                                status_of(w, &settings.salesforce.booking.meeting_status_field)
                                    .unwrap_or(kind)
                            }
                            None => kind,
                        };
                        if let Some(w) = write {
                            let _ = tx.send(w).await;
                        }
                        progress.tick(1);
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
        let (results, write_failures) = tokio::join!(work, self.flush_writes(rx));
        let mut first_error = None;
        for r in results {
            match r {
                Ok("created") => summary.created += 1,
                Ok("updated") => summary.updated += 1,
                Ok("cancelled") => summary.cancelled += 1,
                Ok("pending") => summary.pending += 1,
                Ok("failed") => summary.failed += 1,
                Ok(_) => summary.unchanged += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let failures = write_failures?;
        summary.write_failures = failures
            .iter()
            .filter(|f| f.kind == BookingFailureKind::WriteRefused)
            .count();
        summary.failures = failures;
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Collects write-backs and sends them in collection calls of up to 200: at once when
    /// the batch is done or 200 are waiting, else after [`WRITE_LINGER`].
    async fn flush_writes(
        &self,
        mut rx: mpsc::Receiver<WriteBack>,
    ) -> Result<Vec<BookingFailure>, Transient> {
        let mut pending: Vec<WriteBack> = Vec::new();
        let mut failures = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => tokio::select! {
                    w = rx.recv() => w.map(Some),
                    _ = tokio::time::sleep_until(d) => Some(None),
                },
                None => rx.recv().await.map(Some),
            };
            match next {
                Some(Some(w)) => {
                    // Several writes for one booking in a batch: the later one wins.
                    match pending.iter_mut().find(|p| p.booking_id == w.booking_id) {
                        Some(p) => p.fields.extend(w.fields),
                        None => pending.push(w),
                    }
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + WRITE_LINGER);
                    if pending.len() >= WRITES_PER_CALL {
                        failures.extend(self.write(std::mem::take(&mut pending)).await?);
                        deadline = None;
                    }
                }
                Some(None) => {
                    failures.extend(self.write(std::mem::take(&mut pending)).await?);
                    deadline = None;
                }
                None => {
                    failures.extend(self.write(std::mem::take(&mut pending)).await?);
                    return Ok(failures);
                }
            }
        }
    }

    /// Sends write-backs; returns the bookings Salesforce refused and those now `Failed`.
    async fn write(&self, writes: Vec<WriteBack>) -> Result<Vec<BookingFailure>, Transient> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let b = &self.settings.salesforce.booking;
        let object = &b.object;
        // What each write says, read before the fields are handed over.
        let said: Vec<(bool, Option<String>)> = writes
            .iter()
            .map(|w| {
                let text = |f: &str| w.fields.get(f).and_then(Value::as_str).unwrap_or("");
                let linked = !text(&b.link_field).is_empty();
                let failed = (text(&b.meeting_status_field) == MeetingStatus::Failed.as_str())
                    .then(|| text(&b.meeting_error_field).to_string());
                (linked, failed)
            })
            .collect();
        let records: Vec<(RecordId, Map<String, Value>)> = writes
            .into_iter()
            .map(|w| (w.booking_id, w.fields))
            .collect();
        let ids: Vec<RecordId> = records.iter().map(|(id, _)| id.clone()).collect();
        let results = self
            .salesforce
            .update_many(object, records)
            .await
            .map_err(sf_transient)?;
        let mut failures = Vec::new();
        for ((id, r), (linked, failed)) in ids.iter().zip(results.iter()).zip(said) {
            if r.success {
                if linked {
                    self.metrics.link_written(id.as_str());
                }
                if let Some(reason) = failed {
                    failures.push(BookingFailure {
                        booking: id.to_string(),
                        kind: BookingFailureKind::MeetingFailed,
                        reason,
                    });
                }
            } else {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "salesforce_write_rejected")]);
                let codes: Vec<String> = r
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.status_code, e.message))
                    .collect();
                tracing::error!(booking = %id, errors = ?codes, "Salesforce rejected the booking write-back");
                failures.push(BookingFailure {
                    booking: id.to_string(),
                    kind: BookingFailureKind::WriteRefused,
                    reason: codes.join("; "),
                });
            }
        }
        Ok(failures)
    }

    /// One bounded, batched sweep of upcoming bookings whose meeting state may be
    /// missing or stale.
    pub async fn reconcile(&self) -> Result<Summary, Transient> {
        let b = &self.settings.salesforce.booking;
        let (present, _) = self.topic_fields().await?;
        let fields = select_fields(b, &self.settings.salesforce.trainer, present);
        let now = Utc::now();
        let horizon = now + chrono::Duration::days(SWEEP_HORIZON_DAYS);
        let remote: Vec<String> = b.remote_values.iter().map(|v| quote(v)).collect();
        let soql = format!(
            "SELECT {fields} FROM {obj} WHERE {end} > {now} AND {end} < {horizon} AND ({svc} IN ({remote}) OR {res} != null) ORDER BY {end} LIMIT {SWEEP_LIMIT}",
            obj = b.object,
            end = b.end_field,
            now = soql::datetime(now),
            horizon = soql::datetime(horizon),
            svc = b.service_type_field,
            remote = remote.join(", "),
            res = b.reservation_field,
        );
        let rows = self.salesforce.query(&soql).await.map_err(sf_transient)?;
        let bookings = self.parse_rows(&rows).await?;
        // Bookings with a journalled reservation that the live query did not return may
        // have been deleted while events could not be replayed: read them with queryAll.
        let seen: std::collections::HashSet<&str> =
            bookings.iter().map(|b| b.id.as_str()).collect();
        let ended = (now - chrono::Duration::days(2)).timestamp();
        self.store
            .prune_reservations(ended)
            .map_err(|e| Transient(e.to_string()))?;
        let journalled = self
            .store
            .reservation_booking_ids()
            .map_err(|e| Transient(e.to_string()))?;
        let vanished: Vec<String> = journalled
            .into_iter()
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        self.progress.add_total(bookings.len() + vanished.len());
        let mut summary = self.process_bookings(bookings).await?;
        if !vanished.is_empty() {
            summary.add(&self.process_ids(&vanished).await?);
        }
        tracing::info!(?summary, "reconciliation sweep done");
        Ok(summary)
    }

    /// A trainer connected: their pending bookings get meetings now. Disconnected:
    /// their upcoming bookings are re-decided (those needing Lark become pending).
    async fn on_trainer_event(&self, event: &TrainerEvent) -> Result<Summary, Transient> {
        let b = &self.settings.salesforce.booking;
        let (trainer_id, extra) = match event {
            TrainerEvent::Connected(id) => (
                id,
                format!(
                    " AND {} = {}",
                    b.meeting_status_field,
                    quote(MeetingStatus::PendingTrainerConnection.as_str())
                ),
            ),
            TrainerEvent::Disconnected(id) => (id, String::new()),
        };
        let Ok(trainer_id) = RecordId::parse(trainer_id) else {
            return Ok(Summary::default());
        };
        let (present, _) = self.topic_fields().await?;
        let fields = select_fields(b, &self.settings.salesforce.trainer, present);
        let soql = format!(
            "SELECT {fields} FROM {obj} WHERE {tf} = {tid} AND {end} > {now}{extra} LIMIT {SWEEP_LIMIT}",
            obj = b.object,
            tf = b.trainer_field,
            tid = quote(trainer_id.as_str()),
            end = b.end_field,
            now = soql::datetime(Utc::now()),
        );
        let rows = self.salesforce.query(&soql).await.map_err(sf_transient)?;
        let bookings = self.parse_rows(&rows).await?;
        let summary = self.process_bookings(bookings).await?;
        tracing::info!(trainer = %trainer_id, ?summary, "processed the trainer's bookings");
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
                    summary.fail(Some(&trainer), reason);
                }
                RefreshOutcome::Skipped(_) => summary.skipped += 1,
            }
        }
        tracing::info!(?summary, "refresh pass done");
        summary
    }

    /// Replay id to subscribe from, and whether a sweep must run first (checkpoint
    /// missing-but-configured-earliest is fine; too old is not).
    pub fn start_position(&self) -> (i64, bool) {
        let streaming = &self.settings.salesforce.streaming;
        match self.store.checkpoint(&streaming.channel) {
            Ok(Some((replay, saved_at))) => {
                let age = Utc::now().timestamp() - saved_at;
                if age > RETENTION.as_secs() as i64 {
                    tracing::warn!(replay, age_secs = age, "checkpoint older than the retention window: starting from latest and sweeping");
                    (-1, true)
                } else {
                    (replay, false)
                }
            }
            Ok(None) => (streaming.replay_from.replay_id(), false),
            Err(e) => {
                tracing::error!(error = %e, "checkpoint unreadable: starting from latest and sweeping");
                (-1, true)
            }
        }
    }
}

/// Aborts the tasks it holds when dropped, so no task outlives its owner.
pub struct AbortOnDrop(pub Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Resolves once shutdown is requested (a dropped sender counts as a request).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

enum EventWork {
    Ids(Vec<String>),
    Sweep,
    Skip(&'static str),
}

fn deleted_booking(id: &str) -> Booking {
    Booking {
        id: id.to_string(),
        is_deleted: true,
        trainer_id: None,
        trainer: None,
        start: None,
        end: None,
        bad_times: false,
        service_type: None,
        status: None,
        link: None,
        reservation_id: None,
        meeting_status: None,
        meeting_error: None,
        topic_values: Map::new(),
    }
}

fn decision_kind(d: &super::decide::Decision) -> &'static str {
    use super::decide::Decision::*;
    match d {
        Nothing => "unchanged",
        Create { .. } | Move { .. } | WriteBack { .. } => "created",
        Update { .. } => "updated",
        Cancel { .. } => "cancelled",
        Pending { .. } | Release { .. } => "pending",
        Fail { .. } => "failed",
    }
}

fn status_of(w: &WriteBack, status_field: &str) -> Option<&'static str> {
    match w
        .fields
        .get(status_field)?
        .as_str()
        .and_then(MeetingStatus::parse)?
    {
        MeetingStatus::Created => None,
        MeetingStatus::PendingTrainerConnection => Some("pending"),
        MeetingStatus::Failed => Some("failed"),
        MeetingStatus::Cancelled => Some("cancelled"),
    }
}

fn sf_transient(e: SalesforceError) -> Transient {
    Transient(format!("Salesforce: {e}"))
}
