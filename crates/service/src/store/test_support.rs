//! Typed values for the store's tests: ids and instants that read like the literals they
//! replace.

use chrono::{DateTime, Utc};

use crate::ids::{BookingId, TrainerId};

/// Booking number `n` (a valid 18-character id).
pub fn b(n: u32) -> BookingId {
    BookingId::parse(&format!("a0B{n:012}")).expect("valid id")
}

/// Trainer number `n` (a valid 18-character id).
pub fn t(n: u32) -> TrainerId {
    TrainerId::parse(&format!("a0T{n:012}")).expect("valid id")
}

/// `secs` seconds after the epoch.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("in range")
}

/// `ms` milliseconds after the epoch.
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("in range")
}
