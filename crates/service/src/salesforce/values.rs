//! Salesforce field values: reading a DateTime field, writing one, and fitting text into a
//! Text(255) field. Pure helpers for whoever reads or writes records (the trainer's token
//! fields, the booking's output fields).

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Salesforce text fields cap at 255 characters.
pub const TEXT_FIELD_MAX: usize = 255;

/// Parses Salesforce's DateTime format (`2026-11-26T10:00:00.000+0000`) or RFC 3339.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Formats a time for a Salesforce DateTime field (milliseconds, UTC).
pub fn datetime_value(t: DateTime<Utc>) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Trims a message to Salesforce's 255-character text limit, on a char boundary.
pub fn clip(message: &str) -> String {
    if message.chars().count() <= TEXT_FIELD_MAX {
        return message.to_string();
    }
    let mut s: String = message.chars().take(TEXT_FIELD_MAX - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests;
