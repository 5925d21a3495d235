//! The command line of design §2.1. Each command loads settings, builds what it needs
//! and calls into the service library; printing is the only thing done here. `demo` and
//! `simulate` are the two commands that start the simulators.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use lark_vc_bridge::app::{shutdown_signal, App, Core};
use lark_vc_bridge::config::Settings;
use lark_vc_bridge::control::Request;
use lark_vc_bridge::progress::Progress;
use lark_vc_bridge::salesforce::SalesforceClient;
use lark_vc_bridge::store::lock::{LockError, StoreLock};
use lark_vc_bridge::tokens::trainers::Trainers;

/// lark-vc-bridge: a Lark video meeting, hosted by its trainer, for every remote
/// training booking in Salesforce.
#[derive(Debug, Parser)]
#[command(name = "lark-vc-bridge", version, about)]
pub struct Cli {
    /// A TOML file layered over the defaults (also LVB_CONFIG).
    #[arg(long, global = true, env = "LVB_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service until SIGTERM or ctrl-c.
    Run,
    /// Run the whole job against built-in simulators and narrate it.
    Demo {
        /// Print the final state as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Start only the simulators on loopback and print a config snippet for them.
    Simulate {
        /// Salesforce simulator port (0 = any free port).
        #[arg(long, default_value_t = 0)]
        sf_port: u16,
        /// Lark simulator port (0 = any free port).
        #[arg(long, default_value_t = 0)]
        lark_port: u16,
    },
    /// Check the configuration and every external dependency.
    Check {
        /// Print the checklist as JSON ({"ok", "checks": [{"name", "ok", "detail"}]}).
        #[arg(long)]
        json: bool,
    },
    /// One reconciliation sweep of upcoming remote bookings.
    Reconcile,
    /// One pass of the token refresh timer.
    RefreshTokens,
    /// Print a trainer's connect URL.
    ConnectLink {
        /// Trainer record id or email.
        trainer: String,
    },
    /// Clear a trainer's tokens and mark them not connected.
    Disconnect {
        /// Trainer record id or email.
        trainer: String,
    },
    /// Re-encrypt every stored token with the current primary key.
    RotateKey,
    /// Write a consistent copy of the store to a new file (also while `run` is up: the
    /// running service makes it).
    Backup {
        /// Where the copy goes; must not exist yet.
        to: PathBuf,
    },
    /// Send the connect reminder to every not-connected trainer with upcoming remote
    /// bookings (at most one a day each).
    Remind {
        /// Print who was reached, skipped or not reachable as JSON
        /// ({"reached", "already_reminded", "unreachable", "failed"}).
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command; the process exit code follows the result.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { json } => return crate::demo::run(json).await,
        Command::Simulate { sf_port, lark_port } => {
            return lvb_simulators::run_simulate(sf_port, lark_port, shutdown_signal()).await
        }
        Command::Check { json } => {
            let ok = match json {
                true => lark_vc_bridge::check::run_json(cli.config.as_deref()).await,
                false => lark_vc_bridge::check::run(cli.config.as_deref()).await,
            };
            if !ok {
                bail!("some checks failed");
            }
            return Ok(());
        }
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    // One-shot commands build only what they need: no HTTP listener, and the work that
    // touches tokens or bookings under the store lock or inside the running service.
    let mut json = false;
    let request = match cli.command {
        Command::Run => {
            let app = App::build(settings).await?;
            tracing::info!(url = %app.local_url(), "lark-vc-bridge listening");
            return app.run_until_stopped(shutdown_signal()).await;
        }
        Command::Reconcile => Request::Reconcile,
        Command::RefreshTokens => Request::RefreshTokens,
        Command::Disconnect { trainer } => Request::Disconnect { trainer },
        Command::Remind { json: as_json } => {
            json = as_json;
            Request::Remind
        }
        Command::Backup { to } => {
            // The running service has its own working directory: send it a whole path.
            let to = std::path::absolute(&to)
                .with_context(|| format!("the backup path {}", to.display()))?;
            let to = to
                .to_str()
                .with_context(|| format!("the backup path {} is not UTF-8", to.display()))?
                .to_string();
            Request::Backup { to }
        }
        Command::ConnectLink { trainer } => {
            // Reads Salesforce only: neither the lock nor the store, which a running `run`
            // holds (no other connection can read it then).
            let settings = Arc::new(settings);
            let salesforce = SalesforceClient::new(&settings.salesforce)
                .context("building the Salesforce client")?;
            let t = Trainers::new(settings.clone(), salesforce)
                .find(&trainer)
                .await?
                .with_context(|| format!("no trainer found for {trainer:?}"))?;
            println!("{}", settings.server.connect_link(&t.id));
            return Ok(());
        }
        Command::RotateKey => return rotate_key(settings).await,
        Command::Demo { .. } | Command::Simulate { .. } | Command::Check { .. } => {
            unreachable!()
        }
    };
    let reply = lark_vc_bridge::app::run_command(settings, request).await?;
    match (&reply.summary, json) {
        (Some(summary), true) => println!("{}", serde_json::to_string_pretty(summary)?),
        _ if !reply.output.is_empty() => println!("{}", reply.output),
        _ => {}
    }
    // What failed, booking by booking or trainer by trainer (the same lines whether the
    // work ran here or in the running service).
    for line in &reply.failures {
        eprintln!("{line}");
    }
    match reply.error {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

/// Re-encrypts every stored token with the primary key. Refuses while `run` holds the
/// store: the service keeps the keys it started with, so the admin restarts it with the
/// new keys, stops it, rotates, and starts it again.
async fn rotate_key(settings: Settings) -> anyhow::Result<()> {
    let _lock = match StoreLock::acquire(&settings.store.path, "rotate-key") {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => bail!(
            "rotate-key does not run beside the service ({holder}): it re-encrypts every \
             stored token with the keys of this configuration. Stop the service, run \
             rotate-key, then start the service again with the same keys"
        ),
        Err(e) => return Err(e.into()),
    };
    let core = Core::build(Arc::new(settings))?;
    let progress = Progress::default();
    let _progress = progress.watch(Progress::EVERY, |done, total| {
        eprintln!("rotate-key: {done} of {total} trainers written")
    });
    let s = core.tokens.rotate_key(&progress).await?;
    for line in &s.undecryptable {
        eprintln!("{line}");
    }
    println!(
        "re-encrypted: {}  already current: {}  undecryptable: {}  write failures: {}  journal rows re-encrypted: {}",
        s.rotated,
        s.current,
        s.undecryptable.len(),
        s.write_failures,
        s.journal_rows
    );
    if s.write_failures > 0 || !s.undecryptable.is_empty() {
        bail!("rotation incomplete");
    }
    Ok(())
}
