//! CometD (Bayeux) long-polling endpoint of the Salesforce simulator and the CDC event
//! log it serves. STUB: the streaming work fills this in; the API below is the contract
//! between the record store (which publishes every change) and this hub.

use std::sync::Arc;

use serde_json::{Map, Value};

/// Kind of a record change, as in `ChangeEventHeader.changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    Undelete,
}

/// One committed record change, published by the record store after every write.
#[derive(Debug, Clone)]
pub struct RecordChange {
    /// Object API name, e.g. `Training_Booking__c`.
    pub entity: String,
    pub kind: ChangeKind,
    /// 18-char record id.
    pub record_id: String,
    /// Fields whose value changed (UPDATE), or every non-null field (CREATE).
    pub changed_fields: Vec<String>,
    /// User id of the writer (`commitUser`).
    pub commit_user: String,
    /// New values of the changed fields (CREATE: every non-null field).
    pub values: Map<String, Value>,
}

/// Validates a bearer token; returns the user id it belongs to, or None when invalid.
pub type SessionCheck = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The event log and Bayeux client registry.
#[derive(Default)]
pub struct CometdHub {}

impl CometdHub {
    /// Records a change and delivers it to subscribers of `/data/{Entity}ChangeEvent`
    /// (entity `Foo__c` → channel `/data/Foo__ChangeEvent`).
    pub fn publish(&self, change: RecordChange) {
        let _ = change;
    }

    /// Axum routes for `POST /cometd/{version}`; `check` validates bearer tokens.
    pub fn router(self: &Arc<Self>, check: SessionCheck) -> axum::Router {
        let _ = check;
        axum::Router::new()
    }
}
