//! The meeting's reservation in Lark: reserving one (with the trainer's user token, or the
//! app's tenant token for a trainer who has not connected, rule 21), rescheduling it and
//! deleting it — each with the token `decide` named — and the reservation journal, written
//! the moment Lark answers. The apply is the one call that is not idempotent: an apply
//! whose answer was lost is journalled as in doubt, re-applied only after
//! `processing.in_doubt_delay` and at most `processing.max_in_doubt_applies` times, then
//! the booking is `Failed` without a link (rule 13).
//!
//! What comes back is a [`Reservation`]: what the booking should show. Which fields that
//! writes is `act`'s.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::app_host::{AppHost, RESERVE_PERMISSION_REASON};
use super::decide::{KnownReservation, Reserver, MAX_RESERVATION_AHEAD, PENDING_REASON};
use super::host_token::{HostToken, HostTokens};
use super::intents::{IntentLog, Intents};
use super::model::{Booking, MeetingStatus};
use super::outcome::{PipelineError, Unrecorded};
use super::owed::OwedDeletions;
use crate::config::{Settings, Unconnected};
use crate::lark::{ApplyError, LarkClient, LarkError, Reserve};
use crate::metrics::{names, Failure, Metrics};
use crate::salesforce::values::clip;
use crate::store::{AppHostedEntry, OwedItem, ReservationEntry, Store};
use crate::tokens::trainer::TrainerRecord;

/// What the booking should show after a reservation call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// It has this meeting (`Created`, or `Created by App` for one the app made).
    Held {
        id: String,
        url: String,
        status: MeetingStatus,
    },
    /// It waits for its trainer (`Pending Trainer Connection`), for this reason.
    Waiting(String),
    /// Lark refused it (`Failed`), for this reason.
    Refused(String),
    /// `Failed` after applies in doubt: no link can be confirmed, for this reason.
    Unconfirmed(String),
}

/// Reservations in Lark and their journal; cheap to clone.
#[derive(Clone)]
pub struct Meetings {
    settings: Arc<Settings>,
    lark: LarkClient,
    store: Store,
    metrics: Metrics,
    hosts: HostTokens,
    app: AppHost,
    owed: OwedDeletions,
    /// Every booking's apply intents, recorded a group at a time (rule 23).
    intents: IntentLog,
}

impl Meetings {
    /// Reservations made with `lark`, journalled in `store`.
    pub fn new(
        settings: Arc<Settings>,
        lark: LarkClient,
        store: Store,
        metrics: Metrics,
        hosts: HostTokens,
        app: AppHost,
        owed: OwedDeletions,
    ) -> Meetings {
        Meetings {
            settings,
            lark,
            store,
            intents: IntentLog::new(metrics.clone()),
            metrics,
            hosts,
            app,
            owed,
        }
    }

    /// Reserves a meeting hosted by `trainer`, with the token `via` names. A trainer whose
    /// token turns out unusable (not connected after all) gets an app-hosted meeting when
    /// the org allows it (rule 21), else waits. The in-doubt gate of rule 13 comes first.
    #[tracing::instrument(name = "reserve", skip_all, fields(trainer = %trainer.id))]
    pub async fn reserve(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        via: Reserver,
        end_time: DateTime<Utc>,
        topic: &str,
    ) -> Result<Reservation, PipelineError> {
        let processing = &self.settings.processing;
        if let Some(doubt) = self.store.in_doubt_apply(&booking.id)? {
            if doubt.applies >= processing.max_in_doubt_applies {
                return Ok(self.unconfirmed(doubt.applies));
            }
            let retry_at = after_in_doubt_delay(&self.settings, doubt.last_at);
            if Utc::now() < retry_at {
                return Err(PipelineError::ApplyInDoubt {
                    booking: booking.id.clone(),
                    applies: doubt.applies,
                    retry_at,
                });
            }
        }
        let token = match via {
            Reserver::Trainer => self.hosts.token(trainer).await?,
            Reserver::App => HostToken::NotConnected,
        };
        let token = match token {
            HostToken::Token(t) => t,
            HostToken::NotConnected => {
                self.hosts.remind(booking).await;
                if self.settings.meetings.unconnected == Unconnected::AppHosted {
                    return self.reserve_as_app(booking, trainer, end_time, topic).await;
                }
                return Ok(Reservation::Waiting(PENDING_REASON.into()));
            }
        };
        // Rule 23: each request is recorded right before it leaves (and none leaves when it
        // cannot be); one Lark refused outright no longer counts.
        let intents = Intents::new(&self.store, &self.intents, &booking.id, &trainer.id);
        let ledger = &intents;
        let result = self
            .hosts
            .with_token_retry(trainer, token, |lark, t| async move {
                lark.apply_reserve(&t, end_time, topic, ledger).await
            })
            .await;
        match result {
            Ok(reserve) => {
                let answer = Answered {
                    reserve,
                    status: MeetingStatus::Created,
                    end_time,
                    topic,
                };
                self.answered(booking, trainer, answer, None)
            }
            Err(e) => self.not_applied(booking, &intents, e),
        }
    }

    /// Reserves a meeting owned by `trainer` (who has no usable token) with the app's
    /// tenant token. The caller has passed the in-doubt gate and sent the reminder.
    async fn reserve_as_app(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        end_time: DateTime<Utc>,
        topic: &str,
    ) -> Result<Reservation, PipelineError> {
        let owner = match self.app.owner_open_id(booking, trainer).await? {
            Ok(open_id) => open_id,
            Err(reason) => {
                tracing::info!(reason, "no app-hosted meeting");
                return Ok(Reservation::Waiting(reason.into()));
            }
        };
        let intents = Intents::new(&self.store, &self.intents, &booking.id, &trainer.id);
        match self
            .lark
            .apply_reserve_for_owner(&owner, end_time, topic, &intents)
            .await
        {
            Ok(reserve) => {
                let answer = Answered {
                    reserve,
                    status: MeetingStatus::CreatedByApp,
                    end_time,
                    topic,
                };
                self.answered(booking, trainer, answer, Some(owner))
            }
            Err(ApplyError::Failed(e @ LarkError::PermissionDenied { .. })) => {
                self.metrics.failure(Failure::AppPermissionMissing);
                tracing::warn!(error = %e, "the Lark app may not reserve meetings for users");
                Ok(Reservation::Waiting(RESERVE_PERMISSION_REASON.into()))
            }
            Err(e) => self.not_applied(booking, &intents, e),
        }
    }

    /// An apply that did not come back with a meeting: its answer lost after it left (in
    /// doubt), never sent because it could not be recorded (the store's error), or refused.
    fn not_applied(
        &self,
        booking: &Booking,
        intents: &Intents<'_>,
        e: ApplyError,
    ) -> Result<Reservation, PipelineError> {
        match e {
            ApplyError::AnswerLost(source) if intents.in_flight() => {
                self.answer_lost(booking, intents.applies(), &source)
            }
            // Cut off before it left (waiting for its slot): nothing to doubt.
            ApplyError::AnswerLost(source) => self.lark_failure(booking, source),
            ApplyError::NotRecorded => Err(intents.store_error()),
            ApplyError::Failed(e) => self.lark_failure(booking, e),
        }
    }

    /// Lark answered an apply: the app's record (for one it made), the journal, and the
    /// apply is no longer in doubt. When the store cannot take that, the answer must still
    /// not be lost: it goes to the booking in Salesforce before anything else (the engine
    /// writes it), so the restart finds the reservation there (rule 23).
    fn answered(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        answer: Answered<'_>,
        app_owner: Option<String>,
    ) -> Result<Reservation, PipelineError> {
        let Answered {
            reserve,
            status,
            end_time,
            topic,
        } = answer;
        let host = if app_owner.is_some() {
            "app"
        } else {
            "trainer"
        };
        // One transaction: whenever the journal has the reservation, the store also knows
        // whether the app made it (and must change it), and the apply is out of doubt.
        let app_hosted = app_owner.map(|owner| AppHostedEntry {
            booking_id: booking.id.clone(),
            reservation_id: reserve.id.clone(),
            owner_open_id: owner,
            trainer_id: trainer.id.clone(),
            created_at: Utc::now(),
        });
        let lark = Lark {
            id: &reserve.id,
            url: &reserve.url,
            meeting_no: meeting_no(&reserve),
        };
        let entry = journal_entry(booking, trainer, lark, end_time, topic);
        let recorded = self
            .store
            .record_answered_apply(&entry, app_hosted.as_ref(), Utc::now())
            .map_err(PipelineError::from);
        self.metrics.inc(names::MEETINGS, &[("action", "created")]);
        self.metrics.inc(names::MEETINGS_BY_HOST, &[("host", host)]);
        tracing::info!(reservation = %reserve.id, host, "meeting reserved");
        match recorded {
            Ok(()) => Ok(held(reserve, status)),
            Err(PipelineError::Store(source)) => {
                Err(PipelineError::AnsweredNotRecorded(Box::new(Unrecorded {
                    booking: booking.id.clone(),
                    reservation_id: reserve.id,
                    url: reserve.url,
                    status,
                    source,
                })))
            }
            Err(e) => Err(e),
        }
    }

    /// Sets the reservation's end time and topic (the id and link stay) with its host's
    /// token — the app's when the app made it. One Lark no longer has is reserved anew for
    /// `trainer`.
    pub async fn reschedule(
        &self,
        booking: &Booking,
        res: &KnownReservation,
        trainer: &TrainerRecord,
        end_time: DateTime<Utc>,
        topic: &str,
    ) -> Result<Reservation, PipelineError> {
        let rid = res.reservation_id.as_str();
        let result = match &res.app_owner {
            Some(owner) => {
                self.lark
                    .update_reserve_for_owner(owner, rid, Some(end_time), Some(topic))
                    .await
            }
            None => {
                let token = match self.hosts.token(trainer).await? {
                    HostToken::Token(t) => t,
                    HostToken::NotConnected => {
                        self.hosts.remind(booking).await;
                        return Ok(Reservation::Waiting(PENDING_REASON.into()));
                    }
                };
                self.hosts
                    .with_token_retry(trainer, token, |lark, t| async move {
                        lark.update_reserve(&t, rid, Some(end_time), Some(topic))
                            .await
                    })
                    .await
            }
        };
        match result {
            Ok(reserve) => {
                // Entries from before meeting numbers were kept learn theirs here.
                let no = meeting_no(&reserve).map(str::to_string);
                // An update keeps the link; fall back to the known one if Lark leaves it
                // out of the answer.
                let url = if reserve.url.is_empty() {
                    res.url.clone().unwrap_or_default()
                } else {
                    reserve.url
                };
                self.journal(
                    booking,
                    trainer,
                    Lark {
                        id: rid,
                        url: &url,
                        meeting_no: no.as_deref(),
                    },
                    end_time,
                    topic,
                )?;
                self.metrics.inc(names::MEETINGS, &[("action", "updated")]);
                tracing::info!(reservation = %rid, "meeting rescheduled");
                Ok(Reservation::Held {
                    id: rid.to_string(),
                    url,
                    status: res.status(),
                })
            }
            Err(LarkError::NotFound { .. }) => {
                // Gone from Lark (expired or deleted by hand): reserve a new one.
                tracing::info!("reservation no longer exists in Lark; creating a new one");
                self.store.forget_app_hosted(&booking.id)?;
                self.store.forget_reservation(&booking.id)?;
                let via = if trainer.connected {
                    Reserver::Trainer
                } else {
                    Reserver::App
                };
                self.reserve(booking, trainer, via, end_time, topic).await
            }
            Err(e) => self.lark_failure(booking, e),
        }
    }

    /// Deletes a reservation with its host's token (the app's when the app made it); one
    /// already gone is fine. A host who is not connected cannot delete it now: the deletion
    /// is owed (rule 25) and the booking moves on.
    pub async fn delete(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<(), PipelineError> {
        let rid = res.reservation_id.as_str();
        let deleted = match &res.app_owner {
            Some(_) => Some(self.lark.delete_reserve_as_app(rid).await),
            None => {
                let host = match &res.trainer_id {
                    Some(host) => self.hosts.host_token(booking, host).await?,
                    None => None,
                };
                match host {
                    Some((host, token)) => Some(
                        self.hosts
                            .with_token_retry(&host, token, |lark, t| async move {
                                lark.delete_reserve(&t, rid).await
                            })
                            .await,
                    ),
                    None => None,
                }
            }
        };
        match deleted {
            Some(Ok(()) | Err(LarkError::NotFound { .. })) => {
                self.metrics.inc(names::MEETINGS, &[("action", "deleted")]);
                tracing::info!(reservation = %rid, "meeting deleted");
            }
            Some(Err(
                e @ (LarkError::PermissionDenied { .. } | LarkError::InvalidParams { .. }),
            )) => {
                self.metrics.failure(Failure::LarkDeleteRefused);
                tracing::warn!(reservation = %rid, error = %e, "Lark refused to delete the reservation; it lapses on its own");
            }
            Some(Err(source)) => {
                return Err(PipelineError::Lark {
                    booking: booking.id.clone(),
                    source,
                })
            }
            None => match &res.trainer_id {
                // Rule 25: owed until the host reconnects (or the meeting ends).
                Some(host) => {
                    let ends_at = res
                        .end_time
                        .or(booking.end)
                        .unwrap_or_else(|| Utc::now() + MAX_RESERVATION_AHEAD);
                    let item = OwedItem::Reservation {
                        reservation_id: rid.to_string(),
                    };
                    self.owed.owe(booking, host, item, ends_at).await?;
                }
                None => {
                    tracing::warn!(reservation = %rid, "the reservation's host is unknown; it cannot be deleted and lapses on its own");
                }
            },
        }
        self.store.forget_app_hosted(&booking.id)?;
        Ok(self.store.forget_reservation(&booking.id)?)
    }

    /// No meeting is wanted any more: lost applies no longer matter.
    pub fn forget_applies_in_doubt(&self, booking: &Booking) -> Result<(), PipelineError> {
        Ok(self.store.clear_in_doubt(&booking.id)?)
    }

    fn journal(
        &self,
        booking: &Booking,
        host: &TrainerRecord,
        lark: Lark<'_>,
        end_time: DateTime<Utc>,
        topic: &str,
    ) -> Result<(), PipelineError> {
        let entry = journal_entry(booking, host, lark, end_time, topic);
        Ok(self.store.record_reservation(&entry, Utc::now())?)
    }

    /// An apply (with the trainer's token or the app's) whose answer was lost: it stays in
    /// doubt as recorded; the booking waits out `processing.in_doubt_delay`, or is `Failed`
    /// after the last allowed apply.
    fn answer_lost(
        &self,
        booking: &Booking,
        applies: u32,
        source: &LarkError,
    ) -> Result<Reservation, PipelineError> {
        // Already recorded before it was sent: a restart does not forget it.
        let now = Utc::now();
        self.metrics.failure(Failure::ApplyAnswerLost);
        tracing::warn!(applies, error = %source, "the answer to a reserve apply was lost; a meeting may exist in Lark");
        if applies >= self.settings.processing.max_in_doubt_applies {
            return Ok(self.unconfirmed(applies));
        }
        Err(PipelineError::ApplyInDoubt {
            booking: booking.id.clone(),
            applies,
            retry_at: after_in_doubt_delay(&self.settings, now),
        })
    }

    /// `Failed` after the last apply in doubt: no link is shown, since none could be
    /// confirmed, and the reason sends the admin to the trainer's Lark.
    fn unconfirmed(&self, applies: u32) -> Reservation {
        self.metrics.failure(Failure::ApplyInDoubt);
        tracing::error!(applies, "booking failed: reserve applies in doubt");
        Reservation::Unconfirmed(clip(&format!(
            "The answer to {applies} meeting reservation requests was lost, so a meeting may exist unconfirmed in the trainer's Lark. Check their Lark meetings; no link is shown because none could be confirmed."
        )))
    }

    /// What a Lark error means for the booking: refused (`Failed`), a rejected token
    /// (waits for the trainer), or worth trying again (the error).
    fn lark_failure(&self, booking: &Booking, e: LarkError) -> Result<Reservation, PipelineError> {
        match e {
            LarkError::InvalidParams { .. }
            | LarkError::PermissionDenied { .. }
            | LarkError::NotFound { .. } => {
                self.metrics.failure(Failure::LarkRefused);
                tracing::warn!(error = %e, "Lark refused the reservation");
                Ok(Reservation::Refused(format!(
                    "Lark refused the meeting: {e}"
                )))
            }
            LarkError::UserTokenInvalid { .. } | LarkError::InvalidGrant { .. } => {
                Ok(Reservation::Waiting(PENDING_REASON.into()))
            }
            source => {
                self.metrics.failure(Failure::LarkUnavailable);
                Err(PipelineError::Lark {
                    booking: booking.id.clone(),
                    source,
                })
            }
        }
    }
}

/// When `processing.in_doubt_delay` after `at` is over (saturating: a delay too long for
/// the calendar means never).
fn after_in_doubt_delay(settings: &Settings, at: DateTime<Utc>) -> DateTime<Utc> {
    chrono::Duration::from_std(settings.processing.in_doubt_delay)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An apply Lark answered, and what it was for.
struct Answered<'t> {
    reserve: Reserve,
    status: MeetingStatus,
    end_time: DateTime<Utc>,
    topic: &'t str,
}

/// What Lark's answer says of a reservation, as the journal keeps it.
struct Lark<'r> {
    id: &'r str,
    url: &'r str,
    meeting_no: Option<&'r str>,
}

/// The reservation journal's entry for what Lark answered.
fn journal_entry(
    booking: &Booking,
    host: &TrainerRecord,
    lark: Lark<'_>,
    end_time: DateTime<Utc>,
    topic: &str,
) -> ReservationEntry {
    ReservationEntry {
        booking_id: booking.id.clone(),
        reservation_id: lark.id.to_string(),
        trainer_id: host.id.clone(),
        url: lark.url.to_string(),
        end_time,
        topic: Some(topic.to_string()),
        meeting_no: lark.meeting_no.map(str::to_string),
    }
}

/// The meeting number in Lark's answer, when it carries one.
fn meeting_no(reserve: &Reserve) -> Option<&str> {
    Some(reserve.meeting_no.as_str()).filter(|n| !n.is_empty())
}

fn held(reserve: Reserve, status: MeetingStatus) -> Reservation {
    Reservation::Held {
        id: reserve.id,
        url: reserve.url,
        status,
    }
}
