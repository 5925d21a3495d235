use super::*;

#[test]
fn missing_scopes_are_named_in_config_order() {
    let required = ["vc:reserve", "offline_access"];
    assert!(missing_scopes(&required, Some("offline_access vc:reserve"), true).is_empty());
    assert_eq!(
        missing_scopes(&required, Some("offline_access"), true),
        ["vc:reserve"]
    );
    assert_eq!(
        missing_scopes(&required, Some("vc:reserve"), false),
        ["offline_access"]
    );
    assert_eq!(
        missing_scopes(&required, Some("vc:reserve offline_access"), false),
        ["offline_access"],
        "no refresh token came"
    );
    assert_eq!(
        missing_scopes(&required, None, true),
        ["vc:reserve", "offline_access"]
    );
}

/// Rule 16: saving a connection waits for a refresh in flight for the same trainer
/// (which holds the trainer's lock), so the refresh can never land after it.
#[tokio::test]
async fn saving_a_connection_waits_for_the_trainers_lock() {
    use crate::tokens::test_support::{grant, harness, TRAINER};

    let h = harness().await;
    let id = h.insert_trainer("Ann");
    let (sf, tokens) = (&h.sf, &h.tokens);
    let grant = grant("u-new");
    let writes = || {
        sf.requests()
            .count(&axum::http::Method::PATCH, &format!("/sobjects/{TRAINER}/"))
    };

    let flight = tokens.flight(&id);
    let held = flight.lock().await;
    let mut saving = tokio::spawn({
        let tokens = tokens.clone();
        let id = id.clone();
        async move { tokens.connect(&id, "ou_ann", grant).await }
    });
    // Unlocked, the save takes a few milliseconds on loopback; held, it must not
    // finish at all.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut saving).await;
    assert!(waited.is_err(), "the save waits for the lock");
    assert_eq!(writes(), 0);
    drop(held);
    saving.await.unwrap().unwrap();
    assert_eq!(writes(), 1);
    assert_eq!(
        sf.get(TRAINER, id.as_str()).unwrap()["Lark_Connected__c"],
        true
    );
}

#[test]
fn emails_are_masked() {
    assert_eq!(mask_email("ann.trainer@example.com"), "a***@example.com");
    assert_eq!(mask_email("x"), "***");
    assert!(!mask_email("ann@example.com").contains("ann@"));
}
