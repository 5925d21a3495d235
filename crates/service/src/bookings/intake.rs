//! Intake: the processor task. Stream items → coalesced booking ids → the engine →
//! checkpoint; also runs what timers and the token service enqueue (refresh passes,
//! sweeps, "trainer connected/disconnected").
//!
//! Ordering and exactly-once: stream items are taken in batches; a batch is processed to
//! the end (its write-backs landed) before the checkpoint moves to its last replay id,
//! and before the next batch starts, so changes to one booking are never reordered and
//! the checkpoint never passes work still in progress. A failed batch is retried; the
//! reservation journal makes the retry reuse what Lark already created.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};

use super::changes::EventWork;
use super::engine::{Engine, Summary};
use super::outcome::PipelineError;
use super::status::PipelineStatus;
use crate::config::Settings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::salesforce::streaming::{run_subscriber, StreamItem, StreamStatus};
use crate::salesforce::SalesforceClient;
use crate::store::Store;
use crate::tokens::{TokenService, TrainerEvent};

/// Stream items buffered between the subscriber and the processor; when full, the
/// subscriber's next long-poll waits (backpressure instead of memory growth).
const STREAM_BUFFER: usize = 4_096;
/// First and longest wait before a failed batch is tried again (jittered, doubling).
const BATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const BATCH_RETRY_MAX: Duration = Duration::from_secs(60);
/// Most stream items taken into one batch.
const MAX_BATCH_ITEMS: usize = 2_000;
/// Retained events: CDC keeps 72 hours (design §4). A checkpoint older than this cannot
/// be replayed, so start-up sweeps instead.
pub const RETENTION: Duration = Duration::from_secs(72 * 3600);

enum Control {
    RefreshPass,
    /// A sweep; its summary goes to the sender when someone waits for it.
    Reconcile(Option<oneshot::Sender<Result<Summary, String>>>),
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
        let _ = self.control.send(Control::Reconcile(None));
    }

    /// A sweep in the running processor's turn (never beside one of its batches, so no
    /// booking is worked on twice at once), and its summary: `reconcile` while `run` is up.
    pub async fn reconcile(&self) -> Result<Summary, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Reconcile(Some(tx)))
            .map_err(|_| "the booking processor is not running".to_string())?;
        rx.await
            .map_err(|_| "the booking processor stopped before the sweep finished".to_string())?
    }
}

/// The processor task, built by `App::build` and run by `App::run_until_stopped`.
pub struct Processor {
    engine: Arc<Engine>,
    control: mpsc::UnboundedReceiver<Control>,
    trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
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
        status: Arc<PipelineStatus>,
        trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
    ) -> (Processor, ProcessorHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine::new(
            settings, salesforce, lark, tokens, store, metrics, status,
        ));
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
        let status = engine.status.clone();
        let forwarder = tokio::spawn(async move {
            while status_rx.changed().await.is_ok() {
                let up = status_rx.borrow().subscribed;
                status.set_streaming_subscription(up);
            }
            status.set_streaming_subscription(false);
        });
        // Sweeps wait for the subscription, so nothing changed between them is missed.
        let mut subscribed = status_tx.subscribe();
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
        let mut start_sweep = sweep_first;

        let mut stop = shutdown.clone();
        loop {
            let next_retry = engine.next_retry();
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                up = async { subscribed.wait_for(|s| s.subscribed).await.is_ok() }, if start_sweep => {
                    start_sweep = false;
                    if up {
                        if let Err(e) = engine.reconcile().await {
                            tracing::error!(error = %e, "start-up sweep failed; the next sweep retries");
                        }
                    }
                }
                Some(control) = self.control.recv() => match control {
                    Control::RefreshPass => {
                        let engine = engine.clone();
                        tokio::spawn(async move { engine.refresh_pass().await });
                    }
                    Control::Reconcile(reply) => {
                        let result = engine.reconcile().await.map_err(|e| e.to_string());
                        if let Err(e) = &result {
                            tracing::error!(error = %e, "reconciliation sweep failed");
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(result);
                        }
                    }
                },
                Some(event) = self.trainer_events.recv() => {
                    if let Err(e) = engine.on_trainer_event(&event).await {
                        tracing::error!(error = %e, ?event, "could not process the trainer's bookings");
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(far_future)), if next_retry.is_some() => {
                    if let Err(e) = engine.run_due_retries().await {
                        tracing::warn!(error = %e, "due retries could not be processed; they come again shortly");
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
    /// Processes a batch of stream items to the end, retrying on transient failure,
    /// then saves the checkpoint.
    async fn process_stream_batch(&self, items: Vec<StreamItem>, shutdown: &watch::Receiver<bool>) {
        let channel = self.settings.salesforce.streaming.channel.clone();
        let mut ids: Vec<BookingId> = Vec::new();
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
                                    self.metrics.change_committed(id.as_str(), ts);
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
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let mut delays = crate::retry::backoff(BATCH_RETRY_MIN, BATCH_RETRY_MAX);
        loop {
            let result = async {
                let mut s = self.process_ids(&ids).await?;
                if sweep {
                    s.add(&self.reconcile().await?);
                }
                Ok::<Summary, PipelineError>(s)
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
        let done: Vec<&str> = ids.iter().map(BookingId::as_str).collect();
        self.metrics.forget_changes(&done);
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
}

impl Engine {
    /// When the soonest booking on the retry list is due, if any.
    fn next_retry(&self) -> Option<tokio::time::Instant> {
        let at = match self.store.next_retry_at() {
            Ok(at) => at?,
            Err(e) => {
                tracing::error!(error = %e, "could not read the retry list");
                return None;
            }
        };
        let wait_ms = (at - Utc::now().timestamp_millis()).max(0) as u64;
        Some(tokio::time::Instant::now() + Duration::from_millis(wait_ms))
    }

    /// Replay id to subscribe from, and whether to sweep once subscribed: a checkpoint
    /// too old to replay from, an unreadable one, or none at all (a first start, or a store
    /// without this channel's checkpoint: rule 15).
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
            Ok(None) => {
                tracing::info!(channel = %streaming.channel, "no checkpoint for this channel: sweeping upcoming bookings once subscribed");
                (streaming.replay_from.replay_id(), true)
            }
            Err(e) => {
                tracing::error!(error = %e, "checkpoint unreadable: starting from latest and sweeping");
                (-1, true)
            }
        }
    }
}

/// A deadline that never comes (the guard of its `select!` branch is false anyway).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
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
