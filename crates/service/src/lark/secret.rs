//! Lark user token newtypes (this layer receives and sends them; [`crate::tokens`] keeps
//! them). Their `Debug` is redacted and they expose the value only through an
//! explicit `secret()` call, so a token can never slip into a log line or an error by
//! accident. `RefreshToken` is deliberately not `Clone`: Lark refresh tokens are single
//! use, and a copy kept around is a copy that may be replayed.

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
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let a = AccessToken::new("u-very-secret-access");
        let r = RefreshToken::new("ur-very-secret-refresh");
        let shown = format!("{a:?} {r:?} {:?}", Some(&a));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("redacted"));
        assert_eq!(a.secret(), "u-very-secret-access");
        assert_eq!(r.secret(), "ur-very-secret-refresh");
    }
}
