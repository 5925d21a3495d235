use super::*;

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

#[test]
fn round_trip_uses_a_12_byte_iv() {
    let v = Vault::from_hex(K1, &[]).unwrap();
    let enc = v.encrypt("u-token-value");
    let iv = enc.split(':').next().unwrap();
    assert_eq!(iv.len(), 24);
    assert_eq!(v.decrypt(&enc).unwrap(), "u-token-value");
    assert_ne!(v.encrypt("u-token-value"), enc, "IVs are random");
}

#[test]
fn previous_keys_decrypt_and_are_not_current() {
    let old = Vault::from_hex(K2, &[]).unwrap();
    let enc = old.encrypt("ur-refresh");
    let new = Vault::from_hex(K1, &[K2]).unwrap();
    assert_eq!(new.decrypt(&enc).unwrap(), "ur-refresh");
    assert!(!new.is_current(&enc));
    assert!(new.is_current(&new.encrypt("x")));
    let only_new = Vault::from_hex(K1, &[]).unwrap();
    assert_eq!(only_new.decrypt(&enc), Err(VaultError::NoKeyDecrypts));
}

#[test]
fn tampering_and_garbage_are_rejected() {
    let v = Vault::from_hex(K1, &[]).unwrap();
    let enc = v.encrypt("secret");
    let mut parts: Vec<String> = enc.split(':').map(String::from).collect();
    let last = parts[2].pop().unwrap();
    parts[2].push(if last == '0' { '1' } else { '0' });
    assert_eq!(v.decrypt(&parts.join(":")), Err(VaultError::NoKeyDecrypts));
    assert_eq!(v.decrypt("nope"), Err(VaultError::Malformed));
    assert_eq!(
        v.decrypt(&format!("{}:{}:00", "00".repeat(8), "00".repeat(16))),
        Err(VaultError::BadIvLength(8))
    );
}

#[test]
fn debug_is_redacted() {
    let v = Vault::from_hex(K1, &[K2]).unwrap();
    let shown = format!("{v:?}");
    assert!(!shown.contains("0001") && !shown.contains("1f1e"));
}
