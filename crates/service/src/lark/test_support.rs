//! Helpers for tests of the Lark client against the simulator.

use std::time::Duration;

use base64::Engine;
use sha2::Digest;
use tokio::time::Instant;
use url::Url;

use crate::config::Settings;
use lvb_simulators::lark::LarkSim;

use super::{LarkClient, TokenGrant};

/// The redirect URI the tests authorize with.
pub(crate) const REDIRECT: &str = "http://127.0.0.1:8080/oauth/lark/callback";

/// A PKCE (verifier, S256 challenge) pair.
pub(crate) fn pkce() -> (crate::tokens::PkceVerifier, String) {
    let verifier = "A".repeat(20) + &crate::config::random_hex(16);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (crate::tokens::PkceVerifier::new(verifier), challenge)
}

/// Follows the authorize URL as a browser would, approving as `email`; returns the
/// code from the redirect.
pub(crate) async fn authorize(
    client: &LarkClient,
    email: &str,
    state: &str,
    challenge: &str,
) -> crate::tokens::AuthCode {
    let mut url = client.authorize_url(REDIRECT, &crate::tokens::OAuthState::new(state), challenge);
    url.query_pairs_mut().append_pair("sim_user", email);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(REDIRECT), "{location}");
    let location = Url::parse(&location).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some(state));
    crate::tokens::AuthCode::new(query["code"].clone())
}

/// Authorize + exchange for `email`; checks the grant is what the simulator issued.
pub(crate) async fn connect(sim: &LarkSim, client: &LarkClient, email: &str) -> TokenGrant {
    let (verifier, challenge) = pkce();
    let code = authorize(client, email, "st-1", &challenge).await;
    let grant = client
        .exchange_code(&code, REDIRECT, &verifier)
        .await
        .unwrap();
    let open_id = sim
        .users()
        .into_iter()
        .find(|u| u.email == email)
        .unwrap()
        .open_id;
    let (access, refresh) = sim.current_tokens(&open_id).unwrap();
    assert_eq!(grant.access_token.secret(), access);
    assert_eq!(
        grant.refresh_token.as_ref().map(|r| r.secret().to_string()),
        refresh
    );
    grant
}

/// Largest number of `starts` inside any half-open window `(t - len, t]`.
pub(crate) fn max_in_window(starts: &[Instant], len: Duration) -> usize {
    let mut sorted = starts.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[lo] + len <= sorted[hi] {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// A simulator on a free port and a real client pointed at it.
pub(crate) async fn sim_and_client() -> (LarkSim, LarkClient, tempfile::TempDir) {
    let sim = LarkSim::start(0).await.expect("start lark sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings::for_simulators(
        "http://127.0.0.1:9",
        &sim.base_url(),
        &dir.path().join("store.db"),
    )
    .expect("settings");
    let client = LarkClient::with_retry_policy(&settings.lark, fast_policy()).expect("client");
    (sim, client, dir)
}

/// The default policy with short backoffs, so retry tests run quickly in real time.
pub(crate) fn fast_policy() -> crate::retry::RetryPolicy {
    crate::retry::RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..crate::retry::RetryPolicy::default()
    }
}

/// Keeps a paused clock from auto-advancing while it lives, so tests do real HTTP on
/// loopback and move time only with `tokio::time::advance`. (With auto-advance, a
/// paused clock jumps to the next timer whenever the runtime waits on a socket, and
/// request timeouts would fire spuriously.) A running `spawn_blocking` task is what
/// inhibits auto-advance on a current-thread runtime.
pub(crate) struct FrozenClock(Option<std::sync::mpsc::Sender<()>>);

impl FrozenClock {
    pub(crate) fn hold() -> FrozenClock {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        FrozenClock(Some(tx))
    }
}

impl Drop for FrozenClock {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Yields until `cond` holds; panics after 10 s of real time.
pub(crate) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Lets every task that can make progress do so (a few hundred scheduler turns).
pub(crate) async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

/// An [`super::ApplyLedger`] that records nothing (tests of the client alone).
pub(crate) struct NoLedger;

impl super::ApplyLedger for NoLedger {
    fn sending(&self) -> futures::future::BoxFuture<'_, Result<(), super::NotRecorded>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn refused(&self) {}
}
