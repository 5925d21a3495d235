//! When the store cannot be written (design §3 rule 23), nothing that would change Lark
//! or Salesforce may go on: every apply, reservation change and write-back must be
//! recorded first. The pipeline pauses — `/readyz` answers 503, `lvb_store_writable` reads
//! 0, one log line says why — and probes the store every second; it resumes once a probe
//! write succeeds, and gives up (the processor stops, the process exits non-zero, rule 17)
//! after [`GIVE_UP_AFTER`] of failing writes. Timers never spin meanwhile: nothing is
//! taken from the stream, the retry list or the control channel while paused.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::engine::Engine;
use crate::metrics::names;
use crate::store::Unwritable;

/// How long the store may refuse writes before the process stops so that its supervisor
/// restarts it (and an operator hears of it).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How often a paused pipeline tries a write.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How a pause ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Paused {
    /// The store can be written again.
    Resumed,
    /// Shutdown was asked for meanwhile.
    Stopped,
    /// It could not be written for [`GIVE_UP_AFTER`]: why.
    GaveUp(String),
}

/// Waits while the store cannot be written (returns at once when it can).
pub async fn while_unwritable(engine: &Engine, stop: &mut watch::Receiver<bool>) -> Paused {
    let Some(first) = engine.store().unwritable() else {
        return Paused::Resumed;
    };
    engine.status().set_store_writable(false);
    engine.metrics().set(names::STORE_WRITABLE, &[], 0.0);
    engine.metrics().inc(names::STORE_PAUSES, &[]);
    tracing::error!(
        reason = %first.reason,
        give_up_in = ?GIVE_UP_AFTER,
        "the store cannot be written; pausing everything that would change Lark or Salesforce"
    );
    loop {
        let failing = engine.store().unwritable().unwrap_or(first.clone());
        if elapsed(&failing) >= GIVE_UP_AFTER {
            return Paused::GaveUp(format!(
                "the store could not be written for {GIVE_UP_AFTER:?} ({} writes refused): {}",
                failing.refusals, failing.reason
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return Paused::Stopped,
        }
        if engine.store().probe().is_ok() {
            engine.status().set_store_writable(true);
            engine.metrics().set(names::STORE_WRITABLE, &[], 1.0);
            tracing::warn!(
                after = ?elapsed(&failing),
                refused = failing.refusals,
                "the store can be written again; resuming"
            );
            return Paused::Resumed;
        }
    }
}

fn elapsed(u: &Unwritable) -> Duration {
    Utc::now()
        .signed_duration_since(u.since)
        .to_std()
        .unwrap_or(Duration::ZERO)
}
