//! What the no-show message says and how the merchant is named.

use serde_json::json;

use super::*;
use crate::config::Settings;

fn settings() -> BookingSettings {
    let env = [
        ("LVB__SALESFORCE__CLIENT_ID", "c"),
        ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
        ("LVB__LARK__APP_ID", "a"),
        ("LVB__LARK__APP_SECRET", "s"),
        ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
        ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
        (
            "LVB__SALESFORCE__BOOKING__ATTENDEE_EMAIL_FIELD",
            "Merchant_Email__c",
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load_from(None, env).unwrap().salesforce.booking
}

fn booking() -> Booking {
    let mut b = Booking::purged(BookingId::parse("a0B000000000001EAA").unwrap());
    b.topic_values
        .insert("Merchant_Name__c".into(), json!("Acme Coffee"));
    b
}

#[test]
fn the_merchant_is_named_by_the_topic_fields_and_the_guest_email() {
    let mut b = booking();
    assert_eq!(merchant(&b, &settings()).as_deref(), Some("Acme Coffee"));
    b.topic_values
        .insert("Merchant_Email__c".into(), json!("owner@acme.example"));
    assert_eq!(
        merchant(&b, &settings()).as_deref(),
        Some("Acme Coffee <owner@acme.example>")
    );
    b.topic_values.clear();
    assert_eq!(merchant(&b, &settings()), None);
}

#[test]
fn the_message_names_the_session_the_wait_and_the_link() {
    let start = DateTime::from_timestamp(1_795_687_200, 0).unwrap();
    let text = trainer_message(
        Some("Ann"),
        "Remote Training: Acme",
        start,
        Duration::from_secs(600),
        Some("https://vc.larksuite.com/j/123456789"),
    );
    assert_eq!(
        text,
        "Hi Ann, your remote training session \"Remote Training: Acme\" started at 10:00 UTC \
         and you have not joined its Lark meeting 10 minutes later. The merchant may be waiting. \
         Join here: https://vc.larksuite.com/j/123456789"
    );
    let bare = trainer_message(None, "", start, Duration::from_secs(5), None);
    assert!(
        bare.starts_with("Hi there, your remote training session started"),
        "{bare}"
    );
    assert!(bare.contains("5 seconds later"), "{bare}");
    assert_eq!(
        message_uuid(&BookingId::parse("a0B000000000001EAA").unwrap()),
        "lvb-noshow-a0B000000000001EAA"
    );
    assert!(message_uuid(&BookingId::parse("a0B000000000001EAA").unwrap()).len() <= 50);
}
