//! The OAuth `state` parameter and PKCE: state = `trainer.expiry.nonce.signature`, the
//! signature an HMAC-SHA256 (keyed by `security.state_secret`) over the first three parts.
//! Valid ten minutes, single use (the nonce is consumed in the store), and bound to the
//! browser by a cookie holding the nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use chrono::{DateTime, Utc};

use crate::ids::TrainerId;
use crate::tokens::{OAuthState, PkceVerifier};

/// How long a connect attempt may take from start to callback.
pub const STATE_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// Name of the cookie binding the state to the browser that started the flow.
pub const STATE_COOKIE: &str = "lvb_oauth_state";

/// A freshly issued state.
#[derive(Debug)]
pub struct IssuedState {
    /// The full `state` parameter.
    pub state: OAuthState,
    /// The nonce inside it (the cookie value and the store key).
    pub nonce: String,
    /// When it expires (whole seconds: the state carries unix seconds).
    pub expires_at: DateTime<Utc>,
}

/// The verified content of a state.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedState {
    pub trainer_id: TrainerId,
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a state was refused; each maps to a page telling the trainer what to do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state parameter is malformed")]
    Malformed,
    #[error("the state parameter's signature does not match")]
    BadSignature,
    #[error("the state parameter expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn sign(secret: &SecretString, payload: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Issues a state for `trainer` at time `now`.
pub fn issue(secret: &SecretString, trainer: &TrainerId, now: DateTime<Utc>) -> IssuedState {
    let nonce = random_token(18);
    let expires = now.timestamp() + STATE_TTL.num_seconds();
    let payload = format!("{trainer}.{expires}.{nonce}");
    let state = OAuthState::new(format!("{payload}.{}", sign(secret, &payload)));
    IssuedState {
        state,
        nonce,
        expires_at: at_secs(expires),
    }
}

/// Checks signature and expiry (not single use: that is the store's job).
pub fn verify(
    secret: &SecretString,
    state: &OAuthState,
    now: DateTime<Utc>,
) -> Result<VerifiedState, StateError> {
    let parts: Vec<&str> = state.secret().split('.').collect();
    let [trainer_id, expires, nonce, signature] = parts.as_slice() else {
        return Err(StateError::Malformed);
    };
    if trainer_id.is_empty() || nonce.is_empty() {
        return Err(StateError::Malformed);
    }
    let expires_at: i64 = expires.parse().map_err(|_| StateError::Malformed)?;
    let expected = sign(secret, &format!("{trainer_id}.{expires_at}.{nonce}"));
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(StateError::BadSignature);
    }
    if now.timestamp() > expires_at {
        return Err(StateError::Expired);
    }
    // Signed by us from a typed id; one that does not parse was not.
    let trainer_id = TrainerId::parse(trainer_id).map_err(|_| StateError::Malformed)?;
    Ok(VerifiedState {
        trainer_id,
        nonce: nonce.to_string(),
        expires_at: at_secs(expires_at),
    })
}

/// Unix seconds as an instant (out of range: the far past, i.e. expired).
fn at_secs(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// True when the cookie value equals the state's nonce (constant time).
pub fn cookie_matches(cookie: Option<&str>, nonce: &str) -> bool {
    cookie.is_some_and(|c| bool::from(c.as_bytes().ct_eq(nonce.as_bytes())))
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce_pair() -> (PkceVerifier, String) {
    let verifier = PkceVerifier::new(random_token(48));
    let challenge = pkce_challenge(verifier.secret());
    (verifier, challenge)
}

/// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests;
