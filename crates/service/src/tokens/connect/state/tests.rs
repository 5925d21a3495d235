use super::*;

fn secret() -> SecretString {
    SecretString::from("x".repeat(32))
}

#[test]
fn issued_state_verifies_until_expiry() {
    let s = issue(&secret(), "a0T000000000001AAA", 1000);
    let v = verify(&secret(), &s.state, 1000 + STATE_TTL_SECS).unwrap();
    assert_eq!(v.trainer_id, "a0T000000000001AAA");
    assert_eq!(v.nonce, s.nonce);
    assert_eq!(
        verify(&secret(), &s.state, 1001 + STATE_TTL_SECS),
        Err(StateError::Expired)
    );
}

#[test]
fn tampering_is_detected() {
    let s = issue(&secret(), "a0T000000000001AAA", 1000);
    let forged = s
        .state
        .secret()
        .replacen("a0T000000000001AAA", "a0T000000000002AAA", 1);
    let forged = OAuthState::new(forged);
    assert_eq!(
        verify(&secret(), &forged, 1000),
        Err(StateError::BadSignature)
    );
    let other_key = SecretString::from("y".repeat(32));
    assert_eq!(
        verify(&other_key, &s.state, 1000),
        Err(StateError::BadSignature)
    );
    assert_eq!(
        verify(&secret(), &OAuthState::new("a.b"), 1000),
        Err(StateError::Malformed)
    );
}

#[test]
fn pkce_matches_rfc7636_example() {
    // RFC 7636 Appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let (v, c) = pkce_pair();
    assert_eq!(pkce_challenge(v.secret()), c);
    assert!(v.secret().len() >= 43);
}

#[test]
fn cookie_must_equal_nonce() {
    assert!(cookie_matches(Some("abc"), "abc"));
    assert!(!cookie_matches(Some("abd"), "abc"));
    assert!(!cookie_matches(None, "abc"));
}
