//! App-hosted meetings (design §3 rule 21, `meetings.unconnected = "app_hosted"`): a
//! trainer who has not connected still gets their meetings, reserved with the app's
//! tenant token and `owner_id` = their open_id, so they own and host them. The open_id
//! comes from their email (`contact/v3/users/batch_get_id`), remembered in the store;
//! which reservations the app made is remembered too, so their updates and deletes use
//! the tenant token whoever has connected since. A trainer without a Lark account, or an
//! app without the permissions, leaves the booking `Pending Trainer Connection` with that
//! reason, looked at again on the booking's next change or sweep (never a tight retry).
//!
//! `decide` says when a booking needs a meeting; this file only carries the app's side out.

use chrono::Utc;

use super::act::Actor;
use super::decide::KnownReservation;
use super::engine::Engine;
use super::model::{Booking, MeetingStatus};
use super::outcome::PipelineError;
use super::writeback::WriteBack;
use crate::config::Unconnected;
use crate::lark::{ApplyError, LarkError};
use crate::metrics::names;
use crate::store::{AppHostedEntry, CachedContact};
use crate::tokens::trainer::TrainerRecord;

/// How long a found open_id is trusted: an account's open_id never changes, but an
/// account can be removed; a week bounds how long a stale one is used.
pub const CONTACT_FOUND_TTL_SECS: i64 = 7 * 24 * 3600;
/// How long "Lark has no user with this email" is trusted: short, so a trainer who gets
/// an account is found within the hour, yet a sweep does not ask Lark for every booking.
pub const CONTACT_MISSING_TTL_SECS: i64 = 3600;

/// The trainer has no email: no Lark account can be found for them.
pub const NO_EMAIL_REASON: &str = "The trainer has not connected their Lark account and has no email address, so the app cannot reserve the meeting for them either; it is created as soon as they connect.";
/// Lark knows no user by the trainer's email.
pub const NO_LARK_ACCOUNT_REASON: &str = "The trainer has not connected their Lark account, and Lark has no user with their email address, so the app cannot reserve the meeting for them; it is created once they have an account or connect.";
/// The app may not look users up by email.
pub const CONTACT_PERMISSION_REASON: &str = "The trainer has not connected their Lark account, and the Lark app lacks the permission contact:user.id:readonly to find them by email; an admin must grant it, or the trainer connect.";
/// The app may not reserve meetings for users.
pub const RESERVE_PERMISSION_REASON: &str = "The trainer has not connected their Lark account, and the Lark app lacks the tenant permission to reserve meetings for users (vc:reserve); an admin must grant it, or the trainer connect.";

/// True when a remembered lookup is still fresh at `now` (unix seconds).
fn fresh(c: &CachedContact, now: i64) -> bool {
    let ttl = if c.open_id.is_some() {
        CONTACT_FOUND_TTL_SECS
    } else {
        CONTACT_MISSING_TTL_SECS
    };
    now - c.checked_at < ttl
}

impl Actor<'_> {
    /// The app's record of `res`, when the app made that reservation.
    pub(super) fn app_hosted_reservation(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<Option<AppHostedEntry>, PipelineError> {
        Ok(self
            .store
            .app_hosted(booking.id.as_str())?
            .filter(|a| a.reservation_id == res.reservation_id))
    }

    /// The status a booking with the reservation `res` shows: `Created by App` while the
    /// reservation is one the app made, `Created` otherwise.
    pub(super) fn hosted_status(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<MeetingStatus, PipelineError> {
        Ok(match self.app_hosted_reservation(booking, res)? {
            Some(_) => MeetingStatus::CreatedByApp,
            None => MeetingStatus::Created,
        })
    }

    /// Reserves a meeting owned by `trainer` (who has no usable token) with the app's
    /// tenant token. The caller has passed the in-doubt gate and sent the reminder.
    pub(super) async fn create_by_app(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        end_time: i64,
        topic: &str,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let owner = match self.owner_open_id(booking, trainer).await? {
            Ok(open_id) => open_id,
            Err(reason) => {
                tracing::info!(booking = %booking.id, trainer = %trainer.id, reason, "no app-hosted meeting");
                return Ok(self.status(
                    booking,
                    MeetingStatus::PendingTrainerConnection,
                    Some(reason),
                ));
            }
        };
        match self
            .lark
            .apply_reserve_for_owner(&owner, end_time, topic)
            .await
        {
            Ok(reserve) => {
                // Recorded before the journal: whenever the journal has the reservation,
                // the store also knows the app made it (and must change it).
                self.store.record_app_hosted(&AppHostedEntry {
                    booking_id: booking.id.to_string(),
                    reservation_id: reserve.id.clone(),
                    owner_open_id: owner,
                    trainer_id: trainer.id.clone(),
                    created_at: Utc::now().timestamp(),
                })?;
                self.journal(
                    booking,
                    &trainer.id,
                    &reserve.id,
                    &reserve.url,
                    end_time,
                    topic,
                )?;
                self.store.clear_in_doubt(booking.id.as_str())?;
                self.metrics.inc(names::MEETINGS, &[("action", "created")]);
                self.metrics
                    .inc(names::MEETINGS_BY_HOST, &[("host", "app")]);
                tracing::info!(booking = %booking.id, trainer = %trainer.id, reservation = %reserve.id, "meeting reserved by the app for the trainer");
                Ok(Some(self.meeting_write(
                    &booking.id,
                    Some((&reserve.id, &reserve.url)),
                    MeetingStatus::CreatedByApp,
                    None,
                )))
            }
            Err(ApplyError::AnswerLost(source)) => self.answer_lost(booking, trainer, &source),
            Err(ApplyError::Failed(e @ LarkError::PermissionDenied { .. })) => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "app_permission_missing")]);
                tracing::warn!(booking = %booking.id, error = %e, "the Lark app may not reserve meetings for users");
                Ok(self.status(
                    booking,
                    MeetingStatus::PendingTrainerConnection,
                    Some(RESERVE_PERMISSION_REASON),
                ))
            }
            Err(ApplyError::Failed(e)) => self.lark_failure(booking, e),
        }
    }

    /// Changes an app-hosted reservation's end time with the tenant token; one Lark no
    /// longer has is reserved anew (with the trainer's token if they have connected since).
    pub(super) async fn update_as_app(
        &self,
        booking: &Booking,
        res: &KnownReservation,
        app: &AppHostedEntry,
        trainer: &TrainerRecord,
        end_time: i64,
        topic: &str,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let result = self
            .lark
            .update_reserve_for_owner(
                &app.owner_open_id,
                &res.reservation_id,
                Some(end_time),
                Some(topic),
            )
            .await;
        match result {
            Ok(reserve) => {
                let url = if reserve.url.is_empty() {
                    res.url.clone().unwrap_or_default()
                } else {
                    reserve.url
                };
                // An update keeps the reservation's id.
                let rid = &res.reservation_id;
                self.journal(booking, &trainer.id, rid, &url, end_time, topic)?;
                self.metrics.inc(names::MEETINGS, &[("action", "updated")]);
                tracing::info!(booking = %booking.id, reservation = %rid, "app-hosted meeting rescheduled");
                let shown = booking.shows_meeting(MeetingStatus::CreatedByApp, rid, Some(&url));
                Ok((!shown).then(|| {
                    self.meeting_write(
                        &booking.id,
                        Some((rid, &url)),
                        MeetingStatus::CreatedByApp,
                        None,
                    )
                }))
            }
            Err(LarkError::NotFound { .. }) => {
                tracing::info!(booking = %booking.id, "app-hosted reservation no longer exists in Lark; creating a new one");
                self.store.forget_app_hosted(booking.id.as_str())?;
                self.store.forget_reservation(booking.id.as_str())?;
                self.create(booking, trainer, end_time, topic).await
            }
            Err(e) => self.lark_failure(booking, e),
        }
    }

    /// Deletes an app-hosted reservation with the tenant token; one already gone is fine.
    pub(super) async fn delete_as_app(
        &self,
        booking: &Booking,
        res: &KnownReservation,
    ) -> Result<(), PipelineError> {
        match self.lark.delete_reserve_as_app(&res.reservation_id).await {
            Ok(()) | Err(LarkError::NotFound { .. }) => {
                self.metrics.inc(names::MEETINGS, &[("action", "deleted")]);
                tracing::info!(booking = %booking.id, reservation = %res.reservation_id, "app-hosted meeting deleted");
            }
            Err(e @ (LarkError::PermissionDenied { .. } | LarkError::InvalidParams { .. })) => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "lark_delete_refused")]);
                tracing::warn!(booking = %booking.id, reservation = %res.reservation_id, error = %e, "Lark refused to delete the app-hosted reservation; it lapses on its own");
            }
            Err(source) => {
                return Err(PipelineError::Lark {
                    booking: booking.id.clone(),
                    source,
                })
            }
        }
        self.store.forget_app_hosted(booking.id.as_str())?;
        Ok(self.store.forget_reservation(booking.id.as_str())?)
    }

    /// The trainer's open_id (from the store while fresh, else from Lark), or the reason
    /// the app cannot reserve for them. Errors worth trying again are the `Err`.
    async fn owner_open_id(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
    ) -> Result<Result<String, &'static str>, PipelineError> {
        let Some(email) = trainer.email.as_deref() else {
            return Ok(Err(NO_EMAIL_REASON));
        };
        let now = Utc::now().timestamp();
        if let Some(cached) = self.store.cached_contact(email)? {
            if fresh(&cached, now) {
                return Ok(cached.open_id.ok_or(NO_LARK_ACCOUNT_REASON));
            }
        }
        match self.lark.open_ids_by_email(&[email]).await {
            Ok(found) => {
                let open_id = found.get(email).cloned().flatten();
                self.store
                    .remember_contact(email, open_id.as_deref(), now)?;
                Ok(open_id.ok_or(NO_LARK_ACCOUNT_REASON))
            }
            Err(e @ LarkError::PermissionDenied { .. }) => {
                self.metrics
                    .inc(names::FAILURES, &[("kind", "app_permission_missing")]);
                tracing::warn!(booking = %booking.id, error = %e, "the Lark app may not look users up by email");
                Ok(Err(CONTACT_PERMISSION_REASON))
            }
            Err(source) => Err(PipelineError::Lark {
                booking: booking.id.clone(),
                source,
            }),
        }
    }
}

impl Engine {
    /// Keeps the app-hosted state bounded (called by sweeps, after the journal is pruned):
    /// lookups older than the longest time one is trusted, and records of reservations
    /// the journal no longer has.
    pub(super) fn prune_app_hosted_state(&self, now: i64) -> Result<(), PipelineError> {
        self.store.prune_contacts(now - CONTACT_FOUND_TTL_SECS)?;
        self.store.prune_app_hosted(now - 3600)?;
        Ok(())
    }

    /// With `app_hosted`, looks up in one batch (per 50) the open_ids a batch of bookings
    /// will need — unconnected trainers of bookings without a reservation, not already
    /// remembered — so a sweep asks Lark once, not once per trainer. A failure is only
    /// logged: each booking then asks for itself and handles the answer.
    pub(super) async fn prefetch_open_ids(&self, bookings: &[Booking]) {
        if self.settings.meetings.unconnected != Unconnected::AppHosted {
            return;
        }
        let now = Utc::now().timestamp();
        let mut emails: Vec<&str> = Vec::new();
        // Bookings that will need a lookup (several may share a trainer).
        let mut needing = 0;
        for booking in bookings {
            if booking.is_deleted || booking.reservation_id.is_some() {
                continue;
            }
            let Some(trainer) = booking.trainer.as_ref().filter(|t| !t.connected) else {
                continue;
            };
            let Some(email) = trainer.email.as_deref() else {
                continue;
            };
            if emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
                needing += 1;
                continue;
            }
            match self.store.cached_contact(email) {
                Ok(Some(c)) if fresh(&c, now) => continue,
                Ok(_) => {
                    needing += 1;
                    emails.push(email);
                }
                Err(e) => tracing::warn!(error = %e, "contact cache unreadable"),
            }
        }
        // One booking alone looks its trainer up where it is needed.
        if needing < 2 {
            return;
        }
        match self.lark.open_ids_by_email(&emails).await {
            Ok(found) => {
                for (email, open_id) in found {
                    if let Err(e) = self.store.remember_contact(&email, open_id.as_deref(), now) {
                        tracing::warn!(error = %e, "could not remember a Lark contact");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(trainers = emails.len(), error = %e, "looking up trainers' Lark accounts failed; each booking asks again")
            }
        }
    }
}
