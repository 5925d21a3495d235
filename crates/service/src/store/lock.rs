//! One process per store (design §3 rule 16): an exclusive OS file lock on
//! `<store>.lock`, held by `run` for its whole life and by a one-shot command while it
//! works on the store itself. The lock file says who holds it (pid, command, start time)
//! so whoever is refused can name the holder.
//!
//! The lock is `flock(2)` through `std::fs::File::try_lock` (stable since Rust 1.89, our
//! MSRV): the kernel drops it when the holder exits or crashes, so a stale lock file never
//! blocks a restart. It owns nothing else; the control socket beside it is
//! [`crate::control`]'s.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The store is held by another process, or the lock file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the store; `holder` is what it wrote in the lock file.
    #[error("the store {store} is in use by another lark-vc-bridge process ({holder}); one process owns a store at a time")]
    Held { store: String, holder: String },
    #[error("cannot use the store lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The exclusive lock on a store; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

/// The lock file of the store at `store_path`: the same path with `.lock` appended.
pub fn lock_path(store_path: &Path) -> PathBuf {
    sibling(store_path, "lock")
}

/// `<store>.<suffix>`, beside the store.
pub(crate) fn sibling(store_path: &Path, suffix: &str) -> PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

impl StoreLock {
    /// Takes the lock of the store at `store_path` for `command` (`run`, `reconcile`, …),
    /// or says who holds it. Never waits.
    pub fn acquire(store_path: &Path, command: &str) -> Result<StoreLock, LockError> {
        let path = lock_path(store_path);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Not truncated on open: a refused process must not wipe the holder's note.
        let mut file = private_file(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    store: store_path.display().to_string(),
                    holder: if holder.is_empty() {
                        "holder unknown: it is still starting".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let note = format!(
            "pid {}, `{command}`, started at {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        Ok(StoreLock { file, path })
    }

    /// True when nobody holds the lock of the store at `store_path` right now.
    pub fn is_free(store_path: &Path) -> bool {
        StoreLock::acquire(store_path, "probe").is_ok()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; clearing the note keeps a later
        // reader from naming a process that is gone.
        let _ = self.file.set_len(0);
    }
}

/// Makes an existing file `0600` if it is not (a store file an older version created
/// `0644`, design §3 rule 27); a missing file is left missing. No-op elsewhere than Unix.
pub(crate) fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if mode & 0o7777 != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens (creating if needed) a file only its owner may read or write (`0600` on Unix),
/// tightening it to that if it existed with a wider mode.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // The mode applies only to a file created now.
    make_private(path)?;
    Ok(file)
}

/// Creates a file only its owner may read or write (`0600` on Unix), private from its
/// first byte; one that exists already is an `AlreadyExists` error, left as it is.
pub(crate) fn new_private_file(path: &Path) -> std::io::Result<File> {
    private_options().write(true).create_new(true).open(path)
}

/// Open options whose created file gets mode `0600` (on Unix).
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests;
