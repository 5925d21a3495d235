//! Carrying a decision out: the meeting's reservation through [`Meetings`] with the token
//! `decide` named, and the output fields the booking gets ([`WriteBack`]) — written only
//! when they differ from what the booking shows. What to do was settled by `decide`;
//! nothing here decides again or reads the store for it.

use super::decide::{Decision, KnownReservation, PENDING_REASON};
use super::host_token::HostTokens;
use super::meetings::{Meetings, Reservation};
use super::model::{Booking, MeetingStatus};
use super::outcome::{Outcome, PipelineError};
use super::writeback::WriteBack;
use crate::config::BookingSettings;
use crate::metrics::{Failure, Metrics};
use crate::salesforce::values::clip;

/// A decision carried out: where the booking ended up and what to write on it.
#[derive(Debug)]
pub struct Acted {
    pub outcome: Outcome,
    pub write: Option<WriteBack>,
}

impl Acted {
    /// The planned outcome, unless the status written says otherwise (a create that found
    /// the trainer disconnected writes Pending; one Lark refused writes Failed) — or, when
    /// nothing needed writing, the status the booking `shows` already says so.
    pub fn new(planned: Outcome, write: Option<WriteBack>, shows: Option<MeetingStatus>) -> Acted {
        let status = match &write {
            Some(w) => w.status,
            None if matches!(planned, Outcome::Created | Outcome::Updated) => shows,
            None => None,
        };
        let outcome = match status {
            Some(MeetingStatus::PendingTrainerConnection) => Outcome::Pending,
            Some(MeetingStatus::Failed) => Outcome::Failed,
            Some(MeetingStatus::Cancelled) => Outcome::Cancelled,
            Some(MeetingStatus::Created | MeetingStatus::CreatedByApp) | None => planned,
        };
        Acted { outcome, write }
    }
}

/// Carries decisions out; borrowed per batch.
pub struct Actor<'a> {
    pub settings: &'a BookingSettings,
    pub meetings: &'a Meetings,
    pub hosts: &'a HostTokens,
    pub metrics: &'a Metrics,
}

impl Actor<'_> {
    /// Carries out `decision` for `booking`: where it ended up and what to write.
    pub async fn act(&self, booking: &Booking, decision: Decision) -> Result<Acted, PipelineError> {
        let planned = decision.planned_outcome();
        let write = self.carry_out(booking, decision).await?;
        Ok(Acted::new(planned, write, booking.meeting_status))
    }

    async fn carry_out(
        &self,
        booking: &Booking,
        decision: Decision,
    ) -> Result<Option<WriteBack>, PipelineError> {
        match decision {
            Decision::Nothing => Ok(None),
            Decision::Pending { reason } => {
                self.hosts.remind(booking).await;
                Ok(self.status(
                    booking,
                    MeetingStatus::PendingTrainerConnection,
                    Some(&reason),
                ))
            }
            Decision::Fail { reason } => {
                self.metrics.failure(Failure::BookingInvalid);
                tracing::warn!(reason = %reason, "booking cannot get a meeting");
                Ok(self.status(booking, MeetingStatus::Failed, Some(&reason)))
            }
            Decision::WriteBack { reservation } => Ok(Some(self.meeting(
                booking,
                Some(&reservation),
                reservation.status(),
            ))),
            Decision::Create {
                trainer,
                via,
                end_time,
                topic,
            } => {
                let r = self
                    .meetings
                    .reserve(booking, &trainer, via, end_time, &topic)
                    .await?;
                Ok(self.reserved(booking, r, true))
            }
            Decision::Update {
                reservation,
                trainer,
                end_time,
                topic,
            } => {
                let r = self
                    .meetings
                    .reschedule(booking, &reservation, &trainer, end_time, &topic)
                    .await?;
                Ok(self.reserved(booking, r, false))
            }
            Decision::Move {
                old,
                trainer,
                via,
                end_time,
                topic,
            } => {
                self.meetings.delete(booking, &old).await?;
                self.metrics
                    .inc(crate::metrics::names::MEETINGS, &[("action", "moved")]);
                let r = self
                    .meetings
                    .reserve(booking, &trainer, via, end_time, &topic)
                    .await?;
                Ok(self.reserved(booking, r, true))
            }
            Decision::Release { reservation } => {
                self.meetings.delete(booking, &reservation).await?;
                self.hosts.remind(booking).await;
                Ok(Some(WriteBack::meeting(
                    self.settings,
                    &booking.id,
                    None,
                    MeetingStatus::PendingTrainerConnection,
                    Some(PENDING_REASON),
                )))
            }
            Decision::Cancel { reservation } => {
                self.meetings.forget_applies_in_doubt(booking)?;
                if let Some(res) = &reservation {
                    self.meetings.delete(booking, res).await?;
                }
                if booking.is_deleted {
                    return Ok(None);
                }
                Ok(Some(WriteBack::meeting(
                    self.settings,
                    &booking.id,
                    None,
                    MeetingStatus::Cancelled,
                    None,
                )))
            }
        }
    }

    /// The write a reservation call comes to. `fresh`: a new reservation (always written:
    /// its id and link are new); otherwise only what the booking does not show yet.
    fn reserved(&self, booking: &Booking, r: Reservation, fresh: bool) -> Option<WriteBack> {
        match r {
            Reservation::Held { id, url, status } => {
                let shown = booking.shows_meeting(status, &id, Some(&url));
                (fresh || !shown).then(|| {
                    WriteBack::meeting(self.settings, &booking.id, Some((&id, &url)), status, None)
                })
            }
            Reservation::Waiting(reason) => self.status(
                booking,
                MeetingStatus::PendingTrainerConnection,
                Some(&reason),
            ),
            Reservation::Refused(reason) => {
                self.status(booking, MeetingStatus::Failed, Some(&reason))
            }
            Reservation::Unconfirmed(reason) => {
                if booking.link.is_none() && booking.reservation_id.is_none() {
                    if booking.shows_status(MeetingStatus::Failed, Some(&reason)) {
                        return None;
                    }
                } else {
                    tracing::warn!("clearing a link that could not be confirmed");
                }
                Some(WriteBack::meeting(
                    self.settings,
                    &booking.id,
                    None,
                    MeetingStatus::Failed,
                    Some(&reason),
                ))
            }
        }
    }

    /// The link, reservation id and status of `reservation` (cleared when None).
    fn meeting(
        &self,
        booking: &Booking,
        reservation: Option<&KnownReservation>,
        status: MeetingStatus,
    ) -> WriteBack {
        let meeting =
            reservation.map(|r| (r.reservation_id.as_str(), r.url.as_deref().unwrap_or("")));
        WriteBack::meeting(self.settings, &booking.id, meeting, status, None)
    }

    /// The status and reason, unless the booking already shows them.
    fn status(
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
}
