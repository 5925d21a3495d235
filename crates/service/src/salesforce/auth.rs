//! Salesforce login: the three OAuth 2.0 flows of design §2.2 (client credentials,
//! username-password, JWT bearer) against `{login_url}/services/oauth2/token`, and the
//! [`Session`] they yield.
//!
//! This module owns the credentials while a login is built. It never logs them, never
//! puts them in an error, and never copies a token response body anywhere: only the
//! parsed access token leaves, inside a `SecretString`. The token endpoint's answer is
//! read under [`SALESFORCE_TOKEN_BODY_CAP`] (design §3 rule 18).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{truncate, SalesforceError};
use super::soql::RecordId;
use crate::config::{SalesforceAuth, SalesforceSettings};
use crate::outbound::{read_capped, ReadError, SALESFORCE_TOKEN_BODY_CAP};
use crate::retry::{with_retry, RetryPolicy};

/// Grant type of the JWT bearer flow (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a JWT assertion is valid. Salesforce requires `exp` within 3 minutes
/// ("the expiration time of the assertion, within three minutes", OAuth 2.0 JWT Bearer
/// Flow for Server-to-Server Integration, help.salesforce.com).
const JWT_LIFETIME_SECS: i64 = 180;

/// A logged-in Salesforce session.
#[derive(Debug)]
pub struct Session {
    /// The bearer token; redacted in `Debug`.
    pub access_token: SecretString,
    /// Base URL of the org's instance (REST and CometD live here).
    pub instance_url: Url,
    /// The user the session acts as: the last path segment of the token response's `id`.
    pub user_id: RecordId,
    /// Counts logins made by one client; lets concurrent callers see that someone else
    /// already replaced a stale session (single-flight re-login).
    pub generation: u64,
}

/// The success body of `/services/oauth2/token`.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    id: String,
}

/// The error body of `/services/oauth2/token`: HTTP 400
/// `{"error": "invalid_grant", "error_description": "authentication failure"}`.
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: String,
    exp: i64,
}

/// `{login_url}/services/oauth2/token`.
pub fn token_url(login_url: &Url) -> String {
    format!(
        "{}/services/oauth2/token",
        login_url.as_str().trim_end_matches('/')
    )
}

/// The `aud` claim of a JWT bearer assertion for this login URL.
// Rule (help.salesforce.com "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration";
// simple-salesforce issue #672): aud is https://login.salesforce.com for production,
// https://test.salesforce.com for sandboxes, or the Experience Cloud site URL. A My Domain
// login URL is NOT a valid audience: `*.my.salesforce.com` maps to login,
// `*.sandbox.my.salesforce.com` to test. Any other host (an Experience Cloud site, or the
// simulator) is its own audience.
pub fn jwt_audience(login_url: &Url) -> String {
    let host = login_url
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com".to_string()
    } else if host == "login.salesforce.com" || host.ends_with(".salesforce.com") {
        "https://login.salesforce.com".to_string()
    } else {
        login_url.as_str().trim_end_matches('/').to_string()
    }
}

/// Builds the signed RS256 assertion for the JWT bearer flow.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: String,
    private_key_path: &Path,
) -> Result<String, SalesforceError> {
    let pem = std::fs::read(private_key_path).map_err(|e| SalesforceError::Auth {
        reason: format!(
            "cannot read the private key file {}: {e}",
            private_key_path.display()
        ),
    })?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|_| SalesforceError::Auth {
        reason: format!(
            "the private key file {} is not an RSA private key in PEM format",
            private_key_path.display()
        ),
    })?;
    let claims = JwtClaims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp: chrono::Utc::now().timestamp() + JWT_LIFETIME_SECS,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| SalesforceError::Auth {
        reason: format!("could not sign the JWT assertion: {e}"),
    })
}

/// The form of a token request for the configured flow.
fn token_form(
    settings: &SalesforceSettings,
) -> Result<Vec<(&'static str, String)>, SalesforceError> {
    Ok(match &settings.auth {
        SalesforceAuth::ClientCredentials {
            client_id,
            client_secret,
        } => vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose_secret().to_string()),
        ],
        SalesforceAuth::Password {
            client_id,
            client_secret,
            username,
            password,
        } => vec![
            ("grant_type", "password".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose_secret().to_string()),
            ("username", username.clone()),
            // The configured value is the password with the security token appended,
            // exactly as Salesforce expects it.
            ("password", password.expose_secret().to_string()),
        ],
        SalesforceAuth::JwtBearer {
            client_id,
            username,
            private_key_path,
        } => {
            let assertion = jwt_assertion(
                client_id,
                username,
                jwt_audience(&settings.login_url),
                private_key_path,
            )?;
            vec![
                ("grant_type", JWT_BEARER_GRANT.to_string()),
                ("assertion", assertion),
            ]
        }
    })
}

/// One token request, classified. Never copies the request or a success body into an error.
async fn request_token(
    http: &reqwest::Client,
    settings: &SalesforceSettings,
    counter: &AtomicU64,
    generation: u64,
) -> Result<Session, SalesforceError> {
    // Built per attempt: a JWT assertion must be fresh.
    let form = token_form(settings)?;
    counter.fetch_add(1, Ordering::Relaxed);
    let response = http
        .post(token_url(&settings.login_url))
        .form(&form)
        .send()
        .await
        .map_err(SalesforceError::from_reqwest)?;
    let status = response.status().as_u16();
    let body = match read_capped(response, SALESFORCE_TOKEN_BODY_CAP).await {
        Ok(body) => body,
        Err(ReadError::Transport(e)) => return Err(SalesforceError::from_reqwest(e)),
        // Nothing of an oversized body is quoted (a 200 may hold a token); a 5xx stays a
        // server error, retried like any other.
        Err(ReadError::TooLarge { cap }) if status >= 500 => {
            return Err(SalesforceError::Server {
                status,
                body: ReadError::too_large_text(cap),
            })
        }
        Err(ReadError::TooLarge { cap }) => {
            return Err(SalesforceError::Unexpected {
                status,
                body: format!("token endpoint: {}", ReadError::too_large_text(cap)),
            })
        }
    };
    if status == 200 {
        return parse_token_response(&body, generation);
    }
    if status >= 500 {
        return Err(SalesforceError::Server {
            status,
            body: truncate(&String::from_utf8_lossy(&body)),
        });
    }
    match serde_json::from_slice::<TokenError>(&body) {
        Ok(e) if e.error_description.is_empty() => Err(SalesforceError::Auth { reason: e.error }),
        Ok(e) => Err(SalesforceError::Auth {
            reason: format!("{}: {}", e.error, e.error_description),
        }),
        Err(_) => Err(SalesforceError::Unexpected {
            status,
            body: truncate(&String::from_utf8_lossy(&body)),
        }),
    }
}

/// Parses a 200 token response. On failure the body is NOT quoted: it may hold a token.
fn parse_token_response(body: &[u8], generation: u64) -> Result<Session, SalesforceError> {
    let unexpected = |what: &str| SalesforceError::Unexpected {
        status: 200,
        body: format!("token response {what} (body withheld: it may contain a token)"),
    };
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|_| unexpected("is not the expected JSON"))?;
    let instance_url =
        Url::parse(&parsed.instance_url).map_err(|_| unexpected("has an invalid instance_url"))?;
    // `id` is the identity URL `https://login.salesforce.com/id/{orgId}/{userId}`.
    let user_id = parsed
        .id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|last| RecordId::parse(last).ok())
        .ok_or_else(|| unexpected("has an id that does not end with a user id"))?;
    Ok(Session {
        access_token: SecretString::from(parsed.access_token),
        instance_url,
        user_id,
        generation,
    })
}

/// Logs in with the configured flow, retrying 5xx and transport failures.
pub(crate) async fn login(
    http: &reqwest::Client,
    settings: &SalesforceSettings,
    policy: &RetryPolicy,
    counter: &AtomicU64,
    generation: u64,
) -> Result<Session, SalesforceError> {
    let session = with_retry(policy, "salesforce login", || {
        request_token(http, settings, counter, generation)
    })
    .await?;
    tracing::info!(
        user_id = %session.user_id,
        instance_url = %session.instance_url,
        generation,
        "logged in to Salesforce"
    );
    Ok(session)
}

#[cfg(test)]
mod tests;
