//! (filled in by the alerts work)

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = "";
