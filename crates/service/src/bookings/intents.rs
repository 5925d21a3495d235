//! Rule 23's record-before-send for reserve applies, with one durable commit for every
//! apply that leaves at the same moment.
//!
//! Each apply's intent must be on disk before its request leaves, and on disk means an
//! fsync, taken on the one runtime thread: every other booking waits while the disk
//! flushes (measured on the 2-core VM: 130–170 µs of waiting and 50–75 µs of the process's
//! CPU per fsync; on a network disk, milliseconds). Applies get their pacing slots several
//! at a time (a full pacer lets its queue go together when room in Lark's windows comes
//! back together), so each apply joins the open group, lets the runtime run every other
//! booking that is ready in this turn (those that get their slot join too), and the first
//! to come back commits the whole group in one transaction with one fsync: 5.2–6.2
//! applies a commit in the 2,000-booking burst (2.3–3.4 while the pacer let calls go one at
//! a time). A lone apply is its own group; nothing waits for a group to fill. Nothing is
//! sent before the commit that holds its intent returns, so the rule is kept as it was: a
//! crash loses no intent of a request that may have left.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::outcome::PipelineError;
use crate::ids::{BookingId, TrainerId};
use crate::lark::{ApplyLedger, NotRecorded};
use crate::metrics::{names, Metrics};
use crate::store::{Store, StoreError};

/// What one apply's record came to: its booking's applies in doubt, this one included.
type Recorded = Result<u32, Arc<StoreError>>;

/// Applies waiting for the commit that records them; shared by every booking (cheap to
/// clone).
#[derive(Clone)]
pub struct IntentLog {
    open: Arc<Mutex<Vec<Waiting>>>,
    metrics: Metrics,
}

/// One apply in the open group.
struct Waiting {
    booking: BookingId,
    trainer: TrainerId,
    done: oneshot::Sender<Recorded>,
}

impl IntentLog {
    /// An empty log, counting its commits in `metrics`.
    pub fn new(metrics: Metrics) -> IntentLog {
        IntentLog {
            open: Arc::default(),
            metrics,
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an apply of `booking` by `trainer` about to leave, durably, together with
    /// every other apply that joins before the group is committed; returns the booking's
    /// applies in doubt, this one included.
    pub async fn record(
        &self,
        store: &Store,
        booking: &BookingId,
        trainer: &TrainerId,
    ) -> Result<u32, StoreError> {
        let (done, recorded) = oneshot::channel();
        self.open().push(Waiting {
            booking: booking.clone(),
            trainer: trainer.clone(),
            done,
        });
        // Every other booking ready in this turn of the runtime runs first, and those that
        // get their slot join the group.
        tokio::task::yield_now().await;
        let mut group = std::mem::take(&mut *self.open());
        // A waiter dropped before its group is committed (its booking's work was
        // cancelled) has closed its channel: no intent for a request that never left.
        group.retain(|w| !w.done.is_closed());
        if !group.is_empty() {
            self.metrics.inc(names::STORE_INTENT_COMMITS, &[]);
            commit(store, group);
        }
        match recorded.await {
            Ok(Ok(applies)) => Ok(applies),
            Ok(Err(e)) => Err(StoreError::Shared(e)),
            // Every group taken is answered before anyone awaits; a lost sender is a bug,
            // and nothing is sent.
            Err(_) => Err(StoreError::Unwritable),
        }
    }
}

/// Records the group in one durable commit and tells each waiter.
fn commit(store: &Store, group: Vec<Waiting>) {
    let applies: Vec<(&BookingId, &TrainerId)> =
        group.iter().map(|w| (&w.booking, &w.trainer)).collect();
    let result = store.record_in_doubt_applies(&applies, Utc::now());
    drop(applies);
    match result {
        Ok(counts) => {
            for (waiting, applies) in group.into_iter().zip(counts) {
                let _ = waiting.done.send(Ok(applies));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for waiting in group {
                let _ = waiting.done.send(Err(Arc::clone(&e)));
            }
        }
    }
}

/// The booking's apply requests as [`ApplyLedger`] (rule 23): each is recorded in doubt
/// right before it leaves (in the [`IntentLog`]'s group), and settled when Lark refuses it
/// outright.
pub(super) struct Intents<'a> {
    store: &'a Store,
    log: &'a IntentLog,
    booking: &'a BookingId,
    host: &'a TrainerId,
    /// Applies in doubt for the booking after the last one recorded.
    applies: AtomicU32,
    /// The last request left and was not refused.
    in_flight: AtomicBool,
    /// Why the last one could not be recorded.
    failed: Mutex<Option<StoreError>>,
}

impl<'a> Intents<'a> {
    pub(super) fn new(
        store: &'a Store,
        log: &'a IntentLog,
        booking: &'a BookingId,
        host: &'a TrainerId,
    ) -> Self {
        Intents {
            store,
            log,
            booking,
            host,
            applies: AtomicU32::new(0),
            in_flight: AtomicBool::new(false),
            failed: Mutex::new(None),
        }
    }

    pub(super) fn applies(&self) -> u32 {
        self.applies.load(Ordering::SeqCst)
    }

    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The store's error that kept a request from leaving.
    pub(super) fn store_error(&self) -> PipelineError {
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => PipelineError::Store(e),
            None => PipelineError::Store(StoreError::Unwritable),
        }
    }
}

impl ApplyLedger for Intents<'_> {
    fn sending(&self) -> BoxFuture<'_, Result<(), NotRecorded>> {
        Box::pin(async move {
            match self.log.record(self.store, self.booking, self.host).await {
                Ok(applies) => {
                    self.applies.store(applies, Ordering::SeqCst);
                    self.in_flight.store(true, Ordering::SeqCst);
                    Ok(())
                }
                Err(e) => {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Err(NotRecorded)
                }
            }
        })
    }

    fn refused(&self) {
        self.in_flight.store(false, Ordering::SeqCst);
        if let Err(e) = self.store.settle_refused_apply(self.booking) {
            // Counted as in doubt a little too long: safe, and the store pauses us anyway.
            tracing::warn!(error = %e, "could not settle an apply Lark refused");
        }
    }
}

#[cfg(test)]
mod tests;
