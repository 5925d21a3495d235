//! Waiting helpers for the simulators' own tests.

use std::time::Duration;

/// Keeps a paused clock from auto-advancing while it lives, so tests do real HTTP on
/// loopback and move time only with `tokio::time::advance`. A running
/// `spawn_blocking` task is what inhibits auto-advance on a current-thread runtime.
pub(crate) struct FrozenClock(Option<std::sync::mpsc::Sender<()>>);

impl FrozenClock {
    pub(crate) fn hold() -> FrozenClock {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        FrozenClock(Some(tx))
    }
}

impl Drop for FrozenClock {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Yields until `cond` holds; panics after 10 s of real time.
pub(crate) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}
