use axum::http::Method;

use super::*;
use crate::lark::test_support::sim_and_client;

#[tokio::test]
async fn emails_map_to_open_ids_in_batches_of_fifty() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana = sim.add_user("ana@example.com", "Ana");
    let mut emails: Vec<String> = (0..60).map(|i| format!("t{i}@example.com")).collect();
    let last = sim.add_user("t59@example.com", "T59");
    emails.push("ANA@example.com".into());
    emails.push("ana@example.com".into());
    let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
    let found = client.open_ids_by_email(&refs).await.unwrap();
    assert_eq!(found["ANA@example.com"].as_deref(), Some(ana.as_str()));
    assert_eq!(found["ana@example.com"].as_deref(), Some(ana.as_str()));
    assert_eq!(found["t59@example.com"].as_deref(), Some(last.as_str()));
    assert_eq!(found["t0@example.com"], None, "no Lark account");
    assert_eq!(found.len(), 62);
    // 61 distinct emails: two calls, each within Lark's limit.
    let calls = sim
        .requests()
        .matching(|r| r.method == Method::POST && r.path == BATCH_GET_ID_PATH);
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(call.query, "user_id_type=open_id");
        let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
        assert!(body["emails"].as_array().unwrap().len() <= MAX_EMAILS_PER_CALL);
        assert_eq!(body["include_resigned"], false);
    }
    assert_eq!(client.call_counts().batch_get_id, 2);
    assert_eq!(client.call_counts().tenant_token, 1);
}

#[tokio::test]
async fn an_app_without_the_contact_scope_gets_a_permission_error() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    sim.set_app_scope("contact:user.id:readonly", false);
    let err = client
        .open_ids_by_email(&["ana@example.com"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::PermissionDenied { code: 99991672, .. }),
        "{err:?}"
    );
    assert_eq!(client.call_counts().batch_get_id, 1, "not retried");
    assert!(client.open_ids_by_email(&[]).await.unwrap().is_empty());
    assert_eq!(client.call_counts().batch_get_id, 1, "nothing to ask");
}
