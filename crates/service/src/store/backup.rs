//! A consistent copy of the store while it is in use (`lark-vc-bridge backup`). The
//! connection holds SQLite's locks for the life of `run` (see [`Store::open`]), so no other
//! program can read the file then — not even `sqlite3 .backup`; the copy is made by the
//! process that holds it, with `VACUUM INTO`: one transaction, so the copy is a snapshot
//! of committed rows (https://www.sqlite.org/lang_vacuum.html#vacuuminto).

use std::path::Path;

use super::{Store, StoreError};

impl Store {
    /// Writes a consistent copy of the store to `to`, a file that must not exist yet; it is
    /// created `0600` (it holds the same encrypted tokens as the store). On failure no
    /// partial copy is left behind.
    pub fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        let shown = to.display().to_string();
        let Some(target) = to.to_str() else {
            return Err(StoreError::Backup {
                path: shown,
                reason: "the path is not UTF-8".into(),
            });
        };
        // Created here, private from its first byte; `VACUUM INTO` writes into an empty
        // file. An earlier backup is never written over.
        if let Err(e) = super::lock::new_private_file(to) {
            let reason = match e.kind() {
                std::io::ErrorKind::AlreadyExists => "it already exists".to_string(),
                _ => e.to_string(),
            };
            return Err(StoreError::Backup {
                path: shown,
                reason,
            });
        }
        // Not through `Store::with`: a copy the target's disk refuses says nothing about
        // the store's own disk, and must not pause the pipeline (rule 23's check).
        let copied = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute("VACUUM INTO ?1", [target]).map(|_| ())
        };
        copied.map_err(|e| {
            let _ = std::fs::remove_file(to);
            StoreError::Backup {
                path: shown,
                reason: e.to_string(),
            }
        })
    }
}
