//! The one error type of the Lark client, and the classification of Lark's error codes
//! into the variants callers branch on.
//!
//! Nothing in here may hold a token, a secret or a request body: messages carry Lark's
//! own `msg`/`error_description` and codes only, and a raw response body is kept only
//! when it is not a token response.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;

use crate::retry::{RetryHint, Retryable};

/// Why Lark refused an authorization code or a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantFailure {
    /// 20026: the refresh token is not one Lark knows (or belongs to another app, 20024).
    Invalid,
    /// 20037: the refresh token has expired; the user must authorize again.
    Expired,
    /// 20064: the refresh token was revoked (the user removed the app's access).
    Revoked,
    /// 20073: the refresh token was already used once (they are single use).
    AlreadyUsed,
    /// The authorization code was refused: 20003 not found, 20004 expired, 20065 already
    /// used, 20049 PKCE verification failed, 20071 redirect_uri differs.
    CodeInvalid,
    /// The user can no longer use the app: 20008 user gone, 20010 no permission, 20066
    /// user status invalid; or an `invalid_grant` without a code we know.
    Other,
}

impl fmt::Display for GrantFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantFailure::Invalid => "refresh token invalid",
            GrantFailure::Expired => "refresh token expired",
            GrantFailure::Revoked => "access revoked",
            GrantFailure::AlreadyUsed => "refresh token already used",
            GrantFailure::CodeInvalid => "authorization code rejected",
            GrantFailure::Other => "authorization no longer valid",
        })
    }
}

/// Everything that can go wrong talking to Lark, in the shapes callers act on.
#[derive(Debug, thiserror::Error)]
pub enum LarkError {
    /// HTTP 429 (sometimes 400) with code 99991400; wait `retry_after`
    /// (from `x-ogw-ratelimit-reset`) before trying again.
    #[error("Lark rate limit hit; retry after {}s", .retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// The authorization code or refresh token was refused; the user must connect again
    /// (never retried: refresh tokens are single use).
    #[error("Lark refused the grant ({kind}, code {code}): {description}")]
    InvalidGrant {
        code: i64,
        kind: GrantFailure,
        description: String,
    },
    /// 99991668 (invalid) / 99991677 (expired) user access token: refresh once and retry.
    #[error("Lark user access token rejected (code {code})")]
    UserTokenInvalid { code: i64 },
    /// 121004: the reservation does not exist (or was deleted); 191000 calendar or 193001
    /// event not found, 193003 event already deleted.
    #[error("Lark: not found (code {code}): {msg}")]
    NotFound { code: i64, msg: String },
    /// 121005, calendar 191002 (no access to the calendar) and 193002 (no permission on the
    /// event), scope errors 99991672/99991676/99991679, bot availability 230013 and bot
    /// outside the group 230002, app
    /// configuration errors on the token endpoints (20002, 20009, 20048, 20069, 20074).
    #[error("Lark: permission denied (code {code}): {msg}")]
    PermissionDenied { code: i64, msg: String },
    /// 121003, 99992402 and any other 4xx refusal we do not classify more finely.
    #[error("Lark: invalid request (code {code}): {msg}")]
    InvalidParams { code: i64, msg: String },
    /// Lark says "try again": 20050, 20072, 121001, an app/tenant token that went stale.
    #[error("Lark: temporary failure (code {code}): {msg}")]
    Retryable { code: i64, msg: String },
    /// HTTP 5xx.
    #[error("Lark server error (HTTP {status}, code {code:?}): {msg}")]
    Server {
        status: u16,
        code: Option<i64>,
        msg: String,
    },
    /// A response that does not parse; `body` is the raw text (truncated), or a byte count
    /// when the response could have carried a token.
    #[error("unexpected Lark response (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    /// The request did not complete (connection refused, reset, TLS...).
    #[error("Lark transport error: {0}")]
    Transport(String),
    /// The request took longer than the per-attempt timeout.
    #[error("Lark request timed out")]
    Timeout,
}

impl Retryable for LarkError {
    fn retry_hint(&self) -> RetryHint {
        match self {
            LarkError::RateLimited { retry_after } => RetryHint::After(*retry_after),
            LarkError::Retryable { .. }
            | LarkError::Server { .. }
            | LarkError::Transport(_)
            | LarkError::Timeout => RetryHint::Backoff,
            LarkError::InvalidGrant { .. }
            | LarkError::UserTokenInvalid { .. }
            | LarkError::NotFound { .. }
            | LarkError::PermissionDenied { .. }
            | LarkError::InvalidParams { .. }
            | LarkError::Unexpected { .. } => RetryHint::Never,
        }
    }

    fn timed_out(_after: Duration) -> Self {
        LarkError::Timeout
    }
}

impl LarkError {
    /// The Lark error code, when Lark sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            LarkError::InvalidGrant { code, .. }
            | LarkError::UserTokenInvalid { code }
            | LarkError::NotFound { code, .. }
            | LarkError::PermissionDenied { code, .. }
            | LarkError::InvalidParams { code, .. }
            | LarkError::Retryable { code, .. } => Some(*code),
            LarkError::RateLimited { .. } => Some(CODE_RATE_LIMITED),
            LarkError::Server { code, .. } => *code,
            LarkError::Unexpected { .. } | LarkError::Transport(_) | LarkError::Timeout => None,
        }
    }

    /// 121005 ([`CODE_VC_NO_PERMISSION`]): Lark will not show this meeting or reservation
    /// to this caller. For a meeting asked for with the app's token: ask again with its
    /// owner's user token (rule 29).
    pub fn is_vc_no_permission(&self) -> bool {
        matches!(
            self,
            LarkError::PermissionDenied { code, .. } if *code == CODE_VC_NO_PERMISSION
        )
    }
}

// Codes, from Lark's documentation of each endpoint and its generic server error codes:
// open.feishu.cn/document/authentication-management/access-token/get-user-access-token and
// .../refresh-user-access-token (the 20xxx table, with HTTP status per code),
// open.feishu.cn/document/server-docs/im-v1/message/create (230xxx), the VC reserve pages
// (121xxx, as listed in design §4).

/// Rate limit (frequency control), any endpoint.
pub const CODE_RATE_LIMITED: i64 = 99991400;
/// User access token invalid (also what a revoked user's tokens return).
pub const CODE_USER_TOKEN_INVALID: i64 = 99991668;
/// User access token expired.
pub const CODE_USER_TOKEN_EXPIRED: i64 = 99991677;
/// Tenant access token invalid.
pub const CODE_TENANT_TOKEN_INVALID: i64 = 99991663;
/// App access token invalid.
pub const CODE_APP_TOKEN_INVALID: i64 = 99991664;
/// No access token in the request.
pub const CODE_TOKEN_MISSING: i64 = 99991661;
/// Request body failed field validation.
pub const CODE_FIELD_VALIDATION: i64 = 99992402;
/// App lacks a scope.
pub const CODE_APP_SCOPE_MISSING: i64 = 99991672;
/// User token lacks a scope.
pub const CODE_USER_SCOPE_MISSING: i64 = 99991679;
/// VC: internal error.
pub const CODE_VC_INTERNAL: i64 = 121001;
/// VC: parameter error.
pub const CODE_VC_PARAM: i64 = 121003;
/// VC: data not found.
pub const CODE_VC_NOT_FOUND: i64 = 121004;
/// VC: no permission.
pub const CODE_VC_NO_PERMISSION: i64 = 121005;
/// IM: the bot cannot reach this user (not in its availability, unknown, or left).
pub const CODE_IM_NO_AVAILABILITY: i64 = 230013;
/// IM: receive_id invalid.
pub const CODE_IM_RECEIVE_ID_INVALID: i64 = 230034;
/// IM: invalid message content.
pub const CODE_IM_INVALID_CONTENT: i64 = 230001;
/// IM: the bot is not in the group chat.
pub const CODE_IM_BOT_NOT_IN_CHAT: i64 = 230002;

// Calendar v4 codes, from the 错误码 tables of the calendar and event pages
// (open.feishu.cn/document/server-docs/calendar-v4/calendar-event/create and siblings).

/// Calendar: invalid parameters (400).
pub const CODE_CALENDAR_INVALID_PARAMS: i64 = 190002;
/// Calendar: internal service error (500).
pub const CODE_CALENDAR_INTERNAL: i64 = 190003;
/// Calendar: method rate limited (429).
pub const CODE_CALENDAR_METHOD_RATE_LIMITED: i64 = 190004;
/// Calendar: app rate limited (429).
pub const CODE_CALENDAR_APP_RATE_LIMITED: i64 = 190005;
/// Calendar: current operation rate limited (429, contention on a shared resource).
pub const CODE_CALENDAR_OPERATION_RATE_LIMITED: i64 = 190010;
/// Calendar: calendar not found (404).
pub const CODE_CALENDAR_NOT_FOUND: i64 = 191000;
/// Calendar: the identity has no access role on the calendar (403).
pub const CODE_CALENDAR_NO_ACCESS: i64 = 191002;
/// Calendar: event not found (404).
pub const CODE_EVENT_NOT_FOUND: i64 = 193001;
/// Calendar: no permission to operate the event (403).
pub const CODE_EVENT_NO_PERMISSION: i64 = 193002;
/// Calendar: the event is deleted (403). Classified as not found: for a caller it is gone.
pub const CODE_EVENT_DELETED: i64 = 193003;

/// Which kind of endpoint produced an error: the 20xxx codes mean "grant refused" only
/// on the user-token endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorContext {
    /// `/authen/v2/oauth/token` and `/authen/v1/oidc/*`.
    Grant,
    /// Everything else.
    Api,
}

/// Turns Lark's answer (status, code, message, rate-limit header) into a [`LarkError`].
pub(crate) fn classify(
    ctx: ErrorContext,
    status: u16,
    code: Option<i64>,
    msg: String,
    oauth_error: Option<&str>,
    retry_after: Option<Duration>,
) -> LarkError {
    if matches!(
        code,
        Some(
            CODE_RATE_LIMITED
                | CODE_CALENDAR_METHOD_RATE_LIMITED
                | CODE_CALENDAR_APP_RATE_LIMITED
                | CODE_CALENDAR_OPERATION_RATE_LIMITED
        )
    ) || status == 429
    {
        return LarkError::RateLimited {
            retry_after: retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
        };
    }
    if ctx == ErrorContext::Grant {
        if let Some(err) = classify_grant(code, &msg, oauth_error) {
            return err;
        }
    }
    match code {
        Some(c @ (CODE_USER_TOKEN_INVALID | CODE_USER_TOKEN_EXPIRED)) => {
            LarkError::UserTokenInvalid { code: c }
        }
        Some(
            c @ (CODE_VC_NOT_FOUND
            | CODE_CALENDAR_NOT_FOUND
            | CODE_EVENT_NOT_FOUND
            | CODE_EVENT_DELETED),
        ) => LarkError::NotFound { code: c, msg },
        Some(
            c @ (CODE_VC_NO_PERMISSION
            | CODE_APP_SCOPE_MISSING
            | 99991676
            | CODE_USER_SCOPE_MISSING
            | CODE_IM_NO_AVAILABILITY
            | CODE_IM_BOT_NOT_IN_CHAT
            | CODE_CALENDAR_NO_ACCESS
            | CODE_EVENT_NO_PERMISSION
            | 230027
            | 230035
            | 230053),
        ) => LarkError::PermissionDenied { code: c, msg },
        Some(
            c @ (CODE_VC_INTERNAL
            | CODE_CALENDAR_INTERNAL
            | CODE_TENANT_TOKEN_INVALID
            | CODE_APP_TOKEN_INVALID),
        ) => LarkError::Retryable { code: c, msg },
        Some(c) if status >= 500 => LarkError::Server {
            status,
            code: Some(c),
            msg,
        },
        Some(c) if c != 0 => LarkError::InvalidParams { code: c, msg },
        _ if status >= 500 => LarkError::Server {
            status,
            code: None,
            msg,
        },
        _ => LarkError::Unexpected {
            status,
            body: truncate(&msg),
        },
    }
}

/// Error codes of `/authen/v2/oauth/token` and the v1 OIDC endpoints (the same table).
fn classify_grant(code: Option<i64>, msg: &str, oauth_error: Option<&str>) -> Option<LarkError> {
    let description = msg.to_string();
    let grant = |code: i64, kind| LarkError::InvalidGrant {
        code,
        kind,
        description: description.clone(),
    };
    Some(match code {
        Some(c @ (20026 | 20024)) => grant(c, GrantFailure::Invalid),
        Some(c @ 20037) => grant(c, GrantFailure::Expired),
        Some(c @ 20064) => grant(c, GrantFailure::Revoked),
        Some(c @ 20073) => grant(c, GrantFailure::AlreadyUsed),
        Some(c @ (20003 | 20004 | 20065 | 20049 | 20071)) => grant(c, GrantFailure::CodeInvalid),
        Some(c @ (20008 | 20010 | 20066)) => grant(c, GrantFailure::Other),
        Some(c @ (20050 | 20072)) => LarkError::Retryable {
            code: c,
            msg: description,
        },
        // The app itself is misconfigured: not the trainer's doing, so not a refused grant.
        Some(c @ (20002 | 20009 | 20048 | 20069 | 20070 | 20074)) => LarkError::PermissionDenied {
            code: c,
            msg: description,
        },
        Some(c @ (20001 | 20036 | 20063 | 20067 | 20068)) => LarkError::InvalidParams {
            code: c,
            msg: description,
        },
        None if oauth_error == Some("invalid_grant") => grant(0, GrantFailure::Other),
        _ => return None,
    })
}

/// Wait used when Lark rate-limits without saying for how long.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Longest wait taken from `x-ogw-ratelimit-reset`. Lark's limits are per second and per
/// minute (design §4: apply 50/s and 1000/min per app), so an honest reset is never more
/// than a minute away; a larger or absurd value must not stall us (design §3 rule 18).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// `x-ogw-ratelimit-reset` (seconds, possibly fractional) as a wait capped at
/// [`MAX_RATE_LIMIT_WAIT`]; `None` when it is not a number. Never panics, whatever the
/// header says (a huge number would overflow `Duration::from_secs_f64`).
pub(crate) fn rate_limit_reset(header: &str) -> Option<Duration> {
    let seconds = header.trim().parse::<f64>().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        seconds.min(MAX_RATE_LIMIT_WAIT.as_secs_f64()),
    ))
}

/// Longest raw body kept in an error.
const MAX_ERROR_BODY: usize = 512;

/// Cuts text to [`MAX_ERROR_BODY`] bytes on a character boundary.
pub(crate) fn truncate(text: &str) -> String {
    if text.len() <= MAX_ERROR_BODY {
        return text.to_string();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Deserializes an integer Lark may send as a number or as a string (`"0"`, `"20037"`,
/// `"7200"`); `null` and absence become `None`. A visitor rather than an untagged enum:
/// that buffered every value and built (and dropped) an error for each form it tried,
/// two of them for every apply's `end_time` string.
pub(crate) fn lenient_i64<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(LenientI64)
}

struct LenientI64;

impl<'de> serde::de::Visitor<'de> for LenientI64 {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a numeric string")
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Some(n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        i64::try_from(n)
            .map(Some)
            .map_err(|_| E::custom(format!("{n} is too large")))
    }

    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Self::Value, E> {
        if f.fract() == 0.0 && f.abs() < i64::MAX as f64 {
            Ok(Some(f as i64))
        } else {
            Err(E::custom(format!("expected an integer, got {f}")))
        }
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| E::custom("expected an integer or a numeric string"))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LenientI64)
    }
}

#[cfg(test)]
mod tests;
