//! Salesforce client: login ([`auth`]), REST ([`rest`]), SOQL literal escaping ([`soql`]),
//! field values ([`values`]: DateTime text, Text(255) clipping), the one error type
//! ([`error`]), typed change events ([`events`]) and the
//! Streaming API subscriber ([`streaming`]), which uses [`rest::http_client_builder`] and
//! [`SalesforceClient::session`].
//!
//! Nothing outside this module talks HTTP to Salesforce, and nothing builds SOQL literals
//! except through [`soql::quote`] and [`soql::RecordId`].

pub mod auth;
pub mod error;
pub mod events;
pub mod rest;
pub mod soql;
pub mod streaming;
pub mod values;

pub use auth::Session;
pub use error::SalesforceError;
pub use rest::{
    CallCounts, FieldDescribe, ObjectDescribe, RecordResult, SalesforceApiError, SalesforceClient,
};
pub use soql::{id_list, quote, InvalidRecordId, RecordId};

#[cfg(test)]
pub(crate) mod test_support;
