//! `AppError`: the one error type HTTP handlers return. It shows the user a clear, safe
//! page and logs the whole chain inside the request span; nothing secret is in either.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::pages::page;

/// A failed request: what the user sees, and what the log gets.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    /// Short title of the page.
    pub title: &'static str,
    /// What happened, for the trainer.
    pub message: String,
    /// What to do next, for the trainer.
    pub hint: Option<String>,
    /// Machine-readable kind, used as the metrics label and in the log.
    pub kind: &'static str,
    /// The internal cause, logged only (must already be secret-free).
    pub cause: Option<String>,
}

impl AppError {
    /// A new error page.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        AppError {
            status,
            title,
            message: message.into(),
            hint: None,
            kind,
            cause: None,
        }
    }

    /// Adds advice for the trainer.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the internal cause for the log.
    pub fn cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                kind = self.kind,
                status = self.status.as_u16(),
                cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            );
        } else {
            tracing::warn!(
                kind = self.kind,
                status = self.status.as_u16(),
                cause = self.cause.as_deref().unwrap_or(""),
                "request refused"
            );
        }
        (
            self.status,
            Html(page(self.title, &self.message, self.hint.as_deref())),
        )
            .into_response()
    }
}
