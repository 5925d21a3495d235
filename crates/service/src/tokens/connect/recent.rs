//! Trainer ids remembered for a while, so that a flood of connect links costs few
//! Salesforce queries (rule 18): ids Salesforce said do not exist, for [`UNKNOWN_TTL`]
//! (at most one query per unknown id per hour), and ids that just passed the start's
//! checks, for [`KNOWN_TTL`] (a link passed around costs one query a minute, not one a
//! click). Bounded: at most [`CAPACITY`] ids each; past it, expired ids go first, then
//! the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unknown id is answered from memory.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(3600);

/// How long a trainer who passed the start's checks is taken as still passing them.
pub const KNOWN_TTL: Duration = Duration::from_secs(60);

/// Most ids remembered at once, per cache.
pub const CAPACITY: usize = 10_000;

/// Ids remembered for `ttl`.
#[derive(Debug)]
pub struct RecentIds {
    seen: Mutex<HashMap<String, Instant>>,
    ttl: Duration,
    capacity: usize,
}

impl RecentIds {
    /// Ids Salesforce said do not exist.
    pub fn unknown() -> RecentIds {
        RecentIds::new(UNKNOWN_TTL, CAPACITY)
    }

    /// Ids that passed the start's checks.
    pub fn known() -> RecentIds {
        RecentIds::new(KNOWN_TTL, CAPACITY)
    }

    /// A cache of at most `capacity` ids, each remembered for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> RecentIds {
        RecentIds {
            seen: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// True when `id` was inserted less than the TTL ago.
    pub fn contains(&self, id: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(id).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers `id` from now on.
    pub fn insert(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.ttl;
        if seen.len() >= self.capacity && !seen.contains_key(id) {
            seen.retain(|_, at| at.elapsed() < ttl);
            if seen.len() >= self.capacity {
                let oldest = seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    seen.remove(&oldest);
                }
            }
        }
        seen.insert(id.to_string(), Instant::now());
    }

    /// Forgets `id`.
    pub fn remove(&self, id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
