//! The trainer object as the token side reads it from Salesforce: one trainer by id, one by
//! id or email (commands), those whose refresh token the timer must refresh, and those an
//! admin unchecked while tokens remain. Reads only: every write to a trainer is the token
//! service's.

use std::sync::Arc;

use chrono::Utc;

use crate::config::Settings;
use crate::ids::TrainerId;
use crate::salesforce::soql::{self, quote};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::tokens::trainer::{
    TrainerRecord, F_CONNECTED, F_REFRESH_EXPIRES_AT, F_TOKEN_EXPIRES_AT,
};

/// Reads trainer records; cheap to clone.
#[derive(Clone)]
pub struct Trainers {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
}

impl Trainers {
    /// Reads with `salesforce`, using the trainer object's configured names.
    pub fn new(settings: Arc<Settings>, salesforce: SalesforceClient) -> Trainers {
        Trainers {
            settings,
            salesforce,
        }
    }

    /// Trainers matching a SOQL condition (built by the callers below from validated
    /// ids, quoted literals and fixed field names only).
    async fn query_trainers(&self, condition: &str) -> Result<Vec<TrainerRecord>, SalesforceError> {
        let t = &self.settings.salesforce.trainer;
        let soql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            TrainerRecord::select_fields(t),
            t.object,
        );
        let rows = self.salesforce.query(&soql).await?;
        Ok(rows
            .iter()
            .filter_map(|r| TrainerRecord::from_row(t, r))
            .collect())
    }

    /// Reads one trainer from Salesforce.
    pub async fn get(&self, id: &TrainerId) -> Result<Option<TrainerRecord>, SalesforceError> {
        let found = self
            .query_trainers(&format!("Id = {}", quote(id.as_str())))
            .await?;
        Ok(found.into_iter().next())
    }

    /// Finds a trainer by record id or email (commands).
    pub async fn find(&self, id_or_email: &str) -> Result<Option<TrainerRecord>, SalesforceError> {
        if let Ok(id) = TrainerId::parse(id_or_email) {
            return self.get(&id).await;
        }
        let email_field = &self.settings.salesforce.trainer.email_field;
        let condition = format!("{email_field} = {} LIMIT 2", quote(id_or_email.trim()));
        Ok(self.query_trainers(&condition).await?.into_iter().next())
    }

    /// Trainers the timer must refresh: connected, refresh token expiring within the window.
    pub async fn due_for_refresh(&self) -> Result<Vec<TrainerRecord>, SalesforceError> {
        let window = chrono::Duration::from_std(self.settings.refresh.refresh_token_window)
            .unwrap_or_default();
        let horizon = soql::datetime(Utc::now() + window);
        self.query_trainers(&format!(
            "{F_CONNECTED} = true AND {F_REFRESH_EXPIRES_AT} != null AND {F_REFRESH_EXPIRES_AT} < {horizon}"
        ))
        .await
    }

    /// Connected trainers whose checkbox an admin unchecked while tokens remain (the
    /// DateTime expiry fields can be filtered; the token fields cannot).
    pub async fn unchecked_with_tokens(&self) -> Result<Vec<TrainerRecord>, SalesforceError> {
        self.query_trainers(&format!(
            "{F_CONNECTED} = false AND ({F_TOKEN_EXPIRES_AT} != null OR {F_REFRESH_EXPIRES_AT} != null)"
        ))
        .await
    }
}
