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

#[test]
fn debug_output_never_shows_the_code_the_verifier_or_the_state() {
    let code = AuthCode::new("code-very-secret");
    let verifier = PkceVerifier::new("verifier-very-secret");
    let state = OAuthState::new("a0T.123.nonce-very-secret.sig");
    let shown = format!("{code:?} {verifier:?} {:?}", Some(&state));
    assert!(!shown.contains("very-secret"), "{shown}");
    assert_eq!(
        shown,
        "AuthCode([redacted]) PkceVerifier([redacted]) Some(OAuthState([redacted]))"
    );
    assert_eq!(code.secret(), "code-very-secret");
    assert_eq!(verifier.secret(), "verifier-very-secret");
    assert_eq!(state.secret(), "a0T.123.nonce-very-secret.sig");
}
