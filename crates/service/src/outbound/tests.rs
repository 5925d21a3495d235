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
