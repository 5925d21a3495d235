//! Who a trainer is in Lark, for meetings the app reserves on their behalf (design §3
//! rule 21, `meetings.unconnected = "app_hosted"`): their open_id, found by email with
//! `contact/v3/users/batch_get_id` (in batches of 50, ahead of a batch that needs them) and
//! remembered in the store with the time it was looked up, so answers expire. A trainer
//! without an email or a Lark account, or an app without the permission, comes back as the
//! reason the booking waits. The reservations themselves are `meetings`'.

use chrono::{DateTime, Duration, Utc};

use super::model::Booking;
use super::outcome::PipelineError;
use crate::config::Unconnected;
use crate::lark::{LarkClient, LarkError};
use crate::metrics::{Failure, Metrics};
use crate::store::{CachedContact, Store};
use crate::tokens::trainer::TrainerRecord;

/// How long a found open_id is trusted: an account's open_id never changes, but an
/// account can be removed; a week bounds how long a stale one is used.
pub const CONTACT_FOUND_TTL: Duration = Duration::days(7);
/// How long "Lark has no user with this email" is trusted: short, so a trainer who gets
/// an account is found within the hour, yet a sweep does not ask Lark for every booking.
pub const CONTACT_MISSING_TTL: Duration = Duration::hours(1);

/// The trainer has no email: no Lark account can be found for them.
pub const NO_EMAIL_REASON: &str = "The trainer has not connected their Lark account and has no email address, so the app cannot reserve the meeting for them either; it is created as soon as they connect.";
/// Lark knows no user by the trainer's email.
pub const NO_LARK_ACCOUNT_REASON: &str = "The trainer has not connected their Lark account, and Lark has no user with their email address, so the app cannot reserve the meeting for them; it is created once they have an account or connect.";
/// The app may not look users up by email.
pub const CONTACT_PERMISSION_REASON: &str = "The trainer has not connected their Lark account, and the Lark app lacks the permission contact:user.id:readonly to find them by email; an admin must grant it, or the trainer connect.";
/// The app may not reserve meetings for users.
pub const RESERVE_PERMISSION_REASON: &str = "The trainer has not connected their Lark account, and the Lark app lacks the tenant permission to reserve meetings for users (vc:reserve); an admin must grant it, or the trainer connect.";

/// True when a remembered lookup is still fresh at `now`.
fn fresh(c: &CachedContact, now: DateTime<Utc>) -> bool {
    let ttl = if c.open_id.is_some() {
        CONTACT_FOUND_TTL
    } else {
        CONTACT_MISSING_TTL
    };
    now.signed_duration_since(c.checked_at) < ttl
}

/// Trainers' open_ids for app-hosted meetings; cheap to clone.
#[derive(Clone)]
pub struct AppHost {
    unconnected: Unconnected,
    lark: LarkClient,
    store: Store,
    metrics: Metrics,
}

impl AppHost {
    /// Lookups with `lark`'s tenant token, remembered in `store`.
    pub fn new(
        unconnected: Unconnected,
        lark: LarkClient,
        store: Store,
        metrics: Metrics,
    ) -> AppHost {
        AppHost {
            unconnected,
            lark,
            store,
            metrics,
        }
    }

    /// The trainer's open_id (from the store while fresh, else from Lark), or the reason
    /// the app cannot reserve for them. Errors worth trying again are the `Err`.
    pub async fn owner_open_id(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
    ) -> Result<Result<String, &'static str>, PipelineError> {
        let Some(email) = trainer.email.as_deref() else {
            return Ok(Err(NO_EMAIL_REASON));
        };
        let now = Utc::now();
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
                self.metrics.failure(Failure::AppPermissionMissing);
                tracing::warn!(error = %e, "the Lark app may not look users up by email");
                Ok(Err(CONTACT_PERMISSION_REASON))
            }
            Err(source) => Err(PipelineError::Lark {
                booking: booking.id.clone(),
                source,
            }),
        }
    }

    /// Keeps the app-hosted state bounded (called by sweeps, after the journal is pruned):
    /// lookups older than the longest time one is trusted, and records of reservations
    /// the journal no longer has.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        self.store.prune_contacts(now - CONTACT_FOUND_TTL)?;
        self.store.prune_app_hosted(now - Duration::hours(1))?;
        Ok(())
    }

    /// With `app_hosted`, looks up in one batch (per 50) the open_ids a batch of bookings
    /// will need — unconnected trainers of bookings without a reservation, not already
    /// remembered — so a sweep asks Lark once, not once per trainer. A failure is only
    /// logged: each booking then asks for itself and handles the answer.
    pub async fn prefetch(&self, bookings: &[Booking]) {
        if self.unconnected != Unconnected::AppHosted {
            return;
        }
        let now = Utc::now();
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
