//! The REST client against the Salesforce simulator: queries, paging, relationship fields,
//! sObject Collections, the change events writes raise; errors mapped to variants,
//! retries and limits, describe, SOQL quoting.

use super::*;
use crate::salesforce::test_support::*;
use crate::salesforce::*;
use axum::http::Method;
use lvb_simulators::salesforce::cometd::ChangeKind;
use lvb_simulators::{SF_HUMAN_USER_ID, SF_INTEGRATION_USER_ID};
use serde_json::{json, Map, Value};

#[tokio::test]
async fn query_follows_next_records_url() {
    let env = env().await;
    env.sim.set_query_batch_size(2);
    for i in 0..5 {
        env.sim.insert(
            TRAINER,
            json!({"Name": format!("Trainer {i}"), "Email__c": format!("t{i}@example.com")}),
            SF_HUMAN_USER_ID,
        );
    }
    let rows = env
        .client
        .query("SELECT Id, Name FROM Onboarding_Trainer__c ORDER BY Name")
        .await
        .expect("query");
    let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "Trainer 0",
            "Trainer 1",
            "Trainer 2",
            "Trainer 3",
            "Trainer 4"
        ]
    );
    assert_eq!(env.sim.requests().count(&Method::GET, "/query"), 3);
    assert_eq!(env.sim.requests().count(&Method::GET, "/query/01g"), 2);
    assert_eq!(env.client.call_counts().query, 3);
}

#[tokio::test]
async fn query_all_sees_deleted_records() {
    let env = env().await;
    let kept = env.sim.insert(
        BOOKING,
        json!({"Merchant_Name__c": "Kept"}),
        SF_HUMAN_USER_ID,
    );
    let gone = env.sim.insert(
        BOOKING,
        json!({"Merchant_Name__c": "Gone"}),
        SF_HUMAN_USER_ID,
    );
    env.sim.delete(BOOKING, &gone, SF_HUMAN_USER_ID);
    let soql = format!(
        "SELECT Id, IsDeleted FROM Training_Booking__c WHERE Id IN {}",
        id_list(&[id(&kept), id(&gone)])
    );
    let live = env.client.query(&soql).await.expect("query");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["Id"], json!(kept));
    let all = env.client.query_all(&soql).await.expect("queryAll");
    assert_eq!(all.len(), 2);
    let deleted = all
        .iter()
        .find(|r| r["Id"] == json!(gone))
        .expect("deleted row");
    assert_eq!(deleted["IsDeleted"], json!(true));
    assert_eq!(env.sim.requests().count(&Method::GET, "/queryAll"), 1);
}

#[tokio::test]
async fn relationship_fields_come_back_nested() {
    let env = env().await;
    let trainer = env.sim.insert(
        TRAINER,
        json!({"Name": "Ann", "Email__c": "ann@example.com"}),
        SF_HUMAN_USER_ID,
    );
    let with = env.sim.insert(
        BOOKING,
        json!({"Trainer__c": trainer, "Service_Type__c": "Remote",
               "Training_Start__c": "2026-11-26T10:00:00Z"}),
        SF_HUMAN_USER_ID,
    );
    let without = env.sim.insert(BOOKING, json!({}), SF_HUMAN_USER_ID);
    let rows = env
        .client
        .query(&format!(
            "SELECT Id, Training_Start__c, Trainer__c, Trainer__r.Email__c, Trainer__r.Name \
             FROM Training_Booking__c WHERE Id IN {} ORDER BY CreatedDate",
            id_list(&[id(&with), id(&without)])
        ))
        .await
        .expect("query");
    assert_eq!(
        rows[0]["Training_Start__c"],
        json!("2026-11-26T10:00:00.000+0000")
    );
    assert_eq!(rows[0]["Trainer__r"]["Email__c"], json!("ann@example.com"));
    assert_eq!(rows[0]["Trainer__r"]["Name"], json!("Ann"));
    assert_eq!(rows[0]["Trainer__r"]["attributes"]["type"], json!(TRAINER));
    assert_eq!(rows[0]["attributes"]["type"], json!(BOOKING));
    assert_eq!(rows[1]["Trainer__r"], Value::Null);
}

#[tokio::test]
async fn update_many_chunks_by_200_and_reports_each_record() {
    let env = env().await;
    let ids: Vec<RecordId> = (0..450)
        .map(|i| {
            id(&env.sim.insert(
                BOOKING,
                json!({"Merchant_Name__c": format!("M{i}")}),
                SF_HUMAN_USER_ID,
            ))
        })
        .collect();
    env.sim.reject_writes(
        BOOKING,
        1,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Meeting link must be https",
    );
    let records = ids
        .iter()
        .map(|i| {
            (
                i.clone(),
                fields(json!({"Lark_Meeting_Status__c": "Created"})),
            )
        })
        .collect();
    let results = env
        .client
        .update_many(BOOKING, records)
        .await
        .expect("update_many");
    assert_eq!(results.len(), 450);
    assert_eq!(env.client.call_counts().composite, 3);
    assert_eq!(
        env.sim
            .requests()
            .count(&Method::PATCH, "/composite/sobjects"),
        3
    );
    for (sent, result) in ids.iter().zip(&results) {
        assert_eq!(result.id.as_ref(), Some(sent), "results are in input order");
    }
    let failed: Vec<&RecordResult> = results.iter().filter(|r| !r.success).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id.as_ref(), Some(&ids[0]));
    assert_eq!(
        failed[0].errors[0].status_code,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
    assert_eq!(failed[0].errors[0].message, "Meeting link must be https");
    let stored = env.sim.records(BOOKING);
    let created = stored
        .iter()
        .filter(|r| r["Lark_Meeting_Status__c"] == json!("Created"))
        .count();
    assert_eq!(created, 449);
}

#[tokio::test]
async fn writes_raise_changes_with_the_writer_and_changed_fields() {
    let env = env().await;
    let booking = env.sim.insert(
        BOOKING,
        json!({"Merchant_Name__c": "Acme", "Service_Type__c": "Remote"}),
        SF_HUMAN_USER_ID,
    );
    let created = env.sim.changes().pop().expect("create change");
    assert_eq!(created.kind, ChangeKind::Create);
    assert_eq!(created.commit_user, SF_HUMAN_USER_ID);
    assert_eq!(created.record_id, booking);
    assert!(created
        .changed_fields
        .contains(&"Merchant_Name__c".to_string()));
    assert_eq!(created.values["Service_Type__c"], json!("Remote"));

    env.client
        .update(
            BOOKING,
            &id(&booking),
            fields(json!({
                "Merchant_Name__c": "Acme",
                "Remote_Training_Meeting_Link__c": "https://vc.larksuite.com/j/123",
                "Lark_Meeting_Status__c": "Created"
            })),
        )
        .await
        .expect("update");
    let updated = env.sim.changes().pop().expect("update change");
    assert_eq!(updated.kind, ChangeKind::Update);
    assert_eq!(updated.commit_user, SF_INTEGRATION_USER_ID);
    let mut changed = updated.changed_fields.clone();
    changed.sort();
    assert_eq!(
        changed,
        vec![
            "Lark_Meeting_Status__c",
            "LastModifiedById",
            "LastModifiedDate",
            "Remote_Training_Meeting_Link__c",
        ],
        "Merchant_Name__c was written but did not change"
    );
    assert_eq!(
        updated.values["Remote_Training_Meeting_Link__c"],
        json!("https://vc.larksuite.com/j/123")
    );

    // Saving identical values still saves the record: only LastModifiedDate changes.
    env.client
        .update(
            BOOKING,
            &id(&booking),
            fields(json!({"Lark_Meeting_Status__c": "Created"})),
        )
        .await
        .expect("no-op update");
    let noop = env.sim.changes().pop().expect("no-op change");
    assert_eq!(noop.changed_fields, vec!["LastModifiedDate"]);

    let new_id = env
        .client
        .create(
            TRAINER,
            fields(json!({"Name": "Bo", "Email__c": "bo@example.com"})),
        )
        .await
        .expect("create");
    assert_eq!(new_id.key_prefix(), "a0T");
    let c = env.sim.changes().pop().unwrap();
    assert_eq!(
        (c.kind, c.commit_user.as_str()),
        (ChangeKind::Create, SF_INTEGRATION_USER_ID)
    );

    env.client.delete(TRAINER, &new_id).await.expect("delete");
    let d = env.sim.changes().pop().unwrap();
    assert_eq!(
        (d.kind, d.record_id.as_str()),
        (ChangeKind::Delete, new_id.as_str())
    );
    assert!(env.sim.get(TRAINER, new_id.as_str()).is_none());
    let counts = env.client.call_counts();
    assert_eq!((counts.update, counts.create, counts.delete), (2, 1, 1));
}

// Salesforce errors mapped to variants, retries and limits, describe, SOQL quoting.

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
