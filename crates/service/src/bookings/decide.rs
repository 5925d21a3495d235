//! The decision (design §3 rule 4): a pure function of a booking's current state, the
//! reservation journal and the clock — "this booking needs: create / update / move /
//! delete / pending / fail / nothing" — naming everything acting needs: which reservation,
//! whose token changes it (the host trainer's, or the app's for a reservation the app made,
//! rule 21), and whose token reserves a new one. No I/O here; `act` carries decisions out
//! and never decides again.

use chrono::{DateTime, Duration, Utc};

use super::model::{render_topic, Booking, MeetingStatus};
use super::outcome::Outcome;
use crate::config::{BookingSettings, Unconnected};
use crate::ids::TrainerId;
use crate::store::{AppHostedEntry, ReservationEntry};
use crate::tokens::trainer::TrainerRecord;

/// Lark keeps a reservation at most 30 days; we cap `end_time` an hour inside that so
/// clock skew between us and Lark never makes an apply fail.
pub const MAX_RESERVATION_AHEAD: Duration = Duration::hours(30 * 24 - 1);

/// A capped reservation is renewed once its end time is this much behind where the cap
/// would now put it: renewals happen daily, not on every sweep.
pub const RENEW_SLACK: Duration = Duration::hours(24);

/// The reservation a booking currently has, as far as we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownReservation {
    pub reservation_id: String,
    /// The trainer who hosts it (whose token can change or delete it); None when neither
    /// the journal nor the booking names one.
    pub trainer_id: Option<TrainerId>,
    /// Set when the app made it with its tenant token (rule 21): the trainer's open_id it
    /// was made for. Changes and the delete then use the app's token.
    pub app_owner: Option<String>,
    /// The end time we last set, if journalled (whole seconds).
    pub end_time: Option<DateTime<Utc>>,
    pub url: Option<String>,
    /// The topic we last set, if journalled.
    pub topic: Option<String>,
}

impl KnownReservation {
    /// The status a booking with this reservation shows: `Created by App` while it is one
    /// the app made, `Created` otherwise.
    pub fn status(&self) -> MeetingStatus {
        match self.app_owner {
            Some(_) => MeetingStatus::CreatedByApp,
            None => MeetingStatus::Created,
        }
    }
}

/// Whose token reserves a new meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserver {
    /// The trainer's own user token (they are connected, as far as the booking's read says).
    Trainer,
    /// The app's tenant token, for a trainer who has not connected (rule 21).
    App,
}

/// What a booking needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Already right: no Lark call, no Salesforce write.
    Nothing,
    /// Reserve a meeting hosted by `trainer` (the booking's trainer), with `via`'s token.
    Create {
        trainer: TrainerRecord,
        via: Reserver,
        end_time: DateTime<Utc>,
        topic: String,
    },
    /// `PUT` the reservation's end time and topic (reschedule, renewal of a capped
    /// reservation, a merchant renamed) with its host's token — the app's when the app made
    /// it; `trainer` hosts a new reservation if Lark lost this one.
    Update {
        reservation: KnownReservation,
        trainer: TrainerRecord,
        end_time: DateTime<Utc>,
        topic: String,
    },
    /// The trainer changed: delete with the old host's token, create with `via`'s.
    Move {
        old: KnownReservation,
        trainer: TrainerRecord,
        via: Reserver,
        end_time: DateTime<Utc>,
        topic: String,
    },
    /// Cancelled, deleted, no longer remote: delete the reservation (if any), clear the
    /// link, status Cancelled.
    Cancel {
        reservation: Option<KnownReservation>,
    },
    /// The booking moved to a trainer who has not connected: delete the old trainer's
    /// reservation, clear the link, status Pending Trainer Connection.
    Release { reservation: KnownReservation },
    /// The trainer has not connected: status Pending Trainer Connection.
    Pending { reason: String },
    /// Bad data: status Failed with this reason.
    Fail { reason: String },
    /// Only the status fields are off (e.g. a journalled reservation whose write-back was
    /// lost): write link, id and Created without calling Lark.
    WriteBack { reservation: KnownReservation },
}

/// Extra facts the decision needs besides the booking.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub settings: &'a BookingSettings,
    pub now: DateTime<Utc>,
    /// The journal's entry for this booking.
    pub journal: Option<&'a ReservationEntry>,
    /// Topic fields named by the template that do not exist on the booking object.
    pub missing_topic_fields: &'a [String],
    /// Whether the trainer's email must be present (security.require_email_match).
    pub require_trainer_email: bool,
    /// `meetings.unconnected`: with `AppHosted`, a trainer who has not connected still
    /// gets a meeting, reserved by the app on their behalf (rule 21).
    pub unconnected: Unconnected,
    /// The store's record of an app-hosted reservation of this booking, if any.
    pub app_hosted: Option<&'a AppHostedEntry>,
}

impl Decision {
    /// The outcome the decision aims at, before anything is tried.
    pub fn planned_outcome(&self) -> Outcome {
        match self {
            Decision::Nothing => Outcome::Unchanged,
            Decision::Create { .. } | Decision::Move { .. } | Decision::WriteBack { .. } => {
                Outcome::Created
            }
            Decision::Update { .. } => Outcome::Updated,
            Decision::Cancel { .. } => Outcome::Cancelled,
            Decision::Pending { .. } | Decision::Release { .. } => Outcome::Pending,
            Decision::Fail { .. } => Outcome::Failed,
        }
    }
}

/// A time as Lark keeps it: whole seconds (the journal's precision, too), so what we
/// computed and what we journalled compare alike.
pub fn lark_time(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The end time Lark should hold for a booking ending at `end`.
pub fn capped_end(end: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    lark_time(end.min(now + MAX_RESERVATION_AHEAD))
}

/// Decides what a booking needs.
pub fn decide(booking: &Booking, cx: &Context<'_>) -> Decision {
    let s = cx.settings;
    let known = known_reservation(booking, cx.journal, cx.app_hosted);

    let cancelled = booking
        .status
        .as_deref()
        .is_some_and(|v| s.cancelled_values.iter().any(|c| c == v));
    let remote = booking
        .service_type
        .as_deref()
        .is_some_and(|v| s.remote_values.iter().any(|r| r == v));
    if booking.is_deleted || cancelled || !remote {
        let untouched = known.is_none()
            && booking.link.is_none()
            && booking.reservation_id.is_none()
            && matches!(
                booking.meeting_status,
                None | Some(MeetingStatus::Cancelled)
            );
        return if untouched {
            Decision::Nothing
        } else {
            Decision::Cancel { reservation: known }
        };
    }

    // A remote, live booking: validate what a meeting needs.
    let (trainer, end) = match valid_parts(booking, cx) {
        Ok(parts) => parts,
        Err(reason) => return fail_once(booking, reason),
    };
    let end_time = capped_end(end, cx.now);
    let topic = render_topic(&s.topic_template, &booking.topic_values);
    // Rule 21: an unconnected trainer's booking is reserved by the app, and a reservation
    // the app made is changed with the app's token whoever has connected since.
    let app_hosting = cx.unconnected == Unconnected::AppHosted;
    let via = if trainer.connected {
        Reserver::Trainer
    } else {
        Reserver::App
    };

    match known {
        Some(res) if res.trainer_id.as_ref() != Some(&trainer.id) => {
            if !trainer.connected && !app_hosting {
                // The old trainer's meeting must not stay on the booking while it waits.
                return Decision::Release { reservation: res };
            }
            Decision::Move {
                old: res,
                trainer: trainer.clone(),
                via,
                end_time,
                topic,
            }
        }
        Some(res) => {
            let needs_put = match res.end_time {
                // Not journalled: we cannot know what Lark holds, so set it.
                None => true,
                Some(current) => {
                    let uncapped = lark_time(end) == end_time;
                    if uncapped {
                        current != end_time
                    } else {
                        current < end_time - RENEW_SLACK || current > end_time
                    }
                }
            };
            // The topic's fields changed (a merchant renamed): the meeting follows, as
            // the calendar event's summary does. Unknown (not journalled) is left alone.
            // Only a token that can change the meeting retitles it: a new name alone never
            // sends a live meeting back to waiting.
            let can_change = trainer.connected || res.app_owner.is_some();
            let retitled = can_change && res.topic.as_deref().is_some_and(|t| t != topic);
            if needs_put || retitled {
                if !can_change {
                    return pending(booking);
                }
                return Decision::Update {
                    reservation: res,
                    trainer: trainer.clone(),
                    end_time,
                    topic,
                };
            }
            if booking.shows_meeting(res.status(), &res.reservation_id, None) {
                Decision::Nothing
            } else {
                Decision::WriteBack { reservation: res }
            }
        }
        None => {
            if end <= cx.now {
                return fail_once(
                    booking,
                    "The booking's end time is in the past, so no meeting can be reserved.".into(),
                );
            }
            if !trainer.connected && !app_hosting {
                return pending(booking);
            }
            Decision::Create {
                trainer: trainer.clone(),
                via,
                end_time,
                topic,
            }
        }
    }
}

/// The reason a trainer-less-connection booking waits.
pub const PENDING_REASON: &str =
    "The trainer has not connected their Lark account yet; the meeting is created as soon as they do.";

fn pending(booking: &Booking) -> Decision {
    if booking.shows_status(
        MeetingStatus::PendingTrainerConnection,
        Some(PENDING_REASON),
    ) {
        Decision::Nothing
    } else {
        Decision::Pending {
            reason: PENDING_REASON.into(),
        }
    }
}

fn fail_once(booking: &Booking, reason: String) -> Decision {
    if booking.shows_status(MeetingStatus::Failed, Some(&reason)) {
        Decision::Nothing
    } else {
        Decision::Fail { reason }
    }
}

/// What we know of the booking's reservation: the journal (authoritative: written the
/// moment Lark answered) or, failing that, the id on the booking; and whether the app made
/// it (the app's record names this very reservation).
fn known_reservation(
    booking: &Booking,
    journal: Option<&ReservationEntry>,
    app_hosted: Option<&AppHostedEntry>,
) -> Option<KnownReservation> {
    let mut known = match journal {
        Some(j) => KnownReservation {
            reservation_id: j.reservation_id.clone(),
            trainer_id: Some(j.trainer_id.clone()),
            app_owner: None,
            end_time: Some(j.end_time),
            url: Some(j.url.clone()),
            topic: j.topic.clone(),
        },
        // Without a journal entry, assume the booking's current trainer hosts it.
        None => KnownReservation {
            reservation_id: booking.reservation_id.clone()?,
            trainer_id: booking.trainer_id.clone(),
            app_owner: None,
            end_time: None,
            url: booking.link.clone(),
            topic: None,
        },
    };
    known.app_owner = app_hosted
        .filter(|a| a.reservation_id == known.reservation_id)
        .map(|a| a.owner_open_id.clone());
    Some(known)
}

/// What a meeting needs from a remote booking (its trainer and end), or why it cannot
/// have one.
fn valid_parts<'b>(
    booking: &'b Booking,
    cx: &Context<'_>,
) -> Result<(&'b TrainerRecord, DateTime<Utc>), String> {
    let s = cx.settings;
    if booking.bad_times {
        return Err(format!(
            "{} or {} is not a valid date and time.",
            s.start_field, s.end_field
        ));
    }
    let (Some(start), Some(end)) = (booking.start, booking.end) else {
        return Err(format!(
            "The booking needs both {} and {} to get a meeting.",
            s.start_field, s.end_field
        ));
    };
    if end <= start {
        return Err(format!("{} must be after {}.", s.end_field, s.start_field));
    }
    let Some(trainer_id) = &booking.trainer_id else {
        return Err(format!(
            "The booking has no trainer ({} is empty).",
            s.trainer_field
        ));
    };
    let Some(trainer) = booking.trainer.as_ref() else {
        return Err(format!("The trainer {trainer_id} does not exist."));
    };
    if cx.require_trainer_email && trainer.email.is_none() {
        return Err(
            "The trainer has no email address, so their Lark account cannot be matched.".into(),
        );
    }
    if let Some(field) = cx.missing_topic_fields.first() {
        return Err(format!(
            "The meeting topic template uses {{{field}}}, which is not a field of {}.",
            s.object
        ));
    }
    Ok((trainer, end))
}

#[cfg(test)]
mod tests;
