//! The connect flow (design §2.3): a trainer links their Lark account once.
//!
//! - [`ConnectFlow::begin`] checks the trainer, issues a signed `state` and a PKCE pair,
//!   records the verifier under the state's nonce and returns the authorize URL plus the
//!   value of the cookie that binds the flow to this browser. Flows are keyed by their
//!   own nonce and bounded globally; a start never drops another browser's flow (design
//!   §3 rule 27).
//! - [`ConnectFlow::finish`] verifies the state (signature, age, cookie, single use),
//!   exchanges the code, reads who signed in, checks the account, and has the token service
//!   encrypt and save the tokens under the trainer's single-flight lock, which also hands
//!   the trainer's pending bookings to the pipeline.
//!
//! Every refusal is a [`ConnectError`] and stores nothing. This module knows nothing of
//! HTTP: the handler turns errors into pages.

pub mod recent;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use url::Url;

use crate::config::Settings;
use crate::ids::TrainerId;
use crate::lark::{LarkClient, LarkError, LarkUser};
use crate::salesforce::SalesforceError;
use crate::store::{NonceUse, PendingAuth, PendingSaved, Store, StoreError};
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::{AuthCode, OAuthState, TokenError, TokenService, Vault};

use recent::RecentIds;
use state::StateError;

/// Why a connect attempt was refused or failed. Nothing is stored for any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `/start` without a trainer id.
    #[error("the connect link names no trainer")]
    MissingTrainer,
    /// The trainer id is not a Salesforce record id.
    #[error("the trainer id is not a record id")]
    MalformedTrainer,
    /// No trainer with this id in Salesforce (at start).
    #[error("no such trainer")]
    UnknownTrainer,
    /// The trainer the state names no longer exists (at the callback).
    #[error("the trainer no longer exists")]
    TrainerGone,
    /// The trainer has no email, and `security.require_email_match` needs one.
    #[error("the trainer record has no email")]
    TrainerWithoutEmail,
    /// Salesforce could not be asked about the trainer.
    #[error("reading the trainer: {0}")]
    SalesforceUnavailable(#[source] SalesforceError),
    /// The trainer declined on Lark's page (`error=access_denied`).
    #[error("the trainer declined access")]
    Declined,
    /// Lark came back with another `error` (kept Debug-quoted: the value is the caller's).
    #[error("Lark returned error={0:?}")]
    LarkRefused(String),
    /// The callback lacks `code` or `state`.
    #[error("code or state missing")]
    MissingParameters,
    /// The state is older than ten minutes.
    #[error("the state expired")]
    StateExpired,
    /// The state is malformed or its signature does not match.
    #[error("{0}")]
    StateForged(#[source] StateError),
    /// The browser's cookie does not hold the state's nonce.
    #[error("the state cookie is missing or does not match")]
    CookieMismatch,
    /// The state's nonce was used before.
    #[error("the state was used before")]
    StateReused,
    /// The state's nonce was never issued here (or pruned).
    #[error("the state's nonce is unknown")]
    StateUnknown,
    /// The state and the recorded flow disagree (or name an invalid trainer).
    #[error("the state does not match the flow that was started")]
    StateMismatch,
    /// Lark refused the authorization code (expired, used, wrong verifier).
    #[error("Lark refused the code: {0}")]
    CodeRejected(#[source] LarkError),
    /// Lark could not be reached for the code exchange.
    #[error("code exchange: {0}")]
    LarkUnavailable(#[source] LarkError),
    /// Lark did not say who signed in.
    #[error("user_info: {0}")]
    UserInfoFailed(#[source] LarkError),
    /// The Lark account's email is not the trainer's.
    #[error("the Lark account's email is not the trainer's")]
    EmailMismatch {
        /// The email the person signed in with (or a placeholder).
        signed_in: String,
        /// The trainer's email, masked (`a***@example.com`): the page is shown to
        /// whoever signed in, who may not be the trainer.
        expected_masked: String,
    },
    /// The consent left out scopes the service needs (rule 19); listed in config order.
    #[error("the consent lacks the scopes {0:?}")]
    MissingScopes(Vec<String>),
    /// The Lark account belongs to another tenant than `lark.tenant_key`.
    #[error("the Lark account belongs to another tenant")]
    WrongTenant,
    /// Too many connect flows are open at once; nothing was recorded.
    #[error("too many connect flows are open")]
    Busy,
    /// Salesforce refused the write that saves the connection.
    #[error("saving the connection: {0}")]
    SaveFailed(#[source] SalesforceError),
    /// The store, the vault or another internal step failed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ConnectError {
    fn from(e: StoreError) -> Self {
        ConnectError::Internal(e.to_string())
    }
}

/// A started flow: where to send the browser, and the cookie that binds it.
pub struct Begun {
    /// The trainer the flow is for.
    pub trainer_id: TrainerId,
    /// Lark's authorize page with every parameter.
    pub authorize_url: Url,
    /// The value of the binding cookie (the state's nonce).
    pub cookie_value: String,
    /// How long the cookie (and the state) lives, in seconds.
    pub max_age_secs: i64,
}

impl std::fmt::Debug for Begun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begun")
            .field("trainer_id", &self.trainer_id)
            .finish_non_exhaustive()
    }
}

/// What Lark sent to the callback.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub code: Option<AuthCode>,
    pub state: Option<OAuthState>,
    pub error: Option<String>,
}

/// A trainer who just connected.
#[derive(Debug)]
pub struct Connected {
    pub trainer_id: TrainerId,
    /// The trainer's name in Salesforce.
    pub trainer_name: Option<String>,
    /// The Lark account's display name (or open_id).
    pub account: String,
}

/// The connect flow; cheap to clone.
#[derive(Clone)]
pub struct ConnectFlow {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    tokens: TokenService,
    lark: LarkClient,
    store: Store,
    vault: Arc<Vault>,
    /// Ids Salesforce said do not exist, for an hour (rule 18).
    unknown: RecentIds,
    /// Ids that passed the start's checks, for a minute.
    startable: RecentIds,
    /// One Salesforce lookup per id at a time, so a burst for one unknown id costs one
    /// query, not one per request in flight.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ConnectFlow {
    /// Builds the flow over the service's clients.
    pub fn new(
        settings: Arc<Settings>,
        tokens: TokenService,
        lark: LarkClient,
        store: Store,
        vault: Arc<Vault>,
    ) -> ConnectFlow {
        ConnectFlow {
            inner: Arc::new(Inner {
                settings,
                tokens,
                lark,
                store,
                vault,
                unknown: RecentIds::unknown(),
                startable: RecentIds::known(),
                lookups: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts a connection for the trainer named by `raw_trainer` (the `trainer` query
    /// parameter as given). `previous` is the binding cookie this browser already holds,
    /// if any: its unfinished flow is forgotten, since the new cookie replaces it in that
    /// browser. No other flow is touched (design §3 rule 27); with
    /// [`MAX_PENDING_AUTHS`](crate::store::MAX_PENDING_AUTHS) flows open the start is
    /// refused as [`ConnectError::Busy`].
    #[tracing::instrument(name = "connect.start", skip_all, fields(trainer = tracing::field::Empty))]
    pub async fn begin(
        &self,
        raw_trainer: Option<&str>,
        previous: Option<&str>,
    ) -> Result<Begun, ConnectError> {
        let inner = &self.inner;
        let raw = raw_trainer.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Err(ConnectError::MissingTrainer);
        }
        let trainer_id = TrainerId::parse(raw).map_err(|_| ConnectError::MalformedTrainer)?;
        tracing::Span::current().record("trainer", tracing::field::display(&trainer_id));
        if !inner.startable.contains(trainer_id.as_str()) {
            let trainer = self.known_trainer(&trainer_id).await?;
            if inner.settings.security.require_email_match && trainer.email.is_none() {
                return Err(ConnectError::TrainerWithoutEmail);
            }
            inner.startable.insert(trainer_id.as_str());
        }

        let now = Utc::now();
        let issued = state::issue(&inner.settings.security.state_secret, &trainer_id, now);
        let (verifier, challenge) = state::pkce_pair();
        let saved = inner.store.save_pending_auth(
            &issued.nonce,
            &PendingAuth {
                trainer_id: trainer_id.clone(),
                verifier_enc: inner.vault.encrypt(verifier.secret()),
                expires_at: issued.expires_at,
            },
            now,
        )?;
        if saved == PendingSaved::Full {
            tracing::warn!("too many open connect flows; start refused");
            return Err(ConnectError::Busy);
        }
        // Only once the new flow is recorded (and its cookie about to replace the old one):
        // a refused start leaves the browser's flow in progress as it was.
        if let Some(previous) = previous.filter(|p| *p != issued.nonce) {
            inner.store.forget_pending_auth(previous)?;
        }
        let authorize_url = inner.lark.authorize_url(
            &inner.settings.server.redirect_uri(),
            &issued.state,
            &challenge,
        );
        tracing::info!("OAuth start: redirecting to Lark");
        Ok(Begun {
            trainer_id,
            authorize_url,
            cookie_value: issued.nonce,
            max_age_secs: state::STATE_TTL.num_seconds(),
        })
    }

    /// Finishes a connection from what Lark sent back and the binding cookie's value.
    #[tracing::instrument(name = "connect.callback", skip_all, fields(trainer = tracing::field::Empty))]
    pub async fn finish(
        &self,
        params: CallbackParams,
        cookie: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        let inner = &self.inner;
        if let Some(error) = params.error {
            if error == "access_denied" {
                tracing::info!("OAuth callback: the trainer declined access");
                return Err(ConnectError::Declined);
            }
            return Err(ConnectError::LarkRefused(error));
        }
        let (Some(code), Some(raw_state)) = (
            params.code.filter(|c| !c.secret().is_empty()),
            params.state.filter(|s| !s.secret().is_empty()),
        ) else {
            return Err(ConnectError::MissingParameters);
        };

        let now = Utc::now();
        let verified = state::verify(&inner.settings.security.state_secret, &raw_state, now)
            .map_err(|e| match e {
                StateError::Expired => ConnectError::StateExpired,
                other => ConnectError::StateForged(other),
            })?;
        if !state::cookie_matches(cookie, &verified.nonce) {
            return Err(ConnectError::CookieMismatch);
        }
        let pending = match inner.store.consume_nonce(&verified.nonce, now)? {
            NonceUse::Fresh(p) => p,
            NonceUse::AlreadyUsed => return Err(ConnectError::StateReused),
            NonceUse::Unknown => return Err(ConnectError::StateUnknown),
        };
        if pending.trainer_id != verified.trainer_id {
            return Err(ConnectError::StateMismatch);
        }
        let trainer_id = pending.trainer_id;
        tracing::Span::current().record("trainer", tracing::field::display(&trainer_id));
        let verifier = inner
            .vault
            .decrypt(&pending.verifier_enc)
            .map(crate::tokens::PkceVerifier::new)
            .map_err(|e| ConnectError::Internal(e.to_string()))?;

        let grant = inner
            .lark
            .exchange_code(&code, &inner.settings.server.redirect_uri(), &verifier)
            .await
            .map_err(|e| match e {
                LarkError::InvalidGrant { .. } | LarkError::InvalidParams { .. } => {
                    ConnectError::CodeRejected(e)
                }
                other => ConnectError::LarkUnavailable(other),
            })?;
        let missing = missing_scopes(
            &inner.settings.required_scopes(),
            grant.scope.as_deref(),
            grant.refresh_token.is_some(),
        );
        if !missing.is_empty() {
            tracing::warn!(missing = ?missing, "consent lacks required scopes; not connected");
            return Err(ConnectError::MissingScopes(missing));
        }
        let user = inner
            .lark
            .user_info(&grant.access_token)
            .await
            .map_err(ConnectError::UserInfoFailed)?;
        if let Some(expected) = inner.settings.lark.tenant_key.as_deref() {
            if user.tenant_key.as_deref() != Some(expected) {
                tracing::warn!("Lark account of another tenant; not connected");
                return Err(ConnectError::WrongTenant);
            }
        }

        let trainer = self
            .read_trainer(&trainer_id)
            .await?
            .ok_or(ConnectError::TrainerGone)?;
        self.check_account(&trainer, &user)?;

        inner
            .tokens
            .connect(&trainer_id, &user.open_id, grant)
            .await
            .map_err(|e| match e {
                TokenError::Salesforce(sf) => ConnectError::SaveFailed(sf),
                other => ConnectError::Internal(other.to_string()),
            })?;
        Ok(Connected {
            trainer_id,
            trainer_name: trainer.name,
            account: user.name.unwrap_or(user.open_id),
        })
    }

    /// The trainer, from Salesforce unless it said within the hour that there is none.
    async fn known_trainer(&self, id: &TrainerId) -> Result<TrainerRecord, ConnectError> {
        let inner = &self.inner;
        if inner.unknown.contains(id.as_str()) {
            return Err(ConnectError::UnknownTrainer);
        }
        let lookup = inner
            .lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        let found = {
            let _one_at_a_time = lookup.lock().await;
            if inner.unknown.contains(id.as_str()) {
                Ok(None)
            } else {
                self.read_trainer(id).await
            }
        };
        {
            let mut lookups = inner.lookups.lock().unwrap_or_else(|p| p.into_inner());
            // The last one out removes the entry (the map holds one reference).
            if Arc::strong_count(&lookup) <= 2 {
                lookups.remove(id.as_str());
            }
        }
        match found? {
            Some(t) => Ok(t),
            None => {
                inner.unknown.insert(id.as_str());
                Err(ConnectError::UnknownTrainer)
            }
        }
    }

    async fn read_trainer(&self, id: &TrainerId) -> Result<Option<TrainerRecord>, ConnectError> {
        self.inner
            .tokens
            .trainers()
            .get(id)
            .await
            .map_err(ConnectError::SalesforceUnavailable)
    }

    /// The signed-in Lark account may connect this trainer.
    fn check_account(&self, trainer: &TrainerRecord, user: &LarkUser) -> Result<(), ConnectError> {
        if !self.inner.settings.security.require_email_match {
            return Ok(());
        }
        let Some(expected) = trainer.email.as_deref() else {
            return Err(ConnectError::TrainerWithoutEmail);
        };
        let matches = [user.email.as_deref(), user.enterprise_email.as_deref()]
            .into_iter()
            .flatten()
            .any(|e| e.trim().eq_ignore_ascii_case(expected.trim()));
        if matches {
            return Ok(());
        }
        let signed_in = user
            .email
            .as_deref()
            .or(user.enterprise_email.as_deref())
            .unwrap_or("an account without an email");
        Err(ConnectError::EmailMismatch {
            signed_in: signed_in.to_string(),
            expected_masked: mask_email(expected),
        })
    }
}

/// Required scopes the grant lacks: those not in its granted `scope`, and
/// `offline_access` when no refresh token came (whatever the scope says).
///
/// Lark's token answer carries `scope`, "the permissions the returned access_token has,
/// space-separated", and `refresh_token` "only when the user granted offline_access"
/// (Feishu server API docs, 获取 user_access_token, `POST /open-apis/authen/v2/oauth/token`;
/// wxkingstar/doc-hub-mcp `feishu/003-服务端API/认证及授权/获取访问凭证/获取-user_access_token.md`).
fn missing_scopes(required: &[&str], granted: Option<&str>, has_refresh: bool) -> Vec<String> {
    let granted: Vec<&str> = granted.unwrap_or("").split_whitespace().collect();
    required
        .iter()
        .filter(|r| !granted.contains(r) || (**r == "offline_access" && !has_refresh))
        .map(|r| r.to_string())
        .collect()
}

/// `ann.trainer@example.com` → `a***@example.com`: enough for the trainer to recognise
/// their address, too little for anyone else to learn it.
pub fn mask_email(email: &str) -> String {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests;
