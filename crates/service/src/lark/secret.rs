//! Lark user token newtypes (this layer receives and sends them; [`crate::tokens`] keeps
//! them). Their `Debug` is redacted and they expose the value only through an
//! explicit `secret()` call, so a token can never slip into a log line or an error by
//! accident. `RefreshToken` is deliberately not `Clone`: Lark refresh tokens are single
//! use, and a copy kept around is a copy that may be replayed. The connect flow's own
//! secrets (the authorization code, the PKCE verifier, the `state`) are the same kind of
//! type, none of them `Clone`.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A Lark user access token (`u-…`).
#[derive(Clone)]
pub struct AccessToken(SecretString);

/// A Lark user refresh token (`ur-…`). Single use: consumed by a refresh.
pub struct RefreshToken(SecretString);

impl AccessToken {
    pub fn new(value: impl Into<String>) -> Self {
        AccessToken(SecretString::from(value.into()))
    }
    /// The raw value, for the `Authorization` header and for encryption only.
    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl RefreshToken {
    pub fn new(value: impl Into<String>) -> Self {
        RefreshToken(SecretString::from(value.into()))
    }
    /// The raw value, for the refresh request and for encryption only.
    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// An OAuth authorization code Lark sent back to the callback. Single use, short-lived,
/// and worth a token pair to whoever holds it with the verifier: never logged.
pub struct AuthCode(SecretString);

/// A PKCE `code_verifier` (RFC 7636): the secret half of the challenge sent to Lark.
pub struct PkceVerifier(SecretString);

/// The OAuth `state` parameter: it carries the single-use nonce that the cookie binds to
/// the browser, so it is kept out of logs like a token.
pub struct OAuthState(SecretString);

macro_rules! secret_newtype {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name(SecretString::from(value.into()))
            }
            /// The raw value, for the one request or comparison that needs it.
            pub fn secret(&self) -> &str {
                self.0.expose_secret()
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    )*};
}

secret_newtype!(AuthCode, PkceVerifier, OAuthState);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

#[cfg(test)]
mod tests;
