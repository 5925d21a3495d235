//! Every background task of the running service has an owner that waits for it (design
//! §3 rule 24): [`Tasks`] spawns named tasks on one `TaskTracker`, and shutdown closes it,
//! waits up to `processing.shutdown_timeout` for what is in flight — a booking batch, a
//! refresh pass whose rotated tokens must be journalled, a command delegated over the
//! control socket, an alert — and only then cancels what is left, naming each in the log.
//! No `tokio::spawn` elsewhere outlives its owner.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;

/// The running service's tasks; cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tracker: TaskTracker,
    /// Each running task's name, and its abort handle once `spawn` has it.
    running: Mutex<BTreeMap<u64, (String, Option<AbortHandle>)>>,
    next: AtomicU64,
}

/// Takes a finished task off the list, however it ended.
struct Done {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Tasks {
    /// Spawns `task` as `name` (what the log calls it if shutdown has to cancel it).
    pub fn spawn<F>(&self, name: impl Into<String>, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let done = Done {
            inner: self.inner.clone(),
            id,
        };
        // Listed before it can run (and finish), so its removal always comes after. The
        // lock is not held across the spawn: on a runtime that is shutting down the task
        // is dropped inside `spawn`, and its removal takes the lock (holding it there
        // deadlocked the test suite once).
        self.list().insert(id, (name.into(), None));
        let handle = self.inner.tracker.spawn(async move {
            let _done = done;
            task.await
        });
        // Still listed unless it has already finished.
        if let Some((_, abort)) = self.list().get_mut(&id) {
            *abort = Some(handle.abort_handle());
        }
        handle
    }

    fn list(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, Option<AbortHandle>)>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The names of the tasks still running, oldest first.
    pub fn running(&self) -> Vec<String> {
        self.list().values().map(|(name, _)| name.clone()).collect()
    }

    /// Takes no more tasks, waits up to `timeout` for those running, then cancels the
    /// rest; returns their names (empty when everything finished in time).
    pub async fn shutdown(&self, timeout: Duration) -> Vec<String> {
        self.inner.tracker.close();
        if tokio::time::timeout(timeout, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let left: Vec<(String, Option<AbortHandle>)> = self.list().values().cloned().collect();
        for (name, handle) in &left {
            tracing::warn!(task = %name, after = ?timeout, "still running at the end of the shutdown timeout; cancelled");
            if let Some(handle) = handle {
                handle.abort();
            }
        }
        // Cancelled tasks end at their next await; the registry empties as they do.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.tracker.wait()).await;
        left.into_iter().map(|(name, _)| name).collect()
    }
}

#[cfg(test)]
mod tests;
