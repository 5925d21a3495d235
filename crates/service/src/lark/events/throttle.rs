//! One log line per kind of bad input per minute: a peer that sends the same bad frame
//! a thousand times a second must not flood the log (every occurrence is still counted in
//! `/metrics`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two log lines about the same kind of problem.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// Remembers when each kind of problem was last logged.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    kinds: HashMap<&'static str, Seen>,
}

#[derive(Debug)]
struct Seen {
    logged: Instant,
    suppressed: u64,
}

impl LogThrottle {
    /// Whether to log this occurrence of `kind` now; `Some(n)` with the number of
    /// occurrences left unlogged since the last line.
    pub(crate) fn allow(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some(seen) if now.saturating_duration_since(seen.logged) < LOG_EVERY => {
                seen.suppressed += 1;
                None
            }
            Some(seen) => {
                let suppressed = seen.suppressed;
                *seen = Seen {
                    logged: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                self.kinds.insert(
                    kind,
                    Seen {
                        logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests;
