use super::*;
use crate::lark::test_support::sim_and_client;
use axum::http::Method;

#[test]
fn renewal_waits_until_thirty_minutes_are_left() {
    assert_eq!(renew_after(7200), Duration::from_secs(5400));
    assert_eq!(renew_after(1800), Duration::from_secs(900));
    assert_eq!(renew_after(0), Duration::ZERO);
    assert_eq!(renew_after(i64::MAX), Duration::from_secs(24 * 3600 - 1800));
    assert_eq!(renew_after(-7200), Duration::ZERO);
}

#[tokio::test]
async fn tenant_token_is_fetched_once_for_many_callers() {
    let (sim, client, _dir) = sim_and_client().await;
    let tokens = futures::future::join_all((0..8).map(|_| client.tenant_token())).await;
    let first = tokens[0]
        .as_ref()
        .expect("token")
        .expose_secret()
        .to_string();
    assert!(first.starts_with("t-"));
    for t in &tokens {
        assert_eq!(t.as_ref().unwrap().expose_secret(), first);
    }
    assert_eq!(client.call_counts().tenant_token, 1);
    assert_eq!(
        sim.requests().count(
            &Method::POST,
            "/open-apis/auth/v3/tenant_access_token/internal"
        ),
        1
    );
}

#[tokio::test]
async fn unreachable_lark_is_a_transport_error_after_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port: every connection is refused.
    let settings = crate::config::Settings::for_simulators(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &dir.path().join("s.db"),
    )
    .unwrap();
    let client =
        LarkClient::with_retry_policy(&settings.lark, crate::lark::test_support::fast_policy())
            .unwrap();
    let err = client.tenant_token().await.unwrap_err();
    assert!(matches!(err, LarkError::Transport(_)), "{err:?}");
    assert!(!err.to_string().contains(lvb_simulators::LARK_APP_SECRET));
    assert_eq!(client.call_counts().tenant_token, 5);
}

#[tokio::test(start_paused = true)]
async fn tenant_token_is_renewed_once_less_than_thirty_minutes_remain() {
    let _frozen = crate::lark::test_support::FrozenClock::hold();
    let (sim, client, _dir) = sim_and_client().await;
    let first = client.tenant_token().await.unwrap();
    tokio::time::advance(Duration::from_secs(5399)).await;
    let same = client.tenant_token().await.unwrap();
    assert_eq!(same.expose_secret(), first.expose_secret());
    assert_eq!(client.call_counts().tenant_token, 1);

    tokio::time::advance(Duration::from_secs(2)).await;
    let renewed = client.tenant_token().await.unwrap();
    assert_ne!(renewed.expose_secret(), first.expose_secret());
    assert_eq!(client.call_counts().tenant_token, 2);
    assert_eq!(
        sim.requests().count(
            &Method::POST,
            "/open-apis/auth/v3/tenant_access_token/internal"
        ),
        2
    );
}
