//! The refresh timer's pass (design §3 rules 5 and 6): rotated tokens Salesforce has not
//! confirmed are written again, tokens of trainers an admin unchecked are cleared, and
//! every trainer whose refresh token expires within `refresh.refresh_token_window` is
//! refreshed (a few at a time, each under its own single-flight lock). The access token
//! alone expiring is handled on demand, never here. Scheduled by the timer (and the
//! `refresh-tokens` command) as tracked work; it touches nothing but tokens.

use futures::StreamExt;

use crate::ids::TrainerId;
use crate::tokens::{RefreshOutcome, TokenService};

/// Trainers refreshed at once by a refresh pass (each is one Lark call and one write).
const REFRESH_CONCURRENCY: usize = 4;

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
    /// The trainer; `None` for a step of the whole pass.
    pub trainer: Option<TrainerId>,
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

    /// True when no step of the pass failed.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.failures.is_empty()
    }

    fn fail(&mut self, trainer: Option<&TrainerId>, reason: impl std::fmt::Display) {
        self.failures.push(TrainerFailure {
            trainer: trainer.cloned(),
            reason: reason.to_string(),
        });
    }
}

/// One pass of the refresh timer.
pub async fn refresh_pass(tokens: &TokenService) -> RefreshSummary {
    let mut summary = RefreshSummary::default();
    // Rotated tokens Salesforce refused earlier are retried until they land.
    if let Err(e) = tokens.replay_unconfirmed().await {
        tracing::warn!(error = %e, "some journalled tokens are still not in Salesforce");
        summary.fail(
            None,
            format_args!("rotated tokens still not written to Salesforce: {e}"),
        );
    }
    // Trainers an admin unchecked keep no tokens.
    match tokens.trainers().unchecked_with_tokens().await {
        Ok(unchecked) => {
            for t in unchecked {
                match tokens.forget_unchecked(&t).await {
                    Ok(()) => summary.cleared += 1,
                    Err(e) => {
                        tracing::warn!(trainer = %t.id, error = %e, "could not clear an unchecked trainer's tokens");
                        summary.fail(
                            Some(&t.id),
                            format_args!("could not clear the tokens of an unchecked trainer: {e}"),
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
    let trainers = match tokens.trainers().due_for_refresh().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "refresh pass: could not list trainers");
            summary.failed += 1;
            summary.fail(None, format_args!("could not list trainers: {e}"));
            return summary;
        }
    };
    let outcomes = futures::stream::iter(
        trainers
            .into_iter()
            .map(|t| async move { (tokens.refresh_now(&t).await, t.id) }),
    )
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
