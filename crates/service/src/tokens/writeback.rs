//! Rotated tokens to Salesforce (design §3 rules 5, 16 and 24). A refresh journals the
//! rotated pair durably before anything else; this writes journalled pairs Salesforce
//! does not hold yet to the trainers' records and marks them confirmed.
//!
//! In the running service a refresh only hands its row over: the booking that needed
//! the token goes on at once, and one tracked task ([`TokenWriteback::run`]) writes
//! every waiting row in sObject Collections calls, [`WRITE_LINGER`] after the first one
//! (a burst's refreshes share a call instead of one `PATCH` each). Without that task
//! (one-shot commands, and the end of a shutdown after its last flush) the refresh
//! writes its own row, as before. Start-up and every refresh pass write what is still
//! unconfirmed the same batched way.
//!
//! Rule 16: a row is written only under its trainer's single-flight lock, re-read under
//! that lock (a connect, disconnect or newer refresh since wins: a confirmed or vanished
//! row is skipped, a newer one is written instead of the copy read first), and the lock
//! is held until the row is confirmed. Several locks are taken in id order only. A call
//! or a record that fails leaves its row unconfirmed for the next flush, refresh pass or
//! start-up. Nothing here logs a token: failures name trainers and Salesforce's codes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::config::Settings;
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::store::{JournalledTokens, Store, StoreError};
use crate::tokens::flights::Flights;
use crate::tokens::trainer::{refresh_fields, EncryptedTokens};

/// How long the writing task waits after the first row handed over before it writes:
/// a burst's refreshes (each one a Lark round trip of tens of milliseconds, a few
/// trainers at a time) land within it and share one collection call. The row is durable
/// in the journal meanwhile, and Salesforce is read for tokens only when the journal has
/// nothing newer, so the wait delays nothing but the copy in Salesforce. Short, so that a
/// store lost within it loses little; it ends early at [`ROWS_PER_CALL`] rows or shutdown.
pub const WRITE_LINGER: Duration = Duration::from_secs(1);

/// Rows per sObject Collections call (Salesforce's maximum); this many waiting are written
/// without lingering.
pub const ROWS_PER_CALL: usize = 200;

/// Why journalled tokens are not (all) in Salesforce yet. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Salesforce refused some records (a validation rule, a locked record, …).
    #[error("Salesforce refused the rotated tokens of {count} trainer(s): {codes}")]
    Refused {
        count: usize,
        /// Salesforce's status codes (and the fields they name), never its messages.
        codes: String,
    },
}

/// Writes journalled tokens to Salesforce; one per token service.
pub struct TokenWriteback {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
    store: Store,
    flights: Arc<Flights>,
    /// True while [`TokenWriteback::run`] takes rows over.
    batching: AtomicBool,
    /// Rows handed over since the last flush began.
    waiting: AtomicUsize,
    /// Wakes the task (a permit is kept when it is busy, so no hand-over is missed).
    wake: Notify,
}

impl TokenWriteback {
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        store: Store,
        flights: Arc<Flights>,
    ) -> TokenWriteback {
        TokenWriteback {
            settings,
            salesforce,
            store,
            flights,
            batching: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    /// Called once a rotated pair is journalled: true when the writing task takes it
    /// over; false when none runs, and the caller writes it with [`Self::write_one`].
    pub fn hand_over(&self) -> bool {
        // SeqCst with `run`'s last store: a row handed over before the task stops
        // taking rows was journalled before its final flush reads the journal.
        if !self.batching.load(Ordering::SeqCst) {
            return false;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
        true
    }

    /// Marks the writing task as started: rows are handed over from now on. Called by
    /// whoever spawns [`Self::run`], before spawning it.
    pub fn start_batching(&self) {
        self.batching.store(true, Ordering::SeqCst);
    }

    /// The writing task: waits for a hand-over, lingers ([`WRITE_LINGER`], less when
    /// [`ROWS_PER_CALL`] rows are waiting or shutdown begins), writes everything
    /// unconfirmed, and again. On shutdown it stops taking rows (later refreshes write
    /// their own) and writes what is waiting before it returns.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let linger = tokio::time::sleep(WRITE_LINGER);
            tokio::pin!(linger);
            while self.waiting.load(Ordering::SeqCst) < ROWS_PER_CALL {
                tokio::select! {
                    _ = &mut linger => break,
                    _ = self.wake.notified() => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
            self.flush().await;
        }
        self.batching.store(false, Ordering::SeqCst);
        self.flush().await;
    }

    async fn flush(&self) {
        self.waiting.store(0, Ordering::SeqCst);
        // What landed and what failed (call by call, record by record) is logged there;
        // what failed stays unconfirmed for the next flush, refresh pass or start-up.
        let _ = self.write_unconfirmed().await;
    }

    /// Writes one journalled row now and marks it confirmed. The caller holds the
    /// trainer's lock (a refresh with no writing task running).
    pub async fn write_one(&self, row: &JournalledTokens) -> Result<(), WriteError> {
        let object = &self.settings.salesforce.trainer.object;
        // The client already retries 5xx and timeouts with backoff; what still fails
        // stays in the journal for the next refresh pass or start-up.
        self.salesforce
            .update(object, row.trainer_id.record_id(), fields(row))
            .await?;
        self.store
            .confirm_tokens(&row.trainer_id, row.refreshed_at)?;
        Ok(())
    }

    /// Writes every journalled row Salesforce has not confirmed, [`ROWS_PER_CALL`] to a
    /// collection call, carrying on past calls that fail. Returns how many landed; an
    /// error (the last) only when some did not.
    pub async fn write_unconfirmed(&self) -> Result<usize, WriteError> {
        let rows = self.store.unconfirmed_tokens()?;
        let mut written = 0;
        let mut last_error = None;
        let mut refused = Vec::new();
        for chunk in rows.chunks(ROWS_PER_CALL) {
            match self.write_chunk(chunk, &mut refused).await {
                Ok(n) => written += n,
                Err(e) => {
                    tracing::warn!(error = %e, rows = chunk.len(), "journalled tokens still not in Salesforce");
                    last_error = Some(e);
                }
            }
        }
        if written > 0 {
            tracing::info!(count = written, "wrote journalled tokens to Salesforce");
        }
        if !refused.is_empty() {
            last_error = Some(WriteError::Refused {
                count: refused.len(),
                codes: refused.join("; "),
            });
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// One collection call for `rows`' trainers, under their locks (see the module docs).
    /// Returns how many landed; what Salesforce refused goes to `refused` (its codes).
    async fn write_chunk(
        &self,
        rows: &[JournalledTokens],
        refused: &mut Vec<String>,
    ) -> Result<usize, WriteError> {
        let trainers = rows.iter().map(|r| r.trainer_id.clone()).collect();
        let guards = self.flights.lock_in_order(trainers).await;
        // What the journal holds now is what gets written: the rows read above may be
        // stale by the time each lock was free.
        let mut current = Vec::with_capacity(guards.len());
        for (trainer, _) in &guards {
            if let Some(row) = self.store.journalled_tokens(trainer)? {
                if !row.confirmed {
                    current.push(row);
                }
            }
        }
        if current.is_empty() {
            return Ok(0);
        }
        let object = &self.settings.salesforce.trainer.object;
        let updates = current
            .iter()
            .map(|row| (row.trainer_id.record_id().clone(), fields(row)))
            .collect();
        let results = self.salesforce.update_many(object, updates).await?;
        let mut written = 0;
        for (row, result) in current.iter().zip(results) {
            if result.success {
                self.store
                    .confirm_tokens(&row.trainer_id, row.refreshed_at)?;
                written += 1;
                continue;
            }
            // Codes and field names only: a message may quote the value it refused.
            let codes: Vec<String> = result
                .errors
                .iter()
                .map(|e| match e.fields.is_empty() {
                    true => e.status_code.clone(),
                    false => format!("{} ({})", e.status_code, e.fields.join(", ")),
                })
                .collect();
            let codes = codes.join("; ");
            tracing::warn!(trainer = %row.trainer_id, %codes, "Salesforce refused the rotated tokens; kept in the journal and written again later");
            refused.push(format!("trainer {}: {codes}", row.trainer_id));
        }
        // Held until here: nothing replaces a row between its write and its confirmation.
        drop(guards);
        Ok(written)
    }
}

/// The trainer-record fields of a journalled row.
fn fields(row: &JournalledTokens) -> serde_json::Map<String, serde_json::Value> {
    let tokens = EncryptedTokens {
        access_enc: row.access_enc.clone(),
        refresh_enc: row.refresh_enc.clone(),
        access_expires_at: row.access_expires_at,
        refresh_expires_at: row.refresh_expires_at,
    };
    refresh_fields(&tokens, row.refreshed_at)
}

#[cfg(test)]
mod tests;
