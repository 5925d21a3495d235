//! The command line of design §2.1. Each command loads settings, builds what it needs
//! and calls into the service library; printing is the only thing done here. `demo` and
//! `simulate` are the two commands that start the simulators.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

use lark_vc_bridge::app::{shutdown_signal, App};
use lark_vc_bridge::config::Settings;
use lark_vc_bridge::progress::Progress;
use lark_vc_bridge::salesforce::soql::RecordId;
use lark_vc_bridge::tokens::trainer::{TrainerRecord, F_ACCESS_TOKEN, F_REFRESH_TOKEN, F_USER_ID};

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
    let mut settings = Settings::load(cli.config.as_deref())?;
    if !matches!(cli.command, Command::Run) {
        // One-shot commands serve nothing: never contend for `run`'s listen address.
        settings.server.bind = "127.0.0.1:0".into();
    }
    match cli.command {
        Command::Run => {
            let app = App::build(settings).await?;
            tracing::info!(url = %app.local_url(), "lark-vc-bridge listening");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Reconcile => {
            let app = App::build(settings).await?;
            let _progress = app
                .engine()
                .progress()
                .watch(Progress::EVERY, |done, total| {
                    eprintln!("reconcile: {done} of {total} bookings done")
                });
            let summary = app
                .engine()
                .reconcile()
                .await
                .map_err(|e| anyhow::anyhow!("reconciliation failed: {e}"))?;
            println!("{}", summary.line());
            for f in &summary.failures {
                eprintln!("failed: booking {} ({:?}): {}", f.booking, f.kind, f.reason);
            }
            if !summary.is_clean() {
                bail!("{} bookings failed", summary.failures.len());
            }
            Ok(())
        }
        Command::RefreshTokens => {
            let app = App::build(settings).await?;
            let s = app.engine().refresh_pass().await;
            println!("{}", s.line());
            for f in &s.failures {
                let who = f.trainer.as_deref().unwrap_or("(the pass)");
                eprintln!("failed: trainer {who}: {}", f.reason);
            }
            if s.failed > 0 || !s.failures.is_empty() {
                bail!("{} refresh steps failed", s.failures.len().max(s.failed));
            }
            Ok(())
        }
        Command::ConnectLink { trainer } => {
            let app = App::build(settings).await?;
            let t = find_trainer(&app, &trainer).await?;
            println!("{}", app.settings.server.connect_link(&t.id));
            Ok(())
        }
        Command::Disconnect { trainer } => {
            let app = App::build(settings).await?;
            let t = find_trainer(&app, &trainer).await?;
            let id = RecordId::parse(&t.id)?;
            app.tokens
                .disconnect(
                    &id,
                    "Disconnected by an administrator (lark-vc-bridge disconnect).",
                )
                .await?;
            println!("disconnected trainer {}", t.id);
            Ok(())
        }
        Command::RotateKey => rotate_key(settings).await,
        Command::Demo { .. } | Command::Simulate { .. } | Command::Check { .. } => {
            unreachable!()
        }
    }
}

/// A trainer by record id or email, or an error naming what was looked for.
async fn find_trainer(app: &App, id_or_email: &str) -> anyhow::Result<TrainerRecord> {
    app.tokens
        .find_trainer(id_or_email)
        .await?
        .with_context(|| format!("no trainer found for {id_or_email:?}"))
}

/// Re-encrypts every trainer's tokens (Salesforce and the local journal) with the
/// primary key, through batched collection updates. Idempotent.
async fn rotate_key(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await?;
    let vault = app.tokens.vault();
    let t = &app.settings.salesforce.trainer;
    // Long text areas cannot be filtered in SOQL, so select connected-at-some-point
    // trainers and look at the token fields here.
    let soql = format!(
        "SELECT Id, {F_ACCESS_TOKEN}, {F_REFRESH_TOKEN} FROM {} WHERE {F_USER_ID} != null",
        t.object
    );
    let rows = app.salesforce.query(&soql).await?;
    let (mut rotated, mut current, mut unreadable) = (0usize, 0usize, 0usize);
    let mut updates = Vec::new();
    for row in &rows {
        let Some(id) = row
            .get("Id")
            .and_then(Value::as_str)
            .and_then(|s| RecordId::parse(s).ok())
        else {
            continue;
        };
        let mut fields = serde_json::Map::new();
        for f in [F_ACCESS_TOKEN, F_REFRESH_TOKEN] {
            let Some(enc) = row.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()) else {
                continue;
            };
            match vault.reencrypt(enc) {
                Ok(None) => current += 1,
                Ok(Some(fresh)) => {
                    fields.insert(f.to_string(), Value::String(fresh));
                    rotated += 1;
                }
                Err(e) => {
                    unreadable += 1;
                    eprintln!("trainer {id}: {f} cannot be decrypted with any configured key: {e}");
                }
            }
        }
        if !fields.is_empty() {
            updates.push((id, fields));
        }
    }
    let progress = Progress::default();
    progress.add_total(updates.len());
    let _progress = progress.watch(Progress::EVERY, |done, total| {
        eprintln!("rotate-key: {done} of {total} trainers written")
    });
    let mut results = Vec::with_capacity(updates.len());
    let mut updates = updates.into_iter().peekable();
    while updates.peek().is_some() {
        // One sObject Collections call at a time, so progress moves as they land.
        let chunk: Vec<_> = updates.by_ref().take(200).collect();
        let n = chunk.len();
        results.extend(app.salesforce.update_many(&t.object, chunk).await?);
        progress.tick(n);
    }
    let failed = results.iter().filter(|r| !r.success).count();
    let journal = app
        .store
        .reencrypt_tokens(|enc| vault.reencrypt(enc).ok().flatten())?;
    println!(
        "re-encrypted: {rotated}  already current: {current}  undecryptable: {unreadable}  write failures: {failed}  journal rows re-encrypted: {journal}"
    );
    if failed > 0 || unreadable > 0 {
        bail!("rotation incomplete");
    }
    Ok(())
}
