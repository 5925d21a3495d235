//! The decision (design §3 rule 4): a pure function of a booking's current state, the
//! reservation journal and the clock — "this booking needs: create / update / move /
//! delete / pending / fail / nothing". No I/O here; `act` carries decisions out.

use chrono::{DateTime, Duration, Utc};

use super::model::{render_topic, Booking, MeetingStatus};
use crate::config::BookingSettings;
use crate::ids::TrainerId;
use crate::store::ReservationEntry;
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
    /// The end time we last set, if journalled.
    pub end_time: Option<i64>,
    pub url: Option<String>,
}

/// What a booking needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Already right: no Lark call, no Salesforce write.
    Nothing,
    /// Reserve a meeting hosted by `trainer` (the booking's connected trainer).
    Create {
        trainer: TrainerRecord,
        end_time: i64,
        topic: String,
    },
    /// `PUT` the reservation's end time (reschedule, or renewal of a capped reservation)
    /// with its host's token; `topic` is for a new reservation if Lark lost this one.
    Update {
        reservation: KnownReservation,
        host: TrainerRecord,
        end_time: i64,
        topic: String,
    },
    /// The trainer changed: delete with the old trainer's token, create with the new.
    Move {
        old: KnownReservation,
        trainer: TrainerRecord,
        end_time: i64,
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
}

/// The end time Lark should hold for a booking ending at `end`.
pub fn capped_end(end: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    end.min(now + MAX_RESERVATION_AHEAD).timestamp()
}

/// Decides what a booking needs.
pub fn decide(booking: &Booking, cx: &Context<'_>) -> Decision {
    let s = cx.settings;
    let known = known_reservation(booking, cx.journal);

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

    match known {
        Some(res) if res.trainer_id.as_ref().map(TrainerId::as_str) != Some(&trainer.id) => {
            if !trainer.connected {
                // The old trainer's meeting must not stay on the booking while it waits.
                return Decision::Release { reservation: res };
            }
            Decision::Move {
                old: res,
                trainer: trainer.clone(),
                end_time,
                topic,
            }
        }
        Some(res) => {
            let needs_put = match res.end_time {
                // Not journalled: we cannot know what Lark holds, so set it.
                None => true,
                Some(current) => {
                    let uncapped = end.timestamp() == end_time;
                    if uncapped {
                        current != end_time
                    } else {
                        current < end_time - RENEW_SLACK.num_seconds() || current > end_time
                    }
                }
            };
            if needs_put {
                if !trainer.connected {
                    return pending(booking);
                }
                return Decision::Update {
                    reservation: res,
                    host: trainer.clone(),
                    end_time,
                    topic,
                };
            }
            if booking.shows_created(&res.reservation_id, None) {
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
            if !trainer.connected {
                return pending(booking);
            }
            Decision::Create {
                trainer: trainer.clone(),
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
/// moment Lark answered) or, failing that, the id on the booking.
fn known_reservation(
    booking: &Booking,
    journal: Option<&ReservationEntry>,
) -> Option<KnownReservation> {
    if let Some(j) = journal {
        return Some(KnownReservation {
            reservation_id: j.reservation_id.clone(),
            // Written by us from a typed id; an unreadable one means "host unknown".
            trainer_id: TrainerId::parse(&j.trainer_id).ok(),
            end_time: Some(j.end_time),
            url: Some(j.url.clone()),
        });
    }
    let id = booking.reservation_id.clone()?;
    // Without a journal entry, assume the booking's current trainer hosts it.
    Some(KnownReservation {
        reservation_id: id,
        trainer_id: booking.trainer_id.clone(),
        end_time: None,
        url: booking.link.clone(),
    })
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
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::ids::BookingId;
    use serde_json::Map;

    const T1: &str = "a0T000000000001EAA";
    const T2: &str = "a0T000000000002EAA";

    fn settings() -> BookingSettings {
        let env = [
            ("LVB__SALESFORCE__CLIENT_ID", "c"),
            ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
            ("LVB__LARK__APP_ID", "a"),
            ("LVB__LARK__APP_SECRET", "s"),
            ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
            ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load_from(None, env).unwrap().salesforce.booking
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T08:00:00Z".parse().unwrap()
    }

    fn trainer(id: &str, connected: bool) -> TrainerRecord {
        TrainerRecord {
            id: id.into(),
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            lark_user_id: None,
            access_enc: None,
            refresh_enc: None,
            access_expires_at: None,
            refresh_expires_at: None,
            connected,
        }
    }

    fn booking() -> Booking {
        let mut topic = Map::new();
        topic.insert("Merchant_Name__c".into(), "Acme".into());
        Booking {
            id: BookingId::parse("a0B000000000001EAA").unwrap(),
            is_deleted: false,
            trainer_id: Some(TrainerId::parse(T1).unwrap()),
            trainer: Some(trainer(T1, true)),
            start: Some(now() + Duration::days(2)),
            end: Some(now() + Duration::days(2) + Duration::hours(1)),
            bad_times: false,
            service_type: Some("Remote".into()),
            status: Some("Scheduled".into()),
            link: None,
            reservation_id: None,
            meeting_status: None,
            meeting_error: None,
            topic_values: topic,
        }
    }

    fn journal(trainer: &str, end: i64) -> ReservationEntry {
        ReservationEntry {
            booking_id: "a0B000000000001EAA".into(),
            reservation_id: "6911188411934433".into(),
            trainer_id: trainer.into(),
            url: "https://vc.larksuite.com/j/123456789".into(),
            end_time: end,
        }
    }

    fn created(mut b: Booking) -> Booking {
        b.link = Some("https://vc.larksuite.com/j/123456789".into());
        b.reservation_id = Some("6911188411934433".into());
        b.meeting_status = Some(MeetingStatus::Created);
        b
    }

    fn run(b: &Booking, j: Option<&ReservationEntry>) -> Decision {
        let s = settings();
        decide(
            b,
            &Context {
                settings: &s,
                now: now(),
                journal: j,
                missing_topic_fields: &[],
                require_trainer_email: true,
            },
        )
    }

    #[test]
    fn decisions_table() {
        let b = booking();
        let end = b.end.unwrap().timestamp();
        let j_same = journal(T1, end);
        let j_old_end = journal(T1, end - 3600);
        let j_other = journal(T2, end);

        // New remote booking with a connected trainer → create.
        assert_eq!(
            run(&b, None),
            Decision::Create {
                trainer: trainer(T1, true),
                end_time: end,
                topic: "Remote Training: Acme".into()
            }
        );
        // Already created and written → nothing.
        assert_eq!(run(&created(b.clone()), Some(&j_same)), Decision::Nothing);
        // Journalled but the write-back was lost → write back only.
        assert!(matches!(run(&b, Some(&j_same)), Decision::WriteBack { .. }));
        // End time changed → update.
        assert!(matches!(
            run(&created(b.clone()), Some(&j_old_end)),
            Decision::Update { end_time, .. } if end_time == end
        ));
        // Trainer changed to one not connected → release the old meeting and wait.
        let mut unconnected = created(b.clone());
        unconnected.trainer = Some(trainer(T1, false));
        assert!(matches!(
            run(&unconnected, Some(&j_other)),
            Decision::Release { ref reservation } if reservation.trainer_id.as_ref().unwrap().as_str() == T2
        ));
        // Trainer changed → move from the old trainer.
        assert!(matches!(
            run(&created(b.clone()), Some(&j_other)),
            Decision::Move { ref old, ref trainer, .. } if old.trainer_id.as_ref().unwrap().as_str() == T2 && trainer.id == T1
        ));
        // Cancelled / onsite / deleted → cancel, and nothing once cleared.
        for mutate in [
            |b: &mut Booking| b.status = Some("Cancelled".into()),
            |b: &mut Booking| b.service_type = Some("Onsite".into()),
            |b: &mut Booking| b.is_deleted = true,
        ] {
            let mut c = created(b.clone());
            mutate(&mut c);
            assert!(matches!(
                run(&c, Some(&j_same)),
                Decision::Cancel {
                    reservation: Some(_)
                }
            ));
            let mut cleared = b.clone();
            mutate(&mut cleared);
            cleared.meeting_status = Some(MeetingStatus::Cancelled);
            assert_eq!(run(&cleared, None), Decision::Nothing);
        }
        // An onsite booking never touched by us → nothing at all.
        let mut onsite = b.clone();
        onsite.service_type = Some("Onsite".into());
        assert_eq!(run(&onsite, None), Decision::Nothing);
        // Trainer not connected → pending; again → nothing.
        let mut p = b.clone();
        p.trainer = Some(trainer(T1, false));
        assert!(matches!(run(&p, None), Decision::Pending { .. }));
        p.meeting_status = Some(MeetingStatus::PendingTrainerConnection);
        p.meeting_error = Some(PENDING_REASON.into());
        assert_eq!(run(&p, None), Decision::Nothing);
    }

    #[test]
    fn bad_data_fails_with_a_clear_reason() {
        type Mutation = fn(&mut Booking);
        let cases: Vec<(Mutation, &str)> = vec![
            (|b| b.end = None, "needs both"),
            (
                |b| b.end = Some(b.start.unwrap() - Duration::hours(1)),
                "must be after",
            ),
            (|b| b.bad_times = true, "not a valid date"),
            (
                |b| {
                    b.trainer_id = None;
                    b.trainer = None;
                },
                "no trainer",
            ),
            (|b| b.trainer = None, "does not exist"),
            (|b| b.trainer.as_mut().unwrap().email = None, "no email"),
            (
                |b| {
                    b.start = Some(now() - Duration::days(2));
                    b.end = Some(now() - Duration::days(1));
                },
                "in the past",
            ),
        ];
        for (mutate, expected) in cases {
            let mut b = booking();
            mutate(&mut b);
            match run(&b, None) {
                Decision::Fail { reason } => assert!(reason.contains(expected), "{reason}"),
                other => panic!("expected Fail({expected}), got {other:?}"),
            }
        }
        let s = settings();
        let missing = vec!["Merchant_Name__c".to_string()];
        let d = decide(
            &booking(),
            &Context {
                settings: &s,
                now: now(),
                journal: None,
                missing_topic_fields: &missing,
                require_trainer_email: true,
            },
        );
        assert!(matches!(d, Decision::Fail { reason } if reason.contains("{Merchant_Name__c}")));
    }

    #[test]
    fn far_bookings_are_capped_and_renewed_daily() {
        let mut b = booking();
        b.start = Some(now() + Duration::days(60));
        b.end = Some(now() + Duration::days(60) + Duration::hours(1));
        let cap = (now() + MAX_RESERVATION_AHEAD).timestamp();
        assert!(matches!(run(&b, None), Decision::Create { end_time, .. } if end_time == cap));
        // Set a few hours ago: within the slack, nothing to do.
        let recent = journal(T1, cap - 3 * 3600);
        assert_eq!(run(&created(b.clone()), Some(&recent)), Decision::Nothing);
        // Set two days ago: renew to the new cap.
        let stale = journal(T1, cap - 2 * 86_400);
        assert!(matches!(
            run(&created(b.clone()), Some(&stale)),
            Decision::Update { end_time, .. } if end_time == cap
        ));
    }
}
