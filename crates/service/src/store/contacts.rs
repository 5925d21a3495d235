//! (filled in by the contacts work)

/// Tables of this file, applied idempotently at open.
pub(super) const SCHEMA: &str = "";
