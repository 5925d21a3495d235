//! `rotate-key`: every trainer's tokens re-encrypted with the primary key, in Salesforce
//! and in the local journal, each under the trainer's single-flight lock (rule 16).

use serde_json::Value;

use super::service::TokenError;
use super::trainer::{F_ACCESS_TOKEN, F_REFRESH_TOKEN, F_USER_ID};
use super::TokenService;
use crate::ids::TrainerId;
use crate::progress::Progress;
use crate::salesforce::soql::RecordId;

/// Trainers' token updates per collection call of `rotate-key` (Salesforce's maximum).
const ROTATE_PER_CALL: usize = 200;

/// What `rotate-key` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationSummary {
    /// Token fields re-encrypted with the primary key.
    pub rotated: usize,
    /// Token fields already under the primary key.
    pub current: usize,
    /// One line per token field no configured key decrypts (trainer and field, no token).
    pub undecryptable: Vec<String>,
    /// Trainer records Salesforce refused to update.
    pub write_failures: usize,
    /// Journal rows re-encrypted.
    pub journal_rows: usize,
}

impl TokenService {
    /// Re-encrypts every trainer's tokens (Salesforce and the local journal) with the
    /// primary key, through batched collection updates. Idempotent. Holds each trainer's
    /// single-flight lock until the journal is re-encrypted, so no refresh, connect or
    /// disconnect of theirs interleaves (design §3 rule 16). The caller holds the store
    /// lock, so no service runs beside it and the one read cannot go stale. `progress`
    /// counts trainers written, one collection call at a time.
    pub async fn rotate_key(&self, progress: &Progress) -> Result<RotationSummary, TokenError> {
        let t = &self.inner.settings.salesforce.trainer;
        let vault = &self.inner.vault;
        // Long text areas cannot be filtered in SOQL, so select connected-at-some-point
        // trainers and look at the token fields here.
        let soql = format!(
            "SELECT Id, {F_ACCESS_TOKEN}, {F_REFRESH_TOKEN} FROM {} WHERE {F_USER_ID} != null",
            t.object
        );
        let rows = self.inner.salesforce.query(&soql).await?;
        let ids: Vec<TrainerId> = rows
            .iter()
            .filter_map(|row| row.get("Id").and_then(Value::as_str))
            .filter_map(|id| TrainerId::parse(id).ok())
            .collect();
        // In id order, as the batched token write takes them.
        let guards = self.inner.flights.lock_in_order(ids).await;
        let mut summary = RotationSummary::default();
        let mut updates = Vec::new();
        for row in &rows {
            let Some(id) = row
                .get("Id")
                .and_then(Value::as_str)
                .and_then(|s| RecordId::parse(s).ok())
            else {
                continue;
            };
            let mut fields = serde_json::Map::new();
            for f in [F_ACCESS_TOKEN, F_REFRESH_TOKEN] {
                let Some(enc) = row.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()) else {
                    continue;
                };
                match vault.reencrypt(enc) {
                    Ok(None) => summary.current += 1,
                    Ok(Some(fresh)) => {
                        fields.insert(f.to_string(), Value::String(fresh));
                        summary.rotated += 1;
                    }
                    Err(e) => {
                        summary.undecryptable.push(format!(
                            "trainer {id}: {f} cannot be decrypted with any configured key: {e}"
                        ));
                    }
                }
            }
            if !fields.is_empty() {
                updates.push((id, fields));
            }
        }
        progress.add_total(updates.len());
        let mut results = Vec::with_capacity(updates.len());
        let mut updates = updates.into_iter().peekable();
        while updates.peek().is_some() {
            // One sObject Collections call at a time, so progress moves as they land.
            let chunk: Vec<_> = updates.by_ref().take(ROTATE_PER_CALL).collect();
            let n = chunk.len();
            results.extend(self.inner.salesforce.update_many(&t.object, chunk).await?);
            progress.tick(n);
        }
        summary.write_failures = results.iter().filter(|r| !r.success).count();
        summary.journal_rows = self
            .inner
            .store
            .reencrypt_tokens(|enc| vault.reencrypt(enc).ok().flatten())?;
        drop(guards);
        Ok(summary)
    }
}
