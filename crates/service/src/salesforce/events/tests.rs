use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/cdc/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const BOOKING_FIELD: &str = "Booking_Id__c";

struct Expect {
    replay_id: i64,
    kind: ChangeKind,
    entity: &'static str,
    record_ids: &'static [&'static str],
    commit_user: Option<&'static str>,
    changed_fields: &'static [&'static str],
}

#[test]
fn fixtures_parse_into_the_expected_events() {
    let table: &[(&str, Expect)] = &[
        (
            "employee_create_recorded.json",
            Expect {
                replay_id: 1480821,
                kind: ChangeKind::Create,
                entity: "Employee__c",
                record_ids: &["a097F00000XpKo9QAF"],
                commit_user: Some("0057F000001eSTfQAM"),
                changed_fields: &[],
            },
        ),
        (
            "employee_update_recorded.json",
            Expect {
                replay_id: 1480822,
                kind: ChangeKind::Update,
                entity: "Employee__c",
                record_ids: &["a097F00000XpKo9QAF"],
                commit_user: Some("0057F000001eSTfQAM"),
                changed_fields: &["LastModifiedDate", "Tenure__c"],
            },
        ),
        (
            "employee_delete_recorded.json",
            Expect {
                replay_id: 1480823,
                kind: ChangeKind::Delete,
                entity: "Employee__c",
                record_ids: &["a097F00000XpKo9QAF"],
                commit_user: Some("0057F000001eSTfQAM"),
                changed_fields: &[],
            },
        ),
        (
            "employee_undelete_recorded.json",
            Expect {
                replay_id: 1480824,
                kind: ChangeKind::Undelete,
                entity: "Employee__c",
                record_ids: &["a097F00000XpKo9QAF"],
                commit_user: Some("0057F000001eSTfQAM"),
                changed_fields: &[],
            },
        ),
        (
            "booking_create.json",
            Expect {
                replay_id: 101,
                kind: ChangeKind::Create,
                entity: "Training_Booking__c",
                record_ids: &["a0B5g00000Kx1AbEAJ"],
                commit_user: Some("005000000000002AAA"),
                changed_fields: &[],
            },
        ),
        (
            "booking_update.json",
            Expect {
                replay_id: 102,
                kind: ChangeKind::Update,
                entity: "Training_Booking__c",
                record_ids: &["a0B5g00000Kx1AbEAJ"],
                commit_user: Some("005000000000001AAA"),
                changed_fields: &[
                    "Remote_Training_Meeting_Link__c",
                    "Lark_Meeting_Status__c",
                    "Lark_Meeting_Error__c",
                    "LastModifiedDate",
                ],
            },
        ),
        (
            "booking_delete.json",
            Expect {
                replay_id: 103,
                kind: ChangeKind::Delete,
                entity: "Training_Booking__c",
                record_ids: &["a0B5g00000Kx1AbEAJ", "a0B5g00000Kx1AcEAJ"],
                commit_user: Some("005000000000002AAA"),
                changed_fields: &[],
            },
        ),
        (
            "booking_gap_update.json",
            Expect {
                replay_id: 104,
                kind: ChangeKind::GapUpdate,
                entity: "Training_Booking__c",
                record_ids: &["a0B5g00000Kx1AbEAJ", "a0B5g00000Kx1AdEAJ"],
                commit_user: Some("005000000000002AAA"),
                changed_fields: &[],
            },
        ),
        (
            "booking_gap_overflow.json",
            Expect {
                replay_id: 105,
                kind: ChangeKind::GapOverflow,
                entity: "Training_Booking__c",
                record_ids: &[],
                commit_user: Some("005000000000002AAA"),
                changed_fields: &[],
            },
        ),
        (
            "booking_platform_event.json",
            Expect {
                replay_id: 7,
                kind: ChangeKind::Update,
                entity: "Booking_Change__e",
                record_ids: &["a0B5g00000Kx1AbEAJ"],
                commit_user: Some("005000000000002AAA"),
                changed_fields: &[],
            },
        ),
    ];
    for (file, want) in table {
        let message = fixture(file);
        let got = parse_event(&message, BOOKING_FIELD).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got.replay_id, want.replay_id, "{file}");
        assert_eq!(got.kind, want.kind, "{file}");
        assert_eq!(got.entity, want.entity, "{file}");
        assert_eq!(got.record_ids, want.record_ids, "{file}");
        assert_eq!(got.commit_user.as_deref(), want.commit_user, "{file}");
        assert_eq!(got.changed_fields, want.changed_fields, "{file}");
        assert_eq!(
            got.channel,
            message["channel"].as_str().unwrap(),
            "{file}: channel"
        );
        assert_eq!(got.kind.is_gap(), file.contains("gap"), "{file}: is_gap");
    }
}

#[test]
fn header_details_are_kept() {
    let got = parse_event(&fixture("employee_update_recorded.json"), BOOKING_FIELD).unwrap();
    assert_eq!(
        got.commit_timestamp.map(|t| t.timestamp_millis()),
        Some(1596695083000)
    );
    assert_eq!(
        got.transaction_key.as_deref(),
        Some("00039569-53f3-0a03-743e-46538797bf9f")
    );
    assert_eq!(got.sequence_number, Some(1));

    let pe = parse_event(&fixture("booking_platform_event.json"), BOOKING_FIELD).unwrap();
    assert_eq!(
        pe.commit_timestamp.map(|t| t.timestamp_millis()),
        Some(1767268800000)
    );
    assert_eq!(
        pe.transaction_key.as_deref(),
        Some("5e1a3f1d-8a0b-4f9e-9a4c-2b6d7e8f9a0b")
    );
}

#[test]
fn absurd_replay_ids_are_refused_as_malformed() {
    for absurd in [
        serde_json::json!(0),
        serde_json::json!(-2),
        serde_json::json!(i64::MIN),
    ] {
        let mut message = fixture("employee_update_recorded.json");
        message["data"]["event"]["replayId"] = absurd.clone();
        let err = parse_event(&message, BOOKING_FIELD).expect_err("refused");
        assert_eq!(err.replay_id, None, "{absurd}");
        assert!(err.reason.contains("positive integer"), "{}", err.reason);
    }
}

#[test]
fn malformed_fixtures_become_errors_with_their_replay_id() {
    let table: &[(&str, Option<i64>, &str)] = &[
        (
            "malformed_missing_header.json",
            Some(106),
            "ChangeEventHeader",
        ),
        ("malformed_bad_replay_id.json", None, "replayId"),
        ("malformed_unknown_change_type.json", Some(108), "SNAPSHOT"),
        ("malformed_no_record_ids.json", Some(109), "recordIds"),
        (
            "malformed_platform_event_no_booking_id.json",
            Some(8),
            "Booking_Id__c",
        ),
    ];
    for (file, replay_id, reason_part) in table {
        let err = parse_event(&fixture(file), BOOKING_FIELD)
            .expect_err(&format!("{file} must not parse"));
        assert_eq!(err.replay_id, *replay_id, "{file}");
        assert!(
            err.reason.contains(reason_part),
            "{file}: reason {:?} should mention {reason_part}",
            err.reason
        );
    }
}

#[test]
fn arbitrary_json_never_panics() {
    let inputs = [
        serde_json::json!(null),
        serde_json::json!([]),
        serde_json::json!({"channel": 5}),
        serde_json::json!({"channel": "/data/X__ChangeEvent"}),
        serde_json::json!({"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 3}}}),
        serde_json::json!({"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 3},
            "payload": {"ChangeEventHeader": {"changeType": "UPDATE", "entityName": "X__c",
            "recordIds": "a0B5g00000Kx1AbEAJ"}}}}),
        serde_json::json!({"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 3},
            "payload": {"ChangeEventHeader": {"changeType": "UPDATE", "entityName": "X__c",
            "recordIds": ["a0B5g00000Kx1AbEAJ"], "changedFields": [1, 2]}}}}),
        serde_json::json!({"channel": "/topic/Old", "data": {"event": {"replayId": 3}, "payload": {}}}),
    ];
    for input in inputs {
        let result = parse_event(&input, BOOKING_FIELD);
        assert!(result.is_err(), "{input} should be malformed");
    }
    let err = parse_event(&inputs_with_replay(), BOOKING_FIELD).unwrap_err();
    assert_eq!(err.replay_id, Some(3));
    assert!(err.to_string().contains("replay id 3"), "{err}");
}

fn inputs_with_replay() -> Value {
    serde_json::json!({"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 3}, "payload": {}}})
}

#[test]
fn change_kinds_round_trip() {
    for kind in [
        ChangeKind::Create,
        ChangeKind::Update,
        ChangeKind::Delete,
        ChangeKind::Undelete,
        ChangeKind::GapCreate,
        ChangeKind::GapUpdate,
        ChangeKind::GapDelete,
        ChangeKind::GapUndelete,
        ChangeKind::GapOverflow,
    ] {
        assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(ChangeKind::parse("SNAPSHOT"), None);
}

/// What the simulator's CometD hub sends for a record's life is what this parser
/// reads (the simulator is written independently of this module).
#[tokio::test]
async fn the_simulators_change_events_parse() {
    use lvb_simulators::salesforce::SalesforceSim;
    use lvb_simulators::SF_HUMAN_USER_ID;

    let sim = SalesforceSim::start(0).await.expect("simulator");
    let trainer = sim.insert(
        "Onboarding_Trainer__c",
        serde_json::json!({"Name": "T", "Email__c": "t@example.com"}),
        SF_HUMAN_USER_ID,
    );
    let booking = sim.insert(
        "Training_Booking__c",
        serde_json::json!({"Trainer__c": trainer, "Service_Type__c": "Remote"}),
        SF_HUMAN_USER_ID,
    );
    sim.update(
        "Training_Booking__c",
        &booking,
        serde_json::json!({"Status__c": "Cancelled"}),
        SF_HUMAN_USER_ID,
    );
    sim.delete("Training_Booking__c", &booking, SF_HUMAN_USER_ID);
    let parsed: Vec<ChangeEvent> = sim
        .hub()
        .events()
        .iter()
        .filter(|e| e["channel"] == "/data/Training_Booking__ChangeEvent")
        .map(|e| parse_event(e, BOOKING_FIELD).expect("parses"))
        .collect();
    let kinds: Vec<ChangeKind> = parsed.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![ChangeKind::Create, ChangeKind::Update, ChangeKind::Delete]
    );
    assert!(parsed.iter().all(|e| e.record_ids == vec![booking.clone()]));
    assert_eq!(parsed[1].commit_user.as_deref(), Some(SF_HUMAN_USER_ID));
    assert!(parsed[1].changed_fields.iter().any(|f| f == "Status__c"));
}

/// Every fixture, and every odd shape: the message read slim parses as the whole one.
#[test]
fn a_message_read_slim_parses_as_the_whole_message() {
    let dir = format!("{}/../../fixtures/cdc", env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(texts.len() >= 10, "the fixtures were found");
    texts.extend(
        [
            "null",
            "[]",
            "[1, {\"a\": 2}]",
            r#"{"channel": 5}"#,
            r#"{"channel": "/data/X__ChangeEvent", "data": 7}"#,
            r#"{"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 3}, "payload": [1]}}"#,
            r#"{"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": "3"}, "payload": {}}}"#,
            r#"{"channel": "/data/X__ChangeEvent", "channel": "/event/B__e", "data": {"event": {"replayId": 4, "EventUuid": "u"}, "payload": {"Booking_Id__c": "a0B1", "Booking_Id__c": "a0B2", "CreatedById": "005x", "CreatedDate": "2026-01-02T03:04:05.000+0000", "Other__c": {"deep": [1, 2.5, -3, true, null]}}}}"#,
            r#"{"chan\u006eel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 5}, "payload": {"Change\u0045ventHeader": {"changeType": "CREATE", "entityName": "X__c", "recordIds": ["a0B5g00000Kx1AbEAJ"], "commitUser": "005\u0041"}, "Name": "\"quoted\""}}}"#,
            r#"{"channel": "/data/X__ChangeEvent", "data": {"event": {"replayId": 18446744073709551615}, "payload": {}}}"#,
        ]
        .map(String::from),
    );
    for text in &texts {
        let whole: Value = serde_json::from_str(text).unwrap();
        let slim = read_event_message(text.as_bytes(), BOOKING_FIELD).unwrap();
        assert_eq!(
            parse_event(&slim, BOOKING_FIELD),
            parse_event(&whole, BOOKING_FIELD),
            "{text}"
        );
        assert_eq!(slim.get("channel"), whole.get("channel"), "{text}");
    }
    // The payload's record fields are not kept.
    let create = std::fs::read_to_string(format!("{dir}/booking_create.json")).unwrap();
    let slim = read_event_message(create.as_bytes(), BOOKING_FIELD).unwrap();
    let whole: Value = serde_json::from_str(&create).unwrap();
    let kept: Vec<&String> = slim["data"]["payload"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        kept,
        vec!["ChangeEventHeader", "CreatedById", "CreatedDate"]
    );
    assert!(whole["data"]["payload"].as_object().unwrap().len() > 6);
    // Not JSON, or JSON with something after it: an error, as from `serde_json`.
    for bad in ["", "{", r#"{"channel": "/a"} x"#, r#"{"a": 1,}"#] {
        assert!(
            read_event_message(bad.as_bytes(), BOOKING_FIELD).is_err(),
            "{bad}"
        );
        assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
    }
}
