//! Typed Streaming API events: turns one Bayeux event message — a Change Data Capture event
//! (`/data/...`) or a platform event (`/event/X__e`) — into a [`ChangeEvent`] that says
//! *which* records changed and how, or into a [`MalformedEvent`] that says why not.
//!
//! Parsing is pure (no I/O, no clock) and never panics: bad input from the wire becomes an
//! error value carrying the replay id when it could be read, so the stream can log it and
//! move on (design §3 rule 10). This module decides nothing about bookings: field values in
//! the payload are ignored, because the processor always reads the record fresh (rule 3).
//!
//! Message shapes: see `fixtures/cdc/README.md` (recorded CDC events from the EMP Connector
//! README; gap and overflow events from the Change Data Capture Developer Guide).

use serde_json::{Map, Value};

/// The "empty" record id an overflow event carries in `recordIds` (Change Data Capture
/// Developer Guide, "Overflow Events": "always set to 000000000000000AAA").
pub const EMPTY_RECORD_ID: &str = "000000000000000AAA";

/// What happened, as in `ChangeEventHeader.changeType`. Platform events count as
/// [`ChangeKind::Update`]: they only name the booking to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `CREATE`
    Create,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `UNDELETE`
    Undelete,
    /// `GAP_CREATE`: a create Salesforce could not describe; read the record.
    GapCreate,
    /// `GAP_UPDATE`
    GapUpdate,
    /// `GAP_DELETE`
    GapDelete,
    /// `GAP_UNDELETE`
    GapUndelete,
    /// `GAP_OVERFLOW`: a transaction too large to describe; no record ids, sweep.
    GapOverflow,
}

impl ChangeKind {
    /// Parses a `changeType` value; `None` for anything else (`SNAPSHOT` is reserved).
    pub fn parse(change_type: &str) -> Option<ChangeKind> {
        Some(match change_type {
            "CREATE" => ChangeKind::Create,
            "UPDATE" => ChangeKind::Update,
            "DELETE" => ChangeKind::Delete,
            "UNDELETE" => ChangeKind::Undelete,
            "GAP_CREATE" => ChangeKind::GapCreate,
            "GAP_UPDATE" => ChangeKind::GapUpdate,
            "GAP_DELETE" => ChangeKind::GapDelete,
            "GAP_UNDELETE" => ChangeKind::GapUndelete,
            "GAP_OVERFLOW" => ChangeKind::GapOverflow,
            _ => return None,
        })
    }

    /// The `changeType` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "CREATE",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Undelete => "UNDELETE",
            ChangeKind::GapCreate => "GAP_CREATE",
            ChangeKind::GapUpdate => "GAP_UPDATE",
            ChangeKind::GapDelete => "GAP_DELETE",
            ChangeKind::GapUndelete => "GAP_UNDELETE",
            ChangeKind::GapOverflow => "GAP_OVERFLOW",
        }
    }

    /// True for gap and overflow events: the header says which records (if any), but
    /// `changedFields` and `commitUser` cannot be trusted to describe the change.
    pub fn is_gap(self) -> bool {
        matches!(
            self,
            ChangeKind::GapCreate
                | ChangeKind::GapUpdate
                | ChangeKind::GapDelete
                | ChangeKind::GapUndelete
                | ChangeKind::GapOverflow
        )
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event from the stream, reduced to what the processor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Position in the channel's stream; the checkpoint saved once the work is done.
    pub replay_id: i64,
    /// The channel it arrived on, e.g. `/data/Training_Booking__ChangeEvent`.
    pub channel: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Object API name (`Training_Booking__c`), or the platform event's name (`X__e`).
    pub entity: String,
    /// The changed records, as sent (usually one; several for a merged change). Empty for
    /// an overflow event. Not validated here: a field-type conversion can send a wildcard
    /// such as `a0B*`, which `RecordId::parse` rejects.
    pub record_ids: Vec<String>,
    /// `commitUser`: who made the change (None when absent or empty).
    pub commit_user: Option<String>,
    /// `changedFields`, as sent: field names, including `LastModifiedDate` on updates
    /// and compound paths such as `Name.FirstName` for some standard objects.
    pub changed_fields: Vec<String>,
    /// `commitTimestamp`, milliseconds since the epoch.
    pub commit_timestamp: Option<i64>,
    /// `transactionKey` (CDC) or `EventUuid` (platform event).
    pub transaction_key: Option<String>,
    /// `sequenceNumber` within the transaction.
    pub sequence_number: Option<i64>,
}

/// An event that could not be understood. Logged with its replay id and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event (replay id {}): {reason}", .replay_id.map_or("unknown".to_string(), |r| r.to_string()))]
pub struct MalformedEvent {
    /// The replay id, when `data.event.replayId` could be read.
    pub replay_id: Option<i64>,
    /// What was wrong.
    pub reason: String,
}

/// Parses one Bayeux event message (`{"channel": ..., "data": {...}}`).
///
/// `booking_id_field` names the platform event field holding the booking id
/// (`salesforce.streaming.booking_id_field`); CDC events ignore it.
pub fn parse_event(message: &Value, booking_id_field: &str) -> Result<ChangeEvent, MalformedEvent> {
    let replay_id = message
        .pointer("/data/event/replayId")
        .and_then(Value::as_i64)
        // An event's replay id is positive (-1 and -2 only mean "new" and "all" when
        // subscribing): anything else is refused as malformed, never stored or counted
        // from (design §3 rule 17).
        .filter(|r| *r > 0);
    let malformed = |reason: String| MalformedEvent { replay_id, reason };

    let channel = message
        .get("channel")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no channel".into()))?;
    let replay_id = replay_id.ok_or_else(|| {
        malformed(match message.pointer("/data/event/replayId") {
            None => "no data.event.replayId".into(),
            Some(other) => format!("data.event.replayId is not a positive integer: {other}"),
        })
    })?;
    let payload = message
        .pointer("/data/payload")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("no data.payload object".into()))?;

    if let Some(event_name) = channel.strip_prefix("/event/") {
        parse_platform_event(
            channel,
            event_name,
            replay_id,
            message,
            payload,
            booking_id_field,
        )
        .map_err(malformed)
    } else if channel.starts_with("/data/") {
        parse_change_event(channel, replay_id, payload).map_err(malformed)
    } else {
        Err(malformed(format!("unsupported channel {channel}")))
    }
}

fn parse_change_event(
    channel: &str,
    replay_id: i64,
    payload: &Map<String, Value>,
) -> Result<ChangeEvent, String> {
    let header = payload
        .get("ChangeEventHeader")
        .and_then(Value::as_object)
        .ok_or("no ChangeEventHeader")?;
    let change_type = header
        .get("changeType")
        .and_then(Value::as_str)
        .ok_or("no changeType")?;
    let kind = ChangeKind::parse(change_type)
        .ok_or_else(|| format!("unknown changeType {change_type}"))?;
    let entity = non_empty_str(header.get("entityName")).ok_or("no entityName")?;
    let mut record_ids = string_list(header.get("recordIds"), "recordIds")?;
    // An overflow event names no record: its recordIds holds the empty id.
    record_ids.retain(|id| id != EMPTY_RECORD_ID);
    if record_ids.is_empty() && kind != ChangeKind::GapOverflow {
        return Err(format!("{kind} event without recordIds"));
    }
    Ok(ChangeEvent {
        replay_id,
        channel: channel.to_string(),
        kind,
        entity,
        record_ids,
        commit_user: non_empty_str(header.get("commitUser")),
        changed_fields: match header.get("changedFields") {
            None | Some(Value::Null) => Vec::new(),
            some => string_list(some, "changedFields")?,
        },
        commit_timestamp: header.get("commitTimestamp").and_then(Value::as_i64),
        transaction_key: non_empty_str(header.get("transactionKey")),
        sequence_number: header.get("sequenceNumber").and_then(Value::as_i64),
    })
}

fn parse_platform_event(
    channel: &str,
    event_name: &str,
    replay_id: i64,
    message: &Value,
    payload: &Map<String, Value>,
    booking_id_field: &str,
) -> Result<ChangeEvent, String> {
    let booking_id = non_empty_str(payload.get(booking_id_field))
        .ok_or_else(|| format!("platform event without {booking_id_field}"))?;
    Ok(ChangeEvent {
        replay_id,
        channel: channel.to_string(),
        kind: ChangeKind::Update,
        entity: event_name.to_string(),
        record_ids: vec![booking_id],
        commit_user: non_empty_str(payload.get("CreatedById")),
        changed_fields: Vec::new(),
        commit_timestamp: payload
            .get("CreatedDate")
            .and_then(Value::as_str)
            .and_then(parse_datetime_millis),
        transaction_key: non_empty_str(message.pointer("/data/event/EventUuid")),
        sequence_number: None,
    })
}

fn non_empty_str(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn string_list(value: Option<&Value>, name: &str) -> Result<Vec<String>, String> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{name} is not a list"))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{name} holds a non-string: {v}"))
        })
        .collect()
}

/// `2020-08-06T06:22:19.000Z` (CometD JSON) or `2020-08-06T06:22:19.000+0000` (REST).
fn parse_datetime_millis(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
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
            let got =
                parse_event(&message, BOOKING_FIELD).unwrap_or_else(|e| panic!("{file}: {e}"));
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
        assert_eq!(got.commit_timestamp, Some(1596695083000));
        assert_eq!(
            got.transaction_key.as_deref(),
            Some("00039569-53f3-0a03-743e-46538797bf9f")
        );
        assert_eq!(got.sequence_number, Some(1));

        let pe = parse_event(&fixture("booking_platform_event.json"), BOOKING_FIELD).unwrap();
        assert_eq!(pe.commit_timestamp, Some(1767268800000));
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
}
