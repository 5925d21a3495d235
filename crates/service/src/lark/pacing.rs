//! App-wide pacing of calls Lark rate-limits per app (design §4: reserve apply is limited
//! to 50 per second and 1000 per minute). A burst of bookings is paced, not failed.
//!
//! The pacer keeps the start times of recent calls and lets a caller start only when
//! every sliding window still has room. It runs at the limits, less a 100 ms margin per
//! window for network jitter: the 51st call starts 1.1 s after the 1st. Waiters are served in
//! arrival order (the queue is a FIFO `tokio::sync::Mutex`). It only paces; what to do
//! when Lark still answers 429 is the retry helper's business.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Lark's per-app limit on `POST /open-apis/vc/v1/reserves/apply` per second.
pub const APPLY_PER_SECOND: usize = 50;
/// Lark's per-app limit on `POST /open-apis/vc/v1/reserves/apply` per minute.
pub const APPLY_PER_MINUTE: usize = 1000;

/// Padding on each of Lark's windows. Lark counts a request when it arrives, tens of
/// milliseconds and some jitter after we start it: without a margin, the 51st start
/// exactly one second after the 1st can arrive inside Lark's window and be refused with
/// 429, wasting its slot (measured by the burst benchmark: 60–87 refusals per 2,000).
pub const WINDOW_MARGIN: Duration = Duration::from_millis(100);

/// "At most `max` starts in any `window`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most starts allowed in one window.
    pub max: usize,
    /// Length of the sliding window.
    pub window: Duration,
}

/// Sliding-window pacer shared by every caller of one kind of request.
#[derive(Debug)]
pub struct Pacer {
    limits: Vec<Limit>,
    /// Start times within the longest window, oldest first. Held across the wait, so the
    /// lock's FIFO order is the order callers start in.
    starts: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    /// A pacer enforcing every limit at once. Limits with `max == 0` are ignored.
    pub fn new(limits: &[Limit]) -> Pacer {
        Pacer {
            limits: limits.iter().copied().filter(|l| l.max > 0).collect(),
            starts: Mutex::new(VecDeque::new()),
        }
    }

    /// The pacer for reserve apply: 50 per second and 1000 per minute, each window
    /// padded by [`WINDOW_MARGIN`].
    pub fn for_reserve_apply() -> Pacer {
        Pacer::new(&[
            Limit {
                max: APPLY_PER_SECOND,
                window: Duration::from_secs(1) + WINDOW_MARGIN,
            },
            Limit {
                max: APPLY_PER_MINUTE,
                window: Duration::from_secs(60) + WINDOW_MARGIN,
            },
        ])
    }

    /// A pacer at Lark's standard per-app tier of 50 per second and 1000 per minute (the
    /// tier of every Calendar v4 method and of `contact/v3/users/batch_get_id`, each
    /// method counted on its own: "1000 次/分钟、50 次/秒" on each method's page), padded
    /// like [`Pacer::for_reserve_apply`].
    pub fn at_standard_limits() -> Pacer {
        Pacer::for_reserve_apply()
    }

    /// Waits until a call may start without exceeding any limit, and records the start.
    pub async fn acquire(&self) {
        let mut starts = self.starts.lock().await;
        loop {
            let now = Instant::now();
            let longest = self
                .limits
                .iter()
                .map(|l| l.window)
                .max()
                .unwrap_or_default();
            while starts.front().is_some_and(|&t| t + longest <= now) {
                starts.pop_front();
            }
            match self.next_free(&starts, now) {
                None => {
                    starts.push_back(now);
                    return;
                }
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// When the fullest window frees a slot, or None when every window has room now.
    /// A window covers `(now - window, now]`: a start exactly one window ago has left it.
    fn next_free(&self, starts: &VecDeque<Instant>, now: Instant) -> Option<Instant> {
        let mut free_at: Option<Instant> = None;
        for limit in &self.limits {
            let in_window = starts
                .iter()
                .rev()
                .take_while(|&&t| t + limit.window > now)
                .count();
            if in_window >= limit.max {
                // The slot frees when the start `max` places back leaves the window.
                let oldest_that_counts = starts[starts.len() - limit.max];
                let at = oldest_that_counts + limit.window;
                free_at = Some(free_at.map_or(at, |f| f.max(at)));
            }
        }
        free_at
    }
}

#[cfg(test)]
mod tests;
