//! The token service: the only place that decrypts, refreshes, saves or clears a
//! trainer's Lark tokens (design §3 rule 5).
//!
//! - `access_token_for` returns a valid user access token, refreshing first when it is
//!   within `refresh.access_token_skew` of expiry. Refreshes for one trainer are
//!   single-flight: one per-trainer async lock; whoever gets it re-reads the state, so
//!   callers that waited reuse the refresh that just happened.
//! - Lark refresh tokens are single use, so rotated tokens are journalled (encrypted) in
//!   the store before anything else; the caller gets its token then, and
//!   [`TokenWriteback`] writes the rotated pair to Salesforce (batched with other
//!   trainers' in the running service); start-up and every refresh pass write any
//!   journalled tokens Salesforce never confirmed.
//! - A refresh Lark rejects as invalid/expired/revoked/used disconnects the trainer:
//!   tokens cleared, reason recorded, a reminder sent (at most one per 24 h), and a
//!   [`TrainerEvent::Disconnected`] for the booking side.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::alerts::Alerter;
use crate::config::Settings;
use crate::ids::TrainerId;
use crate::lark::{LarkClient, LarkError, TokenGrant};
use crate::metrics::{names, Metrics};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use crate::tokens::decrypted::DecryptedTokens;
use crate::tokens::flights::Flights;
use crate::tokens::grant::{
    disconnect_reason, expiry, grant_outcome, journal_row, lacks_calendar_scopes,
};
use crate::tokens::reminders::Reminders;
use crate::tokens::trainer::{connect_fields, disconnect_fields, EncryptedTokens, TrainerRecord};
use crate::tokens::trainers::Trainers;
use crate::tokens::writeback::{TokenWriteback, WriteError};
use crate::tokens::{AccessToken, RefreshToken, Vault};

/// Something the booking side must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainerEvent {
    /// The trainer connected: their pending bookings can get meetings now.
    Connected(TrainerId),
    /// The trainer lost their connection: their open bookings become pending.
    Disconnected(TrainerId),
}

impl TrainerEvent {
    /// The trainer it is about.
    pub fn trainer(&self) -> &TrainerId {
        match self {
            TrainerEvent::Connected(t) | TrainerEvent::Disconnected(t) => t,
        }
    }
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
    /// Rotated tokens not (all) written to Salesforce yet; they stay journalled.
    #[error("{0}")]
    Writeback(#[from] WriteError),
    /// A stored token could not be decrypted (wrong key, or altered).
    #[error("stored token for trainer {trainer} cannot be decrypted: {reason}")]
    Undecryptable { trainer: TrainerId, reason: String },
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
    /// Reads of trainer records.
    trainers: Trainers,
    /// Connect reminders.
    reminders: Reminders,
    pub(super) flights: Arc<Flights>,
    /// Rotated tokens to Salesforce.
    writeback: TokenWriteback,
    /// Access tokens decrypted once per ciphertext; forgotten on every refresh,
    /// disconnect and connect.
    decrypted: DecryptedTokens,
    /// Trainers this process disconnected (refused refresh, `disconnect`, admin uncheck);
    /// cleared when they connect again.
    disconnected: Mutex<std::collections::HashSet<TrainerId>>,
    /// Where connects and disconnects are told (the booking processor).
    events: mpsc::UnboundedSender<TrainerEvent>,
}

/// Current, decrypted-on-demand token state of one trainer.
struct TokenState {
    /// When the journal's tokens were refreshed (None when read from Salesforce).
    refreshed_at: Option<DateTime<Utc>>,
    access_enc: String,
    refresh_enc: Option<String>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: Option<DateTime<Utc>>,
}

impl TokenService {
    /// Builds the service; connects and disconnects are told on `events` (the booking
    /// processor's receiver; a closed one is fine for one-shot commands).
    pub fn new(
        settings: Arc<Settings>,
        salesforce: SalesforceClient,
        lark: LarkClient,
        store: Store,
        vault: Arc<Vault>,
        metrics: Metrics,
        events: mpsc::UnboundedSender<TrainerEvent>,
    ) -> TokenService {
        let alerts = Alerter::new(&settings, lark.clone(), store.clone(), metrics.clone());
        let trainers = Trainers::new(settings.clone(), salesforce.clone());
        let reminders = Reminders::new(settings.clone(), lark.clone(), store.clone());
        let flights = Arc::new(Flights::default());
        let writeback = TokenWriteback::new(
            settings.clone(),
            salesforce.clone(),
            store.clone(),
            flights.clone(),
        );
        TokenService {
            inner: Arc::new(Inner {
                alerts,
                trainers,
                reminders,
                settings,
                salesforce,
                lark,
                store,
                vault,
                metrics,
                flights,
                writeback,
                decrypted: DecryptedTokens::default(),
                disconnected: Mutex::new(std::collections::HashSet::new()),
                events,
            }),
        }
    }

    fn emit(&self, event: TrainerEvent) {
        // Nobody listening (a one-shot command) is fine: the event is only a nudge.
        let _ = self.inner.events.send(event);
    }

    /// Reads of trainer records.
    pub fn trainers(&self) -> &Trainers {
        &self.inner.trainers
    }

    /// Connect reminders.
    pub fn reminders(&self) -> &Reminders {
        &self.inner.reminders
    }

    /// The admin alerter (the booking side alerts through it, too).
    pub fn alerter(&self) -> &Alerter {
        &self.inner.alerts
    }

    /// The vault (for `rotate-key` and `check`).
    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    /// Saves the tokens of a trainer who just connected: one Salesforce write with every
    /// status field, then the journal. Nothing is stored when the write fails. Holds the
    /// trainer's single-flight lock, so a refresh that started with older tokens finishes
    /// before, and a later one reads these (rule 16: a reconnect is never overwritten).
    #[tracing::instrument(name = "connect", skip_all, fields(trainer = %trainer))]
    pub async fn connect(
        &self,
        trainer: &TrainerId,
        open_id: &str,
        grant: TokenGrant,
    ) -> Result<(), TokenError> {
        let flight = self.flight(trainer);
        let _guard = flight.lock().await;
        let now = Utc::now();
        self.inner.decrypted.forget(trainer);
        let tokens = self.encrypt_grant(&grant, None, now);
        let fields = connect_fields(open_id, &tokens, now);
        let object = &self.inner.settings.salesforce.trainer.object;
        self.inner
            .salesforce
            .update(object, trainer.record_id(), fields)
            .await?;
        self.inner
            .store
            .journal_tokens(&journal_row(trainer, &tokens, now, true))?;
        // What the consent granted decides whether their meetings get calendar events
        // (a connection made while the calendar was off lacks its scopes; rule 20).
        let scope = grant.scope.as_deref();
        self.inner.store.record_connect_scope(
            trainer,
            scope,
            scope.is_some_and(lacks_calendar_scopes),
        )?;
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .remove(trainer);
        tracing::info!("trainer connected Lark");
        self.emit(TrainerEvent::Connected(trainer.clone()));
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
        let access =
            self.inner
                .decrypted
                .get_or_decrypt(&trainer.id, &state.access_enc, |enc| {
                    self.decrypt(&trainer.id, enc)
                })?;
        let rejected_now = rejected.is_some_and(|r| r.secret() == access.secret());
        if !rejected_now && state.access_expires_at - skew > Utc::now() {
            return Ok(access);
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
                let not_extendable = exp.signed_duration_since(refreshed_at) < window;
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
    #[tracing::instrument(name = "refresh", skip_all, fields(trainer = %trainer.id))]
    async fn refresh_locked(
        &self,
        trainer: &TrainerRecord,
        state: TokenState,
    ) -> Result<(RefreshOutcome, Option<AccessToken>), TokenError> {
        // Whatever comes of it, the token kept for the old ciphertext is done with.
        self.inner.decrypted.forget(&trainer.id);
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
                tracing::warn!(error = %e, "token refresh failed; will retry later");
                return Err(TokenError::Lark(e));
            }
        };
        let now = Utc::now();
        // A response without a new refresh token keeps the old one.
        let tokens = self.encrypt_grant(&grant, Some(&state), now);
        let row = journal_row(&trainer.id, &tokens, now, false);
        // Journal first: the old refresh token is spent, these are the only valid ones.
        // If even the journal fails, Salesforce is still the place to save them.
        let journalled = match self.inner.store.journal_tokens(&row) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "could not journal rotated tokens; writing them to Salesforce directly");
                false
            }
        };
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
                tracing::warn!(error = %e, "could not record the refreshed grant's scope");
            }
        }
        tracing::info!("trainer tokens refreshed");
        // Journalled, they are safe: the writing task takes them to Salesforce with other
        // trainers' (the caller need not wait for that). Without one, or without the
        // journal, they are written here and now.
        if !(journalled && self.inner.writeback.hand_over()) {
            if let Err(e) = self.inner.writeback.write_one(&row).await {
                tracing::error!(error = %e, "rotated tokens not yet in Salesforce; kept in the journal and retried later");
            }
        }
        // Lark did not extend the refresh token past the window: the trainer will have
        // to reconnect soon, so tell them now.
        let window = chrono::Duration::from_std(self.inner.settings.refresh.refresh_token_window)
            .unwrap_or_default();
        if tokens
            .refresh_expires_at
            .is_some_and(|exp| exp < now + window)
        {
            tracing::info!(
                "refresh token cannot be extended past the window; reminding the trainer"
            );
            self.inner.reminders.remind(trainer).await;
        }
        Ok((RefreshOutcome::Refreshed, Some(grant.access_token)))
    }

    /// An admin unchecked `Lark_Connected__c`: never use the tokens again, and clear
    /// them from Salesforce and the journal (once, whatever the number of callers).
    pub async fn forget_unchecked(&self, trainer: &TrainerRecord) -> Result<(), TokenError> {
        if trainer.connected {
            return Ok(());
        }
        self.inner.decrypted.forget(&trainer.id);
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
        let object = &self.inner.settings.salesforce.trainer.object;
        let fields = disconnect_fields("Disconnected in Salesforce (Lark Connected unchecked); the stored Lark tokens were cleared. The trainer can reconnect with their connect link.");
        let id = trainer.id.record_id();
        if let Err(e) = self.inner.salesforce.update(object, id, fields).await {
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

    /// Writes journalled tokens Salesforce never confirmed (start-up and every refresh
    /// pass) in collection calls, carrying on past rows that still fail. Returns how
    /// many landed; an error only when some did not.
    pub async fn replay_unconfirmed(&self) -> Result<usize, TokenError> {
        Ok(self.inner.writeback.write_unconfirmed().await?)
    }

    /// Starts the task that writes rotated tokens to Salesforce in batches (see
    /// [`TokenWriteback`]) on `tasks`; from now on a refresh hands its journalled row
    /// over instead of writing it. On `shutdown` it writes what is waiting and stops.
    pub fn spawn_writeback(&self, tasks: &Tasks, shutdown: watch::Receiver<bool>) {
        self.inner.writeback.start_batching();
        let tokens = self.clone();
        tasks.spawn("token writes", async move {
            tokens.inner.writeback.run(shutdown).await;
        });
    }

    /// Clears a trainer's tokens and marks them not connected (the `disconnect` command).
    /// Takes the trainer's single-flight lock, so a refresh in flight finishes first and
    /// never writes its rotated tokens back over the disconnect (design §3 rule 16).
    pub async fn disconnect(&self, trainer: &TrainerId, reason: &str) -> Result<(), TokenError> {
        let flight = self.flight(trainer);
        let _guard = flight.lock().await;
        self.disconnect_locked(trainer, reason).await
    }

    /// [`TokenService::disconnect`] with the trainer's lock already held (a refused refresh).
    #[tracing::instrument(name = "disconnect", skip_all, fields(trainer = %trainer))]
    async fn disconnect_locked(&self, trainer: &TrainerId, reason: &str) -> Result<(), TokenError> {
        let object = &self.inner.settings.salesforce.trainer.object;
        self.inner.decrypted.forget(trainer);
        self.inner.store.forget_tokens(trainer)?;
        self.mark_disconnected(trainer);
        self.inner
            .salesforce
            .update(object, trainer.record_id(), disconnect_fields(reason))
            .await?;
        tracing::info!("trainer disconnected");
        self.emit(TrainerEvent::Disconnected(trainer.clone()));
        Ok(())
    }

    async fn disconnect_with_reason(
        &self,
        trainer: &TrainerRecord,
        reason: &str,
    ) -> Result<(), TokenError> {
        tracing::warn!(reason, "Lark refused the refresh; trainer disconnected");
        self.disconnect_locked(&trainer.id, reason).await?;
        self.inner.reminders.remind(trainer).await;
        let link = self.inner.settings.server.connect_link(&trainer.id);
        self.inner
            .alerts
            .trainer_disconnected(&trainer.id, trainer.name.as_deref(), reason, &link)
            .await;
        Ok(())
    }

    /// Remembers that this process disconnected the trainer, so callers holding an
    /// older read of the record never refresh with the refused tokens. Returns false
    /// when it was already marked.
    fn mark_disconnected(&self, trainer: &TrainerId) -> bool {
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .insert(trainer.clone())
    }

    fn is_disconnected(&self, trainer: &TrainerId) -> bool {
        self.inner
            .disconnected
            .lock()
            .expect("disconnected")
            .contains(trainer)
    }

    /// The trainer's single-flight lock: every path that touches their tokens holds it.
    pub(crate) fn flight(&self, trainer: &TrainerId) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.flights.of(trainer)
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
                access_expires_at: j.access_expires_at,
                refresh_expires_at: j.refresh_expires_at,
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

    fn decrypt(&self, trainer: &TrainerId, enc: &str) -> Result<String, TokenError> {
        self.inner
            .vault
            .decrypt(enc)
            .map_err(|e| TokenError::Undecryptable {
                trainer: trainer.clone(),
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
