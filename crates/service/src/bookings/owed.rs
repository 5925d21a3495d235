//! Deletions owed (design §3 rule 25): a reservation or calendar event that must go
//! (cancel, delete, not remote, trainer change) while its host's token is not available
//! (not connected, refresh refused) is recorded in the store — the booking moves on at
//! once — and admins hear of it once: a cancelled session is still joinable, and the
//! merchant still holds the invitation. The deletion is made as soon as the host
//! reconnects (and tried again by each sweep), and dropped once the meeting has ended.
//! Reservations the app made never end up here: the app's own token deletes them.

use chrono::{DateTime, Utc};

use super::host_token::{HostToken, HostTokens};
use super::model::Booking;
use super::notices::BookingAlerts;
use super::outcome::PipelineError;
use crate::ids::TrainerId;
use crate::lark::{LarkClient, LarkError};
use crate::metrics::{names, Metrics};
use crate::store::{OwedDeletion, OwedItem, Store};
use crate::tokens::trainer::TrainerRecord;

/// The deletions owed; cheap to clone.
#[derive(Clone)]
pub struct OwedDeletions {
    store: Store,
    hosts: HostTokens,
    alerts: BookingAlerts,
    metrics: Metrics,
}

impl OwedDeletions {
    /// Owed deletions in `store`, made with `hosts`' tokens, told through `alerts`.
    pub fn new(store: Store, hosts: HostTokens, alerts: BookingAlerts, metrics: Metrics) -> Self {
        OwedDeletions {
            store,
            hosts,
            alerts,
            metrics,
        }
    }

    /// Records that `item` of `booking`, hosted by `host`, must still be deleted; the first
    /// time, admins are told.
    pub async fn owe(
        &self,
        booking: &Booking,
        host: &TrainerId,
        item: OwedItem,
        ends_at: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let owed = OwedDeletion {
            item,
            booking_id: booking.id.clone(),
            trainer_id: host.clone(),
            ends_at,
        };
        if !self.store.owe_deletion(&owed, Utc::now())? {
            return Ok(());
        }
        let what = what(&owed.item);
        self.metrics
            .inc(names::MEETINGS, &[("action", "deletion_owed")]);
        tracing::warn!(item = %owed.item.id(), what, host = %host, "the host is not connected: the deletion is owed until they reconnect");
        let name = booking
            .trainer
            .as_ref()
            .filter(|t| &t.id == host)
            .and_then(|t| t.name.as_deref());
        self.alerts.deletion_owed(&booking.id, host, name).await;
        Ok(())
    }

    /// Makes the deletions `trainer` owes, with their token (they just connected, or a
    /// sweep found them connected); returns how many were made. One Lark refuses for now
    /// stays owed.
    pub async fn settle_for(&self, trainer: &TrainerRecord) -> Result<usize, PipelineError> {
        let owed = self.store.owed_deletions_of(&trainer.id)?;
        if owed.is_empty() {
            return Ok(0);
        }
        let HostToken::Token(token) = self.hosts.token(trainer).await? else {
            return Ok(0);
        };
        let mut made = 0;
        for d in owed {
            let item = d.item.clone();
            let result = self
                .hosts
                .with_token_retry(trainer, token.clone(), |lark: LarkClient, t| {
                    let item = item.clone();
                    async move {
                        match &item {
                            OwedItem::Reservation { reservation_id } => {
                                lark.delete_reserve(&t, reservation_id).await
                            }
                            OwedItem::Event {
                                calendar_id,
                                event_id,
                            } => lark.delete_calendar_event(&t, calendar_id, event_id).await,
                        }
                    }
                })
                .await;
            match result {
                Ok(()) | Err(LarkError::NotFound { .. }) => {
                    self.store.settle_owed(&d.item)?;
                    made += 1;
                    self.metrics
                        .inc(names::MEETINGS, &[("action", "owed_deleted")]);
                    tracing::info!(booking = %d.booking_id, item = %d.item.id(), what = what(&d.item), "owed deletion made");
                }
                Err(e) => {
                    tracing::warn!(booking = %d.booking_id, item = %d.item.id(), error = %e, "owed deletion refused for now; tried again later");
                }
            }
        }
        Ok(made)
    }

    /// Drops what is owed for meetings that have ended, and makes what the hosts now
    /// connected can (the hourly sweep: a reconnect whose event was missed). One host's
    /// trouble (their token cannot be refreshed now, their record cannot be read) is
    /// logged and leaves their deletions owed for the next sweep; the others' are still
    /// made (rule 14). An error only when the store cannot say what is owed.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        let dropped = self.store.prune_owed(now)?;
        if dropped > 0 {
            tracing::info!(dropped, "owed deletions of meetings that ended are dropped");
        }
        let mut hosts: Vec<TrainerId> = self
            .store
            .owed_deletions()?
            .into_iter()
            .map(|d| d.trainer_id)
            .collect();
        hosts.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        hosts.dedup();
        for host in hosts {
            let settled = match self.hosts.record(&host).await {
                Ok(Some(record)) if record.connected => self.settle_for(&record).await.map(drop),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = settled {
                tracing::warn!(trainer = %host, error = %e, "owed deletions of this host cannot be made now; the next sweep tries again");
            }
        }
        Ok(())
    }
}

/// How the alert and the log name an owed item.
fn what(item: &OwedItem) -> &'static str {
    match item {
        OwedItem::Reservation { .. } => "Lark meeting",
        OwedItem::Event { .. } => "calendar event",
    }
}
