//! `GET /oauth/lark/start` and `GET /oauth/lark/callback` (design §2.3): a trainer
//! connects their Lark account once. Every refusal is a clear page and stores nothing.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::error::AppError;
use super::pages::page;
use super::state::{self, StateError, STATE_COOKIE, STATE_TTL_SECS};
use super::HttpState;
use crate::lark::LarkError;
use crate::salesforce::soql::RecordId;
use crate::salesforce::SalesforceError;
use crate::store::{NonceUse, PendingAuth};
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::TokenError;

/// Query of `/oauth/lark/start`.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    trainer: Option<String>,
}

/// Query of `/oauth/lark/callback`.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

const START_AGAIN: &str =
    "Open your connect link again (from Salesforce or the Lark message) to start over.";

/// Starts a connection: checks the trainer, issues state + PKCE, redirects to Lark.
pub async fn start(
    State(app): State<HttpState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, AppError> {
    let raw = q.trainer.as_deref().map(str::trim).unwrap_or("");
    if raw.is_empty() {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "missing_trainer",
            "Link incomplete",
            "This connect link does not say which trainer it is for.",
        )
        .hint("Use the connect link shown on your trainer record in Salesforce."));
    }
    let trainer_id = RecordId::parse(raw).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed_trainer",
            "Link damaged",
            "The trainer id in this connect link is not a valid Salesforce record id.",
        )
        .hint("Copy the whole link from your trainer record in Salesforce and try again.")
    })?;
    let trainer = existing_trainer(
        app.tokens.trainer(&trainer_id).await,
        "No trainer with this id exists in Salesforce.",
    )?;
    if app.settings.security.require_email_match && trainer.email.is_none() {
        return Err(no_email());
    }

    let now = Utc::now().timestamp();
    let issued = state::issue(
        &app.settings.security.state_secret,
        trainer_id.as_str(),
        now,
    );
    let (verifier, challenge) = state::pkce_pair();
    app.store
        .save_pending_auth(
            &issued.nonce,
            &PendingAuth {
                trainer_id: trainer_id.to_string(),
                verifier_enc: app.vault.encrypt(&verifier),
                expires_at: issued.expires_at,
            },
            now,
        )
        .map_err(internal)?;
    let url = app.lark.authorize_url(
        &app.settings.server.redirect_uri(),
        &issued.state,
        &challenge,
    );
    tracing::info!(trainer = %trainer_id, "OAuth start: redirecting to Lark");
    let secure = if app.settings.server.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{STATE_COOKIE}={}; Path=/oauth/lark; Max-Age={STATE_TTL_SECS}; HttpOnly; SameSite=Lax{secure}",
        issued.nonce
    );
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(url.as_str()).map_err(internal)?,
    );
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

/// Finishes a connection: verifies state, exchanges the code, checks the email, saves.
pub async fn callback(
    State(app): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let result = callback_inner(&app, &headers, q).await;
    let outcome = match &result {
        Ok(_) => "connected",
        Err(e) => e.kind,
    };
    app.metrics.inc(
        crate::metrics::names::OAUTH_CONNECTIONS,
        &[("outcome", outcome)],
    );
    result
}

async fn callback_inner(
    app: &HttpState,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, AppError> {
    if let Some(error) = q.error.as_deref() {
        if error == "access_denied" {
            tracing::info!("OAuth callback: the trainer declined access");
            return Ok((
                StatusCode::OK,
                Html(page(
                    "Not connected",
                    "You chose not to give access to your Lark account, so nothing was changed.",
                    Some("Your remote training sessions need this to get a Lark meeting. If you change your mind, open your connect link again."),
                )),
            )
                .into_response());
        }
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "lark_error",
            "Lark did not connect",
            "Lark returned an error instead of an authorization.",
        )
        .hint(START_AGAIN)
        // Debug-quoted: the value is the caller's, and must not forge log lines.
        .cause(format!("error={error:?}")));
    }
    let (Some(code), Some(raw_state)) = (
        q.code.as_deref().filter(|c| !c.is_empty()),
        q.state.as_deref().filter(|s| !s.is_empty()),
    ) else {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "missing_parameters",
            "Link incomplete",
            "This page was opened without the code and state Lark sends back.",
        )
        .hint(START_AGAIN));
    };

    let now = Utc::now().timestamp();
    let verified = state::verify(&app.settings.security.state_secret, raw_state, now).map_err(
        |e| match e {
            StateError::Expired => AppError::new(
                StatusCode::BAD_REQUEST,
                "state_expired",
                "Link expired",
                "More than 10 minutes passed between opening the connect link and approving in Lark.",
            )
            .hint(START_AGAIN),
            StateError::Malformed | StateError::BadSignature => AppError::new(
                StatusCode::BAD_REQUEST,
                "state_invalid",
                "Link not valid",
                "This sign-in response was not issued by this service or was altered.",
            )
            .hint(START_AGAIN)
            .cause(e),
        },
    )?;
    let cookie = read_cookie(headers, STATE_COOKIE);
    if !state::cookie_matches(cookie.as_deref(), &verified.nonce) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "state_cookie_mismatch",
            "Different browser",
            "This sign-in was started in another browser, or your browser blocked the cookie that ties it to you.",
        )
        .hint("Open your connect link again in this browser and finish in the same window."));
    }
    let pending = match app
        .store
        .consume_nonce(&verified.nonce, now)
        .map_err(internal)?
    {
        NonceUse::Fresh(p) => p,
        NonceUse::AlreadyUsed => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "state_reused",
                "Link already used",
                "This sign-in response was already used once.",
            )
            .hint(START_AGAIN))
        }
        NonceUse::Unknown => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "state_unknown",
                "Link not valid",
                "This sign-in was not started by this service.",
            )
            .hint(START_AGAIN))
        }
    };
    if pending.trainer_id != verified.trainer_id {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "state_invalid",
            "Link not valid",
            "This sign-in response does not match the one that was started.",
        )
        .hint(START_AGAIN));
    }
    let trainer_id = RecordId::parse(&verified.trainer_id).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "state_invalid",
            "Link not valid",
            "This sign-in response names an invalid trainer.",
        )
    })?;
    let verifier = app.vault.decrypt(&pending.verifier_enc).map_err(internal)?;

    let redirect_uri = app.settings.server.redirect_uri();
    let grant = app
        .lark
        .exchange_code(code, &redirect_uri, &verifier)
        .await
        .map_err(|e| match e {
            LarkError::InvalidGrant { .. } | LarkError::InvalidParams { .. } => AppError::new(
                StatusCode::BAD_REQUEST,
                "code_rejected",
                "Lark refused the sign-in",
                "Lark did not accept the authorization code (it may have expired or been used already).",
            )
            .hint(START_AGAIN)
            .cause(e),
            other => AppError::new(
                StatusCode::BAD_GATEWAY,
                "lark_unavailable",
                "Lark unavailable",
                "Lark could not be reached to finish connecting your account.",
            )
            .hint("Please try again in a few minutes.")
            .cause(other),
        })?;
    let user = app.lark.user_info(&grant.access_token).await.map_err(|e| {
        AppError::new(
            StatusCode::BAD_GATEWAY,
            "lark_user_info_failed",
            "Lark unavailable",
            "Lark did not tell us which account you signed in with.",
        )
        .hint("Please try again in a few minutes.")
        .cause(e)
    })?;

    let trainer = existing_trainer(
        app.tokens.trainer(&trainer_id).await,
        "The trainer this link was for no longer exists in Salesforce.",
    )?;
    if app.settings.security.require_email_match {
        let Some(expected) = trainer.email.as_deref() else {
            return Err(no_email());
        };
        let matches = [user.email.as_deref(), user.enterprise_email.as_deref()]
            .into_iter()
            .flatten()
            .any(|e| e.trim().eq_ignore_ascii_case(expected.trim()));
        if !matches {
            let signed_in = user
                .email
                .as_deref()
                .or(user.enterprise_email.as_deref())
                .unwrap_or("an account without an email");
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "email_mismatch",
                "Wrong Lark account",
                format!(
                    "You signed in to Lark as {signed_in}, but this connect link is for the trainer with email {expected}."
                ),
            )
            .hint("Sign out of Lark, open your connect link again and sign in with your own work account."));
        }
    }

    app.tokens
        .connect(&trainer_id, &user.open_id, grant)
        .await
        .map_err(|e| match e {
            TokenError::Salesforce(sf) => AppError::new(
                StatusCode::BAD_GATEWAY,
                "salesforce_write_failed",
                "Not saved",
                "Salesforce refused to save your Lark connection, so nothing was changed.",
            )
            .hint("Please try again; if it keeps failing, tell your Salesforce admin.")
            .cause(sf),
            other => internal(other),
        })?;

    let name = trainer.name.as_deref().unwrap_or("Trainer");
    let account = user.name.as_deref().unwrap_or(&user.open_id);
    Ok((
        StatusCode::OK,
        Html(page(
            "Lark connected",
            &format!("{name}, your Lark account ({account}) is now connected. Your remote training sessions will get their Lark meetings automatically."),
            Some("You can close this page."),
        )),
    )
        .into_response())
}

/// The trainer a lookup found, or the page saying it could not be found or read.
fn existing_trainer(
    found: Result<Option<TrainerRecord>, SalesforceError>,
    not_found: &str,
) -> Result<TrainerRecord, AppError> {
    found
        .map_err(|e| salesforce_unavailable(e.to_string()))?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                "unknown_trainer",
                "Trainer not found",
                not_found,
            )
            .hint("Ask your Salesforce admin for your connect link.")
        })
}

fn no_email() -> AppError {
    AppError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "trainer_without_email",
        "Email missing",
        "Your trainer record in Salesforce has no email address, so your Lark account cannot be matched to it.",
    )
    .hint("Ask your Salesforce admin to add your work email to your trainer record, then open the link again.")
}

fn salesforce_unavailable(cause: String) -> AppError {
    AppError::new(
        StatusCode::BAD_GATEWAY,
        "salesforce_unavailable",
        "Salesforce unavailable",
        "Salesforce could not be reached to look up your trainer record.",
    )
    .hint("Please try again in a few minutes.")
    .cause(cause)
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Something went wrong",
        "The service hit an internal error; nothing was saved.",
    )
    .hint("Please try again; if it keeps failing, tell your Salesforce admin.")
    .cause(e)
}

/// A cookie's value from the `Cookie` header(s).
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}
