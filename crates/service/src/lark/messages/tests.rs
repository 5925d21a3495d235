use super::*;
use crate::lark::test_support::sim_and_client;
use axum::http::Method;

#[tokio::test]
async fn bot_message_reaches_the_user_and_the_tenant_token_is_fetched_once() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    sim.add_user("bo@example.com", "Bo");
    client
        .send_text_by_email(
            "ana@example.com",
            "Connect Lark: https://x/y?trainer=a0X1",
            "m-1",
        )
        .await
        .unwrap();
    client
        .send_text_by_email("bo@example.com", "Hello \"Bo\"\nline two", "m-2")
        .await
        .unwrap();
    let messages = sim.bot_messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].receive_id_type, "email");
    assert_eq!(messages[0].receive_id, "ana@example.com");
    assert_eq!(messages[0].msg_type, "text");
    assert_eq!(messages[0].text, "Connect Lark: https://x/y?trainer=a0X1");
    assert_eq!(messages[0].uuid.as_deref(), Some("m-1"));
    assert_eq!(messages[1].text, "Hello \"Bo\"\nline two");
    assert_eq!(client.call_counts().tenant_token, 1);
    assert_eq!(client.call_counts().message, 2);
    assert_eq!(
        sim.requests().count(
            &Method::POST,
            "/open-apis/auth/v3/tenant_access_token/internal"
        ),
        1
    );
}

#[tokio::test]
async fn same_uuid_is_sent_once_and_unknown_email_is_refused() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    client
        .send_text_by_email("ana@example.com", "hi", "dup-1")
        .await
        .unwrap();
    client
        .send_text_by_email("ana@example.com", "hi", "dup-1")
        .await
        .unwrap();
    assert_eq!(sim.bot_messages().len(), 1, "deduplicated by uuid");
    let err = client
        .send_text_by_email("nobody@example.com", "hi", "m-3")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::PermissionDenied { code: 230013, .. }),
        "{err:?}"
    );
    assert_eq!(client.call_counts().message, 3, "refusal not retried");
    assert!(client
        .send_text_by_email("ana@example.com", "hi", &"u".repeat(51))
        .await
        .is_err());
}

#[tokio::test]
async fn a_chat_message_reaches_the_group_once_per_uuid() {
    let (sim, client, _dir) = sim_and_client().await;
    let chat = sim.create_chat("Training admins");
    client
        .send_text_to_chat(&chat, "Booking a0X1 failed: Lark refused", "alert-1")
        .await
        .unwrap();
    client
        .send_text_to_chat(&chat, "Booking a0X1 failed: Lark refused", "alert-1")
        .await
        .unwrap();
    let received = sim.chat_messages(&chat);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].text, "Booking a0X1 failed: Lark refused");
    assert_eq!(
        sim.requests()
            .matching(|r| r.query == "receive_id_type=chat_id")
            .len(),
        2
    );
    let unknown = client
        .send_text_to_chat("oc_nope", "x", "alert-2")
        .await
        .unwrap_err();
    assert!(matches!(
        unknown,
        LarkError::InvalidParams { code: 230034, .. }
    ));
    sim.remove_bot_from_chat(&chat);
    let outside = client
        .send_text_to_chat(&chat, "x", "alert-3")
        .await
        .unwrap_err();
    assert!(
        matches!(outside, LarkError::PermissionDenied { code: 230002, .. }),
        "{outside:?}"
    );
    assert_eq!(client.call_counts().message, 4, "refusals are not retried");
}

#[tokio::test]
async fn a_stale_tenant_token_is_replaced_and_the_message_still_sent() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    client.tenant_token().await.unwrap();
    sim.faults().inject(
        Some(Method::POST),
        MESSAGES_PATH,
        1,
        400,
        r#"{"code":99991663,"msg":"Invalid access token for authorization. Please make a request with token attached."}"#,
        &[],
    );
    client
        .send_text_by_email("ana@example.com", "hi", "m-1")
        .await
        .unwrap();
    assert_eq!(client.call_counts().tenant_token, 2);
    assert_eq!(sim.bot_messages().len(), 1);
}
