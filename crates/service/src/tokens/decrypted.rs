//! Each trainer's access token, decrypted once: a burst of one trainer's bookings asked
//! the vault to open the same ciphertext for every booking (twice, with the calendar on).
//! An entry is kept under the ciphertext it came from and used only while the trainer's
//! current ciphertext is that one, so a rotated token is never answered with the old one;
//! the token service also forgets a trainer's entry whenever it refreshes, disconnects or
//! connects them. The plaintext lives in an [`AccessToken`] (secrecy's `SecretString`,
//! wiped from memory when dropped, `Debug` redacted): nothing here can log it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::TrainerId;
use crate::lark::secret::AccessToken;

/// Decrypted access tokens by trainer; one per token service.
#[derive(Default)]
pub struct DecryptedTokens {
    by_trainer: Mutex<HashMap<TrainerId, Entry>>,
}

struct Entry {
    /// The ciphertext the token was decrypted from.
    access_enc: String,
    token: AccessToken,
}

impl std::fmt::Debug for DecryptedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecryptedTokens({} trainers, [redacted])", self.len())
    }
}

impl DecryptedTokens {
    /// The trainer's token for `access_enc`: the one kept when it came from that same
    /// ciphertext, else `decrypt(access_enc)`, kept for next time.
    pub fn get_or_decrypt<E>(
        &self,
        trainer: &TrainerId,
        access_enc: &str,
        decrypt: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<AccessToken, E> {
        if let Some(entry) = self.lock().get(trainer) {
            if entry.access_enc == access_enc {
                return Ok(entry.token.clone());
            }
        }
        // Decrypted outside the lock: other trainers' bookings need not wait for it.
        let token = AccessToken::new(decrypt(access_enc)?);
        self.lock().insert(
            trainer.clone(),
            Entry {
                access_enc: access_enc.to_string(),
                token: token.clone(),
            },
        );
        Ok(token)
    }

    /// Forgets the trainer's token (refreshed, disconnected, connected again).
    pub fn forget(&self, trainer: &TrainerId) {
        self.lock().remove(trainer);
    }

    /// Trainers with a token kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TrainerId, Entry>> {
        self.by_trainer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
