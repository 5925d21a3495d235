//! Wire-level tests of the Salesforce simulator with a plain HTTP client: the shapes a
//! third-party client sees (token response, error arrays, query pages, collections).

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use super::cometd::ChangeKind;
use super::SalesforceSim;
use crate::{SF_CLIENT_ID, SF_CLIENT_SECRET, SF_HUMAN_USER_ID, SF_INTEGRATION_USER_ID, SF_ORG_ID};

const BOOKING: &str = "Training_Booking__c";
const V: &str = "v62.0";

async fn login(sim: &SalesforceSim) -> (reqwest::Client, Value) {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", SF_CLIENT_ID),
            ("client_secret", SF_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    (http, body)
}

fn bearer(token: &Value) -> String {
    format!("Bearer {}", token["access_token"].as_str().unwrap())
}

#[tokio::test]
async fn token_response_has_salesforce_shape_and_a_valid_signature() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (_, body) = login(&sim).await;
    let base = sim.base_url();
    assert_eq!(body["instance_url"], json!(base));
    assert_eq!(body["token_type"], json!("Bearer"));
    let id = body["id"].as_str().unwrap();
    assert_eq!(
        id,
        format!("{base}/id/{SF_ORG_ID}/{SF_INTEGRATION_USER_ID}")
    );
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("00D000000000001!"), "{token}");
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(issued_at.parse::<i64>().is_ok());
    let mut mac = Hmac::<Sha256>::new_from_slice(SF_CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{id}{issued_at}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["signature"], json!(expected));
}

#[tokio::test]
async fn token_errors_use_oauth_error_bodies() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let http = reqwest::Client::new();
    for (form, error, description) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nope"),
                ("client_secret", "x"),
            ],
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            vec![("grant_type", "authorization_code"), ("code", "x")],
            "unsupported_grant_type",
            "grant type not supported",
        ),
        (
            vec![("grant_type", JWT), ("assertion", "not.a.jwt")],
            "invalid_grant",
            "invalid assertion",
        ),
    ] {
        let response = http
            .post(format!("{}/services/oauth2/token", sim.base_url()))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": error, "error_description": description})
        );
    }
}

const JWT: &str = crate::wire::JWT_BEARER_GRANT;

#[tokio::test]
async fn rest_without_a_valid_session_is_401_invalid_session_id() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let url = format!(
        "{}/services/data/{V}/query?q=SELECT+Id+FROM+User",
        sim.base_url()
    );
    let ok = http
        .get(&url)
        .header("Authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    sim.expire_sessions();
    for auth in [bearer(&token), "Bearer made-up".to_string()] {
        let response = http
            .get(&url)
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body[0]["errorCode"], json!("INVALID_SESSION_ID"));
        assert_eq!(body[0]["message"], json!("Session expired or invalid"));
    }
    let versions: Value = http
        .get(format!("{}/services/data/", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(versions
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == json!("62.0") && v["url"] == json!("/services/data/v62.0")));
}

#[tokio::test]
async fn the_cometd_hub_checks_tokens_against_the_session_store() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let handshake = || {
        http.post(format!("{}/cometd/62.0", sim.base_url()))
            .header("Authorization", bearer(&token))
            .json(&json!([{
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "ext": {"replay": true}
            }]))
            .send()
    };
    let reply: Value = handshake().await.unwrap().json().await.unwrap();
    assert_eq!(reply[0]["successful"], json!(true), "{reply}");
    sim.expire_sessions();
    let reply: Value = handshake().await.unwrap().json().await.unwrap();
    assert_eq!(reply[0]["successful"], json!(false), "{reply}");
}

#[tokio::test]
async fn query_pages_have_salesforce_shape() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    sim.set_query_batch_size(2);
    for i in 0..3 {
        sim.insert(
            BOOKING,
            json!({"Merchant_Name__c": format!("M{i}")}),
            SF_HUMAN_USER_ID,
        );
    }
    let get = |url: String| http.get(url).header("Authorization", bearer(&token)).send();
    let first: Value = get(format!(
        "{}/services/data/{V}/query?q=SELECT+Id,Merchant_Name__c+FROM+Training_Booking__c",
        sim.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(first["totalSize"], json!(3));
    assert_eq!(first["done"], json!(false));
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    assert_eq!(first["records"][0]["attributes"]["type"], json!(BOOKING));
    let next = first["nextRecordsUrl"].as_str().unwrap();
    assert!(
        next.starts_with("/services/data/v62.0/query/01g") && next.ends_with("-2"),
        "{next}"
    );
    let second: Value = get(format!("{}{next}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["done"], json!(true));
    assert!(second.get("nextRecordsUrl").is_none());
    assert_eq!(second["records"][0]["Merchant_Name__c"], json!("M2"));
    // The cursor is closed after its last batch.
    let gone = get(format!("{}{next}", sim.base_url())).await.unwrap();
    assert_eq!(gone.status(), StatusCode::BAD_REQUEST);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], json!("INVALID_QUERY_LOCATOR"));
}

#[tokio::test]
async fn a_uri_or_uri_and_headers_longer_than_16_384_bytes_is_refused() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let id = sim.insert(BOOKING, json!({"Merchant_Name__c": "M"}), SF_HUMAN_USER_ID);
    let query = |ids: usize, padding: usize| {
        let list = vec![format!("'{id}'"); ids].join(",");
        let soql = format!("SELECT Id FROM {BOOKING} WHERE Id IN ({list})");
        let url = format!(
            "{}/services/data/{V}/query?q={}",
            sim.base_url(),
            url::form_urlencoded::byte_serialize(soql.as_bytes()).collect::<String>()
        );
        http.get(url)
            .header("Authorization", bearer(&token))
            .header("X-Padding", "p".repeat(padding))
            .send()
    };
    // 27 bytes an id once encoded: 500 ids are about 13.5 KB, 700 about 19 KB.
    assert_eq!(query(500, 0).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        query(700, 0).await.unwrap().status(),
        StatusCode::URI_TOO_LONG
    );
    assert_eq!(
        query(500, 4_000).await.unwrap().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[tokio::test]
async fn query_options_batch_size_is_clamped_and_kept_by_the_cursor() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    for i in 0..450 {
        sim.insert(
            BOOKING,
            json!({"Merchant_Name__c": format!("M{i:03}")}),
            SF_HUMAN_USER_ID,
        );
    }
    let base = sim.base_url();
    let page = |url: String, options: Option<&'static str>| {
        let mut request = http.get(url).header("Authorization", bearer(&token));
        if let Some(options) = options {
            request = request.header("Sforce-Query-Options", options);
        }
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let soql = "SELECT+Id+FROM+Training_Booking__c";
    let size = |v: &Value| v["records"].as_array().unwrap().len();

    // Default 2000: one page.
    let all = page(format!("{base}/services/data/{V}/query?q={soql}"), None).await;
    assert_eq!((size(&all), all["done"].clone()), (450, json!(true)));

    // batchSize=50 is raised to the documented minimum of 200; later pages keep it.
    let first = page(
        format!("{base}/services/data/{V}/query?q={soql}"),
        Some("batchSize=50"),
    )
    .await;
    assert_eq!(size(&first), 200);
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    assert!(next.ends_with("-200"), "{next}");
    let second = page(format!("{base}{next}"), None).await;
    assert_eq!((size(&second), second["done"].clone()), (200, json!(false)));
    let next = second["nextRecordsUrl"].as_str().unwrap().to_string();
    let third = page(format!("{base}{next}"), None).await;
    assert_eq!((size(&third), third["done"].clone()), (50, json!(true)));

    // batchSize=300 is taken as asked; the org's own (smaller) batch size still caps it.
    let asked = page(
        format!("{base}/services/data/{V}/queryAll?q={soql}"),
        Some("batchSize=300"),
    )
    .await;
    assert_eq!(size(&asked), 300);
    sim.set_query_batch_size(7);
    let capped = page(
        format!("{base}/services/data/{V}/query?q={soql}"),
        Some("batchSize=300"),
    )
    .await;
    assert_eq!(size(&capped), 7);
}

#[tokio::test]
async fn query_and_create_also_answer_with_a_trailing_slash() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let base = format!("{}/services/data/{V}", sim.base_url());
    let created = http
        .post(format!("{base}/sobjects/{BOOKING}/"))
        .header("Authorization", bearer(&token))
        .json(&json!({"Merchant_Name__c": "Slash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for resource in ["query/", "queryAll/"] {
        let body: Value = http
            .get(format!(
                "{base}/{resource}?q=SELECT+Id,Merchant_Name__c+FROM+{BOOKING}"
            ))
            .header("Authorization", bearer(&token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["totalSize"], json!(1), "{resource}: {body}");
        assert_eq!(body["records"][0]["Id"], json!(id));
    }
}

#[tokio::test]
async fn collections_enforce_the_200_limit_and_all_or_none() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let url = format!("{}/services/data/{V}/composite/sobjects", sim.base_url());
    let a = sim.insert(BOOKING, json!({"Merchant_Name__c": "A"}), SF_HUMAN_USER_ID);
    let b = sim.insert(BOOKING, json!({"Merchant_Name__c": "B"}), SF_HUMAN_USER_ID);

    let too_many: Vec<Value> = (0..201)
        .map(|_| json!({"attributes": {"type": BOOKING}, "id": a, "Name": "x"}))
        .collect();
    let response = http
        .patch(&url)
        .header("Authorization", bearer(&token))
        .json(&json!({"allOrNone": false, "records": too_many}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], json!("EXCEEDED_ID_LIMIT"));

    let changes_before = sim.changes().len();
    let response = http
        .patch(&url)
        .header("Authorization", bearer(&token))
        .json(&json!({"allOrNone": true, "records": [
            {"attributes": {"type": BOOKING}, "id": a, "Merchant_Name__c": "A2"},
            {"attributes": {"type": BOOKING}, "id": b, "Lark_Meeting_Status__c": "Bogus"},
            {"attributes": {"type": BOOKING}, "id": "001000000000000", "Name": "x"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let results: Value = response.json().await.unwrap();
    assert_eq!(results[0]["success"], json!(false));
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        json!("ALL_OR_NONE_OPERATION_ROLLED_BACK")
    );
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        json!("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
    assert_eq!(
        results[1]["errors"][0]["fields"],
        json!(["Lark_Meeting_Status__c"])
    );
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        json!("INVALID_CROSS_REFERENCE_KEY")
    );
    assert_eq!(
        sim.get(BOOKING, &a).unwrap()["Merchant_Name__c"],
        json!("A"),
        "rolled back"
    );
    assert_eq!(
        sim.changes().len(),
        changes_before,
        "a rolled-back transaction publishes nothing"
    );

    let response = http
        .patch(&url)
        .header("Authorization", bearer(&token))
        .json(&json!({"allOrNone": false, "records": [
            {"attributes": {"type": BOOKING}, "id": a, "Merchant_Name__c": "A2"},
            {"attributes": {"type": BOOKING}, "id": "bad-id", "Name": "x"},
        ]}))
        .send()
        .await
        .unwrap();
    let results: Value = response.json().await.unwrap();
    assert_eq!(results[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(
        results[1],
        json!({"success": false, "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id bad-id", "fields": ["Id"]}]})
    );
    let last = sim.changes().pop().unwrap();
    assert_eq!(
        (last.kind, last.record_id.as_str()),
        (ChangeKind::Update, a.as_str())
    );
}

#[tokio::test]
async fn create_get_patch_delete_round_trip() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let base = format!("{}/services/data/{V}/sobjects/{BOOKING}", sim.base_url());
    let created = http
        .post(&base)
        .header("Authorization", bearer(&token))
        .json(
            &json!({"Training_Start__c": "2026-11-26T11:00:00+01:00", "Service_Type__c": "Remote"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["errors"], json!([]));
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("a0B") && id.len() == 18);

    let record: Value = http
        .get(format!("{base}/{}", &id[..15]))
        .header("Authorization", bearer(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["Id"], json!(id));
    assert_eq!(
        record["Training_Start__c"],
        json!("2026-11-26T10:00:00.000+0000")
    );
    assert_eq!(record["CreatedById"], json!(SF_INTEGRATION_USER_ID));
    assert_eq!(record["IsDeleted"], json!(false));
    assert_eq!(
        record["attributes"]["url"],
        json!(format!("/services/data/v62.0/sobjects/{BOOKING}/{id}"))
    );

    sim.reject_writes(BOOKING, 1, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Not today");
    let refused = http
        .patch(format!("{base}/{id}"))
        .header("Authorization", bearer(&token))
        .json(&json!({"Status__c": "Confirmed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body[0]["errorCode"],
        json!("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    );
    assert_eq!(body[0]["message"], json!("Not today"));

    let patched = http
        .patch(format!("{base}/{id}"))
        .header("Authorization", bearer(&token))
        .json(&json!({"Status__c": "Confirmed", "Training_Start__c": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let stored = sim.get(BOOKING, &id).unwrap();
    assert_eq!(stored["Status__c"], json!("Confirmed"));
    assert_eq!(stored["Training_Start__c"], Value::Null, "null clears");

    let deleted = http
        .delete(format!("{base}/{id}"))
        .header("Authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after = http
        .get(format!("{base}/{id}"))
        .header("Authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let kinds: Vec<ChangeKind> = sim.changes().iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![ChangeKind::Create, ChangeKind::Update, ChangeKind::Delete]
    );
}

#[tokio::test]
async fn the_connect_link_formula_follows_the_record_id() {
    let sim = SalesforceSim::start(0).await.unwrap();
    sim.set_connect_link_base("https://bridge.example.com/");
    let id = sim.insert(
        "Onboarding_Trainer__c",
        json!({"Name": "Ann", "Email__c": "ann@example.com"}),
        SF_HUMAN_USER_ID,
    );
    assert_eq!(
        sim.get("Onboarding_Trainer__c", &id).unwrap()["Lark_Connect_Link__c"],
        json!(format!(
            "https://bridge.example.com/oauth/lark/start?trainer={id}"
        ))
    );
    let created = sim.changes().pop().unwrap();
    assert!(
        !created
            .changed_fields
            .iter()
            .any(|f| f == "Lark_Connect_Link__c"),
        "formula fields are not in change events"
    );
}

#[test]
#[should_panic(expected = "INVALID_FIELD")]
fn the_test_api_refuses_unknown_fields_loudly() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = SalesforceSim::start(0).await.unwrap();
        sim.insert(BOOKING, json!({"Nope__c": 1}), SF_HUMAN_USER_ID);
    });
}

#[tokio::test]
async fn a_validation_rule_refuses_one_record_alone_inside_a_collection() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let url = format!("{}/services/data/{V}/composite/sobjects", sim.base_url());
    let a = sim.insert(BOOKING, json!({"Merchant_Name__c": "A"}), SF_HUMAN_USER_ID);
    let b = sim.insert(BOOKING, json!({"Merchant_Name__c": "B"}), SF_HUMAN_USER_ID);
    sim.set_validation_rule(&b, Some("Locked for this region"));
    let write = || {
        http.patch(&url)
            .header("Authorization", bearer(&token))
            .json(&json!({"allOrNone": false, "records": [
                {"attributes": {"type": BOOKING}, "id": a, "Merchant_Name__c": "A2"},
                {"attributes": {"type": BOOKING}, "id": b, "Merchant_Name__c": "B2"},
            ]}))
            .send()
    };
    let response = write().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the call itself succeeds"
    );
    let results: Value = response.json().await.unwrap();
    assert_eq!(results[0], json!({"id": a, "success": true, "errors": []}));
    // SaveResult: `id` is set only for a record that was updated (developer.salesforce.com,
    // "sforce_api_calls_update_saveresult"); results come in request order.
    assert_eq!(
        results[1],
        json!({"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Locked for this region", "fields": []}]})
    );
    assert_eq!(
        sim.get(BOOKING, &a).unwrap()["Merchant_Name__c"],
        json!("A2")
    );
    assert_eq!(
        sim.get(BOOKING, &b).unwrap()["Merchant_Name__c"],
        json!("B")
    );
    sim.set_validation_rule(&b, None);
    let results: Value = write().await.unwrap().json().await.unwrap();
    assert_eq!(results[1]["success"], json!(true), "lifted");
}

/// The attendance fields of design §2.4 through the wire, the way the service writes them:
/// a new booking's checkbox reads false, a batched write of all seven lands, the count reads
/// back as a double, and an out-of-range count is refused for that record alone.
#[tokio::test]
async fn attendance_fields_round_trip_through_collections() {
    let sim = SalesforceSim::start(0).await.unwrap();
    let (http, token) = login(&sim).await;
    let a = sim.insert(BOOKING, json!({"Merchant_Name__c": "A"}), SF_HUMAN_USER_ID);
    let b = sim.insert(BOOKING, json!({"Merchant_Name__c": "B"}), SF_HUMAN_USER_ID);
    let record_url = format!(
        "{}/services/data/{V}/sobjects/{BOOKING}/{a}",
        sim.base_url()
    );
    let read = || async {
        http.get(&record_url)
            .header("Authorization", bearer(&token))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let fresh: Value = serde_json::from_str(&read().await).unwrap();
    assert_eq!(fresh["Lark_Guest_Joined__c"], json!(false));
    assert_eq!(fresh["Lark_Participants__c"], Value::Null);
    assert_eq!(fresh["Lark_Session_Status__c"], Value::Null);

    let response = http
        .patch(format!(
            "{}/services/data/{V}/composite/sobjects",
            sim.base_url()
        ))
        .header("Authorization", bearer(&token))
        .json(&json!({"allOrNone": false, "records": [
            {"attributes": {"type": BOOKING}, "id": a,
             "Lark_Session_Status__c": "Completed",
             "Lark_Session_Started_At__c": "2026-11-26T10:01:00Z",
             "Lark_Trainer_Joined_At__c": "2026-11-26T10:02:00Z",
             "Lark_Session_Ended_At__c": "2026-11-26T11:00:00Z",
             "Lark_Participants__c": 2,
             "Lark_Guest_Joined__c": true,
             "Lark_Recording_Url__c": "https://meetings.larksuite.com/minutes/obcn123"},
            {"attributes": {"type": BOOKING}, "id": b, "Lark_Participants__c": 10000},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let results: Value = response.json().await.unwrap();
    assert_eq!(results[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(
        results[1],
        json!({"success": false, "errors": [{
            "statusCode": "NUMBER_OUTSIDE_VALID_RANGE",
            "message": "Lark Participants: value outside of valid range on numeric field: 10000",
            "fields": ["Lark_Participants__c"],
        }]})
    );

    let text = read().await;
    assert!(
        text.contains(r#""Lark_Participants__c":2.0"#),
        "a Number reads back as a double: {text}"
    );
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["Lark_Session_Status__c"], json!("Completed"));
    assert_eq!(
        stored["Lark_Session_Ended_At__c"],
        json!("2026-11-26T11:00:00.000+0000")
    );
    assert_eq!(stored["Lark_Guest_Joined__c"], json!(true));
    assert_eq!(
        stored["Lark_Recording_Url__c"],
        json!("https://meetings.larksuite.com/minutes/obcn123")
    );
    assert_eq!(
        sim.get(BOOKING, &b).unwrap()["Lark_Participants__c"],
        Value::Null,
        "the refused record is unchanged"
    );
    let last = sim.changes().pop().unwrap();
    assert_eq!(last.record_id, a);
    assert!(last
        .changed_fields
        .iter()
        .any(|f| f == "Lark_Participants__c"));
}
