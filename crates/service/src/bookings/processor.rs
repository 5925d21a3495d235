//! The processor task: the one loop that owns the pipeline's turn. It starts the streaming
//! subscriber (from the checkpoint), then takes, one at a time, a batch of stream items,
//! a sweep or refresh pass the timer or a command asked for, a trainer's (dis)connect, or
//! the retries that are due, or an attendance turn (Lark's meeting events recorded by the
//! sink, or attendance's timers, rules 29–30) — so no booking is ever worked on by two
//! paths at once.
//! Refresh passes touch only tokens: they run beside the loop as tracked tasks, which
//! shutdown waits for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::attendance::{Attendance, AttendanceParts, AttendanceSink};
use super::engine::Engine;
use super::intake::{process_stream_batch, start_position, Intake};
use super::outcome::{PipelineError, Summary};
use super::pause::{while_unwritable, Paused};
use super::sweeps::{on_trainer_event, reconcile};
use crate::metrics::names;
use crate::salesforce::streaming::{run_subscriber, StreamStatus};
use crate::tasks::Tasks;
use crate::tokens::{refresh_pass, TrainerEvent};

/// Stream items buffered between the subscriber and the processor; when full, the
/// subscriber's next long-poll waits (backpressure instead of memory growth).
const STREAM_BUFFER: usize = 4_096;
/// How long shutdown waits for the subscriber to say goodbye.
const SUBSCRIBER_GOODBYE: Duration = Duration::from_secs(10);
/// After due retries could not be processed (Salesforce down, say), the wait before the
/// list is looked at again: their due times are in the past, so without it the timer would
/// be ready at once, again and again.
const DUE_RETRIES_BACKOFF: Duration = Duration::from_secs(5);

enum Control {
    RefreshPass,
    /// A sweep; its summary goes to the sender when someone waits for it.
    Reconcile(Option<oneshot::Sender<Result<Summary, PipelineError>>>),
}

/// Why a sweep asked of the running processor has no summary.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the booking processor is not running")]
    NotRunning,
    #[error("the booking processor stopped before the sweep finished")]
    Stopped,
    #[error(transparent)]
    Failed(#[from] PipelineError),
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
    pub async fn reconcile(&self) -> Result<Summary, ReconcileError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Reconcile(Some(tx)))
            .map_err(|_| ReconcileError::NotRunning)?;
        Ok(rx.await.map_err(|_| ReconcileError::Stopped)??)
    }
}

/// The processor task, built by `App::build` and run by `App::run_until_stopped`.
pub struct Processor {
    engine: Arc<Engine>,
    control: mpsc::UnboundedReceiver<Control>,
    trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
    attendance: Attendance,
}

impl Processor {
    /// Builds the processor around `engine` and its handle; `trainer_events` is where the
    /// token service tells of (dis)connects.
    pub fn new(
        engine: Arc<Engine>,
        trainer_events: mpsc::UnboundedReceiver<TrainerEvent>,
    ) -> (Processor, ProcessorHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let attendance = Attendance::new(AttendanceParts {
            settings: Arc::new(engine.settings().clone()),
            store: engine.store().clone(),
            lark: engine.lark().clone(),
            salesforce: engine.salesforce().clone(),
            tokens: engine.tokens().clone(),
            reader: engine.reader().clone(),
            alerts: engine.alerts().clone(),
            metrics: engine.metrics().clone(),
        });
        (
            Processor {
                engine,
                control: rx,
                trainer_events,
                attendance,
            },
            ProcessorHandle { control: tx },
        )
    }

    /// Where Lark's long connection records its events (only `run` opens one): the sink
    /// wakes this processor's attendance turn.
    pub fn event_sink(&self) -> AttendanceSink {
        self.attendance.sink()
    }

    /// The engine, for one-shot commands (`reconcile`, `remind`).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Runs until shutdown: starts the streaming subscriber (from the checkpoint), then
    /// consumes its items, control requests, trainer events and due retries. What it
    /// starts beside itself (the subscriber, refresh passes) belongs to `tasks`, which
    /// shutdown waits for (rule 24).
    pub async fn run(
        mut self,
        shutdown: watch::Receiver<bool>,
        tasks: Tasks,
    ) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let (start_from, sweep_first) = start_position(&engine);
        let (tx, stream) = mpsc::channel(STREAM_BUFFER);
        let mut intake = Intake::new(stream);
        let (status_tx, mut status_rx) = watch::channel(StreamStatus::default());
        let status = engine.status().clone();
        tasks.spawn("streaming status", async move {
            while status_rx.changed().await.is_ok() {
                let up = status_rx.borrow().subscribed;
                status.set_streaming_subscription(up);
            }
            status.set_streaming_subscription(false);
        });
        // Sweeps wait for the subscription, so nothing changed between them is missed.
        let mut subscribed = status_tx.subscribe();
        let store = engine.store().clone();
        let channel = engine.settings().salesforce.streaming.channel.clone();
        let checkpoint = move || store.checkpoint(&channel).ok().flatten().map(|c| c.resume);
        let mut subscriber = tasks.spawn(
            "streaming subscriber",
            run_subscriber(
                engine.salesforce().clone(),
                engine.settings().salesforce.streaming.clone(),
                start_from,
                checkpoint,
                tx,
                shutdown.clone(),
                status_tx,
            ),
        );
        // If this task is dropped (aborted), the subscriber goes with it.
        let _guard = AbortOnDrop(vec![subscriber.abort_handle()]);
        let mut start_sweep = sweep_first;
        engine.metrics().set(names::STORE_WRITABLE, &[], 1.0);
        let mut retries_not_before = tokio::time::Instant::now();

        if let Err(e) = self.attendance.recompute() {
            tracing::error!(error = %e, "could not recompute attendance's timers");
        }
        let mut stop = shutdown.clone();
        let mut gave_up = None;
        loop {
            // Rule 23: nothing that would change Lark or Salesforce while the store cannot
            // record it; nothing is taken from the stream, the list or the commands.
            match while_unwritable(&engine, &mut stop).await {
                Paused::Resumed => {}
                Paused::Stopped => break,
                Paused::GaveUp(why) => {
                    gave_up = Some(why);
                    break;
                }
            }
            let next_retry = engine.next_retry().map(|at| at.max(retries_not_before));
            let next_attendance = self.attendance.next_due();
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                up = async { subscribed.wait_for(|s| s.subscribed).await.is_ok() }, if start_sweep => {
                    start_sweep = false;
                    if up {
                        if let Err(e) = reconcile(&engine).await {
                            tracing::error!(error = %e, "start-up sweep failed; the next sweep retries");
                        }
                    }
                }
                Some(control) = self.control.recv() => match control {
                    Control::RefreshPass => {
                        // Only tokens: beside the loop, but owned (shutdown waits for it).
                        let tokens = engine.tokens().clone();
                        tasks.spawn("refresh pass", async move { refresh_pass(&tokens).await });
                    }
                    Control::Reconcile(reply) => {
                        let result = reconcile(&engine).await;
                        if let Err(e) = &result {
                            tracing::error!(error = %e, "reconciliation sweep failed");
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(result);
                        }
                    }
                },
                Some(event) = self.trainer_events.recv() => {
                    if let Err(e) = on_trainer_event(&engine, &event).await {
                        tracing::error!(error = %e, ?event, "could not process the trainer's bookings");
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(far_future)), if next_retry.is_some() => {
                    if let Err(e) = engine.run_due_retries().await {
                        retries_not_before = tokio::time::Instant::now() + DUE_RETRIES_BACKOFF;
                        tracing::warn!(error = %e, retry_in = ?DUE_RETRIES_BACKOFF, "due retries could not be processed; they come again shortly");
                    }
                }
                item = intake.recv() => {
                    let Some(first) = item else {
                        match subscriber.is_finished() {
                            true => tracing::error!("the streaming subscriber stopped; restart the service"),
                            false => tracing::warn!("stream ended"),
                        }
                        break;
                    };
                    if let Err(why) = process_stream_batch(&engine, first, &mut intake, &shutdown).await {
                        gave_up = Some(why);
                        break;
                    }
                }
                // Rules 28-30: recorded Lark events, or attendance's timers (after the
                // stream, so a backlog of attendance never keeps bookings waiting).
                _ = self.attendance.wake().notified() => self.attendance.turn().await,
                _ = tokio::time::sleep_until(next_attendance.unwrap_or_else(far_future)), if next_attendance.is_some() => {
                    self.attendance.turn().await
                }
            }
        }
        // Stop intake: the subscriber sees the same signal; wait for it to say goodbye.
        if tokio::time::timeout(SUBSCRIBER_GOODBYE, &mut subscriber)
            .await
            .is_err()
        {
            tracing::warn!("the streaming subscriber did not stop in time; cancelled");
            subscriber.abort();
        }
        if let Some(why) = gave_up {
            tracing::error!(reason = %why, "processor stopped: giving up on the store");
            return Err(anyhow::anyhow!(why));
        }
        tracing::info!("processor stopped");
        Ok(())
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
