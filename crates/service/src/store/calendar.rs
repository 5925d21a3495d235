//! (filled in by the calendar work)

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = "";
