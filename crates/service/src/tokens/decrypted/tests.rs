use std::cell::Cell;

use super::*;

fn trainer(n: u8) -> TrainerId {
    TrainerId::parse(&format!("a0T0000000000{n:02}")).unwrap()
}

/// A stand-in for the vault: counts its calls, "decrypts" by prefixing.
fn counting(calls: &Cell<usize>) -> impl Fn(&str) -> Result<String, ()> + '_ {
    move |enc| {
        calls.set(calls.get() + 1);
        Ok(format!("u-{enc}"))
    }
}

#[test]
fn a_trainer_s_token_is_decrypted_once_per_ciphertext() {
    let kept = DecryptedTokens::default();
    let calls = Cell::new(0);
    for _ in 0..20 {
        let token = kept.get_or_decrypt(&trainer(1), "enc-1", counting(&calls));
        assert_eq!(token.unwrap().secret(), "u-enc-1");
    }
    assert_eq!(calls.get(), 1);
    // Another trainer has their own.
    kept.get_or_decrypt(&trainer(2), "enc-2", counting(&calls))
        .unwrap();
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_rotated_ciphertext_is_never_answered_with_the_old_token() {
    let kept = DecryptedTokens::default();
    let calls = Cell::new(0);
    kept.get_or_decrypt(&trainer(1), "enc-1", counting(&calls))
        .unwrap();
    let rotated = kept
        .get_or_decrypt(&trainer(1), "enc-2", counting(&calls))
        .unwrap();
    assert_eq!(rotated.secret(), "u-enc-2");
    assert_eq!(calls.get(), 2);
    // And the new one is what is kept now.
    kept.get_or_decrypt(&trainer(1), "enc-2", counting(&calls))
        .unwrap();
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_forgotten_trainer_is_decrypted_again() {
    let kept = DecryptedTokens::default();
    let calls = Cell::new(0);
    kept.get_or_decrypt(&trainer(1), "enc-1", counting(&calls))
        .unwrap();
    kept.forget(&trainer(1));
    assert!(kept.is_empty());
    kept.get_or_decrypt(&trainer(1), "enc-1", counting(&calls))
        .unwrap();
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_failed_decryption_keeps_nothing() {
    let kept = DecryptedTokens::default();
    let failed = kept.get_or_decrypt(&trainer(1), "enc-1", |_| Err::<String, _>("wrong key"));
    assert_eq!(failed.unwrap_err(), "wrong key");
    assert!(kept.is_empty());
}

#[test]
fn debug_shows_no_token() {
    let kept = DecryptedTokens::default();
    kept.get_or_decrypt(&trainer(1), "enc-1", |_| {
        Ok::<_, ()>("u-very-secret".to_string())
    })
    .unwrap();
    let shown = format!("{kept:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(!shown.contains("enc-1"), "{shown}");
}
