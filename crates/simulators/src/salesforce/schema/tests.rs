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

#[test]
fn attendance_fields_are_typed_as_shipped() {
    let b = booking();
    let d = b.describe("62.0");
    let field = |name: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("describe lists {name}"))
            .clone()
    };
    let status = field("Lark_Session_Status__c");
    assert_eq!(status["type"], "picklist");
    assert_eq!(status["restrictedPicklist"], true);
    let values: Vec<&str> = status["picklistValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["In Progress", "Completed", "No Show"]);
    for name in [
        "Lark_Session_Started_At__c",
        "Lark_Session_Ended_At__c",
        "Lark_Trainer_Joined_At__c",
    ] {
        assert_eq!(field(name)["type"], "datetime", "{name}");
    }
    let participants = field("Lark_Participants__c");
    assert_eq!(participants["type"], "double");
    assert_eq!(participants["soapType"], "xsd:double");
    assert_eq!(
        (
            participants["precision"].as_u64(),
            participants["scale"].as_u64()
        ),
        (Some(4), Some(0))
    );
    let guest = field("Lark_Guest_Joined__c");
    assert_eq!(guest["type"], "boolean");
    assert_eq!(guest["nillable"], false);
    assert_eq!(guest["defaultedOnCreate"], true);
    assert_eq!(guest["defaultValue"], false);
    let recording = field("Lark_Recording_Url__c");
    assert_eq!(recording["type"], "url");
    assert_eq!(recording["length"], 255);
    // Fields other than checkboxes have no default.
    assert_eq!(recording["defaultedOnCreate"], false);
    assert_eq!(recording["defaultValue"], Value::Null);
}

#[test]
fn numbers_are_stored_as_doubles_and_bounded_by_precision_minus_scale() {
    let b = booking();
    let participants = b.field("Lark_Participants__c").unwrap();
    let stored = normalise_value(participants, &json!(2)).unwrap();
    // Salesforce answers a custom Number as a double: 2 reads back as 2.0.
    assert_eq!(serde_json::to_string(&stored).unwrap(), "2.0");
    assert_eq!(
        normalise_value(participants, &json!(9999)).unwrap(),
        json!(9999.0)
    );
    assert_eq!(
        normalise_value(participants, &json!(-9999)).unwrap(),
        json!(-9999.0)
    );
    // Decimals beyond the scale are kept as sent; the API does not round them.
    assert_eq!(
        normalise_value(participants, &json!(2.5)).unwrap(),
        json!(2.5)
    );
    for too_big in [json!(10000), json!(-10000), json!(10000.5)] {
        let err = normalise_value(participants, &too_big).unwrap_err();
        assert_eq!(err.code, "NUMBER_OUTSIDE_VALID_RANGE", "{too_big}");
        assert_eq!(
            err.message,
            format!("Lark Participants: value outside of valid range on numeric field: {too_big}")
        );
        assert_eq!(err.fields, vec!["Lark_Participants__c"]);
    }
    assert_eq!(
        normalise_value(participants, &json!("2")).unwrap_err().code,
        "JSON_PARSER_ERROR"
    );
    assert_eq!(
        normalise_value(participants, &Value::Null).unwrap(),
        Value::Null
    );
}

#[test]
fn attendance_writes_are_validated_like_the_other_fields() {
    let b = booking();
    let status = b.field("Lark_Session_Status__c").unwrap();
    assert_eq!(
        normalise_value(status, &json!("No Show")).unwrap(),
        json!("No Show")
    );
    let err = normalise_value(status, &json!("Done")).unwrap_err();
    assert_eq!(err.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    assert_eq!(
        err.message,
        "Lark Session Status: bad value for restricted picklist field: Done"
    );
    let recording = b.field("Lark_Recording_Url__c").unwrap();
    let url = format!("https://meetings.larksuite.com/minutes/{}", "x".repeat(210));
    assert_eq!(normalise_value(recording, &json!(url)).unwrap(), json!(url));
    let err = normalise_value(recording, &json!(format!("{url}{}", "y".repeat(10)))).unwrap_err();
    assert_eq!(err.code, "STRING_TOO_LONG");
    assert!(err.message.ends_with("(max length=255)"), "{}", err.message);
    let guest = b.field("Lark_Guest_Joined__c").unwrap();
    assert_eq!(
        normalise_value(guest, &json!("true")).unwrap_err().code,
        "JSON_PARSER_ERROR"
    );
    let joined = b.field("Lark_Trainer_Joined_At__c").unwrap();
    assert_eq!(
        normalise_value(joined, &json!("2026-11-26T10:03:00Z")).unwrap(),
        json!("2026-11-26T10:03:00.000+0000")
    );
}
