//! Joining a message that Lark split into fragments: frames sharing a `message_id`, each
//! with `sum` (how many) and `seq` (which one, from 0), joined in `seq` order once all
//! have arrived (`_combine` in larksuite/oapi-sdk-python `lark_oapi/ws/client.py`,
//! `combine` in larksuite/oapi-sdk-go `ws/client.go`).
//!
//! The cache is bounded, since its input comes from outside: a set that has not
//! completed within [`FRAGMENT_TTL`] of its last fragment is dropped (the SDKs keep a set
//! 5 s), a message larger than [`MAX_MESSAGE_BYTES`] is refused, and the bytes held in all
//! sets together stay under [`MAX_CACHED_BYTES`] by dropping the oldest sets first.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// An incomplete set is dropped this long after its last fragment arrived (the SDKs'
/// cache entry lifetime).
pub(crate) const FRAGMENT_TTL: Duration = Duration::from_secs(5);
/// Most fragments one message may announce (`sum`). Lark splits only large events, and an
/// event payload is a few KiB; a larger `sum` is not believed.
pub(crate) const MAX_FRAGMENTS: usize = 256;
/// Largest joined message accepted.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes held across all incomplete sets.
pub(crate) const MAX_CACHED_BYTES: usize = 16 * 1024 * 1024;
/// Most incomplete sets held at once.
pub(crate) const MAX_OPEN_SETS: usize = 1024;

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// It completed its message: the payload, fragments in `seq` order.
    Complete(Vec<u8>),
    /// Its set still waits for other fragments.
    Waiting,
    /// It was refused: `sum`/`seq` out of range or inconsistent with the set's other
    /// fragments (the whole set is dropped then).
    Invalid,
    /// Its message is larger than [`MAX_MESSAGE_BYTES`]; the set is dropped.
    TooLarge,
}

/// Incomplete fragment sets, by message id.
#[derive(Debug, Default)]
pub(crate) struct Fragments {
    sets: HashMap<String, Set>,
    /// Bytes held in all sets.
    bytes: usize,
}

#[derive(Debug)]
struct Set {
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    /// When the last fragment arrived.
    touched: Instant,
}

impl Fragments {
    /// Adds fragment `seq` of `sum` of message `message_id`. `sum` ≤ 1 is not a fragment:
    /// the payload comes back complete at once.
    pub(crate) fn add(
        &mut self,
        message_id: &str,
        sum: usize,
        seq: usize,
        payload: Vec<u8>,
        now: Instant,
    ) -> Joined {
        if sum <= 1 {
            return if payload.len() > MAX_MESSAGE_BYTES {
                Joined::TooLarge
            } else {
                Joined::Complete(payload)
            };
        }
        if sum > MAX_FRAGMENTS || seq >= sum {
            self.remove(message_id);
            return Joined::Invalid;
        }
        if !self.sets.contains_key(message_id) {
            while self.sets.len() >= MAX_OPEN_SETS {
                self.drop_oldest();
            }
            self.sets.insert(
                message_id.to_string(),
                Set {
                    parts: vec![None; sum],
                    bytes: 0,
                    touched: now,
                },
            );
        }
        let Some(set) = self.sets.get_mut(message_id) else {
            return Joined::Invalid;
        };
        if set.parts.len() != sum {
            self.remove(message_id);
            return Joined::Invalid;
        }
        let replaced = set.parts[seq].replace(payload).map_or(0, |p| p.len());
        let added = set.parts[seq].as_ref().map_or(0, Vec::len);
        set.bytes = set.bytes - replaced + added;
        set.touched = now;
        self.bytes = self.bytes - replaced + added;
        if set.bytes > MAX_MESSAGE_BYTES {
            self.remove(message_id);
            return Joined::TooLarge;
        }
        if set.parts.iter().all(Option::is_some) {
            if let Some(set) = self.remove(message_id) {
                return Joined::Complete(set.parts.into_iter().flatten().flatten().collect());
            }
        }
        while self.bytes > MAX_CACHED_BYTES {
            self.drop_oldest();
        }
        if self.sets.contains_key(message_id) {
            Joined::Waiting
        } else {
            // The cap made room by dropping this very set: it was the oldest.
            Joined::TooLarge
        }
    }

    /// Drops the sets whose last fragment is older than [`FRAGMENT_TTL`]; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .sets
            .iter()
            .filter(|(_, set)| now.saturating_duration_since(set.touched) >= FRAGMENT_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired.len()
    }

    /// When the next set expires, if any is waiting.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.sets.values().map(|s| s.touched + FRAGMENT_TTL).min()
    }

    /// Incomplete sets held.
    #[cfg(test)]
    pub(crate) fn open_sets(&self) -> usize {
        self.sets.len()
    }

    /// Bytes held in incomplete sets.
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, message_id: &str) -> Option<Set> {
        let set = self.sets.remove(message_id)?;
        self.bytes -= set.bytes;
        Some(set)
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .sets
            .iter()
            .min_by_key(|(_, set)| set.touched)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
