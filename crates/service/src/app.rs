//! Wiring: [`Core::build`] turns settings into what every command works with — store,
//! clients, token service and booking processor — and [`App::build`] adds what only `run`
//! has: the store lock, the HTTP listener and the control socket. [`App::run_until_stopped`]
//! runs it until the shutdown signal, or until an essential task stops on its own (design
//! §3 rule 17: then `/readyz` answers 503 and the result is an error, so the process exits
//! non-zero). Tests and `demo` start exactly this on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::bookings::{Engine, PipelineStatus, Processor, ProcessorHandle};
use crate::config::{LarkEvents, Settings};
use crate::control::ControlSocket;
use crate::http::{self, HttpState};
use crate::lark::{LarkClient, LongConnection};
use crate::metrics::Metrics;
use crate::salesforce::SalesforceClient;
use crate::store::lock::StoreLock;
use crate::store::Store;
use crate::tasks::Tasks;
use crate::tokens::{TokenService, Vault};

/// Sends the shutdown signal to every task of an [`App`].
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Asks the app to stop gracefully.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// What every command works with: the store, the clients, the token service and the
/// booking processor (built, not running). No listener, no lock: one-shot commands build
/// only this (the caller decides whether it must hold the store lock).
pub struct Core {
    pub settings: Arc<Settings>,
    pub salesforce: SalesforceClient,
    pub lark: LarkClient,
    pub store: Store,
    pub tokens: TokenService,
    pub metrics: Metrics,
    pub readiness: Arc<PipelineStatus>,
    pub vault: Arc<Vault>,
    pub processor: ProcessorHandle,
    processor_task: Processor,
}

impl Core {
    /// Opens the store and builds the clients, the token service and the processor.
    pub fn build(settings: Arc<Settings>) -> anyhow::Result<Core> {
        let store = Store::open(&settings.store.path).context("opening the store")?;
        let vault = Arc::new(Vault::from_settings(&settings.security));
        let salesforce = SalesforceClient::new(&settings.salesforce)
            .context("building the Salesforce client")?;
        let lark = LarkClient::for_service(&settings).context("building the Lark client")?;
        let metrics = Metrics::default();
        salesforce.record_metrics_in(&metrics);
        lark.record_metrics_in(&metrics);
        // Connects and disconnects reach the processor, whichever path made them.
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let tokens = TokenService::new(
            settings.clone(),
            salesforce.clone(),
            lark.clone(),
            store.clone(),
            vault.clone(),
            metrics.clone(),
            events_tx,
        );
        let readiness = Arc::new(PipelineStatus::default());
        let engine = Arc::new(Engine::new(
            settings.clone(),
            salesforce.clone(),
            lark.clone(),
            tokens.clone(),
            store.clone(),
            metrics.clone(),
            readiness.clone(),
        ));
        let (processor_task, processor) = Processor::new(engine, events_rx);
        Ok(Core {
            settings,
            salesforce,
            lark,
            store,
            tokens,
            metrics,
            readiness,
            vault,
            processor,
            processor_task,
        })
    }

    /// The processing engine, for one-shot commands (`reconcile`, `refresh-tokens`).
    pub fn engine(&self) -> Arc<crate::bookings::Engine> {
        self.processor_task.engine()
    }
}

/// The built service, listening but not yet running its tasks. Derefs to its [`Core`].
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    core: Core,
    control: ControlSocket,
    /// Held until `run_until_stopped` returns (design §3 rule 16).
    lock: StoreLock,
    shutdown_tx: watch::Sender<bool>,
}

impl std::ops::Deref for App {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl App {
    /// Takes the store lock (or fails naming its holder), binds the HTTP listener and the
    /// control socket, and builds the [`Core`].
    /// Port 0 in both `server.bind` and `server.public_url` means "any free port, and
    /// tell Lark that one" (tests and the demo).
    pub async fn build(mut settings: Settings) -> anyhow::Result<App> {
        // First: a second `run` must say who holds the store, not that the port is taken.
        let lock = StoreLock::acquire(&settings.store.path, "run")?;
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("binding {}", settings.server.bind))?;
        let addr = listener.local_addr()?;
        if settings.server.public_url.port() == Some(0) {
            let _ = settings.server.public_url.set_port(Some(addr.port()));
        }
        let settings = Arc::new(settings);
        let core = Core::build(settings.clone())?;
        let control = ControlSocket::bind(&settings.store.path, &lock)?;
        let (shutdown_tx, _) = watch::channel(false);
        Ok(App {
            listener,
            addr,
            core,
            control,
            lock,
            shutdown_tx,
        })
    }

    /// The port the HTTP server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`-style base URL of the HTTP server.
    pub fn local_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle that stops the app.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// Runs HTTP, the refresh timer, the subscriber and the processor until the shutdown
    /// handle fires (or `stop` resolves), then stops intake and waits up to
    /// `processing.shutdown_timeout` for everything in flight (bookings, refresh passes,
    /// delegated commands, alerts: rule 24) before cancelling — and naming — what is left.
    ///
    /// Fails loudly (design §3 rule 17): if the processor (with its streaming subscriber)
    /// or the HTTP server stops on its own or panics, `/readyz` turns 503, everything
    /// else stops within the same bounded grace, and the result is an error naming what
    /// stopped — so `run` exits non-zero and a supervisor restarts it.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            core,
            control,
            lock,
            shutdown_tx,
            ..
        } = self;
        // Held to the end of this function: the store is ours while anything runs.
        let _lock = lock;
        let engine = core.engine();
        let Core {
            settings,
            salesforce,
            lark,
            store,
            tokens,
            metrics,
            readiness,
            vault,
            processor,
            processor_task,
        } = core;
        let stop_tx = shutdown_tx.clone();
        // Owned by the tracker like every task: it ends when `stop` resolves or shutdown
        // is under way anyway.
        let tasks = Tasks::default();
        let mut stop_wait = shutdown_tx.subscribe();
        tasks.spawn("stop signal", async move {
            tokio::select! {
                _ = stop => { let _ = stop_tx.send(true); }
                _ = stop_wait.wait_for(|s| *s) => {}
            }
        });
        let shutdown = shutdown_tx.subscribe();

        // Tokens rotated before a crash but never confirmed in Salesforce go first.
        match tokens.replay_unconfirmed().await {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not write journalled tokens yet; will retry on the next refresh pass")
            }
        }
        if salesforce.session().await.is_ok() {
            readiness.set_salesforce_login(true);
        }

        let events_metrics = metrics.clone();
        let state = HttpState {
            settings: settings.clone(),
            tokens: tokens.clone(),
            lark,
            store,
            vault,
            metrics,
            readiness: readiness.clone(),
            tasks: tasks.clone(),
        };
        let router = http::router(state);
        let mut http_shutdown = shutdown.clone();
        let mut server = tasks.spawn(
            "http server",
            http::server::serve(
                listener,
                router,
                settings.server.request_timeout,
                async move {
                    let _ = http_shutdown.wait_for(|s| *s).await;
                },
            ),
        );

        // Rotated tokens reach Salesforce in batches from here on; on shutdown the task
        // writes what is waiting before it ends (rule 24).
        tokens.spawn_writeback(&tasks, shutdown.clone());
        tasks.spawn(
            "timer",
            refresh_timer(
                processor.clone(),
                settings.refresh.interval,
                shutdown.clone(),
            ),
        );
        let commands = crate::control::Commands::in_service(engine, tokens, processor);
        tasks.spawn(
            "control socket",
            control.serve(commands, shutdown.clone(), tasks.clone()),
        );
        // Rule 28: the one process holding the store lock keeps the app's long connection.
        if settings.lark.events == LarkEvents::LongConnection {
            spawn_lark_events(
                &tasks,
                &settings,
                events_metrics,
                processor_task.event_sink(),
                shutdown.clone(),
            );
        }
        let mut processing = tasks.spawn(
            "booking processor",
            processor_task.run(shutdown.clone(), tasks.clone()),
        );

        let mut wait = shutdown.clone();
        let failure = tokio::select! {
            // First: once shutdown was asked for, tasks ending is the plan, not a fault.
            biased;
            _ = wait.wait_for(|s| *s) => None,
            ended = &mut processing => {
                Some(format!("the booking processor (with the streaming subscriber) {}", how_it_ended(ended)))
            }
            ended = &mut server => {
                Some(format!("the HTTP server {}", how_it_ended(ended)))
            }
        };
        // A task that ended as shutdown was asked for ended as planned, whichever arm the
        // select saw first (seen under load: the HTTP server's own shutdown watch woke it
        // and it closed before this select looked at the shutdown arm).
        let failure = failure.filter(|_| !*shutdown_tx.borrow());
        if let Some(what) = &failure {
            // Not ready from now on: nothing may route work here until it is restarted.
            readiness.set_streaming_subscription(false);
            tracing::error!(stopped = %what, "an essential task stopped; stopping the service so that it is restarted");
        }
        let _ = shutdown_tx.send(true);
        let timeout = settings.processing.shutdown_timeout;
        tracing::info!(timeout = ?timeout, running = ?tasks.running(), "shutting down: no new work; waiting for what is in flight");
        let cancelled = tasks.shutdown(timeout).await;
        if !cancelled.is_empty() {
            tracing::error!(cancelled = ?cancelled, "shutdown timeout reached; these were cancelled");
        }
        match failure {
            Some(what) => {
                tracing::error!("stopped after a failure");
                Err(anyhow::anyhow!(
                    "{what}; the service stopped so that its supervisor restarts it"
                ))
            }
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// Runs Lark's long connection (rule 28) as a tracked task: every event goes to `sink`
/// (recorded, then acknowledged); shutdown cancels it and waits for an in-flight record to
/// be acknowledged. When Lark refuses the app for good the service runs on without events
/// (rule 29's sweep still fills attendance); the connection is not essential.
fn spawn_lark_events(
    tasks: &Tasks,
    settings: &Settings,
    metrics: Metrics,
    sink: crate::bookings::attendance::AttendanceSink,
    mut shutdown: watch::Receiver<bool>,
) {
    let connection = match LongConnection::new(&settings.lark, metrics) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open Lark's event connection; running without events");
            return;
        }
    };
    let cancel = CancellationToken::new();
    tasks.spawn("lark events", async move {
        let run = connection.run(sink, cancel.clone());
        tokio::pin!(run);
        let ended = tokio::select! {
            ended = &mut run => ended,
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                cancel.cancel();
                run.await
            }
        };
        if let Err(e) = ended {
            tracing::error!(error = %e, "no Lark events from now on: attendance comes from the post-end sweep alone; run `check`");
        }
    });
}

/// "stopped", "failed: …" or "panicked: …", for an essential task that ended on its own.
fn how_it_ended<E: std::fmt::Display>(
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) -> String {
    match ended {
        Ok(Ok(())) => "stopped on its own".into(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(e) if e.is_panic() => format!("panicked: {e}"),
        Err(e) => format!("was cancelled: {e}"),
    }
}

/// How often a reconciliation sweep runs: it renews capped reservations as their date
/// nears (design §3 rule 7) and repairs anything a lost event left stale. One query.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Every `interval`, asks the processor for a refresh pass, and every
/// [`SWEEP_INTERVAL`] for a sweep (timers only enqueue work).
async fn refresh_timer(
    processor: ProcessorHandle,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first sweep tick fires at once; start-up already sweeps when it must.
    sweeps.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => processor.request_refresh_pass(),
            _ = sweeps.tick() => processor.request_reconcile(),
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Resolves on SIGTERM or ctrl-c: the signal `run` and `simulate` stop on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// Runs `request`: here, when no service holds the store, or in the running service.
pub async fn run_command(
    settings: Settings,
    request: crate::control::Request,
) -> anyhow::Result<crate::control::Reply> {
    let store_path = settings.store.path.clone();
    match crate::store::lock::StoreLock::acquire(&store_path, request.name()) {
        Ok(lock) => {
            let core = Core::build(Arc::new(settings))?;
            let reply = crate::control::Commands::local(core.engine(), core.tokens.clone())
                .execute(&request)
                .await;
            drop(lock);
            Ok(reply)
        }
        Err(crate::store::lock::LockError::Held { holder, .. }) => {
            tracing::info!(%holder, command = request.name(), "the store is in use; asking the running service to do this");
            crate::control::send(&store_path, &holder, &request).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
