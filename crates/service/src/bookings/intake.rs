//! Intake: a batch of stream items → the bookings they are about → the engine → the
//! replay checkpoint; and where the subscription starts.
//!
//! Ordering and exactly-once: a batch is processed to the end (its write-backs landed, or
//! its failures on the retry list) before the checkpoint moves to its last replay id, and
//! before the next batch starts, so changes to one booking are never reordered and the
//! checkpoint never passes work still in progress. A failed batch is retried; the
//! reservation journal makes the retry reuse what Lark already created.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::changes::{event_work, EventWork};
use super::engine::Engine;
use super::outcome::{PipelineError, Summary};
use super::pause::{while_unwritable, Paused};
use super::sweeps::reconcile;
use crate::ids::{BookingId, ReplayId};
use crate::metrics::{names, Failure};
use crate::salesforce::streaming::StreamItem;

/// First and longest wait before a failed batch is tried again (jittered, doubling).
const BATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const BATCH_RETRY_MAX: Duration = Duration::from_secs(60);
/// Retained events: CDC keeps 72 hours (design §4). A checkpoint older than this cannot
/// be replayed, so start-up sweeps instead.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(72);

/// What a batch of stream items asks for.
#[derive(Debug, Default)]
struct BatchWork {
    ids: Vec<BookingId>,
    /// Those someone other than the service changed (rule 26).
    edited: HashSet<BookingId>,
    sweep: bool,
    events: u64,
    first_replay: Option<i64>,
    last_replay: Option<i64>,
}

/// Processes a batch of stream items to the end, retrying on transient failure, then
/// saves the checkpoint. Returns early (no checkpoint) when shutdown is asked for while it
/// waits to retry: the events come again after the restart. While the store cannot be
/// written it waits (rule 23); the error is why it gave up on that.
pub async fn process_stream_batch(
    engine: &Engine,
    items: Vec<StreamItem>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), String> {
    let channel = engine.settings().salesforce.streaming.channel.clone();
    let work = read_batch(engine, items).await;
    let store = engine.store();
    // The very first batch on a channel without a checkpoint: pin the position just
    // before it, so a crash mid-batch replays it instead of resuming at "latest".
    if let Some(first) = work.first_replay {
        if matches!(store.checkpoint(&channel), Ok(None)) {
            let pin = ReplayId::After(first - 1);
            if let Err(e) = store.save_checkpoint(&channel, pin, Utc::now()) {
                tracing::error!(error = %e, "could not save the initial checkpoint");
            }
        }
    }
    let mut delays = crate::retry::backoff(BATCH_RETRY_MIN, BATCH_RETRY_MAX);
    loop {
        let result = async {
            let mut s = engine.process_changes(&work.ids, &work.edited).await?;
            if work.sweep {
                s.add(&reconcile(engine).await?);
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

/// Turns stream items into the bookings they are about (coalesced), counting them.
async fn read_batch(engine: &Engine, items: Vec<StreamItem>) -> BatchWork {
    let metrics = engine.metrics();
    let settings = &engine.settings().salesforce;
    let own_user = engine
        .salesforce()
        .session()
        .await
        .ok()
        .map(|s| s.user_id.to_string());
    let mut work = BatchWork::default();
    for item in items {
        match item {
            StreamItem::Event(ev) => {
                metrics.inc(names::EVENTS_RECEIVED, &[]);
                if let Some(committed) = ev.commit_timestamp {
                    let lag = Utc::now().signed_duration_since(committed);
                    metrics.set(
                        names::STREAMING_LAG,
                        &[],
                        lag.num_milliseconds().max(0) as f64 / 1000.0,
                    );
                }
                work.last_replay = Some(ev.replay_id);
                work.first_replay.get_or_insert(ev.replay_id);
                work.events += 1;
                let (list, edited) = match event_work(settings, &ev, own_user.as_deref()) {
                    EventWork::Ids(list) => (list, false),
                    EventWork::Edited(list) => (list, true),
                    EventWork::Sweep => {
                        work.sweep = true;
                        (Vec::new(), false)
                    }
                    EventWork::Skip(reason) => {
                        metrics.inc(names::EVENTS_SKIPPED, &[("reason", reason)]);
                        (Vec::new(), false)
                    }
                };
                if let Some(committed) = ev.commit_timestamp {
                    for id in &list {
                        metrics.change_committed(id, committed);
                    }
                }
                if edited {
                    work.edited.extend(list.iter().cloned());
                }
                work.ids.extend(list);
            }
            StreamItem::Malformed { replay_id, reason } => {
                let replay = replay_id.map_or_else(|| "unknown".to_string(), |r| r.to_string());
                tracing::warn!(replay_id = %replay, reason = %reason, "malformed event skipped");
                metrics.inc(names::EVENTS_SKIPPED, &[("reason", "malformed")]);
                if let Some(r) = replay_id {
                    work.last_replay = Some(r);
                    work.first_replay.get_or_insert(r);
                }
            }
            StreamItem::ReplayGap { reason } => {
                tracing::warn!(reason = %reason, "replay gap: running a reconciliation sweep");
                work.sweep = true;
            }
            // Readiness follows the subscriber's status watch (one writer).
            StreamItem::Subscribed { .. } => {}
        }
    }
    let mut seen = HashSet::new();
    work.ids.retain(|id| seen.insert(id.clone()));
    work
}

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
