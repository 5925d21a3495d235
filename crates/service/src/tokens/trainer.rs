//! The trainer record as the token side sees it: the fixed `Lark_*` field names of design
//! §2.4, reading them from a Salesforce row, and building the writes that connect,
//! refresh or disconnect a trainer. Pure: no I/O here.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::config::TrainerSettings;
use crate::ids::TrainerId;
use crate::salesforce::values::{clip, datetime_value, parse_datetime};

/// `Lark_User_ID__c`: the Lark open_id.
pub const F_USER_ID: &str = "Lark_User_ID__c";
/// `Lark_Access_Token__c`: encrypted access token.
pub const F_ACCESS_TOKEN: &str = "Lark_Access_Token__c";
/// `Lark_Refresh_Token__c`: encrypted refresh token.
pub const F_REFRESH_TOKEN: &str = "Lark_Refresh_Token__c";
/// `Lark_Token_Expires_At__c`: access token expiry.
pub const F_TOKEN_EXPIRES_AT: &str = "Lark_Token_Expires_At__c";
/// `Lark_Refresh_Expires_At__c`: refresh token expiry.
pub const F_REFRESH_EXPIRES_AT: &str = "Lark_Refresh_Expires_At__c";
/// `Lark_Connected_At__c`: when the trainer last connected.
pub const F_CONNECTED_AT: &str = "Lark_Connected_At__c";
/// `Lark_Last_Token_Refresh__c`: when tokens were last refreshed.
pub const F_LAST_REFRESH: &str = "Lark_Last_Token_Refresh__c";
/// `Lark_Connected__c`: checkbox admins report on.
pub const F_CONNECTED: &str = "Lark_Connected__c";
/// `Lark_Connection_Error__c`: why the connection failed, ≤255 chars.
pub const F_CONNECTION_ERROR: &str = "Lark_Connection_Error__c";

/// Every `Lark_*` field the service writes on the trainer.
pub const WRITTEN_FIELDS: [&str; 9] = [
    F_USER_ID,
    F_ACCESS_TOKEN,
    F_REFRESH_TOKEN,
    F_TOKEN_EXPIRES_AT,
    F_REFRESH_EXPIRES_AT,
    F_CONNECTED_AT,
    F_LAST_REFRESH,
    F_CONNECTED,
    F_CONNECTION_ERROR,
];

/// A trainer row with its connection state; tokens still encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerRecord {
    pub id: TrainerId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub lark_user_id: Option<String>,
    pub access_enc: Option<String>,
    pub refresh_enc: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub connected: bool,
}

impl TrainerRecord {
    /// The SELECT list that [`TrainerRecord::from_row`] needs.
    pub fn select_fields(t: &TrainerSettings) -> String {
        let mut fields = vec![
            "Id".to_string(),
            t.name_field.clone(),
            t.email_field.clone(),
        ];
        for f in [
            F_USER_ID,
            F_ACCESS_TOKEN,
            F_REFRESH_TOKEN,
            F_TOKEN_EXPIRES_AT,
            F_REFRESH_EXPIRES_AT,
            F_CONNECTED,
        ] {
            fields.push(f.to_string());
        }
        fields.dedup();
        fields.join(", ")
    }

    /// Reads a row returned by SOQL (or a nested relationship object).
    pub fn from_row(t: &TrainerSettings, row: &Map<String, Value>) -> Option<TrainerRecord> {
        let text = |f: &str| {
            row.get(f)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        Some(TrainerRecord {
            // Salesforce only ever returns a valid id; a row without one is no trainer.
            id: text("Id").and_then(|id| TrainerId::parse(&id).ok())?,
            name: text(&t.name_field),
            email: text(&t.email_field),
            lark_user_id: text(F_USER_ID),
            access_enc: text(F_ACCESS_TOKEN),
            refresh_enc: text(F_REFRESH_TOKEN),
            access_expires_at: text(F_TOKEN_EXPIRES_AT).and_then(|s| parse_datetime(&s)),
            refresh_expires_at: text(F_REFRESH_EXPIRES_AT).and_then(|s| parse_datetime(&s)),
            connected: row
                .get(F_CONNECTED)
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// Encrypted tokens and their lifetimes, ready to be written.
#[derive(Debug, Clone)]
pub struct EncryptedTokens {
    pub access_enc: String,
    pub refresh_enc: Option<String>,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

/// The one write that marks a trainer connected (OAuth callback).
pub fn connect_fields(
    open_id: &str,
    tokens: &EncryptedTokens,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let mut m = refresh_fields(tokens, now);
    m.insert(F_USER_ID.into(), json!(open_id));
    m.insert(F_CONNECTED_AT.into(), datetime_value(now));
    m.insert(F_CONNECTED.into(), json!(true));
    m.insert(F_CONNECTION_ERROR.into(), Value::Null);
    m
}

/// The write after a refresh: rotated tokens and lifetimes. It never touches
/// `Lark_Connected__c`: a refresh in flight must not re-check a box an admin unchecked.
pub fn refresh_fields(tokens: &EncryptedTokens, now: DateTime<Utc>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(F_ACCESS_TOKEN.into(), json!(tokens.access_enc));
    if let Some(r) = &tokens.refresh_enc {
        m.insert(F_REFRESH_TOKEN.into(), json!(r));
    }
    m.insert(
        F_TOKEN_EXPIRES_AT.into(),
        datetime_value(tokens.access_expires_at),
    );
    if let Some(r) = tokens.refresh_expires_at {
        m.insert(F_REFRESH_EXPIRES_AT.into(), datetime_value(r));
    }
    m.insert(F_LAST_REFRESH.into(), datetime_value(now));
    m
}

/// The write that disconnects a trainer: tokens cleared, not connected, the reason kept.
pub fn disconnect_fields(reason: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for f in [
        F_ACCESS_TOKEN,
        F_REFRESH_TOKEN,
        F_TOKEN_EXPIRES_AT,
        F_REFRESH_EXPIRES_AT,
    ] {
        m.insert(f.into(), Value::Null);
    }
    m.insert(F_CONNECTED.into(), json!(false));
    m.insert(F_CONNECTION_ERROR.into(), json!(clip(reason)));
    m
}
