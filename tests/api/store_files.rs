//! Store files are `0600` after every start (design §3 rules 16 and 27, issue 21 item 8),
//! through the real binary: `run` killed (so the `-wal`, lock and socket files stay behind,
//! with the `-shm` an older version made), every file opened up to `0644` as an older
//! version left them, `run` again.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lvb_simulators::launch::Simulators;

use crate::bounds::run_binary;

/// The store's files beside `store.db` in `dir`.
fn store_files(dir: &Path) -> Vec<PathBuf> {
    [
        "store.db",
        "store.db-wal",
        "store.db-shm",
        "store.db.lock",
        "store.db.sock",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_files_opened_up_by_an_older_version_are_0600_after_the_next_start() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut first = run_binary(&sims, dir.path(), "").await;
    let shm = dir.path().join("store.db-shm");
    for f in store_files(dir.path()) {
        if f == shm {
            // The connection holds its locks: no WAL index file (older versions made one).
            assert!(!f.exists(), "{} as created", f.display());
            continue;
        }
        assert_eq!(mode(&f), 0o600, "{} as created", f.display());
    }
    // kill -9: nothing is cleaned up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    drop(first);
    // An older version left its WAL index file behind, too.
    std::fs::write(&shm, b"").unwrap();
    for f in store_files(dir.path()) {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let second = run_binary(&sims, dir.path(), "").await;
    for f in store_files(dir.path()) {
        let m = mode(&f);
        assert_eq!(m, 0o600, "{} after the next start: {m:o}", f.display());
    }
    let health = reqwest::get(format!("{}/healthz", second.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the restarted service runs");
}
