//! How the store's columns hold typed values: record ids as their 18-character text, and
//! instants as integers in the unit each column's table names (seconds or milliseconds
//! since the Unix epoch). Values are converted here, where they cross into SQL, so no
//! signature of the store carries a bare number of seconds or a bare id string.
//!
//! A value read back has the column's precision: an instant stored in seconds comes back
//! in whole seconds. Callers that compare a value they hold with one read back compare in
//! SQL (both sides converted alike), never in Rust.

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::ids::{BookingId, TrainerId};

macro_rules! id_column {
    ($name:ident) => {
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

id_column!(BookingId);
id_column!(TrainerId);

/// An instant as whole seconds since the epoch.
pub(super) fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Whole seconds since the epoch as an instant; a value out of chrono's range (never
/// written by us) reads as the nearest end of it.
pub(super) fn at_secs(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(value, 0).unwrap_or(if value < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// An instant as milliseconds since the epoch.
pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Milliseconds since the epoch as an instant (clamped as [`at_secs`]).
pub(super) fn at_millis(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(value).unwrap_or(if value < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}
