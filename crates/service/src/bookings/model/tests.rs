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
