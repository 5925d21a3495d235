//! The raw layer: the configuration exactly as the `config` crate deserializes it from the
//! layers, every key optional so that validation can name each one that is missing.
//!
//! Nothing here is checked or typed beyond what serde needs; [`super::validate`] turns it
//! into [`super::Settings`]. Adding a key: one field here, one line in `validate.rs`, one
//! field in `settings.rs`, and its documented default in `config/default.toml`.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Raw {
    pub(super) server: RawServer,
    pub(super) store: RawStore,
    pub(super) salesforce: RawSalesforce,
    pub(super) lark: RawLark,
    pub(super) security: RawSecurity,
    pub(super) refresh: RawRefresh,
    pub(super) processing: RawProcessing,
    pub(super) calendar: RawCalendar,
    pub(super) meetings: RawMeetings,
    pub(super) alerts: RawAlerts,
    pub(super) attendance: RawAttendance,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawServer {
    pub(super) bind: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) rate_limit_per_minute: Option<String>,
    pub(super) trust_forwarded_for: Option<BoolLike>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawStore {
    pub(super) path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSalesforce {
    pub(super) login_url: Option<String>,
    pub(super) api_version: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<SecretString>,
    pub(super) username: Option<String>,
    pub(super) password: Option<SecretString>,
    pub(super) private_key_path: Option<String>,
    pub(super) streaming: RawStreaming,
    pub(super) booking: RawBooking,
    pub(super) trainer: RawTrainer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawStreaming {
    pub(super) channel: Option<String>,
    pub(super) replay_from: Option<String>,
    pub(super) booking_id_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawBooking {
    pub(super) object: Option<String>,
    pub(super) trainer_field: Option<String>,
    pub(super) start_field: Option<String>,
    pub(super) end_field: Option<String>,
    pub(super) service_type_field: Option<String>,
    pub(super) remote_values: Option<StringList>,
    pub(super) status_field: Option<String>,
    pub(super) cancelled_values: Option<StringList>,
    pub(super) topic_template: Option<String>,
    pub(super) link_field: Option<String>,
    pub(super) reservation_field: Option<String>,
    pub(super) meeting_status_field: Option<String>,
    pub(super) meeting_error_field: Option<String>,
    pub(super) attendee_email_field: Option<String>,
    pub(super) calendar_event_field: Option<String>,
    pub(super) session_status_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTrainer {
    pub(super) object: Option<String>,
    pub(super) email_field: Option<String>,
    pub(super) name_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLark {
    pub(super) base_url: Option<String>,
    pub(super) accounts_url: Option<String>,
    pub(super) app_id: Option<String>,
    pub(super) app_secret: Option<SecretString>,
    pub(super) oauth_version: Option<String>,
    pub(super) scopes: Option<StringList>,
    pub(super) notify_trainers: Option<BoolLike>,
    pub(super) tenant_key: Option<String>,
    pub(super) events: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSecurity {
    pub(super) encryption_key: Option<SecretString>,
    pub(super) previous_keys: Option<SecretList>,
    pub(super) state_secret: Option<SecretString>,
    pub(super) require_email_match: Option<BoolLike>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawRefresh {
    pub(super) interval: Option<String>,
    pub(super) refresh_token_window: Option<String>,
    pub(super) access_token_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawProcessing {
    pub(super) concurrency: Option<String>,
    pub(super) max_attempts: Option<String>,
    pub(super) retry_max_delay: Option<String>,
    pub(super) max_in_doubt_applies: Option<String>,
    pub(super) in_doubt_delay: Option<String>,
    pub(super) shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawCalendar {
    pub(super) enabled: Option<BoolLike>,
    pub(super) timezone: Option<String>,
    pub(super) reminder_minutes: Option<String>,
    pub(super) description_template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawMeetings {
    pub(super) unconnected: Option<String>,
    pub(super) auto_record: Option<BoolLike>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAlerts {
    pub(super) lark_chat_id: Option<String>,
    pub(super) pending_horizon: Option<String>,
    pub(super) no_show_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAttendance {
    pub(super) enabled: Option<BoolLike>,
    pub(super) grace: Option<String>,
}

/// A list given either as a TOML array or, from the environment, as a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StringList {
    List(Vec<String>),
    Csv(String),
}

impl StringList {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            StringList::List(v) => v,
            StringList::Csv(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

/// Like [`StringList`], for secrets.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SecretList {
    List(Vec<SecretString>),
    Csv(SecretString),
}

impl SecretList {
    pub(super) fn into_vec(self) -> Vec<SecretString> {
        match self {
            SecretList::List(v) => v,
            SecretList::Csv(s) => s
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| SecretString::from(p.to_string()))
                .collect(),
        }
    }
}

/// A boolean from TOML or from an environment string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum BoolLike {
    Bool(bool),
    Text(String),
}
