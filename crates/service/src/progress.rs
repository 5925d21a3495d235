//! Progress of a long one-shot command (`reconcile` over many bookings, `rotate-key`
//! over many trainers): the work counts items done against a total, and whoever watches
//! (the command line) is told every [`Progress::EVERY_ITEMS`] items and every
//! [`Progress::EVERY`] while it runs. This module prints nothing itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Told `(done, total)`.
type Watcher = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Counts of one long piece of work; cheap to clone (clones share the counts).
#[derive(Clone, Default)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    done: AtomicUsize,
    total: AtomicUsize,
    watcher: OnceLock<Watcher>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (done, total) = self.get();
        f.debug_struct("Progress")
            .field("done", &done)
            .field("total", &total)
            .finish()
    }
}

/// Stops the timed reports of [`Progress::watch`] when dropped.
pub struct Watching(Option<tokio::task::JoinHandle<()>>);

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Progress {
    /// The watcher hears of every this many items done.
    pub const EVERY_ITEMS: usize = 100;
    /// … and, while the work runs, this often (slow calls, rate limits).
    pub const EVERY: Duration = Duration::from_secs(5);

    /// More items to do.
    pub fn add_total(&self, n: usize) {
        self.inner.total.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` more items done.
    pub fn tick(&self, n: usize) {
        let before = self.inner.done.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before / Self::EVERY_ITEMS != after / Self::EVERY_ITEMS {
            if let Some(watcher) = self.inner.watcher.get() {
                watcher(after, self.inner.total.load(Ordering::Relaxed));
            }
        }
    }

    /// `(done, total)` so far.
    pub fn get(&self) -> (usize, usize) {
        (
            self.inner.done.load(Ordering::Relaxed),
            self.inner.total.load(Ordering::Relaxed),
        )
    }

    /// Tells `watcher` `(done, total)` every [`Self::EVERY_ITEMS`] items, and every
    /// `every` while some work is known and not done, until the guard is dropped. The
    /// first watcher stays; later calls only add timed reports.
    pub fn watch(
        &self,
        every: Duration,
        watcher: impl Fn(usize, usize) + Send + Sync + 'static,
    ) -> Watching {
        let watcher: Watcher = Arc::new(watcher);
        let _ = self.inner.watcher.set(watcher.clone());
        let progress = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Watching(None);
        };
        Watching(Some(runtime.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let (done, total) = progress.get();
                if total > 0 && done < total {
                    watcher(done, total);
                }
            }
        })))
    }
}

#[cfg(test)]
mod tests;
