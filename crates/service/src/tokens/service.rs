//! The token service: the only place that decrypts, refreshes, saves or clears a
//! trainer's Lark tokens (design §3 rule 5).
//!
//! - `access_token_for` returns a valid user access token, refreshing first when it is
//!   within `refresh.access_token_skew` of expiry. Refreshes for one trainer are
//!   single-flight: one per-trainer async lock; whoever gets it re-reads the state, so
//!   callers that waited reuse the refresh that just happened.
//! - Lark refresh tokens are single use, so rotated tokens are journalled (encrypted) in
//!   the store before anything else, then written to Salesforce with retries; start-up
//!   writes any journalled tokens Salesforce never confirmed.
//! - A refresh Lark rejects as invalid/expired/revoked/used disconnects the trainer:
//!   tokens cleared, reason recorded, a reminder sent (at most one per 24 h), and a
//!   [`TrainerEvent::Disconnected`] for the booking side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::alerts::Alerter;
use crate::config::Settings;
use crate::ids::TrainerId;
use crate::lark::error::CODE_IM_NO_AVAILABILITY;
use crate::lark::{GrantFailure, LarkClient, LarkError, TokenGrant};
use crate::metrics::{names, Metrics};
use crate::salesforce::soql::{self, quote, RecordId};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::store::{JournalledTokens, Store, StoreError};
use crate::tokens::trainer::{
    connect_fields, disconnect_fields, from_unix, refresh_fields, EncryptedTokens, TrainerRecord,
    F_CONNECTED, F_REFRESH_EXPIRES_AT, F_TOKEN_EXPIRES_AT,
};
use crate::tokens::{AccessToken, RefreshToken, Vault};

/// Minimum time between two reconnect reminders to one trainer.
pub const REMINDER_INTERVAL_SECS: i64 = 24 * 3600;

/// What became of one connect reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderOutcome {
    /// Sent now.
    Sent,
    /// `lark.notify_trainers = false` (the pipeline's reminders only).
    Off,
    /// The trainer already got one within [`REMINDER_INTERVAL_SECS`].
    AlreadyReminded,
    /// Lark cannot deliver to this trainer: no email on the record, or no Lark user the
    /// bot can reach by it (Lark's 230013). Says which.
    Unreachable(String),
    /// Lark or the store failed; the next occasion tries again.
    Failed(String),
}

/// Something the booking side must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainerEvent {
    /// The trainer connected: their pending bookings can get meetings now.
    Connected(TrainerId),
    /// The trainer lost their connection: their open bookings become pending.
    Disconnected(TrainerId),
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The trainer is not connected (never connected, disconnected, or lost access).
    #[error("trainer has not connected Lark: {reason}")]
    NotConnected { reason: String },
    /// Lark or Salesforce failed transiently; try again later.
    #[error("Lark token refresh failed: {0}")]
    Lark(#[from] LarkError),
    #[error("Salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A stored token could not be decrypted (wrong key, or altered).
    #[error("stored token for trainer {trainer_id} cannot be decrypted: {reason}")]
    Undecryptable { trainer_id: String, reason: String },
}

/// Outcome of one refresh attempt, for summaries and metrics.
#[derive(Debug)]
pub enum RefreshOutcome {
    Refreshed,
    /// Lark refused the refresh token; the trainer is now disconnected (Lark's reason).
    Disconnected(String),
    /// Retryable failure; the trainer stays connected. Keeps its source.
    Failed(TokenError),
    /// Nothing to do.
    Skipped(SkipReason),
}

/// Why a refresh had nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The trainer is not connected.
    NotConnected,
    /// The trainer was disconnected while the refresh waited for its turn.
    Disconnected,
    /// No tokens are stored for the trainer.
    NoTokens,
    /// Someone refreshed since the timer's query.
    AlreadyRefreshed,
    /// Lark caps the refresh token's lifetime: refreshing again gains nothing yet.
    NotExtendable,
}

/// Handle to the token service; cheap to clone.
#[derive(Clone)]
pub struct TokenService {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) settings: Arc<Settings>,
    pub(super) salesforce: SalesforceClient,
    lark: LarkClient,
    pub(super) store: Store,
    pub(super) vault: Arc<Vault>,
    metrics: Metrics,
    /// Admin alerts (rule 22): a trainer Lark disconnected.
    alerts: Alerter,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Trainers this process disconnected (refused refresh, `disconnect`, admin uncheck);
    /// cleared when they connect again.
    disconnected: Mutex<std::collections::HashSet<String>>,
    events: Mutex<Option<mpsc::UnboundedSender<TrainerEvent>>>,
}

/// Current, decrypted-on-demand token state of one trainer.
struct TokenState {
    /// When the journal's tokens were refreshed (None when read from Salesforce).
    refreshed_at: Option<i64>,
    access_enc: String,
    refresh_enc: Option<String>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: Option<DateTime<Utc>>,
}

impl TokenService {
    /// Builds the service.
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        lark: LarkClient,
        store: Store,
        vault: Arc<Vault>,
        metrics: Metrics,
    ) -> TokenService {
        let alerts = Alerter::new(&settings, lark.clone(), store.clone(), metrics.clone());
        TokenService {
            inner: Arc::new(Inner {
                alerts,
                settings,
                salesforce,
                lark,
                store,
                vault,
                metrics,
                flights: Mutex::new(HashMap::new()),
                disconnected: Mutex::new(std::collections::HashSet::new()),
                events: Mutex::new(None),
            }),
        }
    }

    /// Where [`TrainerEvent`]s go (the booking processor).
    pub fn set_event_sink(&self, tx: mpsc::UnboundedSender<TrainerEvent>) {
        *self.inner.events.lock().expect("events") = Some(tx);
    }

    fn emit(&self, event: TrainerEvent) {
        if let Some(tx) = self.inner.events.lock().expect("events").as_ref() {
            let _ = tx.send(event);
        }
    }

    /// The admin alerter (the booking side alerts through it, too).
    pub fn alerter(&self) -> &Alerter {
        &self.inner.alerts
    }

    /// The vault (for `rotate-key` and `check`).
    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    /// Trainers matching a SOQL condition (built by the callers below from validated
    /// ids, quoted literals and fixed field names only).
    async fn query_trainers(&self, condition: &str) -> Result<Vec<TrainerRecord>, SalesforceError> {
        let t = &self.inner.settings.salesforce.trainer;
        let soql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            TrainerRecord::select_fields(t),
            t.object,
        );
        let rows = self.inner.salesforce.query(&soql).await?;
        Ok(rows
            .iter()
            .filter_map(|r| TrainerRecord::from_row(t, r))
            .collect())
    }

    /// Reads one trainer from Salesforce.
    pub async fn trainer(&self, id: &RecordId) -> Result<Option<TrainerRecord>, SalesforceError> {
        let found = self
            .query_trainers(&format!("Id = {}", quote(id.as_str())))
            .await?;
        Ok(found.into_iter().next())
    }

    /// Finds a trainer by record id or email (commands).
    pub async fn find_trainer(
        &self,
        id_or_email: &str,
    ) -> Result<Option<TrainerRecord>, SalesforceError> {
        if let Ok(id) = RecordId::parse(id_or_email) {
            return self.trainer(&id).await;
        }
        let email_field = &self.inner.settings.salesforce.trainer.email_field;
        let condition = format!("{email_field} = {} LIMIT 2", quote(id_or_email.trim()));
        Ok(self.query_trainers(&condition).await?.into_iter().next())
    }

    /// Saves the tokens of a trainer who just connected: one Salesforce write with every
    /// status field, then the journal. Nothing is stored when the write fails. Holds the
    /// trainer's single-flight lock, so a refresh that started with older tokens finishes
    /// before, and a later one reads these (rule 16: a reconnect is never overwritten).
    pub async fn connect(
        &self,
        trainer_id: &RecordId,
        open_id: &str,
        grant: TokenGrant,
    ) -> Result<(), TokenError> {
        let flight = self.flight(trainer_id.as_str());
        let _guard = flight.lock().await;
        let now = Utc::now();
        let tokens = self.encrypt_grant(&grant, None, now);
        let fields = connect_fields(open_id, &tokens, now);
        let object = &self.inner.settings.salesforce.trainer.object;
        self.inner
            .salesforce
            .update(object, trainer_id, fields)
            .await?;
        self.inner
            .store
            .journal_tokens(&journal_row(trainer_id.as_str(), &tokens, now, true))?;
        // What the consent granted decides whether their meetings get calendar events
        // (a connection made while the calendar was off lacks its scopes; rule 20).
        let scope = grant.scope.as_deref();
        self.inner.store.record_connect_scope(
            trainer_id.as_str(),
            scope,
            scope.is_some_and(lacks_calendar_scopes),
        )?;
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .remove(trainer_id.as_str());
        tracing::info!(trainer = %trainer_id, "trainer connected Lark");
        self.emit(TrainerEvent::Connected(TrainerId::from(trainer_id.clone())));
        Ok(())
    }

    /// A valid access token for the trainer, refreshing first if it is about to expire.
    /// `trainer` is a fresh read (the caller's batched query); its `connected` flag is
    /// authoritative, so an admin unchecking `Lark_Connected__c` stops all use at once.
    pub async fn access_token_for(
        &self,
        trainer: &TrainerRecord,
    ) -> Result<AccessToken, TokenError> {
        self.token_inner(trainer, None).await
    }

    /// Called after Lark answered a user-token call with 99991668/99991677 for `stale`:
    /// refresh once (unless someone already did) and return the new token.
    pub async fn access_token_after_rejection(
        &self,
        trainer: &TrainerRecord,
        stale: &AccessToken,
    ) -> Result<AccessToken, TokenError> {
        self.token_inner(trainer, Some(stale)).await
    }

    async fn token_inner(
        &self,
        trainer: &TrainerRecord,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, TokenError> {
        if !trainer.connected {
            self.forget_unchecked(trainer).await?;
            return Err(TokenError::NotConnected {
                reason: "the trainer has not connected their Lark account".into(),
            });
        }
        let flight = self.flight(&trainer.id);
        let _guard = flight.lock().await;
        // Re-read after taking the lock: a refresh may have finished while we waited,
        // or been refused (then the caller's copy of the trainer is stale).
        if self.is_disconnected(&trainer.id) {
            return Err(TokenError::NotConnected {
                reason: "the trainer's Lark connection was lost; they must reconnect".into(),
            });
        }
        let Some(state) = self.current_state(trainer)? else {
            return Err(TokenError::NotConnected {
                reason: "no Lark tokens are stored for this trainer".into(),
            });
        };
        let skew = chrono::Duration::from_std(self.inner.settings.refresh.access_token_skew)
            .unwrap_or_default();
        let access = self.decrypt(&trainer.id, &state.access_enc)?;
        let rejected_now = rejected.is_some_and(|r| r.secret() == access);
        if !rejected_now && state.access_expires_at - skew > Utc::now() {
            return Ok(AccessToken::new(access));
        }
        match self.refresh_locked(trainer, state).await? {
            (RefreshOutcome::Refreshed, Some(token)) => Ok(token),
            (RefreshOutcome::Disconnected(reason), _) => Err(TokenError::NotConnected { reason }),
            (_, _) => Err(TokenError::NotConnected {
                reason: "the Lark token could not be refreshed".into(),
            }),
        }
    }

    /// One refresh for the timer: refreshes the trainer's tokens now, whatever the
    /// access token's expiry (the timer picked them for the refresh token's sake).
    pub async fn refresh_now(&self, trainer: &TrainerRecord) -> RefreshOutcome {
        if !trainer.connected {
            return RefreshOutcome::Skipped(SkipReason::NotConnected);
        }
        let flight = self.flight(&trainer.id);
        let _guard = flight.lock().await;
        if self.is_disconnected(&trainer.id) {
            return RefreshOutcome::Skipped(SkipReason::Disconnected);
        }
        let state = match self.current_state(trainer) {
            Ok(Some(s)) => s,
            Ok(None) => return RefreshOutcome::Skipped(SkipReason::NoTokens),
            Err(e) => return RefreshOutcome::Failed(e.into()),
        };
        // Someone refreshed since the timer's query: nothing to do.
        let window = chrono::Duration::from_std(self.inner.settings.refresh.refresh_token_window)
            .unwrap_or_default();
        let now = Utc::now();
        if let Some(exp) = state.refresh_expires_at {
            if exp - window > now {
                return RefreshOutcome::Skipped(SkipReason::AlreadyRefreshed);
            }
            // The last refresh could not push the refresh token past the window (Lark
            // caps its lifetime): refreshing again gains nothing until the access token
            // itself needs it. The trainer was reminded when that refresh happened.
            let skew = chrono::Duration::from_std(self.inner.settings.refresh.access_token_skew)
                .unwrap_or_default();
            if let Some(refreshed_at) = state.refreshed_at {
                let not_extendable = exp.timestamp() - refreshed_at < window.num_seconds();
                if not_extendable && state.access_expires_at - skew > now {
                    return RefreshOutcome::Skipped(SkipReason::NotExtendable);
                }
            }
        }
        match self.refresh_locked(trainer, state).await {
            Ok((outcome, _)) => outcome,
            Err(e) => RefreshOutcome::Failed(e),
        }
    }

    /// Refreshes with the per-trainer lock held.
    async fn refresh_locked(
        &self,
        trainer: &TrainerRecord,
        state: TokenState,
    ) -> Result<(RefreshOutcome, Option<AccessToken>), TokenError> {
        let Some(refresh_enc) = state.refresh_enc.as_deref() else {
            let reason = "Lark issued no refresh token (offline_access missing); reconnect needed";
            self.disconnect_with_reason(trainer, reason).await?;
            return Ok((RefreshOutcome::Disconnected(reason.into()), None));
        };
        let refresh = RefreshToken::new(self.decrypt(&trainer.id, refresh_enc)?);
        let grant = match self.inner.lark.refresh(&refresh).await {
            Ok(g) => g,
            Err(LarkError::InvalidGrant { kind, .. }) => {
                let reason = disconnect_reason(&kind);
                self.inner
                    .metrics
                    .inc(names::TOKEN_REFRESHES, &[("outcome", grant_outcome(&kind))]);
                self.disconnect_with_reason(trainer, &reason).await?;
                return Ok((RefreshOutcome::Disconnected(reason), None));
            }
            Err(e) => {
                self.inner
                    .metrics
                    .inc(names::TOKEN_REFRESHES, &[("outcome", "failed")]);
                tracing::warn!(trainer = %trainer.id, error = %e, "token refresh failed; will retry later");
                return Err(TokenError::Lark(e));
            }
        };
        let now = Utc::now();
        // A response without a new refresh token keeps the old one.
        let tokens = self.encrypt_grant(&grant, Some(&state), now);
        let row = journal_row(&trainer.id, &tokens, now, false);
        // Journal first: the old refresh token is spent, these are the only valid ones.
        // If even the journal fails, Salesforce is still the place to save them.
        if let Err(e) = self.inner.store.journal_tokens(&row) {
            tracing::error!(trainer = %trainer.id, error = %e, "could not journal rotated tokens; writing them to Salesforce directly");
        }
        self.inner
            .metrics
            .inc(names::TOKEN_REFRESHES, &[("outcome", "ok")]);
        if let Some(scope) = grant.scope.as_deref() {
            let lacks = lacks_calendar_scopes(scope);
            if let Err(e) = self
                .inner
                .store
                .record_refreshed_scope(&trainer.id, scope, lacks)
            {
                tracing::warn!(trainer = %trainer.id, error = %e, "could not record the refreshed grant's scope");
            }
        }
        tracing::info!(trainer = %trainer.id, "trainer tokens refreshed");
        if let Err(e) = self.write_journalled(&row).await {
            tracing::error!(trainer = %trainer.id, error = %e, "rotated tokens not yet in Salesforce; kept in the journal and retried later");
        }
        // Lark did not extend the refresh token past the window: the trainer will have
        // to reconnect soon, so tell them now.
        let window = chrono::Duration::from_std(self.inner.settings.refresh.refresh_token_window)
            .unwrap_or_default();
        if tokens
            .refresh_expires_at
            .is_some_and(|exp| exp < now + window)
        {
            tracing::info!(trainer = %trainer.id, "refresh token cannot be extended past the window; reminding the trainer");
            self.remind(trainer).await;
        }
        Ok((RefreshOutcome::Refreshed, Some(grant.access_token)))
    }

    /// An admin unchecked `Lark_Connected__c`: never use the tokens again, and clear
    /// them from Salesforce and the journal (once, whatever the number of callers).
    pub async fn forget_unchecked(&self, trainer: &TrainerRecord) -> Result<(), TokenError> {
        if trainer.connected {
            return Ok(());
        }
        self.inner.store.forget_tokens(&trainer.id)?;
        let has_tokens = trainer.access_enc.is_some()
            || trainer.refresh_enc.is_some()
            || trainer.access_expires_at.is_some()
            || trainer.refresh_expires_at.is_some();
        if !has_tokens {
            return Ok(());
        }
        let flight = self.flight(&trainer.id);
        let _guard = flight.lock().await;
        if !self.mark_disconnected(&trainer.id) {
            return Ok(());
        }
        let Ok(id) = RecordId::parse(&trainer.id) else {
            return Ok(());
        };
        let object = &self.inner.settings.salesforce.trainer.object;
        let fields = disconnect_fields("Disconnected in Salesforce (Lark Connected unchecked); the stored Lark tokens were cleared. The trainer can reconnect with their connect link.");
        if let Err(e) = self.inner.salesforce.update(object, &id, fields).await {
            self.inner
                .disconnected
                .lock()
                .expect("disconnected")
                .remove(&trainer.id);
            return Err(e.into());
        }
        tracing::info!(trainer = %trainer.id, "trainer was unchecked in Salesforce; tokens cleared");
        Ok(())
    }

    /// Writes journalled tokens to Salesforce (retrying) and marks them confirmed.
    async fn write_journalled(&self, row: &JournalledTokens) -> Result<(), TokenError> {
        let id = RecordId::parse(&row.trainer_id).map_err(|_| TokenError::NotConnected {
            reason: "invalid trainer id in the journal".into(),
        })?;
        let tokens = EncryptedTokens {
            access_enc: row.access_enc.clone(),
            refresh_enc: row.refresh_enc.clone(),
            access_expires_at: from_unix(row.access_expires_at),
            refresh_expires_at: row.refresh_expires_at.map(from_unix),
        };
        let fields = refresh_fields(&tokens, from_unix(row.refreshed_at));
        let object = &self.inner.settings.salesforce.trainer.object;
        // The client already retries 5xx and timeouts with backoff; what still fails
        // stays in the journal for the next refresh pass or start-up.
        self.inner.salesforce.update(object, &id, fields).await?;
        self.inner
            .store
            .confirm_tokens(&row.trainer_id, row.refreshed_at)?;
        Ok(())
    }

    /// Writes journalled tokens Salesforce never confirmed (start-up and every refresh
    /// pass), carrying on past rows that still fail. Returns how many landed; an error
    /// only when some did not.
    pub async fn replay_unconfirmed(&self) -> Result<usize, TokenError> {
        let rows = self.inner.store.unconfirmed_tokens()?;
        let mut written = 0;
        let mut last_error = None;
        for row in rows {
            let flight = self.flight(&row.trainer_id);
            let _guard = flight.lock().await;
            // Re-read under the lock: a refresh may have superseded this row.
            let Some(current) = self.inner.store.journalled_tokens(&row.trainer_id)? else {
                continue;
            };
            if current.confirmed {
                continue;
            }
            match self.write_journalled(&current).await {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::warn!(trainer = %row.trainer_id, error = %e, "journalled tokens still not in Salesforce");
                    last_error = Some(e);
                }
            }
        }
        if written > 0 {
            tracing::info!(count = written, "wrote journalled tokens to Salesforce");
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Clears a trainer's tokens and marks them not connected (the `disconnect` command).
    /// Takes the trainer's single-flight lock, so a refresh in flight finishes first and
    /// never writes its rotated tokens back over the disconnect (design §3 rule 16).
    pub async fn disconnect(&self, trainer_id: &RecordId, reason: &str) -> Result<(), TokenError> {
        let flight = self.flight(trainer_id.as_str());
        let _guard = flight.lock().await;
        self.disconnect_locked(trainer_id, reason).await
    }

    /// [`TokenService::disconnect`] with the trainer's lock already held (a refused refresh).
    async fn disconnect_locked(
        &self,
        trainer_id: &RecordId,
        reason: &str,
    ) -> Result<(), TokenError> {
        let object = &self.inner.settings.salesforce.trainer.object;
        self.inner.store.forget_tokens(trainer_id.as_str())?;
        self.mark_disconnected(trainer_id.as_str());
        self.inner
            .salesforce
            .update(object, trainer_id, disconnect_fields(reason))
            .await?;
        tracing::info!(trainer = %trainer_id, "trainer disconnected");
        self.emit(TrainerEvent::Disconnected(TrainerId::from(
            trainer_id.clone(),
        )));
        Ok(())
    }

    async fn disconnect_with_reason(
        &self,
        trainer: &TrainerRecord,
        reason: &str,
    ) -> Result<(), TokenError> {
        let id = RecordId::parse(&trainer.id).map_err(|_| TokenError::NotConnected {
            reason: "invalid trainer id".into(),
        })?;
        tracing::warn!(trainer = %trainer.id, reason, "Lark refused the refresh; trainer disconnected");
        self.disconnect_locked(&id, reason).await?;
        self.remind(trainer).await;
        let link = self.inner.settings.server.connect_link(&trainer.id);
        self.inner
            .alerts
            .trainer_disconnected(&trainer.id, trainer.name.as_deref(), reason, &link)
            .await;
        Ok(())
    }

    /// Sends the trainer a Lark message with their connect link, at most once per 24 h,
    /// unless `lark.notify_trainers = false`. Failures are logged, never fatal: the status
    /// field already tells admins. True when a message went out.
    pub async fn remind(&self, trainer: &TrainerRecord) -> bool {
        if !self.inner.settings.lark.notify_trainers {
            return false;
        }
        self.send_reminder(trainer).await == ReminderOutcome::Sent
    }

    /// The `remind` command's reminder: as [`TokenService::remind`], sharing its 24 h
    /// limit, but sent whatever `lark.notify_trainers` says (an admin asked for it).
    pub async fn remind_forced(&self, trainer: &TrainerRecord) -> ReminderOutcome {
        self.send_reminder(trainer).await
    }

    async fn send_reminder(&self, trainer: &TrainerRecord) -> ReminderOutcome {
        let settings = &self.inner.settings;
        let Some(email) = trainer.email.as_deref() else {
            tracing::info!(trainer = %trainer.id, "no reminder: trainer has no email");
            return ReminderOutcome::Unreachable("the trainer record has no email".into());
        };
        let now = Utc::now().timestamp();
        match self.inner.store.last_reminder(&trainer.id) {
            Ok(Some(last)) if now - last < REMINDER_INTERVAL_SECS => {
                return ReminderOutcome::AlreadyReminded
            }
            Err(e) => {
                tracing::warn!(error = %e, "reminder state unreadable; not sending");
                return ReminderOutcome::Failed(format!("reminder state unreadable: {e}"));
            }
            _ => {}
        }
        let link = settings.server.connect_link(&trainer.id);
        let name = trainer.name.as_deref().unwrap_or("there");
        let text = format!(
            "Hi {name}, your Lark account needs to be (re)connected so your remote training sessions get their meetings. Connect here: {link}"
        );
        // One uuid per trainer per day: Lark deduplicates a retried send.
        let uuid = format!("lvb-remind-{}-{}", trainer.id, now / REMINDER_INTERVAL_SECS);
        match self
            .inner
            .lark
            .send_text_by_email(email, &text, &uuid)
            .await
        {
            Ok(()) => {
                if let Err(e) = self.inner.store.record_reminder(&trainer.id, now) {
                    tracing::warn!(error = %e, "could not remember the reminder");
                }
                tracing::info!(trainer = %trainer.id, "reconnect reminder sent");
                ReminderOutcome::Sent
            }
            Err(LarkError::PermissionDenied { code, .. }) if code == CODE_IM_NO_AVAILABILITY => {
                tracing::warn!(trainer = %trainer.id, "reconnect reminder: no Lark user the bot can reach by the trainer's email");
                ReminderOutcome::Unreachable(format!(
                    "Lark has no user the bot can reach by the email on the record (code {code})"
                ))
            }
            Err(e) => {
                tracing::warn!(trainer = %trainer.id, error = %e, "reconnect reminder failed");
                ReminderOutcome::Failed(e.to_string())
            }
        }
    }

    /// Trainers the timer must refresh: connected, refresh token expiring within the window.
    pub async fn trainers_due(&self) -> Result<Vec<TrainerRecord>, SalesforceError> {
        let window = chrono::Duration::from_std(self.inner.settings.refresh.refresh_token_window)
            .unwrap_or_default();
        let horizon = soql::datetime(Utc::now() + window);
        self.query_trainers(&format!(
            "{F_CONNECTED} = true AND {F_REFRESH_EXPIRES_AT} != null AND {F_REFRESH_EXPIRES_AT} < {horizon}"
        ))
        .await
    }

    /// Remembers that this process disconnected the trainer, so callers holding an
    /// older read of the record never refresh with the refused tokens. Returns false
    /// when it was already marked.
    fn mark_disconnected(&self, trainer_id: &str) -> bool {
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .insert(trainer_id.to_string())
    }

    fn is_disconnected(&self, trainer_id: &str) -> bool {
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .contains(trainer_id)
    }

    /// Connected trainers whose checkbox an admin unchecked while tokens remain (the
    /// DateTime expiry fields can be filtered; the token fields cannot).
    pub async fn trainers_unchecked_with_tokens(
        &self,
    ) -> Result<Vec<TrainerRecord>, SalesforceError> {
        self.query_trainers(&format!(
            "{F_CONNECTED} = false AND ({F_TOKEN_EXPIRES_AT} != null OR {F_REFRESH_EXPIRES_AT} != null)"
        ))
        .await
    }

    /// The trainer's single-flight lock: every path that touches their tokens holds it.
    pub(crate) fn flight(&self, trainer_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .flights
            .lock()
            .expect("flights")
            .entry(trainer_id.to_string())
            .or_default()
            .clone()
    }

    /// The newest known tokens: the journal (written first on every rotation) or the
    /// Salesforce record, whichever is newer.
    fn current_state(&self, trainer: &TrainerRecord) -> Result<Option<TokenState>, StoreError> {
        let from_sf = match (&trainer.access_enc, trainer.access_expires_at) {
            (Some(a), Some(exp)) => Some(TokenState {
                refreshed_at: None,
                access_enc: a.clone(),
                refresh_enc: trainer.refresh_enc.clone(),
                access_expires_at: exp,
                refresh_expires_at: trainer.refresh_expires_at,
            }),
            _ => None,
        };
        let from_journal = self
            .inner
            .store
            .journalled_tokens(&trainer.id)?
            .map(|j| TokenState {
                refreshed_at: Some(j.refreshed_at),
                access_enc: j.access_enc,
                refresh_enc: j.refresh_enc,
                access_expires_at: from_unix(j.access_expires_at),
                refresh_expires_at: j.refresh_expires_at.map(from_unix),
            });
        // The same pair in both: Salesforce's copy. Different pairs: the newer, compared
        // in whole seconds (the journal keeps seconds, Salesforce milliseconds) — compared
        // finer, a caller holding a read from before a refresh in the same second would
        // take its stale copy for the newer and spend the used refresh token again.
        Ok(match (from_sf, from_journal) {
            (Some(sf), Some(j)) if sf.access_enc == j.access_enc => Some(sf),
            (Some(sf), Some(j))
                if sf.access_expires_at.timestamp() > j.access_expires_at.timestamp() =>
            {
                Some(sf)
            }
            (_, Some(j)) => Some(j),
            (sf, None) => sf,
        })
    }

    fn decrypt(&self, trainer_id: &str, enc: &str) -> Result<String, TokenError> {
        self.inner
            .vault
            .decrypt(enc)
            .map_err(|e| TokenError::Undecryptable {
                trainer_id: trainer_id.to_string(),
                reason: e.to_string(),
            })
    }

    fn encrypt_grant(
        &self,
        grant: &TokenGrant,
        previous: Option<&TokenState>,
        now: DateTime<Utc>,
    ) -> EncryptedTokens {
        let vault = &self.inner.vault;
        let (refresh_enc, refresh_expires_at) = match (&grant.refresh_token, previous) {
            (Some(r), _) => (
                Some(vault.encrypt(r.secret())),
                grant
                    .refresh_expires_in
                    .map(|s| expiry(now, s, "refresh_token_expires_in")),
            ),
            (None, Some(prev)) => (prev.refresh_enc.clone(), prev.refresh_expires_at),
            (None, None) => (None, None),
        };
        EncryptedTokens {
            access_enc: vault.encrypt(grant.access_token.secret()),
            refresh_enc,
            access_expires_at: expiry(now, grant.expires_in, "expires_in"),
            refresh_expires_at,
        }
    }
}

/// Longest token lifetime believed from Lark. Lark's are hours (access) and days
/// (refresh); anything longer is a fault on the wire, and unclamped it could overflow the
/// date arithmetic (an `expires_in` near `i64::MAX` once panicked the process).
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 366 * 24 * 3600;

/// `now + seconds` for a lifetime Lark sent, clamped to `0..=MAX_TOKEN_LIFETIME_SECS`
/// (design §3 rule 17: absurd numbers from outside are clamped, never a panic). A
/// negative lifetime counts as already expired, so the next use refreshes.
fn expiry(now: DateTime<Utc>, seconds: i64, field: &str) -> DateTime<Utc> {
    let clamped = seconds.clamp(0, MAX_TOKEN_LIFETIME_SECS);
    if clamped != seconds {
        tracing::warn!(
            field,
            sent = seconds,
            used = clamped,
            "Lark sent an out-of-range token lifetime; clamped"
        );
    }
    now + chrono::Duration::seconds(clamped)
}

fn journal_row(
    trainer_id: &str,
    t: &EncryptedTokens,
    now: DateTime<Utc>,
    confirmed: bool,
) -> JournalledTokens {
    JournalledTokens {
        trainer_id: trainer_id.to_string(),
        access_enc: t.access_enc.clone(),
        refresh_enc: t.refresh_enc.clone(),
        access_expires_at: t.access_expires_at.timestamp(),
        refresh_expires_at: t.refresh_expires_at.map(|d| d.timestamp()),
        refreshed_at: now.timestamp(),
        confirmed,
    }
}

/// The metrics label of a refused refresh.
fn grant_outcome(kind: &GrantFailure) -> &'static str {
    match kind {
        GrantFailure::Expired => "expired",
        GrantFailure::Revoked => "revoked",
        GrantFailure::AlreadyUsed => "already_used",
        _ => "invalid",
    }
}

/// What the trainer and admins read in `Lark_Connection_Error__c`.
fn disconnect_reason(kind: &GrantFailure) -> String {
    let what = match kind {
        GrantFailure::Expired => "Lark access expired (the refresh token lapsed)",
        GrantFailure::Revoked => {
            "Lark access was revoked (the app was removed or the user signed out)"
        }
        GrantFailure::AlreadyUsed => "Lark refused an already-used refresh token",
        _ => "Lark rejected the stored refresh token",
    };
    format!("{what}. The trainer must reconnect using their connect link.")
}

/// True when a granted `scope` (space-separated) lacks one of the calendar scopes.
pub fn lacks_calendar_scopes(scope: &str) -> bool {
    crate::config::CALENDAR_SCOPES
        .iter()
        .any(|needed| !scope.split_whitespace().any(|g| g == *needed))
}

#[cfg(test)]
mod tests;
