//! Carrying decisions out: the Lark calls with the right trainer's token, the
//! reservation journal, and the write-back fields. The only I/O of the booking side
//! besides reading bookings; what to do was settled by `decide`.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::decide::{Decision, KnownReservation, PENDING_REASON};
use super::model::{Booking, MeetingStatus};
use crate::config::BookingSettings;
use crate::lark::{LarkClient, LarkError};
use crate::metrics::{names, Metrics};
use crate::salesforce::soql::RecordId;
use crate::store::{ReservationEntry, Store};
use crate::tokens::trainer::{clip, TrainerRecord};
use crate::tokens::{AccessToken, TokenError, TokenService};

/// Fields to write on one booking.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBack {
    pub booking_id: RecordId,
    pub fields: Map<String, Value>,
}

/// A failure that should make the whole batch retry later (Salesforce or Lark down).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// What carrying out a decision needs.
pub struct Actor<'a> {
    pub settings: &'a BookingSettings,
    pub lark: &'a LarkClient,
    pub tokens: &'a TokenService,
    pub store: &'a Store,
    pub metrics: &'a Metrics,
}

enum TokenOutcome {
    Token(AccessToken),
    NotConnected,
}

impl Actor<'_> {
    /// Carries out `decision` for `booking`; returns the write-back, if any.
    pub async fn act(
        &self,
        booking: &Booking,
        decision: Decision,
    ) -> Result<Option<WriteBack>, Transient> {
        let Ok(id) = RecordId::parse(&booking.id) else {
            return Ok(None);
        };
        match decision {
            Decision::Nothing => Ok(None),
            Decision::Pending { reason } => {
                self.remind(booking).await;
                Ok(self.status(
                    booking,
                    &id,
                    MeetingStatus::PendingTrainerConnection,
                    Some(&reason),
                ))
            }
            Decision::Fail { reason } => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "booking_invalid")]);
                tracing::warn!(booking = %booking.id, reason = %reason, "booking cannot get a meeting");
                Ok(self.status(booking, &id, MeetingStatus::Failed, Some(&reason)))
            }
            Decision::WriteBack { reservation } => Ok(Some(self.created(
                &id,
                &reservation.reservation_id,
                reservation.url.as_deref().unwrap_or(""),
            ))),
            Decision::Create {
                trainer_id,
                end_time,
                topic,
            } => {
                self.create(booking, &id, &trainer_id, end_time, &topic)
                    .await
            }
            Decision::Update {
                reservation,
                end_time,
            } => {
                let trainer = booking.trainer.clone().expect("decide checked the trainer");
                let token = match self.token(&trainer).await? {
                    TokenOutcome::Token(t) => t,
                    TokenOutcome::NotConnected => {
                        self.remind(booking).await;
                        return Ok(self.pending(booking, &id));
                    }
                };
                let result = self
                    .with_token_retry(&trainer, token, |lark, t| {
                        let rid = reservation.reservation_id.clone();
                        async move { lark.update_reserve(&t, &rid, Some(end_time), None).await }
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
                        self.journal(booking, &trainer.id, &reserve.id, &url, end_time)?;
                        self.metrics.inc(names::MEETINGS, &[("action", "updated")]);
                        tracing::info!(booking = %booking.id, reservation = %reserve.id, "meeting rescheduled");
                        Ok(self.created_if_changed(booking, &id, &reserve.id, &url))
                    }
                    Err(LarkError::NotFound { .. }) => {
                        // Gone from Lark (expired or deleted by hand): reserve a new one.
                        tracing::info!(booking = %booking.id, "reservation no longer exists in Lark; creating a new one");
                        self.store
                            .forget_reservation(&booking.id)
                            .map_err(|e| Transient(e.to_string()))?;
                        let topic = super::model::render_topic(
                            &self.settings.topic_template,
                            &booking.topic_values,
                        );
                        self.create(booking, &id, &trainer.id, end_time, &topic)
                            .await
                    }
                    Err(e) => self.lark_failure(booking, &id, e),
                }
            }
            Decision::Move {
                old,
                trainer_id,
                end_time,
                topic,
            } => {
                self.delete_reservation(booking, &old).await?;
                self.metrics.inc(names::MEETINGS, &[("action", "moved")]);
                self.create(booking, &id, &trainer_id, end_time, &topic)
                    .await
            }
            Decision::Release { reservation } => {
                self.delete_reservation(booking, &reservation).await?;
                self.remind(booking).await;
                Ok(Some(self.meeting_write(
                    &id,
                    None,
                    MeetingStatus::PendingTrainerConnection,
                    Some(PENDING_REASON),
                )))
            }
            Decision::Cancel { reservation } => {
                if let Some(res) = &reservation {
                    self.delete_reservation(booking, res).await?;
                }
                if booking.is_deleted {
                    return Ok(None);
                }
                Ok(Some(self.meeting_write(
                    &id,
                    None,
                    MeetingStatus::Cancelled,
                    None,
                )))
            }
        }
    }

    async fn create(
        &self,
        booking: &Booking,
        id: &RecordId,
        trainer_id: &str,
        end_time: i64,
        topic: &str,
    ) -> Result<Option<WriteBack>, Transient> {
        let trainer = booking
            .trainer
            .clone()
            .filter(|t| t.id == trainer_id)
            .expect("decide creates only for the booking's own trainer");
        let token = match self.token(&trainer).await? {
            TokenOutcome::Token(t) => t,
            TokenOutcome::NotConnected => {
                self.remind(booking).await;
                return Ok(self.pending(booking, id));
            }
        };
        let topic_owned = topic.to_string();
        let result = self
            .with_token_retry(&trainer, token, |lark, t| {
                let topic = topic_owned.clone();
                async move { lark.apply_reserve(&t, end_time, &topic).await }
            })
            .await;
        match result {
            Ok(reserve) => {
                self.journal(booking, &trainer.id, &reserve.id, &reserve.url, end_time)?;
                self.metrics.inc(names::MEETINGS, &[("action", "created")]);
                tracing::info!(booking = %booking.id, trainer = %trainer.id, reservation = %reserve.id, "meeting reserved");
                Ok(Some(self.created(id, &reserve.id, &reserve.url)))
            }
            Err(e) => self.lark_failure(booking, id, e),
        }
    }

    /// Deletes a reservation with its host's token; a reservation already gone is fine.
    async fn delete_reservation(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<(), Transient> {
        let host = match booking.trainer.as_ref().filter(|t| t.id == res.trainer_id) {
            Some(t) => Some(t.clone()),
            None => match RecordId::parse(&res.trainer_id) {
                Ok(tid) => self
                    .tokens
                    .trainer(&tid)
                    .await
                    .map_err(|e| Transient(e.to_string()))?,
                Err(_) => None,
            },
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
                    Err(e) => return Err(Transient(format!("deleting reservation: {e}"))),
                }
            }
            _ => {
                tracing::warn!(booking = %booking.id, reservation = %res.reservation_id, "host trainer not connected; the old reservation cannot be deleted and lapses on its own");
            }
        }
        self.store
            .forget_reservation(&booking.id)
            .map_err(|e| Transient(e.to_string()))
    }

    async fn token(&self, trainer: &TrainerRecord) -> Result<TokenOutcome, Transient> {
        match self.tokens.access_token_for(trainer).await {
            Ok(t) => Ok(TokenOutcome::Token(t)),
            Err(TokenError::NotConnected { .. }) | Err(TokenError::Undecryptable { .. }) => {
                Ok(TokenOutcome::NotConnected)
            }
            Err(e) => Err(Transient(format!("token for trainer {}: {e}", trainer.id))),
        }
    }

    /// Runs a user-token call; on 99991668/99991677 refreshes once and retries once.
    async fn with_token_retry<T, F, Fut>(
        &self,
        trainer: &TrainerRecord,
        token: AccessToken,
        call: F,
    ) -> Result<T, LarkError>
    where
        F: Fn(LarkClient, AccessToken) -> Fut,
        Fut: std::future::Future<Output = Result<T, LarkError>>,
    {
        match call(self.lark.clone(), token.clone()).await {
            Err(LarkError::UserTokenInvalid { code }) => {
                tracing::info!(trainer = %trainer.id, code, "Lark rejected the user token; refreshing once");
                match self
                    .tokens
                    .access_token_after_rejection(trainer, &token)
                    .await
                {
                    Ok(fresh) => call(self.lark.clone(), fresh).await,
                    Err(_) => Err(LarkError::UserTokenInvalid { code }),
                }
            }
            other => other,
        }
    }

    fn journal(
        &self,
        booking: &Booking,
        trainer_id: &str,
        reservation_id: &str,
        url: &str,
        end_time: i64,
    ) -> Result<(), Transient> {
        self.store
            .record_reservation(
                &ReservationEntry {
                    booking_id: booking.id.clone(),
                    reservation_id: reservation_id.to_string(),
                    trainer_id: trainer_id.to_string(),
                    url: url.to_string(),
                    end_time,
                },
                Utc::now().timestamp(),
            )
            .map_err(|e| Transient(e.to_string()))
    }

    fn lark_failure(
        &self,
        booking: &Booking,
        id: &RecordId,
        e: LarkError,
    ) -> Result<Option<WriteBack>, Transient> {
        match e {
            LarkError::InvalidParams { .. }
            | LarkError::PermissionDenied { .. }
            | LarkError::NotFound { .. } => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "lark_refused")]);
                tracing::warn!(booking = %booking.id, error = %e, "Lark refused the reservation");
                Ok(self.status(
                    booking,
                    id,
                    MeetingStatus::Failed,
                    Some(&format!("Lark refused the meeting: {e}")),
                ))
            }
            LarkError::UserTokenInvalid { .. } | LarkError::InvalidGrant { .. } => {
                Ok(self.pending(booking, id))
            }
            other => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "lark_unavailable")]);
                Err(Transient(format!(
                    "Lark call for booking {}: {other}",
                    booking.id
                )))
            }
        }
    }

    /// A trainer whose booking waits gets their connect link in Lark (at most daily).
    /// Also clears leftover tokens of a trainer an admin unchecked.
    async fn remind(&self, booking: &Booking) {
        if let Some(trainer) = &booking.trainer {
            if let Err(e) = self.tokens.forget_unchecked(trainer).await {
                tracing::warn!(trainer = %trainer.id, error = %e, "could not clear an unchecked trainer's tokens");
            }
            self.tokens.remind(trainer).await;
        }
    }

    fn pending(&self, booking: &Booking, id: &RecordId) -> Option<WriteBack> {
        self.status(
            booking,
            id,
            MeetingStatus::PendingTrainerConnection,
            Some(PENDING_REASON),
        )
    }

    fn status(
        &self,
        booking: &Booking,
        id: &RecordId,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> Option<WriteBack> {
        let reason = reason.map(clip);
        if booking.shows_status(status, reason.as_deref()) {
            return None;
        }
        Some(self.status_write(id, status, reason.as_deref()))
    }

    /// The status and reason fields.
    fn status_write(
        &self,
        id: &RecordId,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> WriteBack {
        let mut fields = Map::new();
        fields.insert(
            self.settings.meeting_status_field.clone(),
            json!(status.as_str()),
        );
        fields.insert(
            self.settings.meeting_error_field.clone(),
            reason.map_or(Value::Null, |r| json!(r)),
        );
        WriteBack {
            booking_id: id.clone(),
            fields,
        }
    }

    /// All four output fields; `meeting` is (reservation id, link), None clears both.
    fn meeting_write(
        &self,
        id: &RecordId,
        meeting: Option<(&str, &str)>,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> WriteBack {
        let mut write = self.status_write(id, status, reason);
        let (reservation_id, link) =
            meeting.map_or((Value::Null, Value::Null), |(r, u)| (json!(r), json!(u)));
        write
            .fields
            .insert(self.settings.reservation_field.clone(), reservation_id);
        write.fields.insert(self.settings.link_field.clone(), link);
        write
    }

    fn created(&self, id: &RecordId, reservation_id: &str, url: &str) -> WriteBack {
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
        id: &RecordId,
        reservation_id: &str,
        url: &str,
    ) -> Option<WriteBack> {
        (!booking.shows_created(reservation_id, Some(url)))
            .then(|| self.created(id, reservation_id, url))
    }
}
