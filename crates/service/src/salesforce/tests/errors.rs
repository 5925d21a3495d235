//! Salesforce errors mapped to variants, retries and limits, describe, SOQL quoting.

use axum::http::Method;
use serde_json::{json, Map};

use super::*;
use crate::salesforce::*;
use lvb_simulators::SF_HUMAN_USER_ID;

#[tokio::test]
async fn salesforce_errors_map_to_variants() {
    let env = env().await;
    let booking = id(&env.sim.insert(BOOKING, json!({}), SF_HUMAN_USER_ID));
    let code = |e: SalesforceError| match e {
        SalesforceError::BadRequest { error_code, .. } => error_code,
        other => panic!("expected BadRequest, got {other:?}"),
    };
    assert_eq!(
        code(
            env.client
                .query("SELECT Id FRM Training_Booking__c")
                .await
                .unwrap_err()
        ),
        "MALFORMED_QUERY"
    );
    assert_eq!(
        code(
            env.client
                .query("SELECT Nope__c FROM Training_Booking__c")
                .await
                .unwrap_err()
        ),
        "INVALID_FIELD"
    );
    assert_eq!(
        code(
            env.client
                .query("SELECT Id FROM Nope__c")
                .await
                .unwrap_err()
        ),
        "INVALID_TYPE"
    );
    let long = "x".repeat(256);
    assert_eq!(
        code(
            env.client
                .update(
                    BOOKING,
                    &booking,
                    fields(json!({"Lark_Meeting_Error__c": long}))
                )
                .await
                .unwrap_err()
        ),
        "STRING_TOO_LONG"
    );
    assert_eq!(
        code(
            env.client
                .update(
                    BOOKING,
                    &booking,
                    fields(json!({"Lark_Meeting_Status__c": "Done"}))
                )
                .await
                .unwrap_err()
        ),
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let trainer = id(&env
        .sim
        .insert(TRAINER, json!({"Name": "T"}), SF_HUMAN_USER_ID));
    assert_eq!(
        code(
            env.client
                .update(
                    TRAINER,
                    &trainer,
                    fields(json!({"Lark_Connect_Link__c": "x"}))
                )
                .await
                .unwrap_err()
        ),
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );
    let missing = id("a0BDz0000099999");
    assert!(matches!(
        env.client
            .update(BOOKING, &missing, fields(json!({"Name": "x"})))
            .await
            .unwrap_err(),
        SalesforceError::NotFound { .. }
    ));
    assert!(matches!(
        env.client
            .update("Bad Object", &missing, Map::new())
            .await
            .unwrap_err(),
        SalesforceError::InvalidInput(_)
    ));
    env.sim
        .reject_writes(BOOKING, 1, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "No");
    assert_eq!(
        code(
            env.client
                .update(BOOKING, &booking, fields(json!({"Name": "x"})))
                .await
                .unwrap_err()
        ),
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
    // 4xx answers are not retried.
    assert_eq!(env.sim.requests().count(&Method::PATCH, "/sobjects/"), 5);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let env = env().await;
    env.client.session().await.expect("login");
    env.sim.faults().inject(
        Some(Method::GET),
        "/query",
        2,
        503,
        "<html>maintenance</html>",
        &[],
    );
    let rows = env
        .client
        .query("SELECT Id FROM User")
        .await
        .expect("third try");
    assert_eq!(rows.len(), 2);
    assert_eq!(env.sim.requests().count(&Method::GET, "/query"), 3);

    env.sim
        .faults()
        .inject(Some(Method::GET), "/query", 10, 500, "boom", &[]);
    let err = env.client.query("SELECT Id FROM User").await.unwrap_err();
    assert!(
        matches!(err, SalesforceError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(
        env.sim.requests().count(&Method::GET, "/query"),
        6,
        "3 attempts, then give up"
    );
}

#[tokio::test]
async fn request_limit_exceeded_is_not_retried() {
    let env = env().await;
    env.client.session().await.expect("login");
    env.sim.faults().inject(
        Some(Method::GET),
        "/query",
        5,
        403,
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        &[],
    );
    let err = env.client.query("SELECT Id FROM User").await.unwrap_err();
    assert_eq!(err, SalesforceError::RequestLimitExceeded);
    assert_eq!(env.sim.requests().count(&Method::GET, "/query"), 1);
}

#[tokio::test]
async fn describe_lists_fields_and_follows_removals() {
    let env = env().await;
    let d = env.client.describe(BOOKING).await.expect("describe");
    assert_eq!(d.name, BOOKING);
    let trainer = d.field("Trainer__c").expect("Trainer__c");
    assert_eq!(trainer.type_, "reference");
    assert_eq!(trainer.reference_to, vec![TRAINER]);
    assert_eq!(trainer.relationship_name.as_deref(), Some("Trainer__r"));
    let status = d.field("Lark_Meeting_Status__c").expect("status");
    assert_eq!(status.type_, "picklist");
    assert_eq!(
        status.picklist_values,
        vec![
            "Created",
            "Created by App",
            "Pending Trainer Connection",
            "Failed",
            "Cancelled"
        ]
    );
    assert_eq!(d.field("Training_Start__c").unwrap().type_, "datetime");
    assert_eq!(d.field("Lark_Meeting_Error__c").unwrap().length, 255);
    let t = env
        .client
        .describe(TRAINER)
        .await
        .expect("describe trainer");
    assert_eq!(t.field("Lark_Refresh_Token__c").unwrap().type_, "textarea");
    assert_eq!(t.field("Lark_Refresh_Token__c").unwrap().length, 8192);
    assert!(!t.field("Lark_Connect_Link__c").unwrap().updateable);
    assert!(t.field("Lark_Connected__c").unwrap().updateable);

    env.sim.remove_field(BOOKING, "Lark_Reservation_Id__c");
    let d = env.client.describe(BOOKING).await.expect("describe");
    assert!(d.field("Lark_Reservation_Id__c").is_none());
    let err = env
        .client
        .query("SELECT Lark_Reservation_Id__c FROM Training_Booking__c")
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("INVALID_FIELD"));
    assert!(matches!(
        env.client.describe("Nope__c").await.unwrap_err(),
        SalesforceError::NotFound { .. }
    ));
    assert_eq!(env.client.call_counts().describe, 4);
}

#[tokio::test]
async fn quoted_literals_round_trip_through_the_simulator() {
    let env = env().await;
    let tricky = "O'Brien \\ \"Ltd\"\nline two\t' OR Name != '";
    let booking = env.sim.insert(
        BOOKING,
        json!({"Merchant_Name__c": tricky}),
        SF_HUMAN_USER_ID,
    );
    env.sim.insert(
        BOOKING,
        json!({"Merchant_Name__c": "Other"}),
        SF_HUMAN_USER_ID,
    );
    let rows = env
        .client
        .query(&format!(
            "SELECT Id, Merchant_Name__c FROM Training_Booking__c WHERE Merchant_Name__c = {}",
            quote(tricky)
        ))
        .await
        .expect("query");
    assert_eq!(
        rows.len(),
        1,
        "the literal matched exactly one row, injection inert"
    );
    assert_eq!(rows[0]["Id"], json!(booking));
    assert_eq!(rows[0]["Merchant_Name__c"], json!(tricky));
}
