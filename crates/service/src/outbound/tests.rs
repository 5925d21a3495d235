use super::*;
use crate::config::Settings;
use crate::lark::{LarkClient, LarkError};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::tokens::AccessToken;
use axum::http::Method;
use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;

#[tokio::test]
async fn answers_past_the_cap_are_refused_not_read() {
    let sf = SalesforceSim::start(0).await.unwrap();
    let lark = LarkSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings =
        Settings::for_simulators(&sf.base_url(), &lark.base_url(), &dir.path().join("s.db"))
            .unwrap();

    let salesforce = SalesforceClient::new(&settings.salesforce).unwrap();
    salesforce.session().await.unwrap();
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(SALESFORCE_BODY_CAP));
    sf.faults()
        .inject(Some(Method::GET), "/query", 1, 200, &huge, &[]);
    let err = salesforce.query("SELECT Id FROM User").await.unwrap_err();
    assert!(
        matches!(&err, SalesforceError::Unexpected { status: 200, body } if body.contains("cap")),
        "{err:?}"
    );
    // Within the cap, the same client reads answers as before.
    assert!(!salesforce
        .query("SELECT Id FROM User")
        .await
        .unwrap()
        .is_empty());

    let client = LarkClient::new(&settings.lark).unwrap();
    let big = format!(
        "{{\"code\":0,\"data\":{{\"open_id\":\"{}\"}}}}",
        "x".repeat(LARK_BODY_CAP)
    );
    lark.faults().inject(
        Some(Method::GET),
        "/open-apis/authen/v1/user_info",
        1,
        200,
        &big,
        &[],
    );
    let err = client
        .user_info(&AccessToken::new("u-whatever"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LarkError::Unexpected { status: 200, body } if body.contains("cap")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_huge_token_endpoint_answer_is_refused_after_the_cap() {
    use lvb_simulators::salesforce::oversized::OversizedAnswer;
    let sf = SalesforceSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::for_simulators(
        &sf.base_url(),
        "http://127.0.0.1:9",
        &dir.path().join("s.db"),
    )
    .unwrap();
    let salesforce = SalesforceClient::new(&settings.salesforce).unwrap();
    sf.stream_oversized_answers(OversizedAnswer::TokenEndpoint, 300 * 1024 * 1024, 1);
    let err = salesforce.session().await.unwrap_err();
    assert!(
        matches!(&err, SalesforceError::Unexpected { status: 400, body } if body.contains("cap")),
        "{err:?}"
    );
    // Nothing of the body is quoted.
    assert!(!err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(
        sf.requests().count_path("/services/oauth2/token"),
        1,
        "not retried"
    );
    // The next login reads a normal answer.
    salesforce.session().await.unwrap();
}

/// The buffer grows by doubling up to the cap and never past it.
#[tokio::test]
async fn the_buffer_never_grows_past_the_cap() {
    use lvb_simulators::salesforce::oversized::OversizedAnswer;
    let sf = SalesforceSim::start(0).await.unwrap();
    let http = reqwest::Client::new();
    let token_answer = |bytes: u64| {
        sf.stream_oversized_answers(OversizedAnswer::TokenEndpoint, bytes, 1);
        http.post(format!("{}/services/oauth2/token", sf.base_url()))
            .send()
    };
    let cap = 100_000;
    let body = read_capped(token_answer(cap as u64).await.unwrap(), cap)
        .await
        .unwrap();
    assert_eq!(body.len(), cap);
    assert_eq!(
        body.capacity(),
        cap,
        "exactly the cap, not the next power of two"
    );
    let over = read_capped(token_answer(cap as u64 + 1).await.unwrap(), cap).await;
    assert!(matches!(over, Err(ReadError::TooLarge { cap: c }) if c == cap));
}
