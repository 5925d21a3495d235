use super::*;

fn booking() -> ObjectDef {
    default_schema().into_iter().next().unwrap()
}

#[test]
fn datetimes_are_normalised_to_salesforce_format() {
    let f = booking().field("training_start__c").unwrap().clone();
    for input in [
        "2026-11-26T10:00:00Z",
        "2026-11-26T11:00:00+01:00",
        "2026-11-26T10:00:00.000+0000",
        "2026-11-26T05:00:00.000-0500",
    ] {
        assert_eq!(
            normalise_value(&f, &json!(input)).unwrap(),
            json!("2026-11-26T10:00:00.000+0000"),
            "{input}"
        );
    }
    assert_eq!(
        normalise_value(&f, &json!("tomorrow")).unwrap_err().code,
        "JSON_PARSER_ERROR"
    );
    assert_eq!(
        cdc_datetime("2026-11-26T10:00:00.000+0000"),
        "2026-11-26T10:00:00.000Z"
    );
}

#[test]
fn lengths_picklists_and_emails_are_enforced() {
    let b = booking();
    let err = normalise_value(
        b.field("Merchant_Name__c").unwrap(),
        &json!("x".repeat(256)),
    )
    .unwrap_err();
    assert_eq!(err.code, "STRING_TOO_LONG");
    assert!(err
        .message
        .starts_with("Merchant Name: data value too large"));
    assert!(err.message.ends_with("(max length=255)"));
    assert_eq!(err.fields, vec!["Merchant_Name__c"]);

    let status = b.field("Lark_Meeting_Status__c").unwrap();
    assert_eq!(
        normalise_value(status, &json!("Done")).unwrap_err().code,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(
        normalise_value(status, &json!("Created")).unwrap(),
        json!("Created")
    );
    // Unrestricted picklists take any value.
    assert_eq!(
        normalise_value(b.field("Service_Type__c").unwrap(), &json!("Hybrid")).unwrap(),
        json!("Hybrid")
    );

    let trainer = default_schema().into_iter().nth(1).unwrap();
    let email = trainer.field("Email__c").unwrap();
    assert_eq!(
        normalise_value(email, &json!("not-an-email"))
            .unwrap_err()
            .code,
        "INVALID_EMAIL_ADDRESS"
    );
    assert_eq!(
        normalise_value(trainer.field("Lark_Connected__c").unwrap(), &Value::Null).unwrap(),
        json!(false)
    );
}

#[test]
fn references_take_15_or_18_char_ids() {
    let f = booking().field("Trainer__c").unwrap().clone();
    assert_eq!(
        normalise_value(&f, &json!("a0RE000000IJmcN")).unwrap(),
        json!("a0RE000000IJmcNMAT")
    );
    assert_eq!(
        normalise_value(&f, &json!("nope")).unwrap_err().code,
        "MALFORMED_ID"
    );
}
