//! Carrying decisions out: the Lark calls with the right trainer's token, the
//! reservation journal, and the write-back fields. The only I/O of the booking side
//! besides reading bookings; what to do was settled by `decide`.

use chrono::Utc;

use super::decide::{Decision, KnownReservation, PENDING_REASON};
use super::model::{Booking, MeetingStatus};
use super::outcome::{Acted, Outcome, PipelineError};
use super::writeback::WriteBack;
use crate::config::{BookingSettings, MeetingsSettings, ProcessingSettings};
use crate::ids::{BookingId, TrainerId};
use crate::lark::{ApplyError, LarkClient, LarkError};
use crate::metrics::{names, Metrics};
use crate::store::{ReservationEntry, Store};
use crate::tokens::trainer::{clip, TrainerRecord};
use crate::tokens::{AccessToken, TokenError, TokenService};

/// What carrying out a decision needs.
pub struct Actor<'a> {
    pub settings: &'a BookingSettings,
    /// In-doubt limits (rule 13).
    pub processing: &'a ProcessingSettings,
    pub lark: &'a LarkClient,
    pub tokens: &'a TokenService,
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    /// What an unconnected trainer's booking gets (rule 21: see `app_hosted`).
    pub meetings: &'a MeetingsSettings,
}

pub(super) enum TokenOutcome {
    Token(AccessToken),
    NotConnected,
}

impl Actor<'_> {
    /// Carries out `decision` for `booking`: where it ended up and what to write.
    pub async fn act(&self, booking: &Booking, decision: Decision) -> Result<Acted, PipelineError> {
        let planned = Outcome::planned(&decision);
        let write = self.carry_out(booking, decision).await?;
        Ok(Acted::new(planned, write, booking.meeting_status))
    }

    async fn carry_out(
        &self,
        booking: &Booking,
        decision: Decision,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let id = &booking.id;
        match decision {
            Decision::Nothing => Ok(None),
            Decision::Pending { reason } => {
                self.remind(booking).await;
                Ok(self.status(
                    booking,
                    MeetingStatus::PendingTrainerConnection,
                    Some(&reason),
                ))
            }
            Decision::Fail { reason } => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "booking_invalid")]);
                tracing::warn!(booking = %booking.id, reason = %reason, "booking cannot get a meeting");
                Ok(self.status(booking, MeetingStatus::Failed, Some(&reason)))
            }
            Decision::WriteBack { reservation } => {
                let status = self.hosted_status(booking, &reservation)?;
                Ok(Some(self.meeting_write(
                    id,
                    Some((
                        &reservation.reservation_id,
                        reservation.url.as_deref().unwrap_or(""),
                    )),
                    status,
                    None,
                )))
            }
            Decision::Create {
                trainer,
                end_time,
                topic,
            } => self.create(booking, &trainer, end_time, &topic).await,
            Decision::Update {
                reservation,
                host: trainer,
                end_time,
                topic,
            } => {
                if let Some(app) = self.app_hosted_reservation(booking, &reservation)? {
                    return self
                        .update_as_app(booking, &reservation, &app, &trainer, end_time, &topic)
                        .await;
                }
                let token = match self.token(&trainer).await? {
                    TokenOutcome::Token(t) => t,
                    TokenOutcome::NotConnected => {
                        self.remind(booking).await;
                        return Ok(self.pending(booking));
                    }
                };
                let result = self
                    .with_token_retry(&trainer, token, |lark, t| {
                        let rid = reservation.reservation_id.clone();
                        // The topic too: it follows the template's fields (a merchant renamed)
                        // as the calendar event's summary does.
                        let topic = topic.clone();
                        async move {
                            lark.update_reserve(&t, &rid, Some(end_time), Some(&topic))
                                .await
                        }
                    })
                    .await;
                match result {
                    Ok(reserve) => {
                        // An update keeps the link; fall back to the known one if Lark
                        // leaves it out of the answer.
                        let url = if reserve.url.is_empty() {
                            reservation.url.clone().unwrap_or_default()
                        } else {
                            reserve.url.clone()
                        };
                        self.journal(booking, &trainer.id, &reserve.id, &url, end_time, &topic)?;
                        self.metrics.inc(names::MEETINGS, &[("action", "updated")]);
                        tracing::info!(booking = %booking.id, reservation = %reserve.id, "meeting rescheduled");
                        Ok(self.created_if_changed(booking, &reserve.id, &url))
                    }
                    Err(LarkError::NotFound { .. }) => {
                        // Gone from Lark (expired or deleted by hand): reserve a new one.
                        tracing::info!(booking = %booking.id, "reservation no longer exists in Lark; creating a new one");
                        self.store.forget_reservation(booking.id.as_str())?;
                        self.create(booking, &trainer, end_time, &topic).await
                    }
                    Err(e) => self.lark_failure(booking, e),
                }
            }
            Decision::Move {
                old,
                trainer,
                end_time,
                topic,
            } => {
                self.delete_reservation(booking, &old).await?;
                self.metrics.inc(names::MEETINGS, &[("action", "moved")]);
                self.create(booking, &trainer, end_time, &topic).await
            }
            Decision::Release { reservation } => {
                self.delete_reservation(booking, &reservation).await?;
                self.remind(booking).await;
                Ok(Some(self.meeting_write(
                    id,
                    None,
                    MeetingStatus::PendingTrainerConnection,
                    Some(PENDING_REASON),
                )))
            }
            Decision::Cancel { reservation } => {
                // No meeting is wanted any more: lost applies no longer matter.
                self.store.clear_in_doubt(id.as_str())?;
                if let Some(res) = &reservation {
                    self.delete_reservation(booking, res).await?;
                }
                if booking.is_deleted {
                    return Ok(None);
                }
                Ok(Some(self.meeting_write(
                    id,
                    None,
                    MeetingStatus::Cancelled,
                    None,
                )))
            }
        }
    }

    /// Deletes a reservation with its host's token; a reservation already gone is fine.
    pub(super) async fn delete_reservation(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<(), PipelineError> {
        if self.app_hosted_reservation(booking, res)?.is_some() {
            return self.delete_as_app(booking, res).await;
        }
        let host = match &res.trainer_id {
            Some(host) => self.host(booking, host).await?,
            None => None,
        };
        let token = match &host {
            Some(h) => self.token(h).await?,
            None => TokenOutcome::NotConnected,
        };
        match (token, host) {
            (TokenOutcome::Token(t), Some(h)) => {
                let rid = res.reservation_id.clone();
                let result = self
                    .with_token_retry(&h, t, |lark, t| {
                        let rid = rid.clone();
                        async move { lark.delete_reserve(&t, &rid).await }
                    })
                    .await;
                match result {
                    Ok(()) | Err(LarkError::NotFound { .. }) => {
                        self.metrics.inc(names::MEETINGS, &[("action", "deleted")]);
                        tracing::info!(booking = %booking.id, reservation = %res.reservation_id, "meeting deleted");
                    }
                    Err(
                        e @ (LarkError::PermissionDenied { .. } | LarkError::InvalidParams { .. }),
                    ) => {
                        self.metrics
                            .inc(names::FAILURES, &[("kind", "lark_delete_refused")]);
                        tracing::warn!(booking = %booking.id, reservation = %res.reservation_id, error = %e, "Lark refused to delete the reservation; it lapses on its own");
                    }
                    Err(source) => {
                        return Err(PipelineError::Lark {
                            booking: booking.id.clone(),
                            source,
                        })
                    }
                }
            }
            _ => {
                tracing::warn!(booking = %booking.id, reservation = %res.reservation_id, "host trainer not connected; the old reservation cannot be deleted and lapses on its own");
            }
        }
        Ok(self.store.forget_reservation(booking.id.as_str())?)
    }

    /// The trainer record of `host`: the booking's own trainer when it is them (read with
    /// the booking), else read from Salesforce (a meeting or event of a previous trainer).
    pub(super) async fn host(
        &self,
        booking: &Booking,
        host: &TrainerId,
    ) -> Result<Option<TrainerRecord>, PipelineError> {
        match booking.trainer.as_ref().filter(|t| t.id == host.as_str()) {
            Some(t) => Ok(Some(t.clone())),
            None => Ok(self.tokens.trainer(host.record_id()).await?),
        }
    }

    pub(super) async fn token(
        &self,
        trainer: &TrainerRecord,
    ) -> Result<TokenOutcome, PipelineError> {
        match self.tokens.access_token_for(trainer).await {
            Ok(t) => Ok(TokenOutcome::Token(t)),
            Err(TokenError::NotConnected { .. }) | Err(TokenError::Undecryptable { .. }) => {
                Ok(TokenOutcome::NotConnected)
            }
            Err(source) => Err(PipelineError::Token {
                trainer: trainer.id.clone(),
                source,
            }),
        }
    }

    /// Runs a user-token call; on 99991668/99991677 refreshes once and retries once.
    pub(super) async fn with_token_retry<T, E, F, Fut>(
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

    pub(super) fn journal(
        &self,
        booking: &Booking,
        trainer_id: &str,
        reservation_id: &str,
        url: &str,
        end_time: i64,
        topic: &str,
    ) -> Result<(), PipelineError> {
        Ok(self.store.record_reservation(
            &ReservationEntry {
                booking_id: booking.id.to_string(),
                reservation_id: reservation_id.to_string(),
                trainer_id: trainer_id.to_string(),
                url: url.to_string(),
                end_time,
                topic: Some(topic.to_string()),
            },
            Utc::now().timestamp(),
        )?)
    }

    pub(super) fn lark_failure(
        &self,
        booking: &Booking,
        e: LarkError,
    ) -> Result<Option<WriteBack>, PipelineError> {
        match e {
            LarkError::InvalidParams { .. }
            | LarkError::PermissionDenied { .. }
            | LarkError::NotFound { .. } => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "lark_refused")]);
                tracing::warn!(booking = %booking.id, error = %e, "Lark refused the reservation");
                Ok(self.status(
                    booking,
                    MeetingStatus::Failed,
                    Some(&format!("Lark refused the meeting: {e}")),
                ))
            }
            LarkError::UserTokenInvalid { .. } | LarkError::InvalidGrant { .. } => {
                Ok(self.pending(booking))
            }
            source => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "lark_unavailable")]);
                Err(PipelineError::Lark {
                    booking: booking.id.clone(),
                    source,
                })
            }
        }
    }

    /// A trainer whose booking waits gets their connect link in Lark (at most daily).
    /// Also clears leftover tokens of a trainer an admin unchecked.
    pub(super) async fn remind(&self, booking: &Booking) {
        if let Some(trainer) = &booking.trainer {
            if let Err(e) = self.tokens.forget_unchecked(trainer).await {
                tracing::warn!(trainer = %trainer.id, error = %e, "could not clear an unchecked trainer's tokens");
            }
            self.tokens.remind(trainer).await;
        }
    }

    pub(super) fn pending(&self, booking: &Booking) -> Option<WriteBack> {
        self.status(
            booking,
            MeetingStatus::PendingTrainerConnection,
            Some(PENDING_REASON),
        )
    }

    /// The status and reason, unless the booking already shows them.
    pub(super) fn status(
        &self,
        booking: &Booking,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> Option<WriteBack> {
        let reason = reason.map(clip);
        if booking.shows_status(status, reason.as_deref()) {
            return None;
        }
        Some(WriteBack::status(
            self.settings,
            &booking.id,
            status,
            reason.as_deref(),
        ))
    }

    pub(super) fn meeting_write(
        &self,
        id: &BookingId,
        meeting: Option<(&str, &str)>,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> WriteBack {
        WriteBack::meeting(self.settings, id, meeting, status, reason)
    }

    pub(super) fn created(&self, id: &BookingId, reservation_id: &str, url: &str) -> WriteBack {
        self.meeting_write(
            id,
            Some((reservation_id, url)),
            MeetingStatus::Created,
            None,
        )
    }

    fn created_if_changed(
        &self,
        booking: &Booking,
        reservation_id: &str,
        url: &str,
    ) -> Option<WriteBack> {
        (!booking.shows_created(reservation_id, Some(url)))
            .then(|| self.created(&booking.id, reservation_id, url))
    }
}

/// The error of a call made with a user token, which may say the token was rejected.
pub(super) trait UserTokenCallError {
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
            ApplyError::AnswerLost(_) => None,
        }
    }
}
