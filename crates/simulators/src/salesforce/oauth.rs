//! The simulator's `POST /services/oauth2/token` (client credentials, username-password,
//! JWT bearer) and the sessions it issues.
//!
//! Wire format as Salesforce's: a form-encoded request; success
//! `{access_token, instance_url, id, token_type, issued_at, signature, scope}`; failure HTTP
//! 400 `{"error": …, "error_description": …}` with Salesforce's codes (`invalid_client_id`
//! "client identifier invalid", `invalid_client` "invalid client credentials",
//! `invalid_grant` "authentication failure", `unsupported_grant_type` "grant type not
//! supported" — as reported against the real endpoint in restforce#46, forrest#184/#364,
//! restforce#338).

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{Shared, SF_PASSWORD, SF_USERNAME};
use crate::wire::JWT_BEARER_GRANT;
use crate::{SF_CLIENT_ID, SF_CLIENT_SECRET, SF_INTEGRATION_USER_ID, SF_ORG_ID};

/// Issued access tokens and who they belong to.
#[derive(Default)]
pub struct Sessions {
    /// token → user id
    valid: HashMap<String, String>,
    /// Tokens that [`Sessions::expire_all`] invalidated (kept to tell them apart in logs).
    expired: HashSet<String>,
}

impl Sessions {
    /// The user of a valid token.
    pub fn user_of(&self, token: &str) -> Option<String> {
        self.valid.get(token).cloned()
    }

    /// Every token issued so far stops working (as when an admin revokes sessions or
    /// they time out).
    pub fn expire_all(&mut self) {
        self.expired
            .extend(self.valid.drain().map(|(token, _)| token));
    }

    fn issue(&mut self, user: &str) -> String {
        let random: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        // Real tokens start with the 15-char org id and `!`.
        let token = format!("{}!AQ{random}", &SF_ORG_ID[..15]);
        self.valid.insert(token.clone(), user.to_string());
        token
    }
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    sub: String,
}

/// A refused token request: HTTP 400 `{"error", "error_description"}`.
struct TokenError {
    error: &'static str,
    description: &'static str,
}

fn token_error(error: &'static str, description: &'static str) -> TokenError {
    TokenError { error, description }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response()
    }
}

/// Client id and secret from the form, or from HTTP Basic auth (`client_secret_basic`).
fn client_credentials(form: &HashMap<String, String>, headers: &HeaderMap) -> (String, String) {
    let from_basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_string(), secret.to_string()))
        });
    from_basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    })
}

fn check_client(id: &str, secret: &str) -> Result<(), TokenError> {
    if id != SF_CLIENT_ID {
        return Err(token_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    if secret != SF_CLIENT_SECRET {
        return Err(token_error("invalid_client", "invalid client credentials"));
    }
    Ok(())
}

/// Validates a JWT bearer assertion: RS256 with the connected app's certificate key,
/// `iss` = client id, `sub` = a known username, `aud` = login/test or this server's URL,
/// `exp` in the future.
fn check_assertion(shared: &Shared, assertion: &str) -> Result<(), TokenError> {
    let pem = shared.jwt_public_key_pem.lock().expect("jwt key").clone();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| token_error("invalid_grant", "invalid assertion"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[
        "https://login.salesforce.com",
        "https://test.salesforce.com",
        shared.base_url().as_str(),
    ]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data =
        jsonwebtoken::decode::<JwtClaims>(assertion, &key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    token_error("invalid_grant", "audience is invalid")
                }
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    token_error("invalid_grant", "expired authorization code")
                }
                _ => token_error("invalid_grant", "invalid assertion"),
            }
        })?;
    if data.claims.iss != SF_CLIENT_ID {
        return Err(token_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    if data.claims.sub != SF_USERNAME {
        return Err(token_error(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    Ok(())
}

/// `POST /services/oauth2/token`.
pub async fn token(
    State(shared): State<std::sync::Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let outcome = match grant {
        "client_credentials" => {
            let (id, secret) = client_credentials(&form, &headers);
            check_client(&id, &secret)
        }
        "password" => {
            let (id, secret) = client_credentials(&form, &headers);
            check_client(&id, &secret).and_then(|()| {
                // The password arrives with any security token already appended; it is
                // compared as-is.
                let username = form.get("username").map(String::as_str);
                let password = form.get("password").map(String::as_str);
                if username == Some(SF_USERNAME) && password == Some(SF_PASSWORD) {
                    Ok(())
                } else {
                    Err(token_error("invalid_grant", "authentication failure"))
                }
            })
        }
        JWT_BEARER_GRANT => match form.get("assertion") {
            Some(assertion) => check_assertion(&shared, assertion),
            None => Err(token_error("invalid_request", "assertion is required")),
        },
        _ => Err(token_error(
            "unsupported_grant_type",
            "grant type not supported",
        )),
    };
    if let Err(refused) = outcome {
        return refused.into_response();
    }

    let user = SF_INTEGRATION_USER_ID;
    let access_token = shared.sessions.lock().expect("sessions").issue(user);
    let base = shared.base_url();
    let id = format!("{base}/id/{SF_ORG_ID}/{user}");
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    // "Base64-encoded HMAC-SHA256 signature signed with the client_secret … containing the
    // concatenated ID and issued_at value" (OAuth token response, Salesforce Help).
    let mut mac = Hmac::<Sha256>::new_from_slice(SF_CLIENT_SECRET.as_bytes()).expect("hmac key");
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Json(json!({
        "access_token": access_token,
        "instance_url": base,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    }))
    .into_response()
}
