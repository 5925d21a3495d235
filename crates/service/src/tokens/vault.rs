//! Token encryption at rest: AES-256-GCM in the text format `ivhex:taghex:cipherhex`.
//!
//! The format is the one the original TypeScript plan used (Node's `crypto` with a
//! 16-byte IV), so tokens it wrote still decrypt: we read 12- or 16-byte IVs and write
//! the standard 12-byte IV. Decryption also tries `security.previous_keys`, which is how
//! `rotate-key` moves tokens to a new key without downtime.

use crate::config::{EncryptionKey, SecuritySettings};
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadCore, Aes256Gcm, AesGcm, Key, Nonce};

/// AES-256-GCM with the 16-byte IV that Node-era ciphertexts used.
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// GCM authentication tag length in bytes.
const TAG_LEN: usize = 16;

/// Why a ciphertext could not be opened. Never carries key or plaintext material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("encrypted value is not in the ivhex:taghex:cipherhex format")]
    Malformed,
    #[error("encrypted value has an IV of {0} bytes; 12 or 16 expected")]
    BadIvLength(usize),
    #[error("no configured key decrypts this value (wrong key, or the value was altered)")]
    NoKeyDecrypts,
    #[error("decrypted value is not UTF-8 text")]
    NotText,
}

/// Encrypts with the primary key; decrypts with the primary or any previous key. The key
/// bytes are wiped from memory when the vault is dropped.
pub struct Vault {
    // Zeroized on drop (EncryptionKey).
    primary: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Vault([redacted], {} previous keys)",
            self.previous.len()
        )
    }
}

impl Vault {
    /// Builds the vault from validated settings (the keys were parsed there).
    pub fn from_settings(security: &SecuritySettings) -> Vault {
        Vault {
            primary: security.encryption_key.clone(),
            previous: security.previous_keys.clone(),
        }
    }

    /// A vault from raw hex keys (tests and tools).
    pub fn from_hex(primary: &str, previous: &[&str]) -> Option<Vault> {
        Some(Vault {
            primary: EncryptionKey::from_hex(primary)?,
            previous: previous
                .iter()
                .map(|k| EncryptionKey::from_hex(k))
                .collect::<Option<Vec<_>>>()?,
        })
    }

    /// Encrypts with the primary key and a fresh random 12-byte IV.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.primary.expose_bytes()));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        format!(
            "{}:{}:{}",
            hex::encode(nonce),
            hex::encode(tag),
            hex::encode(body)
        )
    }

    /// Decrypts a value written by this service or by the Node-era plan.
    pub fn decrypt(&self, text: &str) -> Result<String, VaultError> {
        Ok(self.decrypt_reporting_key(text)?.0)
    }

    /// Re-encrypts a value with the primary key: `Ok(None)` when it already uses it.
    /// One decryption either way (`rotate-key`).
    pub fn reencrypt(&self, text: &str) -> Result<Option<String>, VaultError> {
        let (plain, current) = self.decrypt_reporting_key(text)?;
        Ok((!current).then(|| self.encrypt(&plain)))
    }

    /// True when the value opens with the primary key (already rotated).
    pub fn is_current(&self, text: &str) -> bool {
        matches!(self.decrypt_reporting_key(text), Ok((_, true)))
    }

    /// Decrypts and says whether the primary key was the one that worked.
    fn decrypt_reporting_key(&self, text: &str) -> Result<(String, bool), VaultError> {
        let mut parts = text.trim().split(':');
        let (Some(iv), Some(tag), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Malformed);
        };
        let iv = hex::decode(iv).map_err(|_| VaultError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| VaultError::Malformed)?;
        let body = hex::decode(body).map_err(|_| VaultError::Malformed)?;
        if tag.len() != TAG_LEN {
            return Err(VaultError::Malformed);
        }
        if iv.len() != 12 && iv.len() != 16 {
            return Err(VaultError::BadIvLength(iv.len()));
        }
        let mut sealed = body;
        sealed.extend_from_slice(&tag);
        let keys = std::iter::once(&self.primary).chain(self.previous.iter());
        for (index, key) in keys.enumerate() {
            let opened = if iv.len() == 12 {
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose_bytes()))
                    .decrypt(Nonce::from_slice(&iv), sealed.as_slice())
            } else {
                Aes256Gcm16::new(Key::<Aes256Gcm16>::from_slice(key.expose_bytes()))
                    .decrypt(aes_gcm::Nonce::<U16>::from_slice(&iv), sealed.as_slice())
            };
            if let Ok(plain) = opened {
                let text = String::from_utf8(plain).map_err(|_| VaultError::NotText)?;
                return Ok((text, index == 0));
            }
        }
        Err(VaultError::NoKeyDecrypts)
    }
}

#[cfg(test)]
mod tests;
