//! What a Lark token grant comes to before it is stored: lifetimes clamped to what is
//! believable (rule 17), the journal row of rotated tokens, whether the granted scope
//! covers the calendar, and the words a refused refresh is reported in. Pure.

use chrono::{DateTime, Utc};

use crate::ids::TrainerId;
use crate::lark::GrantFailure;
use crate::store::JournalledTokens;
use crate::tokens::trainer::EncryptedTokens;

/// Longest token lifetime believed from Lark. Lark's are hours (access) and days
/// (refresh); anything longer is a fault on the wire, and unclamped it could overflow the
/// date arithmetic (an `expires_in` near `i64::MAX` once panicked the process).
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 366 * 24 * 3600;

/// `now + seconds` for a lifetime Lark sent, clamped to `0..=MAX_TOKEN_LIFETIME_SECS`
/// (design §3 rule 17: absurd numbers from outside are clamped, never a panic). A
/// negative lifetime counts as already expired, so the next use refreshes.
pub(crate) fn expiry(now: DateTime<Utc>, seconds: i64, field: &str) -> DateTime<Utc> {
    let clamped = seconds.clamp(0, MAX_TOKEN_LIFETIME_SECS);
    if clamped != seconds {
        tracing::warn!(
            field,
            sent = seconds,
            used = clamped,
            "Lark sent an out-of-range token lifetime; clamped"
        );
    }
    now + chrono::Duration::seconds(clamped)
}

pub(crate) fn journal_row(
    trainer: &TrainerId,
    t: &EncryptedTokens,
    now: DateTime<Utc>,
    confirmed: bool,
) -> JournalledTokens {
    JournalledTokens {
        trainer_id: trainer.clone(),
        access_enc: t.access_enc.clone(),
        refresh_enc: t.refresh_enc.clone(),
        access_expires_at: t.access_expires_at,
        refresh_expires_at: t.refresh_expires_at,
        refreshed_at: now,
        confirmed,
    }
}

/// The metrics label of a refused refresh.
pub(crate) fn grant_outcome(kind: &GrantFailure) -> &'static str {
    match kind {
        GrantFailure::Expired => "expired",
        GrantFailure::Revoked => "revoked",
        GrantFailure::AlreadyUsed => "already_used",
        _ => "invalid",
    }
}

/// What the trainer and admins read in `Lark_Connection_Error__c`.
pub(crate) fn disconnect_reason(kind: &GrantFailure) -> String {
    let what = match kind {
        GrantFailure::Expired => "Lark access expired (the refresh token lapsed)",
        GrantFailure::Revoked => {
            "Lark access was revoked (the app was removed or the user signed out)"
        }
        GrantFailure::AlreadyUsed => "Lark refused an already-used refresh token",
        _ => "Lark rejected the stored refresh token",
    };
    format!("{what}. The trainer must reconnect using their connect link.")
}

/// True when a granted `scope` (space-separated) lacks one of the calendar scopes.
pub fn lacks_calendar_scopes(scope: &str) -> bool {
    crate::config::CALENDAR_SCOPES
        .iter()
        .any(|needed| !scope.split_whitespace().any(|g| g == *needed))
}

#[cfg(test)]
mod tests;
