//! Connect reminders: a Lark message to a trainer with their connect link, at most one per
//! [`REMINDER_INTERVAL`] whoever asks (the pipeline for a booking that waits, the token
//! service when Lark disconnected them, the `remind` command). Failures are reported,
//! never fatal: the status fields already tell admins.

use std::sync::Arc;

use chrono::Utc;

use crate::config::Settings;
use crate::lark::error::CODE_IM_NO_AVAILABILITY;
use crate::lark::{LarkClient, LarkError};
use crate::store::Store;
use crate::tokens::trainer::TrainerRecord;

/// Minimum time between two reconnect reminders to one trainer.
pub const REMINDER_INTERVAL: chrono::Duration = chrono::Duration::hours(24);

/// What became of one connect reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderOutcome {
    /// Sent now.
    Sent,
    /// `lark.notify_trainers = false` (the pipeline's reminders only).
    Off,
    /// The trainer already got one within [`REMINDER_INTERVAL`].
    AlreadyReminded,
    /// Lark cannot deliver to this trainer: no email on the record, or no Lark user the
    /// bot can reach by it (Lark's 230013). Says which.
    Unreachable(String),
    /// Lark or the store failed; the next occasion tries again.
    Failed(String),
}

/// Sends connect reminders; cheap to clone.
#[derive(Clone)]
pub struct Reminders {
    settings: Arc<Settings>,
    lark: LarkClient,
    store: Store,
}

impl Reminders {
    /// Reminders sent with `lark`'s bot, remembered in `store`.
    pub fn new(settings: Arc<Settings>, lark: LarkClient, store: Store) -> Reminders {
        Reminders {
            settings,
            lark,
            store,
        }
    }

    /// Sends the trainer a Lark message with their connect link, at most once per 24 h,
    /// unless `lark.notify_trainers = false`. Failures are logged, never fatal: the status
    /// field already tells admins. True when a message went out.
    pub async fn remind(&self, trainer: &TrainerRecord) -> bool {
        if !self.settings.lark.notify_trainers {
            return false;
        }
        self.send(trainer).await == ReminderOutcome::Sent
    }

    /// The `remind` command's reminder: as [`Reminders::remind`], sharing its 24 h
    /// limit, but sent whatever `lark.notify_trainers` says (an admin asked for it).
    pub async fn remind_forced(&self, trainer: &TrainerRecord) -> ReminderOutcome {
        self.send(trainer).await
    }

    #[tracing::instrument(name = "reminder", skip_all, fields(trainer = %trainer.id))]
    async fn send(&self, trainer: &TrainerRecord) -> ReminderOutcome {
        let settings = &self.settings;
        let Some(email) = trainer.email.as_deref() else {
            tracing::info!("no reminder: trainer has no email");
            return ReminderOutcome::Unreachable("the trainer record has no email".into());
        };
        let now = Utc::now();
        match self.store.last_reminder(&trainer.id) {
            Ok(Some(last)) if now.signed_duration_since(last) < REMINDER_INTERVAL => {
                return ReminderOutcome::AlreadyReminded
            }
            Err(e) => {
                tracing::warn!(error = %e, "reminder state unreadable; not sending");
                return ReminderOutcome::Failed(format!("reminder state unreadable: {e}"));
            }
            _ => {}
        }
        let link = settings.server.connect_link(&trainer.id);
        let name = trainer.name.as_deref().unwrap_or("there");
        let text = format!(
            "Hi {name}, your Lark account needs to be (re)connected so your remote training sessions get their meetings. Connect here: {link}"
        );
        // One uuid per trainer per day: Lark deduplicates a retried send.
        let period = now.timestamp() / REMINDER_INTERVAL.num_seconds();
        let uuid = format!("lvb-remind-{}-{period}", trainer.id);
        match self.lark.send_text_by_email(email, &text, &uuid).await {
            Ok(()) => {
                if let Err(e) = self.store.record_reminder(&trainer.id, now) {
                    tracing::warn!(error = %e, "could not remember the reminder");
                }
                tracing::info!("reconnect reminder sent");
                ReminderOutcome::Sent
            }
            Err(LarkError::PermissionDenied { code, .. }) if code == CODE_IM_NO_AVAILABILITY => {
                tracing::warn!(
                    "reconnect reminder: no Lark user the bot can reach by the trainer's email"
                );
                ReminderOutcome::Unreachable(format!(
                    "Lark has no user the bot can reach by the email on the record (code {code})"
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconnect reminder failed");
                ReminderOutcome::Failed(e.to_string())
            }
        }
    }
}
