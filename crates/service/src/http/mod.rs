//! The axum routes — and nothing else is served (design §2.3):
//! `/oauth/lark/start`, `/oauth/lark/callback`, `/healthz`, `/readyz`, `/metrics`.
//! Handlers only translate HTTP to calls on the token layer and back; [`limits`] bounds
//! every route (rate limit of the OAuth routes, timeout, body size, security headers) and
//! [`server`] is the connection loop (header read timeout, connection cap).

pub mod error;
pub mod limits;
pub mod oauth;
pub mod pages;
pub mod server;

use crate::tasks::Tasks;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::bookings::PipelineStatus;
use crate::config::Settings;
use crate::lark::LarkClient;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::{ConnectFlow, TokenService, Vault};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct HttpState {
    pub settings: Arc<Settings>,
    pub tokens: TokenService,
    pub lark: LarkClient,
    pub store: Store,
    pub vault: Arc<Vault>,
    pub metrics: Metrics,
    /// The pipeline's status, which `/readyz` reports.
    pub readiness: Arc<PipelineStatus>,
    /// Where a callback's connect runs, so shutdown waits for it (rule 24).
    pub tasks: Tasks,
}

/// The router with every route of design §2.3.
pub fn router(state: HttpState) -> Router {
    let oauth = oauth::OAuthRoutes {
        flow: ConnectFlow::new(
            state.settings.clone(),
            state.tokens.clone(),
            state.lark.clone(),
            state.store.clone(),
            state.vault.clone(),
        ),
        metrics: state.metrics.clone(),
        secure_cookie: state.settings.server.public_url.scheme() == "https",
        tasks: state.tasks.clone(),
    };
    let oauth = Router::new()
        .route("/oauth/lark/start", get(oauth::start))
        .route("/oauth/lark/callback", get(oauth::callback))
        .route_layer(axum::middleware::from_fn_with_state(
            limits::RateLimit::new(&state.settings.server),
            limits::rate_limit,
        ))
        .with_state(oauth);
    let settings = state.settings.clone();
    let router = Router::new()
        .merge(oauth)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    limits::bound(router, &settings.server)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<HttpState>) -> impl IntoResponse {
    let r = &app.readiness;
    let body = format!(
        "salesforce_login: {}\nstreaming_subscription: {}\n",
        up(r.salesforce_login()),
        up(r.streaming_subscription())
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
