//! What bounds the public endpoints (design §3 rule 18), as tower layers around the router:
//! the per-address rate limit of the OAuth routes (governor's GCRA, keyed by client
//! address), a global cap on requests in flight, the whole-request timeout, the 16 KiB
//! body limit, and the security headers every response carries.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::error::AppError;
use super::server::client_ip;
use crate::config::ServerSettings;

/// Largest request body accepted; bigger → 413 (the routes take no body at all).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Requests handled at once across all routes; more wait for a slot (each within the
/// request timeout).
pub const MAX_IN_FLIGHT_REQUESTS: usize = 256;

/// Client addresses the rate limiter remembers before it forgets those with a full
/// allowance again.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// The per-address limiter of the OAuth routes.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    trust_forwarded_for: bool,
}

impl RateLimit {
    /// `per_minute` requests per address per minute, refilled evenly (a burst of up to
    /// `per_minute` is allowed from a fresh address).
    pub fn new(server: &ServerSettings) -> RateLimit {
        let per_minute = NonZeroU32::new(server.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(
                per_minute,
            ))),
            clock: DefaultClock::default(),
            trust_forwarded_for: server.trust_forwarded_for,
        }
    }

    /// None when `ip` may go on; otherwise how long until it may.
    fn check(&self, ip: IpAddr) -> Option<Duration> {
        let outcome = self.limiter.check_key(&rate_key(ip));
        if self.limiter.len() > MAX_TRACKED_ADDRESSES {
            self.limiter.retain_recent();
        }
        outcome
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The address a client is counted under: IPv4 as is (an IPv4-mapped IPv6 address as its
/// IPv4), IPv6 by its /64 — one subscriber usually holds a whole /64, so counting single
/// IPv6 addresses would give one client 2^64 allowances.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware of the OAuth routes: 429 with `Retry-After` past the per-address limit.
pub async fn rate_limit(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Some(ip) = client_ip(peer, request.headers(), limit.trust_forwarded_for) else {
        return next.run(request).await;
    };
    match limit.check(ip) {
        None => next.run(request).await,
        Some(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            tracing::warn!(client = %ip, retry_after = secs, "rate limit reached on the OAuth routes");
            let mut response = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many attempts",
                "Too many connect attempts came from your network in a short time.",
            )
            .hint(format!(
                "Please wait {secs} seconds and open your connect link again."
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
    }
}

/// Wraps the whole router: timeout, body limit, in-flight cap and the security headers
/// (outermost, so that 408, 413 and 429 answers carry them too).
pub fn bound(router: Router, server: &ServerSettings) -> Router {
    let csp = HeaderValue::from_str(&super::pages::content_security_policy())
        .expect("the policy is ASCII");
    let fixed = |v: &'static str| HeaderValue::from_static(v);
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            server.request_timeout,
        ))
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
                .map_request(|r: Request<tower_http::body::Limited<Body>>| r.map(Body::new)),
        )
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_IN_FLIGHT_REQUESTS,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            fixed("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            fixed("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            fixed("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            fixed("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("content-security-policy"),
            csp,
        ))
}

#[cfg(test)]
mod tests;
