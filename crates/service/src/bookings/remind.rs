//! The `remind` command (design §2.1): the connect reminder to every trainer who has not
//! connected Lark and has upcoming remote bookings, at most one a day each — the same
//! 24 hours as the pipeline's own reminders (`TokenService::remind`, the store's
//! `reminders`). An admin asked for it, so `lark.notify_trainers = false` does not
//! silence it. A trainer Lark cannot deliver to (no email, no Lark user the bot can reach
//! by it) is reported, not counted as a failure.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;

use super::engine::Engine;
use super::outcome::PipelineError;
use crate::alerts::trainer_label;
use crate::ids::TrainerId;
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::ReminderOutcome;

/// Reminders sent at once (one Lark message each).
const REMIND_CONCURRENCY: usize = 4;

/// One trainer in a [`RemindSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemindedTrainer {
    pub id: TrainerId,
    pub name: Option<String>,
    /// Why they could not be reached, or what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RemindedTrainer {
    fn of(t: &TrainerRecord, reason: Option<String>) -> RemindedTrainer {
        RemindedTrainer {
            id: t.id.clone(),
            name: t.name.clone(),
            reason,
        }
    }

    fn label(&self) -> String {
        trainer_label(self.name.as_deref(), &self.id)
    }
}

/// What `remind` did, trainer by trainer.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RemindSummary {
    /// Reminded now.
    pub reached: Vec<RemindedTrainer>,
    /// Already reminded within the last 24 hours (by `remind` or the pipeline).
    pub already_reminded: Vec<RemindedTrainer>,
    /// No email, or no Lark user the bot can reach by it.
    pub unreachable: Vec<RemindedTrainer>,
    /// Lark or the store failed; run `remind` again later.
    pub failed: Vec<RemindedTrainer>,
}

impl RemindSummary {
    /// What `remind` prints: a count line, then one line per trainer.
    pub fn lines(&self) -> String {
        let mut out = format!(
            "reminded: {}  already reminded today: {}  not reachable: {}  failed: {}",
            self.reached.len(),
            self.already_reminded.len(),
            self.unreachable.len(),
            self.failed.len()
        );
        for t in &self.reached {
            out.push_str(&format!("\nreached: {}", t.label()));
        }
        for t in &self.already_reminded {
            out.push_str(&format!(
                "\nskipped (already reminded today): {}",
                t.label()
            ));
        }
        for t in &self.unreachable {
            out.push_str(&format!(
                "\nnot reachable: {}: {}",
                t.label(),
                t.reason.as_deref().unwrap_or("")
            ));
        }
        for t in &self.failed {
            out.push_str(&format!(
                "\nfailed (run remind again later): {}: {}",
                t.label(),
                t.reason.as_deref().unwrap_or("")
            ));
        }
        out
    }
}

/// Sends the connect reminder to every not-connected trainer with upcoming remote
/// bookings (one query for the bookings with their trainers, then one message each).
pub async fn remind_unconnected(engine: &Engine) -> Result<RemindSummary, PipelineError> {
    let s = &engine.settings().salesforce.booking;
    let bookings = engine.reader().upcoming(Utc::now()).await?;
    let trainers: BTreeMap<String, TrainerRecord> = bookings
        .into_iter()
        .filter(|b| b.is_live_remote(s))
        .filter_map(|b| b.trainer)
        .filter(|t| !t.connected)
        .map(|t| (t.id.to_string(), Arc::unwrap_or_clone(t)))
        .collect();
    let reminders = engine.tokens().reminders();
    let outcomes: Vec<(TrainerRecord, ReminderOutcome)> =
        futures::stream::iter(trainers.into_values().map(|t| async move {
            let outcome = reminders.remind_forced(&t).await;
            (t, outcome)
        }))
        .buffered(REMIND_CONCURRENCY)
        .collect()
        .await;
    let mut summary = RemindSummary::default();
    for (t, outcome) in outcomes {
        match outcome {
            ReminderOutcome::Sent => summary.reached.push(RemindedTrainer::of(&t, None)),
            ReminderOutcome::AlreadyReminded => {
                summary.already_reminded.push(RemindedTrainer::of(&t, None))
            }
            ReminderOutcome::Unreachable(why) => {
                summary.unreachable.push(RemindedTrainer::of(&t, Some(why)))
            }
            ReminderOutcome::Failed(why) => summary.failed.push(RemindedTrainer::of(&t, Some(why))),
            // Never answered for a forced reminder.
            ReminderOutcome::Off => {}
        }
    }
    tracing::info!(
        reached = summary.reached.len(),
        already = summary.already_reminded.len(),
        unreachable = summary.unreachable.len(),
        failed = summary.failed.len(),
        "remind done"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests;
