//! `GET /oauth/lark/start` and `GET /oauth/lark/callback` (design §2.3): translate HTTP to
//! the token layer's [`ConnectFlow`] and back. Every refusal is a page from the one table
//! in [`refusal_page`]; the flow itself stores nothing for any of them.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::error::AppError;
use super::pages::page;
use crate::metrics::{names, Metrics};
use crate::tokens::connect::state::STATE_COOKIE;
use crate::tokens::connect::{Begun, CallbackParams, Connected};
use crate::tokens::{AuthCode, ConnectError, ConnectFlow, OAuthState};

/// State of the OAuth routes.
#[derive(Clone)]
pub struct OAuthRoutes {
    pub flow: ConnectFlow,
    pub metrics: Metrics,
    /// Cookies get `Secure` when the public URL is https.
    pub secure_cookie: bool,
    /// Owner of the callback's connect task.
    pub tasks: crate::tasks::Tasks,
}

/// Query of `/oauth/lark/start`.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    trainer: Option<String>,
}

/// Query of `/oauth/lark/callback`. The code and the state are secrets from here on.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

const START_AGAIN: &str =
    "Open your connect link again (from Salesforce or the Lark message) to start over.";
const TRY_LATER: &str = "Please try again in a few minutes.";
const TELL_ADMIN: &str = "Please try again; if it keeps failing, tell your Salesforce admin.";

/// How long a browser refused for too many sign-ins in progress is asked to wait
/// (`Retry-After`, seconds): flows expire ten minutes after they start, so some room
/// comes back within minutes.
const BUSY_RETRY_AFTER_SECS: u32 = 120;

/// Starts a connection: checks the trainer, issues state + PKCE, redirects to Lark. The
/// browser's binding cookie from an earlier start, if it sends one, names the flow this
/// one replaces.
pub async fn start(
    State(routes): State<OAuthRoutes>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Result<Response, AppError> {
    let previous = read_cookie(&headers, STATE_COOKIE);
    let begun = match routes
        .flow
        .begin(q.trainer.as_deref(), previous.as_deref())
        .await
    {
        Ok(begun) => begun,
        Err(e @ ConnectError::Busy) => {
            let mut page = refusal_page(&e).into_response();
            page.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_SECS));
            return Ok(page);
        }
        Err(e) => return Err(refusal_page(&e)),
    };
    redirect_to_lark(&begun, routes.secure_cookie).map_err(|e| refusal_page(&e))
}

/// Finishes a connection: verifies state, exchanges the code, checks the account, saves.
pub async fn callback(
    State(routes): State<OAuthRoutes>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let params = CallbackParams {
        code: q.code.map(AuthCode::new),
        state: q.state.map(OAuthState::new),
        error: q.error,
    };
    let cookie = read_cookie(&headers, STATE_COOKIE);
    // In a task of its own: a request cut off by the timeout (or a client that went away)
    // must not abandon a connection half saved — the code is spent by then.
    let flow = routes.flow.clone();
    let finished = routes
        .tasks
        .spawn("oauth callback", async move {
            flow.finish(params, cookie.as_deref()).await
        })
        .await
        .unwrap_or_else(|e| Err(ConnectError::Internal(format!("connect task failed: {e}"))));
    let (outcome, answer) = match finished {
        Ok(connected) => ("connected", Ok(connected_page(&connected))),
        Err(ConnectError::Declined) => ("declined", Ok(declined_page())),
        Err(e) => {
            let page = refusal_page(&e);
            (page.kind, Err(page))
        }
    };
    routes
        .metrics
        .inc(names::OAUTH_CONNECTIONS, &[("outcome", outcome)]);
    answer
}

fn redirect_to_lark(begun: &Begun, secure: bool) -> Result<Response, ConnectError> {
    let cookie = cookie::Cookie::build((STATE_COOKIE, begun.cookie_value.as_str()))
        .path("/oauth/lark")
        .max_age(cookie::time::Duration::seconds(begun.max_age_secs))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(secure)
        .build()
        .to_string();
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    let internal =
        |e: axum::http::header::InvalidHeaderValue| ConnectError::Internal(e.to_string());
    headers.insert(
        LOCATION,
        HeaderValue::from_str(begun.authorize_url.as_str()).map_err(internal)?,
    );
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

fn connected_page(c: &Connected) -> Response {
    let name = c.trainer_name.as_deref().unwrap_or("Trainer");
    (
        StatusCode::OK,
        Html(page(
            "Lark connected",
            &format!("{name}, your Lark account ({}) is now connected. Your remote training sessions will get their Lark meetings automatically.", c.account),
            Some("You can close this page."),
        )),
    )
        .into_response()
}

fn declined_page() -> Response {
    (
        StatusCode::OK,
        Html(page(
            "Not connected",
            "You chose not to give access to your Lark account, so nothing was changed.",
            Some("Your remote training sessions need this to get a Lark meeting. If you change your mind, open your connect link again."),
        )),
    )
        .into_response()
}

/// The one table from a connect refusal to what the trainer sees: status, metrics kind,
/// title, message and what to do next. The error itself goes to the log as the cause.
/// (Kept as a table by hand: one row per refusal reads better than rustfmt's layout.)
#[rustfmt::skip]
fn refusal_page(e: &ConnectError) -> AppError {
    use ConnectError as E;
    use StatusCode as S;
    let (status, kind, title, message, hint): (S, &'static str, &'static str, String, Option<&str>) = match e {
        E::MissingTrainer => (S::BAD_REQUEST, "missing_trainer", "Link incomplete",
            "This connect link does not say which trainer it is for.".into(),
            Some("Use the connect link shown on your trainer record in Salesforce.")),
        E::MalformedTrainer => (S::BAD_REQUEST, "malformed_trainer", "Link damaged",
            "The trainer id in this connect link is not a valid Salesforce record id.".into(),
            Some("Copy the whole link from your trainer record in Salesforce and try again.")),
        E::UnknownTrainer => (S::NOT_FOUND, "unknown_trainer", "Trainer not found",
            "No trainer with this id exists in Salesforce.".into(),
            Some("Ask your Salesforce admin for your connect link.")),
        E::TrainerGone => (S::NOT_FOUND, "unknown_trainer", "Trainer not found",
            "The trainer this link was for no longer exists in Salesforce.".into(),
            Some("Ask your Salesforce admin for your connect link.")),
        E::TrainerWithoutEmail => (S::UNPROCESSABLE_ENTITY, "trainer_without_email", "Email missing",
            "Your trainer record in Salesforce has no email address, so your Lark account cannot be matched to it.".into(),
            Some("Ask your Salesforce admin to add your work email to your trainer record, then open the link again.")),
        E::SalesforceUnavailable(_) => (S::BAD_GATEWAY, "salesforce_unavailable", "Salesforce unavailable",
            "Salesforce could not be reached to look up your trainer record.".into(),
            Some(TRY_LATER)),
        E::Declined => (S::OK, "declined", "Not connected",
            "You chose not to give access to your Lark account, so nothing was changed.".into(),
            None),
        E::LarkRefused(_) => (S::BAD_REQUEST, "lark_error", "Lark did not connect",
            "Lark returned an error instead of an authorization.".into(),
            Some(START_AGAIN)),
        E::MissingParameters => (S::BAD_REQUEST, "missing_parameters", "Link incomplete",
            "This page was opened without the code and state Lark sends back.".into(),
            Some(START_AGAIN)),
        E::StateExpired => (S::BAD_REQUEST, "state_expired", "Link expired",
            "More than 10 minutes passed between opening the connect link and approving in Lark.".into(),
            Some(START_AGAIN)),
        E::StateForged(_) => (S::BAD_REQUEST, "state_invalid", "Link not valid",
            "This sign-in response was not issued by this service or was altered.".into(),
            Some(START_AGAIN)),
        E::StateMismatch => (S::BAD_REQUEST, "state_invalid", "Link not valid",
            "This sign-in response does not match the one that was started.".into(),
            Some(START_AGAIN)),
        E::CookieMismatch => (S::BAD_REQUEST, "state_cookie_mismatch", "Different browser",
            "This sign-in was started in another browser, or your browser blocked the cookie that ties it to you.".into(),
            Some("Open your connect link again in this browser and finish in the same window.")),
        E::StateReused => (S::BAD_REQUEST, "state_reused", "Link already used",
            "This sign-in response was already used once.".into(),
            Some(START_AGAIN)),
        E::StateUnknown => (S::BAD_REQUEST, "state_unknown", "Link not valid",
            "This sign-in was not started by this service.".into(),
            Some(START_AGAIN)),
        E::CodeRejected(_) => (S::BAD_REQUEST, "code_rejected", "Lark refused the sign-in",
            "Lark did not accept the authorization code (it may have expired or been used already).".into(),
            Some(START_AGAIN)),
        E::LarkUnavailable(_) => (S::BAD_GATEWAY, "lark_unavailable", "Lark unavailable",
            "Lark could not be reached to finish connecting your account.".into(),
            Some(TRY_LATER)),
        E::UserInfoFailed(_) => (S::BAD_GATEWAY, "lark_user_info_failed", "Lark unavailable",
            "Lark did not tell us which account you signed in with.".into(),
            Some(TRY_LATER)),
        E::EmailMismatch { signed_in, expected_masked } => (S::FORBIDDEN, "email_mismatch", "Wrong Lark account",
            format!("You signed in to Lark as {signed_in}, but this connect link is for the trainer with email {expected_masked}."),
            Some("Sign out of Lark, open your connect link again and sign in with your own work account.")),
        E::MissingScopes(missing) => (S::FORBIDDEN, "scopes_missing", "Permissions missing",
            format!("Not connected: you did not grant {}, which the service needs to {}.",
                missing.join(" and "), scope_purposes(missing)),
            Some("Open your connect link again and leave every requested permission ticked on Lark's page.")),
        E::WrongTenant => (S::FORBIDDEN, "wrong_tenant", "Wrong organisation",
            "You signed in with a Lark account of another organisation than this company's.".into(),
            Some("Sign out of Lark, open your connect link again and sign in with your work account.")),
        E::Busy => (S::SERVICE_UNAVAILABLE, "busy", "Too many sign-ins",
            "Too many sign-ins are in progress right now, so this one was not started; nothing was recorded.".into(),
            Some(TRY_LATER)),
        E::SaveFailed(_) => (S::BAD_GATEWAY, "salesforce_write_failed", "Not saved",
            "Salesforce refused to save your Lark connection, so nothing was changed.".into(),
            Some(TELL_ADMIN)),
        E::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Something went wrong",
            "The service hit an internal error; nothing was saved.".into(),
            Some(TELL_ADMIN)),
    };
    let mut page = AppError::new(status, kind, title, message).cause(e);
    if let Some(hint) = hint {
        page = page.hint(hint);
    }
    page
}

/// What each required scope is for, in the words of the missing-permission page.
fn scope_purposes(missing: &[String]) -> String {
    let purposes: Vec<&str> = missing
        .iter()
        .map(|s| match s.as_str() {
            "vc:reserve" => "reserve your Lark meetings",
            "offline_access" => "keep your connection working without asking you again",
            _ => "do its work",
        })
        .collect();
    purposes.join(" and ")
}

/// A cookie's value from the `Cookie` header(s), parsed by the `cookie` crate.
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}
