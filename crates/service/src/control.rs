//! Admin commands that change tokens or bookings never race the running service (design
//! §2.1, §3 rule 16). A command first tries to take the store lock:
//!
//! - it gets the lock: no service runs on this store, so it does the work itself, holding
//!   the lock until it is done;
//! - `run` holds it: the command sends one JSON [`Request`] line over the control socket
//!   beside the store (`<store>.sock`, mode `0600`, Unix only) and prints the [`Reply`] the
//!   running service sends back — the work runs inside the service, under the same
//!   per-trainer single-flight and in the processor's own turn as everything else.
//!
//! `reconcile`, `refresh-tokens`, `disconnect`, `remind` and `backup` are delegated this way; `rotate-key`
//! refuses while the service runs (it must use the keys of the configuration it was
//! started with; see `src/cli.rs`). A new command (e.g. `remind`) is one [`Request`]
//! variant and one arm in [`Commands::execute`].
//!
//! This module only carries requests and formats what the commands print; the work is the
//! engine's and the token service's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::bookings::{
    reconcile, remind_unconnected, Engine, ProcessorHandle, ReconcileError, RemindSummary, Summary,
};
use crate::ids::TrainerId;
use crate::progress::Progress;
use crate::store::lock::{sibling, StoreLock};
use crate::tasks::Tasks;
use crate::tokens::{refresh_pass, RefreshSummary, TokenService};

/// Longest request line the service reads (a trainer id or email is far shorter).
const MAX_REQUEST_BYTES: u64 = 16 * 1024;

/// Pause after a failed accept on the control socket.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// What `disconnect` writes to `Lark_Connection_Error__c`.
pub const ADMIN_DISCONNECT_REASON: &str =
    "Disconnected by an administrator (lark-vc-bridge disconnect).";

/// A one-shot command, as sent to the running service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// One reconciliation sweep.
    Reconcile,
    /// One pass of the refresh timer.
    RefreshTokens,
    /// Clear a trainer's tokens (record id or email).
    Disconnect { trainer: String },
    /// Connect reminders to every not-connected trainer with upcoming remote bookings.
    Remind,
    /// A consistent copy of the store, written to `to` (an absolute path, new file).
    Backup { to: String },
}

impl Request {
    /// The command's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Reconcile => "reconcile",
            Request::RefreshTokens => "refresh-tokens",
            Request::Disconnect { .. } => "disconnect",
            Request::Remind => "remind",
            Request::Backup { .. } => "backup",
        }
    }
}

/// What a command prints, and whether it failed (then the exit is non-zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Lines for stdout.
    pub output: String,
    /// Why the command failed, for stderr.
    pub error: Option<String>,
    /// What failed, one line per booking or trainer (`failed: …`), for stderr.
    #[serde(default)]
    pub failures: Vec<String>,
    /// The command's summary as JSON (a reconcile's [`Summary`], a refresh pass's
    /// [`RefreshSummary`]), when it has one.
    #[serde(default)]
    pub summary: Option<serde_json::Value>,
}

impl Reply {
    fn ok(output: String) -> Reply {
        Reply {
            output,
            error: None,
            failures: Vec::new(),
            summary: None,
        }
    }

    fn failed(output: String, error: String) -> Reply {
        Reply {
            error: Some(error),
            ..Reply::ok(output)
        }
    }

    /// A reconciliation's reply: fails (non-zero exit) when any booking failed, naming each.
    pub fn of_reconcile(s: &Summary) -> Reply {
        let failures: Vec<String> = s
            .failures
            .iter()
            .map(|f| format!("failed: booking {} ({:?}): {}", f.booking, f.kind, f.reason))
            .collect();
        let error = (!s.is_clean()).then(|| {
            format!(
                "{} bookings failed",
                s.failures.len().max(s.failed + s.write_failures)
            )
        });
        Reply {
            output: s.line(),
            error,
            failures,
            summary: serde_json::to_value(s).ok(),
        }
    }

    /// A `remind`'s reply: fails (non-zero exit) when a reminder could not be sent for
    /// another reason than the trainer being unreachable, naming each.
    pub fn of_remind(s: &RemindSummary) -> Reply {
        let failures: Vec<String> = s
            .failed
            .iter()
            .map(|t| {
                format!(
                    "failed: trainer {}: {}",
                    t.id,
                    t.reason.as_deref().unwrap_or("")
                )
            })
            .collect();
        let error = (!failures.is_empty()).then(|| format!("{} reminders failed", failures.len()));
        Reply {
            output: s.lines(),
            error,
            failures,
            summary: serde_json::to_value(s).ok(),
        }
    }

    /// A refresh pass's reply: fails (non-zero exit) when any step failed, naming each.
    pub fn of_refresh(s: &RefreshSummary) -> Reply {
        let failures: Vec<String> = s
            .failures
            .iter()
            .map(|f| {
                let who = f
                    .trainer
                    .as_ref()
                    .map_or_else(|| "(the pass)".to_string(), ToString::to_string);
                format!("failed: trainer {who}: {}", f.reason)
            })
            .collect();
        let error = (!s.is_clean())
            .then(|| format!("{} refresh steps failed", s.failures.len().max(s.failed)));
        Reply {
            output: s.line(),
            error,
            failures,
            summary: serde_json::to_value(s).ok(),
        }
    }
}

/// The control socket of the store at `store_path`.
pub fn socket_path(store_path: &Path) -> PathBuf {
    sibling(store_path, "sock")
}

/// Sends `request` to the service holding the store and waits for its reply.
pub(crate) async fn send(
    store_path: &Path,
    holder: &str,
    request: &Request,
) -> anyhow::Result<Reply> {
    let path = socket_path(store_path);
    let mut stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "the store is in use ({holder}) but nothing answers on its control socket {}; \
             if that is not `run`, try again when it has finished",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .context("reading the running service's reply")?;
    serde_json::from_slice(&answer)
        .context("the running service closed the control socket without a reply (did it stop?)")
}

/// The control socket `run` listens on.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `<store>.sock`, mode `0600`. Holding the store lock (`_lock`) is what makes
    /// removing a socket file left by a crashed `run` safe.
    pub fn bind(store_path: &Path, _lock: &StoreLock) -> anyhow::Result<ControlSocket> {
        let path = socket_path(store_path);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("removing the old {}", path.display())),
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
        Ok(ControlSocket { listener, path })
    }

    /// Answers requests, each on its own task of `tasks` (so shutdown lets a delegated
    /// command finish, rule 24), until shutdown; then removes the socket.
    pub async fn serve(
        self,
        commands: Commands,
        mut shutdown: watch::Receiver<bool>,
        tasks: Tasks,
    ) {
        let commands = Arc::new(commands);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let commands = commands.clone();
                    tasks.spawn(
                        "control request",
                        async move { answer(stream, &commands).await },
                    );
                }
                Err(e) => {
                    // E.g. out of file descriptors: pause instead of spinning.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one request line, runs it, writes the reply.
async fn answer(stream: UnixStream, commands: &Commands) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let request = match BufReader::new(read.take(MAX_REQUEST_BYTES))
        .read_line(&mut line)
        .await
    {
        Ok(_) => serde_json::from_str::<Request>(&line)
            .map_err(|e| format!("not a request this service understands: {e}")),
        Err(e) => Err(format!("could not read the request: {e}")),
    };
    let reply = match request {
        Ok(request) => {
            tracing::info!(
                command = request.name(),
                "admin command received on the control socket"
            );
            commands.execute(&request).await
        }
        Err(e) => Reply::failed(String::new(), e),
    };
    if let Ok(bytes) = serde_json::to_vec(&reply) {
        let _ = write.write_all(&bytes).await;
    }
}

/// Runs requests with a core's engine and token service.
pub struct Commands {
    engine: Arc<Engine>,
    tokens: TokenService,
    /// The running processor, when there is one: sweeps then run in its turn.
    processor: Option<ProcessorHandle>,
}

impl Commands {
    /// For a one-shot process (nothing else runs on the store).
    pub fn local(engine: Arc<Engine>, tokens: TokenService) -> Commands {
        Commands {
            engine,
            tokens,
            processor: None,
        }
    }

    /// For the running service.
    pub fn in_service(
        engine: Arc<Engine>,
        tokens: TokenService,
        processor: ProcessorHandle,
    ) -> Commands {
        Commands {
            engine,
            tokens,
            processor: Some(processor),
        }
    }

    /// Runs one request; failures are in the reply.
    pub async fn execute(&self, request: &Request) -> Reply {
        match request {
            Request::Reconcile => {
                let result = match &self.processor {
                    Some(p) => p.reconcile().await,
                    None => {
                        // A one-shot process: its own stderr shows how far the sweep is.
                        let _progress = self
                            .engine
                            .progress()
                            .watch(Progress::EVERY, |done, total| {
                                eprintln!("reconcile: {done} of {total} bookings done")
                            });
                        reconcile(&self.engine).await.map_err(ReconcileError::from)
                    }
                };
                match result {
                    Ok(s) => Reply::of_reconcile(&s),
                    Err(e) => Reply::failed(String::new(), format!("reconciliation failed: {e}")),
                }
            }
            Request::RefreshTokens => Reply::of_refresh(&refresh_pass(&self.tokens).await),
            Request::Disconnect { trainer } => match self.disconnect(trainer).await {
                Ok(id) => Reply::ok(format!("disconnected trainer {id}")),
                Err(e) => Reply::failed(String::new(), format!("{e:#}")),
            },
            Request::Remind => match remind_unconnected(&self.engine).await {
                Ok(s) => Reply::of_remind(&s),
                Err(e) => Reply::failed(String::new(), format!("remind failed: {e}")),
            },
            // In the running service this holds the store for the copy's length (a few
            // milliseconds per megabyte); every other use of the store waits for it.
            Request::Backup { to } => match self.engine.store().backup_to(Path::new(to)) {
                Ok(()) => Reply::ok(format!("backed up the store to {to}")),
                Err(e) => Reply::failed(String::new(), e.to_string()),
            },
        }
    }

    async fn disconnect(&self, id_or_email: &str) -> anyhow::Result<TrainerId> {
        let trainer = self
            .tokens
            .trainers()
            .find(id_or_email)
            .await?
            .with_context(|| format!("no trainer found for {id_or_email:?}"))?;
        self.tokens
            .disconnect(&trainer.id, ADMIN_DISCONNECT_REASON)
            .await?;
        Ok(trainer.id)
    }
}

#[cfg(test)]
mod tests;
