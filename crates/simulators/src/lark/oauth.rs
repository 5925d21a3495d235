//! Simulated token endpoints: app/tenant tokens, the authorize page, the v2 token
//! endpoint, the v1 OIDC endpoints and `user_info`.
//!
//! Error codes and messages follow Lark's docs for "get user_access_token" and "refresh
//! user_access_token" (v2): HTTP 400 `{code, error, error_description}`, 500 for 20050,
//! 503 for 20072. The v1 OIDC endpoints answer `{code, msg}` with the same codes.
//! Sources: open.feishu.cn/document/authentication-management/access-token/
//! get-user-access-token and refresh-user-access-token (codes, messages, "refresh_token
//! 仅能被使用一次", refresh_token only with `offline_access`, v2 refreshes only v2 tokens),
//! obtain-oauth-code (codes live 5 minutes, single use), tenant_access_token_internal
//! (the 30-minute reuse rule).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::time::Instant;

use super::{
    bearer, check_app_credentials, json_response, lark_error, lark_ok, Shared, State as SimState,
    CODE_LIFETIME,
};
use crate::{LARK_APP_ID, LARK_APP_SECRET};

/// Scope a token needs for `user_info` to include the email fields.
const EMAIL_SCOPE: &str = "contact:user.email:readonly";
/// Scope a token needs for `user_info` to include `user_id`.
const USER_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// A refusal from a user-token endpoint: (HTTP status, code, OAuth error, description).
struct GrantError {
    status: StatusCode,
    code: i64,
    error: &'static str,
    description: &'static str,
}

const fn refusal(code: i64, error: &'static str, description: &'static str) -> GrantError {
    GrantError {
        status: StatusCode::BAD_REQUEST,
        code,
        error,
        description,
    }
}

const MISSING_PARAM: GrantError = refusal(
    20001,
    "invalid_request",
    "The request is missing a required parameter.",
);
const BAD_SECRET: GrantError = refusal(20002, "invalid_client", "The client secret is invalid.");
const CODE_NOT_FOUND: GrantError = refusal(
    20003,
    "invalid_grant",
    "The authorization code is not found. Please note that an authorization code can only be used once.",
);
const CODE_EXPIRED: GrantError = refusal(
    20004,
    "invalid_grant",
    "The authorization code has expired.",
);
const REFRESH_INVALID: GrantError = refusal(
    20026,
    "invalid_grant",
    "The refresh token passed is invalid. Please check the value.",
);
const UNSUPPORTED_GRANT: GrantError = refusal(
    20036,
    "unsupported_grant_type",
    "The specified grant_type is not supported.",
);
const REFRESH_EXPIRED: GrantError = refusal(
    20037,
    "invalid_grant",
    "The refresh token passed has expired. Please generate a new one.",
);
const NO_SUCH_APP: GrantError =
    refusal(20048, "invalid_client", "The specified app does not exist.");
const PKCE_FAILED: GrantError = refusal(20049, "invalid_grant", "PKCE code challenge failed.");
const MALFORMED: GrantError = refusal(
    20063,
    "invalid_request",
    "The request is malformed. Please check your request.",
);
const REFRESH_REVOKED: GrantError = refusal(
    20064,
    "invalid_grant",
    "The refresh token has been revoked. Please note that a refresh token can only be used once.",
);
const CODE_USED: GrantError = refusal(
    20065,
    "invalid_grant",
    "The authorization code has been used. Please note that an authorization code can only be used once.",
);
const REDIRECT_MISMATCH: GrantError = refusal(
    20071,
    "invalid_grant",
    "The provided redirect URI does not match the one used during authorization.",
);
const REFRESH_USED: GrantError = refusal(
    20073,
    "invalid_grant",
    "The refresh token has been used. Please note that a refresh token can only be used once.",
);

impl GrantError {
    /// v2 shape: flat `{code, error, error_description}`.
    fn v2(self) -> Response {
        json_response(
            self.status,
            json!({
                "code": self.code,
                "error": self.error,
                "error_description": self.description,
            }),
        )
    }

    /// v1 shape: `{code, msg}`.
    fn v1(self) -> Response {
        lark_error(self.status, self.code, self.description)
    }
}

/// Tokens issued by a grant.
struct Issued {
    access: String,
    refresh: Option<String>,
    scope: String,
    access_secs: i64,
    refresh_secs: i64,
}

impl Issued {
    fn v2(self) -> Response {
        let mut body = json!({
            "code": 0,
            "access_token": self.access,
            "expires_in": self.access_secs,
            "scope": self.scope,
            "token_type": "Bearer",
        });
        if let Some(refresh) = self.refresh {
            body["refresh_token"] = refresh.into();
            body["refresh_token_expires_in"] = self.refresh_secs.into();
        }
        json_response(StatusCode::OK, body)
    }

    fn v1(self) -> Response {
        let mut data = json!({
            "access_token": self.access,
            "token_type": "Bearer",
            "expires_in": self.access_secs,
            "scope": self.scope,
        });
        if let Some(refresh) = self.refresh {
            data["refresh_token"] = refresh.into();
            data["refresh_expires_in"] = self.refresh_secs.into();
        }
        lark_ok(data)
    }
}

/// Body of a POST, JSON or form-encoded, as string fields.
fn fields(headers: &HeaderMap, body: &Bytes) -> Option<HashMap<String, String>> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        return Some(url::form_urlencoded::parse(body).into_owned().collect());
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    Some(
        object
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect(),
    )
}

/// Redeems an authorization code (single use, 5 minutes). `pkce` carries the
/// `redirect_uri` and `code_verifier` the v2 endpoint checks; v1 checks neither.
fn redeem_code(
    state: &mut SimState,
    code: &str,
    pkce: Option<(Option<&str>, Option<&str>)>,
    from_v1: bool,
    now: Instant,
) -> Result<Issued, GrantError> {
    let record = state.codes.get(code).ok_or(CODE_NOT_FOUND)?;
    if record.used {
        return Err(CODE_USED);
    }
    if record.issued_at + CODE_LIFETIME <= now {
        return Err(CODE_EXPIRED);
    }
    if let Some((redirect_uri, verifier)) = pkce {
        if redirect_uri.is_some_and(|r| r != record.redirect_uri) {
            return Err(REDIRECT_MISMATCH);
        }
        if let Some(challenge) = &record.code_challenge {
            let verifier = verifier.ok_or(PKCE_FAILED)?;
            let valid_shape = (43..=128).contains(&verifier.len())
                && verifier
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
            let computed = match record.code_challenge_method.as_deref() {
                Some("plain") => verifier.to_string(),
                _ => base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(verifier.as_bytes())),
            };
            if !valid_shape || &computed != challenge {
                return Err(PKCE_FAILED);
            }
        }
    }
    let record = state.codes.get_mut(code).expect("looked up above");
    record.used = true;
    let (open_id, scope) = (record.open_id.clone(), record.scope.clone());
    let tenant_key = record.tenant_key.clone();
    let (access, refresh) = state.issue_user_tokens(&open_id, &scope, tenant_key, from_v1, now);
    Ok(Issued {
        access,
        refresh,
        scope,
        access_secs: state.access_secs,
        refresh_secs: state.refresh_secs,
    })
}

/// Redeems a refresh token: single use; rotates both tokens.
fn redeem_refresh(
    state: &mut SimState,
    token: &str,
    v2_endpoint: bool,
    now: Instant,
) -> Result<Issued, GrantError> {
    let record = state.refresh.get(token).ok_or(REFRESH_INVALID)?;
    // The v2 endpoint accepts only refresh tokens it issued itself (Lark docs, 20026).
    if v2_endpoint && record.from_v1 {
        return Err(REFRESH_INVALID);
    }
    if record.revoked {
        return Err(REFRESH_REVOKED);
    }
    if record.used {
        return Err(REFRESH_USED);
    }
    if record.expired || record.expires_at <= now {
        return Err(REFRESH_EXPIRED);
    }
    let record = state.refresh.get_mut(token).expect("looked up above");
    record.used = true;
    let (open_id, scope) = (record.open_id.clone(), record.scope.clone());
    let tenant_key = record.tenant_key.clone();
    let (access, refresh) =
        state.issue_user_tokens(&open_id, &scope, tenant_key, !v2_endpoint, now);
    Ok(Issued {
        access,
        refresh,
        scope,
        access_secs: state.access_secs,
        refresh_secs: state.refresh_secs,
    })
}

/// `POST /open-apis/authen/v2/oauth/token`.
pub(super) async fn v2_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = fields(&headers, &body) else {
        return MALFORMED.v2();
    };
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(grant_type), Some(client_id), Some(client_secret)) =
        (get("grant_type"), get("client_id"), get("client_secret"))
    else {
        return MISSING_PARAM.v2();
    };
    if client_id != LARK_APP_ID {
        return NO_SUCH_APP.v2();
    }
    if client_secret != LARK_APP_SECRET {
        return BAD_SECRET.v2();
    }
    let now = Instant::now();
    let mut state = shared.lock();
    let result = match grant_type {
        "authorization_code" => match get("code") {
            None => Err(MISSING_PARAM),
            Some(code) => redeem_code(
                &mut state,
                code,
                Some((get("redirect_uri"), get("code_verifier"))),
                false,
                now,
            ),
        },
        "refresh_token" => match get("refresh_token") {
            None => Err(MISSING_PARAM),
            Some(token) => redeem_refresh(&mut state, token, true, now),
        },
        _ => Err(UNSUPPORTED_GRANT),
    };
    match result {
        Ok(issued) => issued.v2(),
        Err(e) => e.v2(),
    }
}

/// `POST /open-apis/authen/v1/oidc/access_token` (Bearer app_access_token).
pub(super) async fn v1_access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    v1_grant(shared, headers, body, "authorization_code").await
}

/// `POST /open-apis/authen/v1/oidc/refresh_access_token` (Bearer app_access_token).
pub(super) async fn v1_refresh_access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    v1_grant(shared, headers, body, "refresh_token").await
}

async fn v1_grant(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Bytes,
    expected: &str,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    if let Err(refused) = state.check_app_token(bearer(&headers), now) {
        return refused.into_response();
    }
    let Some(f) = fields(&headers, &body) else {
        return MALFORMED.v1();
    };
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let result = match get("grant_type") {
        None => Err(MISSING_PARAM),
        Some(g) if g != expected => Err(UNSUPPORTED_GRANT),
        Some("authorization_code") => match get("code") {
            None => Err(MISSING_PARAM),
            Some(code) => redeem_code(&mut state, code, None, true, now),
        },
        Some(_) => match get("refresh_token") {
            None => Err(MISSING_PARAM),
            Some(token) => redeem_refresh(&mut state, token, false, now),
        },
    };
    match result {
        Ok(issued) => issued.v1(),
        Err(e) => e.v1(),
    }
}

/// What the user grants: the requested scopes, or — with the simulator-only
/// `sim_scope=<space-separated>` — only those of them the test lets the user tick (Lark's
/// consent page lets a user leave optional scopes out).
fn granted_scope(requested: &str, allowed: Option<&str>) -> String {
    match allowed {
        None => requested.to_string(),
        Some(allowed) => requested
            .split_whitespace()
            .filter(|s| allowed.split_whitespace().any(|a| a == *s))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `GET /open-apis/authen/v1/authorize`: validates the request, then approves as
/// `sim_user=<email>`, denies on `sim_deny=1`, or shows a page to pick a user.
/// Simulator-only extensions for tests: `sim_scope=<scopes>` grants only those of the
/// requested scopes; `sim_tenant=<tenant_key>` signs the user in as a member of another
/// tenant (user_info then reports that `tenant_key`).
pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    raw: axum::extract::RawQuery,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if get("client_id") != Some(LARK_APP_ID) {
        return error_page("The app does not exist (client_id is missing or unknown).");
    }
    if get("response_type") != Some("code") {
        return error_page("response_type must be code.");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page("redirect_uri is missing.");
    };
    let Ok(mut redirect) = url::Url::parse(redirect_uri) else {
        return error_page("redirect_uri is not a valid URL.");
    };
    if !matches!(redirect.scheme(), "http" | "https") {
        return error_page("redirect_uri must be an http(s) URL.");
    }
    let method = get("code_challenge_method");
    if method.is_some_and(|m| m != "S256" && m != "plain") {
        return error_page("code_challenge_method must be S256 or plain.");
    }
    let state_param = get("state");

    if get("sim_deny") == Some("1") {
        redirect
            .query_pairs_mut()
            .append_pair("error", "access_denied");
        if let Some(s) = state_param {
            redirect.query_pairs_mut().append_pair("state", s);
        }
        return Redirect::to(redirect.as_str())
            .into_response()
            .with_status(StatusCode::FOUND);
    }

    let mut state = shared.lock();
    let Some(email) = get("sim_user") else {
        return choose_user_page(&state, raw.0.as_deref().unwrap_or(""));
    };
    let Some(user) = state.user_by_email(email) else {
        return error_page("No such user in the simulated tenant.");
    };
    let code = crate::wire::random_hex(16);
    let open_id = user.open_id.clone();
    state.codes.insert(
        code.clone(),
        super::AuthCode {
            open_id,
            redirect_uri: redirect_uri.to_string(),
            code_challenge: get("code_challenge").map(str::to_string),
            code_challenge_method: method.map(str::to_string),
            scope: granted_scope(get("scope").unwrap_or(""), get("sim_scope")),
            tenant_key: get("sim_tenant").map(str::to_string),
            issued_at: Instant::now(),
            used: false,
        },
    );
    redirect.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = state_param {
        redirect.query_pairs_mut().append_pair("state", s);
    }
    Redirect::to(redirect.as_str())
        .into_response()
        .with_status(StatusCode::FOUND)
}

/// Axum's `Redirect::to` answers 303; Lark's authorize page answers 302.
trait WithStatus {
    fn with_status(self, status: StatusCode) -> Response;
}

impl WithStatus for Response {
    fn with_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
    }
}

fn error_page(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><html><head><title>Lark authorization error</title></head>\
             <body><h1>Authorization failed</h1><p>{}</p></body></html>",
            crate::wire::escape_html(reason)
        )),
    )
        .into_response()
}

/// The "log in as" page: one link per user, and one to deny.
fn choose_user_page(state: &SimState, raw_query: &str) -> Response {
    let base = format!("/open-apis/authen/v1/authorize?{raw_query}");
    let mut items = String::new();
    for user in &state.users {
        let link = format!(
            "{base}&sim_user={}",
            url::form_urlencoded::byte_serialize(user.email.as_bytes()).collect::<String>()
        );
        items.push_str(&format!(
            "<li><a href=\"{}\">{} &lt;{}&gt;</a></li>",
            crate::wire::escape_html(&link),
            crate::wire::escape_html(&user.name),
            crate::wire::escape_html(&user.email)
        ));
    }
    if items.is_empty() {
        items.push_str("<li>No users yet.</li>");
    }
    Html(format!(
        "<!doctype html><html><head><title>Lark (simulated) — authorize</title></head><body>\
         <h1>Authorize {app}</h1><p>Log in as:</p><ul>{items}</ul>\
         <p><a href=\"{deny}\">Deny</a></p></body></html>",
        app = crate::wire::escape_html(LARK_APP_ID),
        deny = crate::wire::escape_html(&format!("{base}&sim_deny=1")),
    ))
    .into_response()
}

/// `GET /open-apis/authen/v1/user_info`.
pub(super) async fn user_info(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let state = shared.lock();
    let tenant_key = state.tenant_of(bearer(&headers));
    let (open_id, scope) = match state.check_user_token(bearer(&headers), Instant::now()) {
        Ok(v) => v,
        Err(refused) => return refused.into_response(),
    };
    let Some(user) = state.user_by_open_id(&open_id) else {
        return lark_error(StatusCode::BAD_REQUEST, 20008, "The user does not exist.");
    };
    let has = |s: &str| scope.split_whitespace().any(|g| g == s);
    let mut data = json!({
        "name": user.name,
        "en_name": user.name,
        "avatar_url": "https://s1-imfile.feishucdn.com/static-resource/v1/sim_avatar",
        "avatar_thumb": "https://s1-imfile.feishucdn.com/static-resource/v1/sim_avatar~72x72",
        "avatar_middle": "https://s1-imfile.feishucdn.com/static-resource/v1/sim_avatar~240x240",
        "avatar_big": "https://s1-imfile.feishucdn.com/static-resource/v1/sim_avatar~640x640",
        "open_id": user.open_id,
        "union_id": user.union_id,
        "tenant_key": tenant_key,
    });
    // Field permissions, as documented for user_info: email fields need the email scope,
    // user_id needs the employee id scope.
    if has(EMAIL_SCOPE) {
        data["email"] = user.email.clone().into();
        if let Some(e) = &user.enterprise_email {
            data["enterprise_email"] = e.clone().into();
        }
    }
    if has(USER_ID_SCOPE) {
        data["user_id"] = user.user_id.clone().into();
    }
    lark_ok(data)
}

/// Body of the app/tenant token endpoints.
fn app_credentials(body: &Bytes) -> (Option<String>, Option<String>) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    (field("app_id"), field("app_secret"))
}

/// `POST /open-apis/auth/v3/tenant_access_token/internal`.
pub(super) async fn tenant_access_token(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let (app_id, app_secret) = app_credentials(&body);
    if let Err(refused) = check_app_credentials(app_id.as_deref(), app_secret.as_deref()) {
        return refused.into_response();
    }
    let (token, expire) = shared.lock().tenant_tokens.issue(Instant::now());
    json_response(
        StatusCode::OK,
        json!({ "code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire }),
    )
}

/// `POST /open-apis/auth/v3/app_access_token/internal` (also returns a tenant token).
pub(super) async fn app_access_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let (app_id, app_secret) = app_credentials(&body);
    if let Err(refused) = check_app_credentials(app_id.as_deref(), app_secret.as_deref()) {
        return refused.into_response();
    }
    let now = Instant::now();
    let mut state = shared.lock();
    let (app_token, expire) = state.app_tokens.issue(now);
    let (tenant_token, _) = state.tenant_tokens.issue(now);
    json_response(
        StatusCode::OK,
        json!({
            "code": 0,
            "msg": "ok",
            "app_access_token": app_token,
            "tenant_access_token": tenant_token,
            "expire": expire,
        }),
    )
}
