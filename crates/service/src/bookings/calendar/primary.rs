//! Each host's primary-calendar id (design §4: `POST /calendar/v4/calendars/primary`),
//! looked up once per trainer: single-flight — while one lookup is on its way, the
//! trainer's other bookings wait for its answer instead of asking again (a burst of one
//! trainer's bookings once made ~9 lookups a trainer) — kept in the store, so a restart
//! does not ask again, and forgotten when Lark says the calendar is gone (191000) or out
//! of the token's reach (191002). A reconnect also forgets it (`record_connect_scope`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::bookings::host_token::HostTokens;
use crate::ids::TrainerId;
use crate::lark::{LarkClient, LarkError};
use crate::store::{Store, StoreError};
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::AccessToken;

/// Lark's "no access to the calendar" (design §4).
pub const CALENDAR_NO_ACCESS: i64 = 191_002;

/// Why no calendar id could be had.
#[derive(Debug)]
pub enum LookupError {
    Lark(LarkError),
    Store(StoreError),
}

/// The hosts' primary calendars; one per engine.
pub struct PrimaryCalendars {
    store: Store,
    flights: Mutex<HashMap<TrainerId, Arc<tokio::sync::Mutex<()>>>>,
}

impl PrimaryCalendars {
    /// Calendar ids kept in `store`.
    pub fn new(store: Store) -> PrimaryCalendars {
        PrimaryCalendars {
            store,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The host's primary-calendar id: the one kept, or one lookup with `token` that the
    /// host's concurrent callers share.
    pub async fn id(
        &self,
        hosts: &HostTokens,
        host: &TrainerRecord,
        token: &AccessToken,
    ) -> Result<String, LookupError> {
        if let Some(id) = self.kept(&host.id)? {
            return Ok(id);
        }
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.id.clone())
            .or_default()
            .clone();
        let _one_at_a_time = flight.lock().await;
        // Whoever held the lock before may have looked it up already.
        if let Some(id) = self.kept(&host.id)? {
            return Ok(id);
        }
        let id = hosts
            .with_token_retry(host, token.clone(), |lark: LarkClient, t| async move {
                lark.primary_calendar_id(&t).await
            })
            .await
            .map_err(LookupError::Lark)?;
        self.store
            .save_primary_calendar(&host.id, &id)
            .map_err(LookupError::Store)?;
        Ok(id)
    }

    /// Forgets the kept id when `e` says the calendar is gone or out of reach; true when
    /// it did (the next event looks it up again).
    pub fn forget_if_gone(&self, host: &TrainerId, e: &LarkError) -> Result<bool, StoreError> {
        let gone = match e {
            // 191000 on a create; any "not found" there means the calendar.
            LarkError::NotFound { .. } => true,
            LarkError::PermissionDenied { code, .. } => *code == CALENDAR_NO_ACCESS,
            _ => false,
        };
        if gone {
            self.store.forget_primary_calendar(host)?;
        }
        Ok(gone)
    }

    fn kept(&self, host: &TrainerId) -> Result<Option<String>, LookupError> {
        Ok(self
            .store
            .trainer_calendar(host)
            .map_err(LookupError::Store)?
            .calendar_id)
    }
}
