//! The axum routes — and nothing else is served (design §2.3):
//! `/oauth/lark/start`, `/oauth/lark/callback`, `/healthz`, `/readyz`, `/metrics`.
//! Handlers only translate HTTP to calls on the token service and back.

pub mod error;
pub mod oauth;
pub mod pages;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::config::Settings;
use crate::lark::LarkClient;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::{TokenService, Vault};

/// What `/readyz` reports: both must be true.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Salesforce login succeeded.
    pub salesforce: AtomicBool,
    /// The streaming subscription is live.
    pub streaming: AtomicBool,
}

impl Readiness {
    /// True when Salesforce login and the subscription are both up.
    pub fn ready(&self) -> bool {
        self.salesforce.load(Ordering::Relaxed) && self.streaming.load(Ordering::Relaxed)
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct HttpState {
    pub settings: Arc<Settings>,
    pub tokens: TokenService,
    pub lark: LarkClient,
    pub store: Store,
    pub vault: Arc<Vault>,
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
}

/// The router with every route of design §2.3.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/oauth/lark/start", get(oauth::start))
        .route("/oauth/lark/callback", get(oauth::callback))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<HttpState>) -> impl IntoResponse {
    let r = &app.readiness;
    let body = format!(
        "salesforce_login: {}\nstreaming_subscription: {}\n",
        up(r.salesforce.load(Ordering::Relaxed)),
        up(r.streaming.load(Ordering::Relaxed))
    );
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

fn up(b: bool) -> &'static str {
    if b {
        "up"
    } else {
        "down"
    }
}

async fn metrics(State(app): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(),
    )
}
