use super::*;

#[test]
fn relationship_names_follow_salesforce_rules() {
    assert_eq!(relationship_name("Trainer__c"), "Trainer__r");
    assert_eq!(relationship_name("OwnerId"), "Owner");
}

#[test]
fn status_values_round_trip() {
    for s in MeetingStatus::ALL {
        assert_eq!(MeetingStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(MeetingStatus::parse("Scheduled"), None);
}

#[test]
fn topic_is_rendered_from_values() {
    let mut v = Map::new();
    v.insert("Merchant_Name__c".into(), Value::String("Acme".into()));
    assert_eq!(
        render_topic("Remote Training: {Merchant_Name__c}", &v),
        "Remote Training: Acme"
    );
}

#[test]
fn the_calendar_steps_reason_is_recognised_once_when_the_row_is_read() {
    let settings = crate::config::Settings::load_from(
        None,
        [
            ("LVB__SALESFORCE__CLIENT_ID", "c"),
            ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
            ("LVB__LARK__APP_ID", "a"),
            ("LVB__LARK__APP_SECRET", "s"),
            ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
            ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let b = &settings.salesforce.booking;
    let row = |error: &str| {
        let mut row = Map::new();
        row.insert("Id".into(), "a0B000000000001EAA".into());
        row.insert(b.meeting_error_field.clone(), error.into());
        row
    };
    let read =
        |error: &str| Booking::from_row(b, &settings.salesforce.trainer, &[], &row(error)).unwrap();
    assert!(read(&format!("{CALENDAR_REASON}Lark is down")).calendar_error);
    assert!(!read("Lark refused the meeting").calendar_error);
    assert!(!read("").calendar_error);
}
