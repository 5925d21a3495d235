//! The simulated latency, waited to within a fraction of a millisecond.
//!
//! Tokio's timer wheel counts whole milliseconds and rounds every sleep up to the next
//! tick, and the worker wakes from `epoll_wait` with a millisecond timeout: a simulated
//! 30 ms call took 31.6 ms on average (measured by the benchmark over the lone bookings'
//! calls, 2026-12-07), so every figure measured "beyond n × latency" carried the fakes'
//! own 1.6 ms per call. On Linux the last stretch is waited on a `timerfd` (a
//! high-resolution timer the reactor's epoll wakes on when it fires), which neither spins
//! nor rounds. The bulk of the wait stays on Tokio's clock, so tests with paused time
//! still auto-advance through long latencies.

use std::time::Duration;

/// What is left to the precise timer: more than Tokio's worst rounding (one tick, plus
/// the wake-up), so the coarse sleep never ends past the deadline on an idle machine.
const PRECISE_TAIL: Duration = Duration::from_millis(3);

/// Waits `latency`, to within about 0.1 ms on Linux.
pub(crate) async fn wait(latency: Duration) {
    let deadline = tokio::time::Instant::now() + latency;
    if latency > PRECISE_TAIL {
        tokio::time::sleep_until(deadline - PRECISE_TAIL).await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !left.is_zero() {
        // Tokio's own timer still races it: with paused time (tests) it wins at once, on
        // the virtual clock the test expects; on the real clock it ends a tick late.
        tokio::select! {
            () = precise_sleep(left) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(target_os = "linux")]
async fn precise_sleep(d: Duration) {
    match timer::TimerFd::armed(d) {
        Ok(fd) => fd.fired().await,
        // No timerfd (a sandbox without it): the racing Tokio timer ends the wait.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(target_os = "linux"))]
async fn precise_sleep(_d: Duration) {
    std::future::pending().await
}

#[cfg(target_os = "linux")]
mod timer {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A one-shot `CLOCK_MONOTONIC` timerfd, registered with Tokio's reactor.
    pub(super) struct TimerFd(AsyncFd<OwnedFd>);

    impl TimerFd {
        /// A timer that fires once, `d` from now (timerfd_create(2), timerfd_settime(2)).
        pub(super) fn armed(d: Duration) -> std::io::Result<TimerFd> {
            // SAFETY: plain syscalls on a descriptor this function creates and owns; the
            // itimerspec lives on the stack for the duration of the call.
            let fd = unsafe {
                let raw = libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                );
                if raw < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                OwnedFd::from_raw_fd(raw)
            };
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: d.as_secs() as libc::time_t,
                    // A zero it_value would disarm the timer: wait at least 1 ns.
                    tv_nsec: libc::c_long::from(d.subsec_nanos().max(1)),
                },
            };
            // SAFETY: `fd` is a valid timerfd; `spec` is a valid itimerspec; no old value
            // is asked for.
            let set =
                unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
            if set < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the AsyncFd owns `fd` (an OwnedFd), which stays open and names the
            // same timer until the AsyncFd is dropped.
            let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
            Ok(TimerFd(registered?))
        }

        /// Resolves once the timer has fired (the descriptor turns readable).
        pub(super) async fn fired(&self) {
            // An error from the reactor (it is shutting down) ends the wait too.
            let _ = self.0.readable().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn never_ends_before_the_latency() {
        // How close it comes is the benchmark's figure, not a timed test's.
        for _ in 0..5 {
            let t0 = Instant::now();
            super::wait(Duration::from_millis(30)).await;
            assert!(
                t0.elapsed() >= Duration::from_millis(30),
                "{:?}",
                t0.elapsed()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn long_latencies_follow_paused_time() {
        let t0 = tokio::time::Instant::now();
        super::wait(Duration::from_secs(600)).await;
        assert!(t0.elapsed() >= Duration::from_secs(600));
    }
}
