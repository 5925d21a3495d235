//! The one error type of the Salesforce client: the variants callers branch on, built
//! from Salesforce's JSON error bodies, and their retry classification.
//!
//! No variant ever carries a secret: login failures keep only Salesforce's `error` and
//! `error_description` (never the request body), and a token response body is never
//! copied into an error.

use std::time::Duration;

use crate::retry::{RetryHint, Retryable};

/// Longest response body kept in an error (an HTML error page can be large).
const MAX_ERROR_BODY: usize = 2_000;

/// Everything that can go wrong talking to Salesforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalesforceError {
    /// Login refused (`invalid_client`, `invalid_grant`, …) or the local credentials
    /// could not be used (unreadable key file). `reason` never contains a secret.
    #[error("Salesforce login failed: {reason}")]
    Auth {
        /// `error: error_description` from Salesforce, or what failed locally.
        reason: String,
    },
    /// `INVALID_SESSION_ID` again after the one re-login the client allows itself.
    #[error("Salesforce rejected the session even after logging in again (INVALID_SESSION_ID)")]
    Unauthorized,
    /// `REQUEST_LIMIT_EXCEEDED` (403): the org's API budget is spent; retrying burns more.
    #[error("Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED)")]
    RequestLimitExceeded,
    /// 404 `NOT_FOUND`, or a record that does not exist.
    #[error("Salesforce: not found: {message}")]
    NotFound {
        /// Salesforce's message.
        message: String,
    },
    /// A 4xx with a Salesforce error code: `MALFORMED_QUERY`, `INVALID_FIELD`,
    /// `INVALID_TYPE`, `STRING_TOO_LONG`, `FIELD_CUSTOM_VALIDATION_EXCEPTION`, …
    #[error("Salesforce refused the request: {error_code}: {message}")]
    BadRequest {
        /// Salesforce's `errorCode`.
        error_code: String,
        /// Salesforce's `message`.
        message: String,
    },
    /// A 5xx answer (retried with backoff).
    #[error("Salesforce server error {status}: {body}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Response body, truncated.
        body: String,
    },
    /// Any answer the client does not understand; the raw (truncated) body is kept.
    #[error("unexpected Salesforce response {status}: {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// Response body, truncated (withheld for token responses).
        body: String,
    },
    /// The request never got an answer (connection refused, reset, DNS…).
    #[error("could not reach Salesforce: {0}")]
    Transport(String),
    /// No answer within the time allowed.
    #[error("Salesforce did not answer in time")]
    Timeout,
    /// The caller passed something that cannot be sent (bad object or field name…).
    #[error("invalid Salesforce request: {0}")]
    InvalidInput(String),
}

impl SalesforceError {
    /// The Salesforce error code, when the error carries one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            SalesforceError::BadRequest { error_code, .. } => Some(error_code),
            SalesforceError::Unauthorized => Some("INVALID_SESSION_ID"),
            SalesforceError::RequestLimitExceeded => Some("REQUEST_LIMIT_EXCEEDED"),
            SalesforceError::NotFound { .. } => Some("NOT_FOUND"),
            _ => None,
        }
    }

    /// Turns a reqwest failure into `Timeout` or `Transport`. The URL is left out: for
    /// queries it carries the SOQL, which can hold trainers' emails. The source chain
    /// says what actually failed ("Connection refused").
    pub(crate) fn from_reqwest(err: reqwest::Error) -> SalesforceError {
        if err.is_timeout() {
            return SalesforceError::Timeout;
        }
        let err = err.without_url();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        SalesforceError::Transport(text)
    }

    /// Classifies a non-success REST answer. Salesforce sends errors as a JSON array
    /// `[{"message": "...", "errorCode": "...", "fields": [...]}]` (REST API Developer
    /// Guide, "Status Codes and Error Responses").
    pub(crate) fn from_rest_response(status: u16, body: &[u8]) -> SalesforceError {
        let text = String::from_utf8_lossy(body);
        let first = serde_json::from_slice::<Vec<RestErrorBody>>(body)
            .ok()
            .and_then(|v| v.into_iter().next());
        if status >= 500 {
            return SalesforceError::Server {
                status,
                body: truncate(&text),
            };
        }
        match (status, first) {
            (401, _) => SalesforceError::Unauthorized,
            (403, Some(e)) if e.error_code == "REQUEST_LIMIT_EXCEEDED" => {
                SalesforceError::RequestLimitExceeded
            }
            (404, Some(e)) => SalesforceError::NotFound { message: e.message },
            (404, None) => SalesforceError::NotFound {
                message: truncate(&text),
            },
            (400..=499, Some(e)) => SalesforceError::BadRequest {
                error_code: e.error_code,
                message: e.message,
            },
            _ => SalesforceError::Unexpected {
                status,
                body: truncate(&text),
            },
        }
    }
}

impl Retryable for SalesforceError {
    fn retry_hint(&self) -> RetryHint {
        match self {
            SalesforceError::Server { .. }
            | SalesforceError::Transport(_)
            | SalesforceError::Timeout => RetryHint::Backoff,
            // 4xx, login refusals, an exhausted API budget and a session that stays
            // invalid after re-login do not get better by asking again.
            _ => RetryHint::Never,
        }
    }

    fn timed_out(_after: Duration) -> Self {
        SalesforceError::Timeout
    }
}

/// One element of Salesforce's REST error array.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RestErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
}

/// Keeps at most [`MAX_ERROR_BODY`] characters of a body.
pub(crate) fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_BODY {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX_ERROR_BODY).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests;
