//! A meeting host's user token, as the booking side uses it: the token of a trainer
//! (or word that they are not connected), a call made with it that Lark answers "token
//! invalid" refreshed and tried once more, the trainer record of a reservation's host, and
//! the connect reminder for a booking whose trainer must connect. Every decision about the
//! tokens themselves is the token service's; this only asks it.

use std::sync::Arc;

use super::model::Booking;
use super::outcome::PipelineError;
use crate::ids::TrainerId;
use crate::lark::{ApplyError, LarkClient, LarkError};
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::{AccessToken, TokenError, TokenService};

/// A trainer's token, or word that there is none to use.
pub enum HostToken {
    Token(AccessToken),
    /// Not connected (never, or no longer), or their stored token cannot be decrypted.
    NotConnected,
}

/// User-token calls for the booking side; cheap to clone.
#[derive(Clone)]
pub struct HostTokens {
    lark: LarkClient,
    tokens: TokenService,
}

impl HostTokens {
    /// Tokens from `tokens`, calls with `lark`.
    pub fn new(lark: LarkClient, tokens: TokenService) -> HostTokens {
        HostTokens { lark, tokens }
    }

    /// The trainer's access token (refreshed first when about to expire).
    pub async fn token(&self, trainer: &TrainerRecord) -> Result<HostToken, PipelineError> {
        match self.tokens.access_token_for(trainer).await {
            Ok(t) => Ok(HostToken::Token(t)),
            Err(TokenError::NotConnected { .. }) | Err(TokenError::Undecryptable { .. }) => {
                Ok(HostToken::NotConnected)
            }
            Err(source) => Err(PipelineError::Token {
                trainer: trainer.id.clone(),
                source,
            }),
        }
    }

    /// The trainer record of `host`: the booking's own trainer when it is them (read with
    /// the booking, shared, not copied), else read from Salesforce (a meeting or event of a
    /// previous trainer).
    pub async fn host(
        &self,
        booking: &Booking,
        host: &TrainerId,
    ) -> Result<Option<Arc<TrainerRecord>>, PipelineError> {
        match booking.trainer.as_ref().filter(|t| &t.id == host) {
            Some(t) => Ok(Some(Arc::clone(t))),
            None => Ok(self.tokens.trainers().get(host).await?.map(Arc::new)),
        }
    }

    /// A trainer's record, read from Salesforce.
    pub async fn record(
        &self,
        trainer: &TrainerId,
    ) -> Result<Option<TrainerRecord>, PipelineError> {
        Ok(self.tokens.trainers().get(trainer).await?)
    }

    /// The host's record and token; None when they are gone or not connected.
    pub async fn host_token(
        &self,
        booking: &Booking,
        host: &TrainerId,
    ) -> Result<Option<(Arc<TrainerRecord>, AccessToken)>, PipelineError> {
        let Some(record) = self.host(booking, host).await? else {
            return Ok(None);
        };
        match self.token(&record).await? {
            HostToken::Token(t) => Ok(Some((record, t))),
            HostToken::NotConnected => Ok(None),
        }
    }

    /// Runs a user-token call; on 99991668/99991677 refreshes once and retries once.
    pub async fn with_token_retry<T, E, F, Fut>(
        &self,
        trainer: &TrainerRecord,
        token: AccessToken,
        call: F,
    ) -> Result<T, E>
    where
        E: UserTokenCallError,
        F: Fn(LarkClient, AccessToken) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        match call(self.lark.clone(), token.clone()).await {
            Err(e) if e.rejected_token().is_some() => {
                let code = e.rejected_token().unwrap_or_default();
                tracing::info!(trainer = %trainer.id, code, "Lark rejected the user token; refreshing once");
                match self
                    .tokens
                    .access_token_after_rejection(trainer, &token)
                    .await
                {
                    Ok(fresh) => call(self.lark.clone(), fresh).await,
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    /// A trainer whose booking waits gets their connect link in Lark (at most daily).
    /// Also clears leftover tokens of a trainer an admin unchecked.
    pub async fn remind(&self, booking: &Booking) {
        if let Some(trainer) = &booking.trainer {
            if let Err(e) = self.tokens.forget_unchecked(trainer).await {
                tracing::warn!(trainer = %trainer.id, error = %e, "could not clear an unchecked trainer's tokens");
            }
            self.tokens.reminders().remind(trainer).await;
        }
    }
}

/// The error of a call made with a user token, which may say the token was rejected.
pub trait UserTokenCallError {
    /// The code (99991668/99991677) when Lark rejected the user token.
    fn rejected_token(&self) -> Option<i64>;
}

impl UserTokenCallError for LarkError {
    fn rejected_token(&self) -> Option<i64> {
        match self {
            LarkError::UserTokenInvalid { code } => Some(*code),
            _ => None,
        }
    }
}

impl UserTokenCallError for ApplyError {
    fn rejected_token(&self) -> Option<i64> {
        match self {
            ApplyError::Failed(e) => e.rejected_token(),
            ApplyError::AnswerLost(_) | ApplyError::NotRecorded => None,
        }
    }
}
