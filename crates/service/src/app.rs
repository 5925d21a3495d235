//! Wiring: [`App::build`] turns settings into the running service — store, clients, token
//! service, HTTP server, refresh timer, streaming subscriber and booking processor — and
//! [`App::run_until_stopped`] runs it until the shutdown signal. Tests and `demo` start
//! exactly this on port 0.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bookings::processor::AbortOnDrop;
use crate::bookings::{Processor, ProcessorHandle};
use crate::config::Settings;
use crate::http::{self, HttpState, Readiness};
use crate::lark::LarkClient;
use crate::metrics::Metrics;
use crate::salesforce::SalesforceClient;
use crate::store::Store;
use crate::tokens::{TokenService, Vault};

/// How long shutdown waits for in-flight bookings before giving up on them (their
/// events are redelivered after restart, since the checkpoint never passed them).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Sends the shutdown signal to every task of an [`App`].
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Asks the app to stop gracefully.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// The built service, listening but not yet running its tasks.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    pub settings: Arc<Settings>,
    pub salesforce: SalesforceClient,
    pub lark: LarkClient,
    pub store: Store,
    pub tokens: TokenService,
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
    pub vault: Arc<Vault>,
    pub processor: ProcessorHandle,
    processor_task: Processor,
    shutdown_tx: watch::Sender<bool>,
}

impl App {
    /// Opens the store, builds the clients and binds the HTTP listener.
    /// Port 0 in both `server.bind` and `server.public_url` means "any free port, and
    /// tell Lark that one" (tests and the demo).
    pub async fn build(mut settings: Settings) -> anyhow::Result<App> {
        let listener = TcpListener::bind(&settings.server.bind)
            .await
            .with_context(|| format!("binding {}", settings.server.bind))?;
        let addr = listener.local_addr()?;
        if settings.server.public_url.port() == Some(0) {
            let _ = settings.server.public_url.set_port(Some(addr.port()));
        }
        let settings = Arc::new(settings);
        let store = Store::open(&settings.store.path).context("opening the store")?;
        let vault = Arc::new(Vault::from_settings(&settings.security));
        let salesforce = SalesforceClient::new(&settings.salesforce)
            .context("building the Salesforce client")?;
        let lark = LarkClient::new(&settings.lark).context("building the Lark client")?;
        let metrics = Metrics::default();
        salesforce.record_metrics_in(&metrics);
        lark.record_metrics_in(&metrics);
        let tokens = TokenService::new(
            settings.clone(),
            salesforce.clone(),
            lark.clone(),
            store.clone(),
            vault.clone(),
            metrics.clone(),
        );
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokens.set_event_sink(events_tx);
        let readiness = Arc::new(Readiness::default());
        let (processor_task, processor) = Processor::new(
            settings.clone(),
            salesforce.clone(),
            lark.clone(),
            tokens.clone(),
            store.clone(),
            metrics.clone(),
            readiness.clone(),
            events_rx,
        );
        let (shutdown_tx, _) = watch::channel(false);
        Ok(App {
            listener,
            addr,
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

    /// The processing engine, for one-shot commands (`reconcile`, `refresh-tokens`).
    pub fn engine(&self) -> Arc<crate::bookings::Engine> {
        self.processor_task.engine()
    }

    /// A handle that stops the app.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// Runs HTTP, the refresh timer, the subscriber and the processor until the shutdown
    /// handle fires (or `stop` resolves), then stops intake, lets in-flight bookings
    /// finish within [`SHUTDOWN_GRACE`], saves checkpoints and closes the server.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown_tx = self.shutdown_tx.clone();
        tokio::spawn(async move {
            stop.await;
            let _ = shutdown_tx.send(true);
        });
        let shutdown = self.shutdown_tx.subscribe();

        // Tokens rotated before a crash but never confirmed in Salesforce go first.
        match self.tokens.replay_unconfirmed().await {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not write journalled tokens yet; will retry on the next refresh pass")
            }
        }
        if self.salesforce.session().await.is_ok() {
            self.readiness.salesforce.store(true, Ordering::Relaxed);
        }

        let state = HttpState {
            settings: self.settings.clone(),
            tokens: self.tokens.clone(),
            lark: self.lark.clone(),
            store: self.store.clone(),
            vault: self.vault.clone(),
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
        };
        let router = http::router(state);
        let mut http_shutdown = shutdown.clone();
        let server = tokio::spawn(
            axum::serve(self.listener, router)
                .with_graceful_shutdown(async move {
                    let _ = http_shutdown.wait_for(|s| *s).await;
                })
                .into_future(),
        );

        let timer = tokio::spawn(refresh_timer(
            self.processor.clone(),
            self.settings.refresh.interval,
            shutdown.clone(),
        ));
        let processing = tokio::spawn(self.processor_task.run(shutdown.clone()));
        // Dropping (aborting) this future stops everything it started.
        let _guard = AbortOnDrop(vec![
            server.abort_handle(),
            timer.abort_handle(),
            processing.abort_handle(),
        ]);

        let mut wait = shutdown.clone();
        let _ = wait.wait_for(|s| *s).await;
        tracing::info!("shutting down: stopping intake, finishing in-flight bookings");
        match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), processing).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "processor stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "processor task failed"),
            Err(_) => tracing::warn!("processor did not stop in time"),
            _ => {}
        }
        timer.abort();
        let _ = server.await;
        tracing::info!("stopped");
        Ok(())
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
