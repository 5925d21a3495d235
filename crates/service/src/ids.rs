//! Typed ids, at the bottom of the crate so that every layer — the store, the metrics, the
//! clients and the pipeline — speaks them: a validated Salesforce [`RecordId`] (safe in SOQL
//! and URLs), the [`BookingId`] and [`TrainerId`] that also say *which* record they name (a
//! booking id cannot be passed where a trainer id is meant), and the Streaming API's
//! [`ReplayId`]. Ids are parsed once, where they enter (a query row, a stream event, an
//! HTTP query, a command-line argument, a store row), and carried typed from there.
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

macro_rules! record_id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(RecordId);

        impl $name {
            /// Parses and validates an id (15 or 18 characters, checksum checked).
            pub fn parse(s: &str) -> Result<$name, InvalidRecordId> {
                RecordId::parse(s).map($name)
            }

            /// The 18-character id.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The validated record id, for the Salesforce client.
            pub fn record_id(&self) -> &RecordId {
                &self.0
            }
        }

        impl From<RecordId> for $name {
            fn from(id: RecordId) -> $name {
                $name(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

record_id_newtype!(
    /// A booking (`salesforce.booking.object`) record id.
    BookingId
);
record_id_newtype!(
    /// A trainer (`salesforce.trainer.object`) record id.
    TrainerId
);

/// Where a Streaming API subscription starts (design §4): the wire's `-1` and `-2`, or
/// right after a replay id whose work is done.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReplayId {
    /// Only events published from now on (`-1`).
    Latest,
    /// Every event still retained (`-2`; 72 hours for change events).
    Earliest,
    /// Right after this event.
    After(i64),
}

impl ReplayId {
    /// The value Bayeux's `ext.replay` carries.
    pub fn wire(self) -> i64 {
        match self {
            ReplayId::Latest => -1,
            ReplayId::Earliest => -2,
            ReplayId::After(id) => id,
        }
    }

    /// Reads the wire value back: `-1` and `-2` are the two positions, anything else an id.
    pub fn from_wire(value: i64) -> ReplayId {
        match value {
            -1 => ReplayId::Latest,
            -2 => ReplayId::Earliest,
            id => ReplayId::After(id),
        }
    }
}

impl fmt::Display for ReplayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayId::Latest => f.write_str("latest (-1)"),
            ReplayId::Earliest => f.write_str("earliest (-2)"),
            ReplayId::After(id) => write!(f, "{id}"),
        }
    }
}

#[cfg(test)]
mod tests;
