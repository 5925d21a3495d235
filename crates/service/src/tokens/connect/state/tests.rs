use super::*;

fn secret() -> SecretString {
    SecretString::from("x".repeat(32))
}

fn trainer(n: u8) -> TrainerId {
    TrainerId::parse(&format!("a0T00000000000{n}")).unwrap()
}

/// `secs` after the epoch.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

#[test]
fn issued_state_verifies_until_expiry() {
    let s = issue(&secret(), &trainer(1), at(1000));
    let v = verify(&secret(), &s.state, at(1000) + STATE_TTL).unwrap();
    assert_eq!(v.trainer_id, trainer(1));
    assert_eq!(v.nonce, s.nonce);
    assert_eq!(v.expires_at, s.expires_at);
    assert_eq!(
        verify(&secret(), &s.state, at(1001) + STATE_TTL),
        Err(StateError::Expired)
    );
}

#[test]
fn tampering_is_detected() {
    let s = issue(&secret(), &trainer(1), at(1000));
    let forged = s
        .state
        .secret()
        .replacen(trainer(1).as_str(), trainer(2).as_str(), 1);
    let forged = OAuthState::new(forged);
    assert_eq!(
        verify(&secret(), &forged, at(1000)),
        Err(StateError::BadSignature)
    );
    let other_key = SecretString::from("y".repeat(32));
    assert_eq!(
        verify(&other_key, &s.state, at(1000)),
        Err(StateError::BadSignature)
    );
    assert_eq!(
        verify(&secret(), &OAuthState::new("a.b"), at(1000)),
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
