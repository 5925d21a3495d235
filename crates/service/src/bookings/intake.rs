//! Intake: stream items → the bookings they are about → the engine → the replay
//! checkpoint; and where the subscription starts.
//!
//! Ordering and exactly-once: a batch is processed to the end (its write-backs landed, or
//! its failures on the retry list) before the checkpoint moves to its last replay id, and
//! before the next batch starts, so changes to one booking are never reordered and the
//! checkpoint never passes work still in progress. A failed batch is retried; the
//! reservation journal makes the retry reuse what Lark already created.
//!
//! A batch takes in what the stream brings while it runs, each time it hands the engine
//! its next query's worth: a burst that arrives over several long-polls is one batch, not
//! one per poll (each batch end costs a part-filled query and collection call). It stops
//! taking in at the first item it cannot take without reordering — a change to a booking
//! it has already handed over, a sweep — which starts the next batch instead.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use super::changes::{event_work, EventWork};
use super::engine::{Engine, IdChunk};
use super::outcome::{PipelineError, Summary};
use super::pause::{while_unwritable, Paused};
use super::reader::MAX_IDS_PER_QUERY;
use super::sweeps::reconcile;
use crate::ids::{BookingId, ReplayId};
use crate::metrics::{names, Failure, Metrics};
use crate::salesforce::streaming::StreamItem;

/// First and longest wait before a failed batch is tried again (jittered, doubling).
const BATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const BATCH_RETRY_MAX: Duration = Duration::from_secs(60);
/// Retained events: CDC keeps 72 hours (design §4). A checkpoint older than this cannot
/// be replayed, so start-up sweeps instead.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(72);
/// Most bookings one batch takes in (the checkpoint moves at least this often in a
/// backlog, and a batch's ids stay bounded).
const MAX_BATCH_BOOKINGS: usize = 2_000;
/// Most stream items one batch takes in (the service's own writes' events name no work).
const MAX_BATCH_ITEMS: usize = 10_000;

/// The stream items waiting for the processor: the subscriber's channel, and the one item
/// a batch would not take in (it starts the next batch).
pub struct Intake {
    rx: mpsc::Receiver<StreamItem>,
    carried: Option<StreamItem>,
}

impl Intake {
    pub fn new(rx: mpsc::Receiver<StreamItem>) -> Intake {
        Intake { rx, carried: None }
    }

    /// The next item, waiting for one; None once the subscriber is gone.
    /// Cancel-safe (a `select!` branch).
    pub async fn recv(&mut self) -> Option<StreamItem> {
        match self.carried.take() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        }
    }

    fn try_recv(&mut self) -> Option<StreamItem> {
        self.carried.take().or_else(|| self.rx.try_recv().ok())
    }
}

/// What a batch of stream items asks for.
#[derive(Debug, Default)]
struct BatchWork {
    /// Every booking taken in, in order; handed to the engine from the front.
    ids: Vec<BookingId>,
    /// Where each is in `ids`.
    position: HashMap<BookingId, usize>,
    /// Those someone other than the service changed (rule 26).
    edited: HashSet<BookingId>,
    sweep: bool,
    items: usize,
    events: u64,
    first_replay: Option<i64>,
    last_replay: Option<i64>,
}

/// An item a batch would not take in; it starts the next batch.
struct Declined(Box<StreamItem>);

impl Declined {
    fn event(ev: crate::salesforce::events::ChangeEvent) -> Declined {
        Declined(Box::new(StreamItem::Event(ev)))
    }
}

/// A batch taking in stream items: what it has taken, and how much of it is handed to
/// the engine.
struct Batch<'a> {
    intake: &'a mut Intake,
    metrics: &'a Metrics,
    settings: &'a crate::config::SalesforceSettings,
    own_user: Option<String>,
    work: BatchWork,
    /// `work.ids[..handed]` are handed to the engine: a change to one of these waits for
    /// the next batch. A repeat of one after them is the same read.
    handed: usize,
    /// Still taking in items.
    open: bool,
    /// Ids handed over at a time (what one query takes).
    ids_per_query: usize,
}

impl<'a> Batch<'a> {
    /// A batch of `first` and every item waiting behind it (nothing is handed over yet, so
    /// each is taken in, up to the caps), handed over `ids_per_query` ids at a time.
    /// `own_user` is the integration user's id.
    fn start(
        first: StreamItem,
        intake: &'a mut Intake,
        metrics: &'a Metrics,
        settings: &'a crate::config::SalesforceSettings,
        own_user: Option<String>,
        ids_per_query: usize,
    ) -> Batch<'a> {
        intake.carried = Some(first);
        let mut batch = Batch {
            intake,
            metrics,
            settings,
            own_user,
            work: BatchWork::default(),
            handed: 0,
            open: true,
            ids_per_query,
        };
        batch.take_waiting();
        batch
    }

    /// Takes in what is waiting, until the stream is empty or an item cannot be taken.
    fn take_waiting(&mut self) {
        while self.open {
            if self.work.items >= MAX_BATCH_ITEMS || self.work.ids.len() >= MAX_BATCH_BOOKINGS {
                self.open = false;
                break;
            }
            let Some(item) = self.intake.try_recv() else {
                break;
            };
            if let Err(Declined(item)) = self.take(item) {
                self.intake.carried = Some(*item);
                self.open = false;
            }
        }
    }

    /// Takes one item in, or hands it back when taking it would reorder work: a change to
    /// a booking already handed over, or a sweep once bookings have been.
    fn take(&mut self, item: StreamItem) -> Result<(), Declined> {
        let started = self.handed > 0;
        match item {
            StreamItem::Event(ev) => {
                let (list, edited) = match event_work(self.settings, &ev, self.own_user.as_deref())
                {
                    EventWork::Ids(list) => (list, false),
                    EventWork::Edited(list) => (list, true),
                    EventWork::Sweep if started => return Err(Declined::event(ev)),
                    EventWork::Sweep => {
                        self.work.sweep = true;
                        (Vec::new(), false)
                    }
                    EventWork::Skip(reason) => {
                        self.metrics
                            .inc(names::EVENTS_SKIPPED, &[("reason", reason)]);
                        (Vec::new(), false)
                    }
                };
                if list.iter().any(|id| self.is_handed(id)) {
                    return Err(Declined::event(ev));
                }
                self.metrics.inc(names::EVENTS_RECEIVED, &[]);
                if let Some(committed) = ev.commit_timestamp {
                    let lag = Utc::now().signed_duration_since(committed);
                    self.metrics.set(
                        names::STREAMING_LAG,
                        &[],
                        lag.num_milliseconds().max(0) as f64 / 1000.0,
                    );
                    for id in &list {
                        self.metrics.change_committed(id, committed);
                    }
                }
                self.replayed(ev.replay_id);
                self.work.events += 1;
                for id in list {
                    if edited {
                        self.work.edited.insert(id.clone());
                    }
                    if !self.work.position.contains_key(&id) {
                        self.work.position.insert(id.clone(), self.work.ids.len());
                        self.work.ids.push(id);
                    }
                }
            }
            StreamItem::Malformed { replay_id, reason } => {
                let replay = replay_id.map_or_else(|| "unknown".to_string(), |r| r.to_string());
                tracing::warn!(replay_id = %replay, reason = %reason, "malformed event skipped");
                self.metrics
                    .inc(names::EVENTS_SKIPPED, &[("reason", "malformed")]);
                if let Some(r) = replay_id {
                    self.replayed(r);
                }
            }
            StreamItem::ReplayGap { reason } if started => {
                return Err(Declined(Box::new(StreamItem::ReplayGap { reason })))
            }
            StreamItem::ReplayGap { reason } => {
                tracing::warn!(reason = %reason, "replay gap: running a reconciliation sweep");
                self.work.sweep = true;
            }
            // Readiness follows the subscriber's status watch (one writer).
            StreamItem::Subscribed { .. } => {}
        }
        self.work.items += 1;
        Ok(())
    }

    fn is_handed(&self, id: &BookingId) -> bool {
        self.work
            .position
            .get(id)
            .is_some_and(|&at| at < self.handed)
    }

    fn replayed(&mut self, replay: i64) {
        self.work.last_replay = Some(replay);
        self.work.first_replay.get_or_insert(replay);
    }

    /// The next query's worth of ids for the engine, after taking in what has arrived;
    /// None when nothing is waiting (the batch ends once the engine is done).
    fn next_chunk(&mut self) -> Option<IdChunk> {
        self.take_waiting();
        let waiting = &self.work.ids[self.handed..];
        if waiting.is_empty() {
            self.open = false;
            return None;
        }
        let ids = waiting[..waiting.len().min(self.ids_per_query)].to_vec();
        self.handed += ids.len();
        Some(IdChunk::of(ids, &self.work.edited))
    }
}

/// Processes a batch of stream items, starting with `first` and taking in what arrives
/// while it runs, to the end, retrying on transient failure, then saves the checkpoint.
/// Returns early (no checkpoint) when shutdown is asked for while it waits to retry: the
/// events come again after the restart. While the store cannot be written it waits (rule
/// 23); the error is why it gave up on that.
pub async fn process_stream_batch(
    engine: &Engine,
    first: StreamItem,
    intake: &mut Intake,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), String> {
    let channel = engine.settings().salesforce.streaming.channel.clone();
    let own_user = engine
        .salesforce()
        .session()
        .await
        .ok()
        .map(|s| s.user_id.to_string());
    // Unknown only when the describe failed, which fails the batch's first read too.
    let ids_per_query = engine
        .reader()
        .ids_per_query()
        .await
        .unwrap_or(MAX_IDS_PER_QUERY);
    let batch = Batch::start(
        first,
        intake,
        engine.metrics(),
        &engine.settings().salesforce,
        own_user,
        ids_per_query,
    );
    let store = engine.store();
    // The very first batch on a channel without a checkpoint: pin the position just
    // before it, so a crash mid-batch replays it instead of resuming at "latest".
    if let Some(first) = batch.work.first_replay {
        if matches!(store.checkpoint(&channel), Ok(None)) {
            let pin = ReplayId::After(first - 1);
            if let Err(e) = store.save_checkpoint(&channel, pin, Utc::now()) {
                tracing::error!(error = %e, "could not save the initial checkpoint");
            }
        }
    }
    let batch = Mutex::new(batch);
    let mut delays = crate::retry::backoff(BATCH_RETRY_MIN, BATCH_RETRY_MAX);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let mut s = if attempt == 1 {
                // Takes in what arrives as the engine asks for more.
                let chunks = futures::stream::poll_fn(|_| {
                    let mut b = batch.lock().unwrap_or_else(|p| p.into_inner());
                    // Shutdown takes in no new work; what is not taken in comes again.
                    if *shutdown.borrow() {
                        b.open = false;
                    }
                    std::task::Poll::Ready(b.next_chunk())
                });
                engine.process_chunks(chunks).await?
            } else {
                // A retry does what the first attempt took in, and takes in no more.
                let (ids, edited) = {
                    let b = batch.lock().unwrap_or_else(|p| p.into_inner());
                    (b.work.ids.clone(), b.work.edited.clone())
                };
                engine.process_changes(&ids, &edited).await?
            };
            let sweep = batch.lock().unwrap_or_else(|p| p.into_inner()).work.sweep;
            if sweep {
                s.add(&reconcile(engine).await?);
            }
            Ok::<Summary, PipelineError>(s)
        }
        .await;
        // No more is taken in once the first attempt is over.
        batch.lock().unwrap_or_else(|p| p.into_inner()).open = false;
        match result {
            Ok(summary) => {
                if summary.bookings > 0 {
                    tracing::debug!(?summary, "batch done");
                }
                break;
            }
            Err(e) if engine.store().unwritable().is_some() => {
                tracing::debug!(error = %e, "batch waits: the store is paused");
                let mut stop = shutdown.clone();
                match while_unwritable(engine, &mut stop).await {
                    Paused::Resumed => {}
                    Paused::Stopped => return Ok(()),
                    Paused::GaveUp(why) => return Err(why),
                }
            }
            Err(e) => {
                let delay = delays.next().unwrap_or(BATCH_RETRY_MAX);
                engine.metrics().failure(Failure::BatchRetry);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    // Not checkpointed: the events come again after restart.
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        }
    }
    let work = batch.into_inner().unwrap_or_else(|p| p.into_inner()).work;
    engine.metrics().forget_changes(&work.ids);
    engine
        .metrics()
        .add(names::EVENTS_PROCESSED, &[], work.events);
    if let Some(replay) = work.last_replay {
        if let Err(e) = store.save_checkpoint(&channel, ReplayId::After(replay), Utc::now()) {
            tracing::error!(error = %e, "could not save the checkpoint");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Where to subscribe from, and whether to sweep once subscribed: a checkpoint too old to
/// replay from, an unreadable one, or none at all (a first start, or a store without this
/// channel's checkpoint: rule 15).
pub fn start_position(engine: &Engine) -> (ReplayId, bool) {
    let streaming = &engine.settings().salesforce.streaming;
    match engine.store().checkpoint(&streaming.channel) {
        Ok(Some(checkpoint)) => {
            let age = Utc::now().signed_duration_since(checkpoint.saved_at);
            if age > RETENTION {
                tracing::warn!(replay = %checkpoint.resume, age_secs = age.num_seconds(), "checkpoint older than the retention window: starting from latest and sweeping");
                (ReplayId::Latest, true)
            } else {
                (checkpoint.resume, false)
            }
        }
        Ok(None) => {
            tracing::info!(channel = %streaming.channel, "no checkpoint for this channel: sweeping upcoming bookings once subscribed");
            (streaming.replay_from.position(), true)
        }
        Err(e) => {
            tracing::error!(error = %e, "checkpoint unreadable: starting from latest and sweeping");
            (ReplayId::Latest, true)
        }
    }
}
