//! App-wide pacing of calls Lark rate-limits per app (design §4: reserve apply is limited
//! to 50 per second and 1000 per minute). A burst of bookings is paced, not failed.
//!
//! Lark counts a call when it arrives, which we never see: only when we started it and
//! when its answer came back. The arrival lies between the two, so the pacer counts a call
//! against a window from its start until one window after its answer: a call still on its
//! way counts, and one answered at `t` has surely left every window by `t + window`. A new
//! call starts only when, counted that way, every window still has room. That needs no
//! guessed margin for network jitter or clock granularity (one of 100 ms per window used to
//! cost 2 s of every 1,000 applies and was still a guess); what it costs is one round trip
//! per window. Waiters are served in arrival order (the queue is a FIFO
//! `tokio::sync::Mutex`). It only paces; what to do when Lark still answers 429 is the
//! retry helper's business.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Lark's per-app limit on `POST /open-apis/vc/v1/reserves/apply` per second.
pub const APPLY_PER_SECOND: usize = 50;
/// Lark's per-app limit on `POST /open-apis/vc/v1/reserves/apply` per minute.
pub const APPLY_PER_MINUTE: usize = 1000;

/// "At most `max` calls in any `window`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most calls allowed in one window.
    pub max: usize,
    /// Length of the sliding window.
    pub window: Duration,
}

/// Sliding-window pacer shared by every caller of one kind of request.
#[derive(Debug)]
pub struct Pacer {
    limits: Vec<Limit>,
    /// The waiters' queue: held across the wait, so its FIFO order is the order callers
    /// start in.
    turn: tokio::sync::Mutex<()>,
    calls: Mutex<Calls>,
    /// Woken when a call ends: a window full of calls on their way may have room later.
    ended: Notify,
}

/// The calls that may still count against a window.
#[derive(Debug, Default)]
struct Calls {
    /// Started and not yet answered (or given up on).
    in_flight: usize,
    /// When the answered ones were answered, within the longest window, oldest first.
    ended: VecDeque<Instant>,
}

/// A started call: it counts against the pacer's windows until one window after it is
/// dropped, which is when its answer has been read (or the call was given up). Keep it
/// for as long as the request may still be on its way.
#[derive(Debug)]
#[must_use = "a call counts from its start until one window after its slot is dropped"]
pub struct Slot<'a> {
    pacer: &'a Pacer,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut calls = self.pacer.calls();
        calls.in_flight = calls.in_flight.saturating_sub(1);
        // Read under the lock, so the queue stays in order across threads.
        calls.ended.push_back(Instant::now());
        drop(calls);
        self.pacer.ended.notify_waiters();
    }
}

/// What one limit says about starting a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Now,
    /// Once the answered call that fills the window leaves it.
    At(Instant),
    /// Only once some call on its way is answered.
    AfterAnAnswer,
}

impl Pacer {
    /// A pacer enforcing every limit at once. Limits with `max == 0` are ignored.
    pub fn new(limits: &[Limit]) -> Pacer {
        Pacer {
            limits: limits.iter().copied().filter(|l| l.max > 0).collect(),
            turn: tokio::sync::Mutex::new(()),
            calls: Mutex::new(Calls::default()),
            ended: Notify::new(),
        }
    }

    /// The pacer for reserve apply: 50 per second and 1000 per minute.
    pub fn for_reserve_apply() -> Pacer {
        Pacer::new(&[
            Limit {
                max: APPLY_PER_SECOND,
                window: Duration::from_secs(1),
            },
            Limit {
                max: APPLY_PER_MINUTE,
                window: Duration::from_secs(60),
            },
        ])
    }

    /// A pacer at Lark's standard per-app tier of 50 per second and 1000 per minute (the
    /// tier of every Calendar v4 method and of `contact/v3/users/batch_get_id`, each
    /// method counted on its own: "1000 次/分钟、50 次/秒" on each method's page).
    pub fn at_standard_limits() -> Pacer {
        Pacer::for_reserve_apply()
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a call may start without exceeding any limit, and counts it from now
    /// until one window after the returned [`Slot`] is dropped.
    pub async fn acquire(&self) -> Slot<'_> {
        let _turn = self.turn.lock().await;
        loop {
            // Made before looking, so an answer that lands in between still wakes us.
            let answered = self.ended.notified();
            let room = {
                let mut calls = self.calls();
                let now = Instant::now();
                let longest = self.limits.iter().map(|l| l.window).max();
                let longest = longest.unwrap_or_default();
                while calls.ended.front().is_some_and(|&t| t + longest <= now) {
                    calls.ended.pop_front();
                }
                let room = self.room(&calls, now);
                if room == Room::Now {
                    calls.in_flight += 1;
                    return Slot { pacer: self };
                }
                room
            };
            match room {
                Room::At(at) => tokio::time::sleep_until(at).await,
                Room::AfterAnAnswer | Room::Now => answered.await,
            }
        }
    }

    /// When every window has room, as far as the calls known now say.
    fn room(&self, calls: &Calls, now: Instant) -> Room {
        let mut room = Room::Now;
        for limit in &self.limits {
            // Answered within the window: the newest ones; a call answered exactly one
            // window ago has left it. `ended` is in order, so a binary search finds them
            // (the minute window holds up to 1,000, and this runs for every call).
            let answered =
                calls.ended.len() - calls.ended.partition_point(|&t| t + limit.window <= now);
            let counted = calls.in_flight + answered;
            if counted < limit.max {
                continue;
            }
            // One slot frees when `counted - max + 1` answered calls have left the
            // window, oldest first: the last of those to leave names the time.
            let must_leave = counted - limit.max + 1;
            let this = if must_leave <= answered {
                let oldest_counted = calls.ended.len() - answered;
                Room::At(calls.ended[oldest_counted + must_leave - 1] + limit.window)
            } else {
                Room::AfterAnAnswer
            };
            room = match (room, this) {
                (Room::AfterAnAnswer, _) | (_, Room::AfterAnAnswer) => Room::AfterAnAnswer,
                (Room::At(a), Room::At(b)) => Room::At(a.max(b)),
                (Room::Now, other) | (other, Room::Now) => other,
            };
        }
        room
    }
}

#[cfg(test)]
mod tests;
