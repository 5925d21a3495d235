//! SOQL literal escaping and record-id validation — the ONE place where text from outside
//! becomes part of a query. Every SOQL string literal goes through [`quote`], every record
//! id through [`RecordId::parse`]; nothing else in the crate builds literals by hand.
//!
//! The case-checksum suffix of 18-character ids is implemented here ([`id_checksum`]); the
//! simulators, which use nothing of this crate, keep their own copy (`lvb_simulators::wire`).

use std::fmt;

/// Characters of the 3-char checksum suffix, indexed by a 5-bit value.
// Source: the published 15→18 conversion (e.g. codegolf.stackexchange.com/q/69127 and
// gammone.com "how to convert salesforce id from 15 to 18 chars"): split the 15 chars into
// three chunks of 5; bit j of a chunk is set when its j-th char is an uppercase letter;
// each 5-bit value indexes "A..Z0..5".
const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// A Salesforce record id, always held in its 18-character, case-safe form.
///
/// Only [`RecordId::parse`] builds one, so a `RecordId` is known to be 18 ASCII
/// alphanumerics with a correct checksum: safe to put inside a SOQL literal or a URL path.
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

/// Why a string is not a record id. The offending text is kept short and never contains
/// anything but what the caller passed in (ids are not secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecordId {
    /// Not 15 or 18 characters long.
    #[error("a Salesforce record id has 15 or 18 characters, got {0}")]
    Length(usize),
    /// Contains something other than ASCII letters and digits.
    #[error("a Salesforce record id has only letters and digits")]
    Characters,
    /// 18 characters whose last three do not match the case checksum of the first 15.
    #[error("the last three characters of the record id {0:?} do not match its checksum")]
    Checksum(String),
}

impl RecordId {
    /// Accepts a 15-character (case-sensitive) id, adding its checksum suffix, or an
    /// 18-character id whose suffix matches its first 15 characters exactly.
    pub fn parse(s: &str) -> Result<RecordId, InvalidRecordId> {
        let len = s.chars().count();
        if len != 15 && len != 18 {
            return Err(InvalidRecordId::Length(len));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidRecordId::Characters);
        }
        let base = &s[..15];
        let suffix = id_checksum(base);
        if len == 18 && s[15..] != suffix {
            return Err(InvalidRecordId::Checksum(s.to_string()));
        }
        Ok(RecordId(format!("{base}{suffix}")))
    }

    /// The 18-character id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first three characters, which name the object type (`a0B`, `005`, …).
    pub fn key_prefix(&self) -> &str {
        &self.0[..3]
    }

    /// The case-sensitive 15-character form (what Salesforce shows in page URLs).
    pub fn short(&self) -> &str {
        &self.0[..15]
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RecordId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RecordId {
    type Error = InvalidRecordId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RecordId::parse(&value)
    }
}

impl From<RecordId> for String {
    fn from(id: RecordId) -> String {
        id.0
    }
}

impl std::str::FromStr for RecordId {
    type Err = InvalidRecordId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordId::parse(s)
    }
}

/// The 3-character case checksum of the first 15 characters of `id` (which the caller
/// has checked are ASCII alphanumerics).
pub fn id_checksum(id: &str) -> String {
    let bytes = id.as_bytes();
    (0..3)
        .map(|chunk| {
            let bits = (0..5).fold(0usize, |acc, j| {
                if bytes.get(chunk * 5 + j).is_some_and(u8::is_ascii_uppercase) {
                    acc | (1 << j)
                } else {
                    acc
                }
            });
            CHECKSUM_ALPHABET[bits] as char
        })
        .collect()
}

/// A SOQL DateTime literal (`2026-11-26T10:00:00Z`): written unquoted, in UTC.
pub fn datetime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A SOQL string literal, quotes included, with every character SOQL treats specially
/// escaped.
// Source: Salesforce SOQL and SOSL Reference, "Quoted String Escape Sequences"
// (developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
// sforce_api_calls_soql_select_quotedstringescapes.htm): \n \r \t \b \f \" \' \\ and
// \uXXXX; "if you use a backslash character in any other context, an error occurs".
// Other control characters are written as \uXXXX so no raw control byte reaches the parser.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A parenthesised list of id literals for `IN`: `('a0B…','a0B…')`. Ids need no escaping
/// (a [`RecordId`] is alphanumeric by construction).
pub fn id_list(ids: &[RecordId]) -> String {
    let inner: Vec<String> = ids.iter().map(|id| format!("'{}'", id.as_str())).collect();
    format!("({})", inner.join(","))
}

#[cfg(test)]
mod tests;
