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
//!
//! A full pacer lets its queue go together. When room comes back and more is coming within
//! a moment (each next room within `BATCH_GAP`, 10 ms, of the last; never past
//! `BATCH_WAIT`, 30 ms, after the first), the caller at the head waits for it, and then
//! the callers queued behind it start in the same turn of the runtime, up to half the
//! smallest limit (25 of apply's 50 a second). Each start is a wake-up of the process from
//! idle, which on a small virtual machine costs more than the call's own work: a scratch
//! client on the 2-core machine spent 0.72 ms of CPU on one apply plus one event create
//! when bookings went one every 40 ms, and 0.24 ms when five went together every 200 ms.
//! Calls that start together are answered together, so their room comes back together a
//! window later, and the next batch takes it in one go. Room that comes back spread out is
//! not waited for past the gap, so the limits are used as fully as before: in the
//! benchmark's burst, waiting up to 30 ms for every batch to fill cost 0.6 % of the wall
//! time, and waiting across gaps of 10 ms at most costs none that shows. A caller that
//! finds room for itself and every caller queued behind it, which is every lone call,
//! starts at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Callers inside [`Pacer::acquire`]: queued, or about to start.
    waiting: AtomicUsize,
    /// The largest batch a full pacer lets go at once.
    batch: usize,
}

/// The calls that may still count against a window.
#[derive(Debug, Default)]
struct Calls {
    /// Started and not yet answered (or given up on).
    in_flight: usize,
    /// When the answered ones were answered, within the longest window, oldest first.
    ended: VecDeque<Instant>,
    /// Callers still to start in the batch the last one opened; each starts as soon as
    /// it has the turn.
    batch_left: usize,
}

/// Counts a caller in [`Pacer::acquire`] until it returns or is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        let limits: Vec<Limit> = limits.iter().copied().filter(|l| l.max > 0).collect();
        let smallest = limits.iter().map(|l| l.max).min().unwrap_or(1);
        Pacer {
            limits,
            turn: tokio::sync::Mutex::new(()),
            calls: Mutex::new(Calls::default()),
            ended: Notify::new(),
            waiting: AtomicUsize::new(0),
            batch: batch_of(smallest),
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
        let _waiting = Waiting::enter(&self.waiting);
        let _turn = self.turn.lock().await;
        // Set once there is room for this caller: until then it may wait for its batch.
        let mut deadline = None;
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
                let in_batch = calls.batch_left > 0;
                let want = self.want(&calls, in_batch);
                let fits = self.fits(&calls, now, want);
                let wait = if fits == 0 {
                    Some(self.room(&calls, now, 1))
                } else {
                    let deadline = *deadline.get_or_insert(now + BATCH_WAIT);
                    self.more_soon(&calls, now, want, fits, deadline)
                };
                match wait {
                    Some(room) => room,
                    None => {
                        calls.batch_left = if in_batch {
                            calls.batch_left - 1
                        } else {
                            fits - 1
                        };
                        calls.in_flight += 1;
                        return Slot { pacer: self };
                    }
                }
            };
            match room {
                Room::At(at) => tokio::time::sleep_until(at).await,
                Room::AfterAnAnswer | Room::Now => answered.await,
            }
        }
    }

    /// The room a caller waits for: a caller in an open batch, room for itself; one that
    /// opens a batch, room for every caller queued (itself included), up to a batch, and
    /// no more than the calls on their way leave room for (they hold theirs for a window
    /// after their answer, longer than a batch is waited for).
    fn want(&self, calls: &Calls, in_batch: bool) -> usize {
        if in_batch {
            return 1;
        }
        let queued = self.waiting.load(Ordering::Relaxed).min(self.batch);
        let left_by_those_on_their_way = self
            .limits
            .iter()
            .map(|l| l.max.saturating_sub(calls.in_flight))
            .min()
            .unwrap_or(queued);
        queued.min(left_by_those_on_their_way).max(1)
    }

    /// With room for `fits` of `want` calls: the room for one more, when it comes within
    /// a moment of `now` and by `deadline`, the batch's bound. `None`: go with what fits.
    fn more_soon(
        &self,
        calls: &Calls,
        now: Instant,
        want: usize,
        fits: usize,
        deadline: Instant,
    ) -> Option<Room> {
        if fits >= want {
            return None;
        }
        match self.room(calls, now, fits + 1) {
            Room::At(more) if more <= (now + BATCH_GAP).min(deadline) => Some(Room::At(more)),
            _ => None,
        }
    }

    /// How many of `want` more calls every window has room for now.
    fn fits(&self, calls: &Calls, now: Instant, want: usize) -> usize {
        self.limits.iter().fold(want, |fits, limit| {
            let counted = calls.in_flight + self.answered_within(calls, limit.window, now);
            fits.min(limit.max.saturating_sub(counted))
        })
    }

    /// The calls answered within `window` before `now`: the newest ones; a call answered
    /// exactly one window ago has left it. `ended` is in order, so a binary search finds
    /// them (the minute window holds up to 1,000, and this runs for every call).
    fn answered_within(&self, calls: &Calls, window: Duration, now: Instant) -> usize {
        calls.ended.len() - calls.ended.partition_point(|&t| t + window <= now)
    }

    /// When every window has room for `want` more calls, as far as the calls known now
    /// say.
    fn room(&self, calls: &Calls, now: Instant, want: usize) -> Room {
        let mut room = Room::Now;
        for limit in &self.limits {
            let want = want.clamp(1, limit.max);
            let answered = self.answered_within(calls, limit.window, now);
            let counted = calls.in_flight + answered;
            if counted + want <= limit.max {
                continue;
            }
            // Room for `want` frees when `counted + want - max` answered calls have left
            // the window, oldest first: the last of those to leave names the time.
            let must_leave = counted + want - limit.max;
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

/// The longest a caller with room waits for room for the rest of its batch.
const BATCH_WAIT: Duration = Duration::from_millis(30);

/// Room that comes back within this of the room before it is waited for, to go in the
/// same batch; room further off is not.
const BATCH_GAP: Duration = Duration::from_millis(10);

/// The most callers a full pacer lets go together: half its smallest limit (25 of
/// apply's 50 a second), at least one.
fn batch_of(smallest_limit: usize) -> usize {
    (smallest_limit / 2).max(1)
}

#[cfg(test)]
mod tests;
