//! Trainer ids Salesforce said do not exist, remembered for [`UNKNOWN_TTL`] so that a
//! flood of connect links with made-up ids costs at most one Salesforce query per id per
//! hour (rule 18). Bounded: at most [`UNKNOWN_CAPACITY`] ids; past it, expired ids go
//! first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unknown id is answered from memory.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(3600);

/// Most ids remembered at once.
pub const UNKNOWN_CAPACITY: usize = 10_000;

/// The negative cache.
#[derive(Debug)]
pub struct UnknownTrainers {
    seen: Mutex<HashMap<String, Instant>>,
    capacity: usize,
}

impl Default for UnknownTrainers {
    fn default() -> Self {
        UnknownTrainers::with_capacity(UNKNOWN_CAPACITY)
    }
}

impl UnknownTrainers {
    /// A cache of at most `capacity` ids.
    pub fn with_capacity(capacity: usize) -> UnknownTrainers {
        UnknownTrainers {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// True when Salesforce said within the last hour that `id` does not exist.
    pub fn contains(&self, id: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(id).is_some_and(|at| at.elapsed() < UNKNOWN_TTL)
    }

    /// Remembers that `id` does not exist.
    pub fn insert(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.capacity && !seen.contains_key(id) {
            seen.retain(|_, at| at.elapsed() < UNKNOWN_TTL);
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

    /// Forgets `id` (it exists after all).
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
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_unknown_id_is_remembered_for_an_hour() {
        let cache = UnknownTrainers::default();
        assert!(!cache.contains("a0T000000000001"));
        cache.insert("a0T000000000001");
        assert!(cache.contains("a0T000000000001"));
        tokio::time::advance(UNKNOWN_TTL - Duration::from_secs(1)).await;
        assert!(cache.contains("a0T000000000001"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !cache.contains("a0T000000000001"),
            "asked again after an hour"
        );
        cache.insert("a0T000000000001");
        cache.remove("a0T000000000001");
        assert!(!cache.contains("a0T000000000001"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded_and_drops_the_oldest() {
        let cache = UnknownTrainers::with_capacity(3);
        for id in ["a", "b", "c"] {
            cache.insert(id);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        cache.insert("d");
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains("a"), "the oldest went");
        assert!(cache.contains("b") && cache.contains("c") && cache.contains("d"));
        // Expired ids go before live ones.
        tokio::time::advance(UNKNOWN_TTL).await;
        cache.insert("e");
        assert_eq!(cache.len(), 1);
        assert!(cache.contains("e"));
    }
}
