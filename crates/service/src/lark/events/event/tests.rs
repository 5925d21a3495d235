//! Tests of [`super`] (event.rs): the five payloads of the Feishu docs (`fixtures/lark/`)
//! and odd input.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn fixture(name: &str) -> LarkEvent {
    let path = format!("{}/../../fixtures/lark/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    LarkEvent::parse(&bytes).unwrap()
}

fn at(secs: i64) -> Option<DateTime<Utc>> {
    Some(Utc.timestamp_opt(secs, 0).unwrap())
}

fn doc_user() -> EventUser {
    EventUser {
        open_id: Some("ou_84aad35d084aa403a838cf73ee18467".into()),
        union_id: Some("on_8ed6aa67826108097d9ee143816345".into()),
        user_id: Some("e33ggbyz".into()),
        user_role: Some(1),
        user_type: Some(UserType::Lark),
        is_external: None,
    }
}

fn doc_meeting(calendar_event_id: Option<&str>) -> Meeting {
    Meeting {
        id: Some("6911188411934433028".into()),
        meeting_no: "235812466".into(),
        topic: Some("my meeting".into()),
        start_time: at(1608883322),
        end_time: at(1608883899),
        host: Some(doc_user()),
        owner: Some(doc_user()),
        calendar_event_id: calendar_event_id.map(str::to_string),
    }
}

#[test]
fn the_envelope_header_is_read() {
    let event = fixture("event_meeting_started.json");
    assert_eq!(
        event.header,
        EventHeader {
            event_id: "5e3702a84e847582be8db7fb73283c02".into(),
            event_type: MEETING_STARTED.into(),
            create_time: Some(Utc.timestamp_millis_opt(1608725989000).unwrap()),
            app_id: Some("cli_9f5343c580712544".into()),
            tenant_key: Some("2ca1d211f64f6438".into()),
        }
    );
}

#[test]
fn the_four_activity_events_of_the_docs() {
    let calendar = Some("efa67a98-06a8-4df5-8559-746c8f4477ef_0");
    assert_eq!(
        fixture("event_meeting_started.json").kind,
        EventKind::MeetingStarted(MeetingActivity {
            meeting: doc_meeting(calendar),
            operator: Some(doc_user()),
        })
    );
    assert_eq!(
        fixture("event_join_meeting.json").kind,
        EventKind::Joined(MeetingActivity {
            meeting: doc_meeting(None),
            operator: Some(doc_user()),
        })
    );
    assert_eq!(
        fixture("event_leave_meeting.json").kind,
        EventKind::Left {
            activity: MeetingActivity {
                meeting: doc_meeting(None),
                operator: Some(doc_user()),
            },
            reason: Some(LeaveReason::Left),
        }
    );
    let ended = fixture("event_meeting_ended.json");
    assert_eq!(ended.kind.label(), "meeting_ended");
    assert_eq!(
        ended.kind,
        EventKind::MeetingEnded(MeetingActivity {
            meeting: doc_meeting(calendar),
            operator: Some(doc_user()),
        })
    );
}

#[test]
fn recording_ready_carries_the_url_and_the_duration() {
    let event = fixture("event_recording_ready.json");
    let EventKind::RecordingReady { meeting, recording } = event.kind else {
        panic!("{:?}", event.kind);
    };
    assert_eq!(
        recording,
        Recording {
            url: Some("https://meetings.feishu.cn/minutes/obcn37dxcftoc3656rgyejm7".into()),
            duration: Some(Duration::from_secs(30)),
        }
    );
    assert_eq!(meeting.meeting_no, "235812466");
    assert_eq!(
        meeting.owner.and_then(|o| o.open_id).as_deref(),
        Some("ou_84aad35d084aa403a838cf73ee18467")
    );
    assert_eq!(meeting.start_time, None);
}

fn vc(event_type: &str, event: serde_json::Value) -> EventKind {
    let payload = json!({
        "schema": "2.0",
        "header": {"event_id": "e", "event_type": event_type},
        "event": event,
    });
    LarkEvent::parse(payload.to_string().as_bytes())
        .unwrap()
        .kind
}

#[test]
fn a_vc_event_without_meeting_no_is_its_own_kind_and_other_types_are_other() {
    for event in [
        json!({}),
        json!({"meeting": {"id": "1"}}),
        json!({"meeting": {"meeting_no": ""}}),
        json!({"meeting": {"meeting_no": null}}),
        json!({"meeting": "235812466"}),
    ] {
        assert_eq!(
            vc(JOIN_MEETING, event.clone()),
            EventKind::VcWithoutMeetingNo,
            "{event}"
        );
    }
    let other = vc(
        "im.message.receive_v1",
        json!({"meeting": {"meeting_no": "1"}}),
    );
    assert_eq!(other, EventKind::Other);
    assert_eq!(other.meeting(), None);
}

#[test]
fn odd_values_cost_their_field_never_the_event() {
    let kind = vc(
        LEAVE_MEETING,
        json!({
            "meeting": {
                "meeting_no": 235812466,
                "id": 6911188411934433028u64,
                "topic": {"not": "text"},
                "start_time": "-5",
                "end_time": "99999999999999999999",
                "host_user": "nobody",
                "owner": {"id": "ou_bare", "user_type": "6"},
            },
            "operator": {"id": {"open_id": "  "}, "user_type": 99, "is_external": true},
            "leave_reason": "7",
        }),
    );
    let EventKind::Left { activity, reason } = kind else {
        panic!("{kind:?}");
    };
    assert_eq!(reason, Some(LeaveReason::Other(7)));
    let m = activity.meeting;
    assert_eq!(m.meeting_no, "235812466", "a number is taken as its text");
    assert_eq!(m.id.as_deref(), Some("6911188411934433028"));
    assert_eq!(
        (m.topic, m.start_time, m.end_time, m.host),
        (None, None, None, None)
    );
    let owner = m.owner.unwrap();
    assert_eq!(owner.open_id.as_deref(), Some("ou_bare"));
    assert_eq!(owner.user_type, Some(UserType::Pstn));
    let operator = activity.operator.unwrap();
    assert_eq!(operator.open_id, None, "blank is none");
    assert_eq!(operator.user_type, Some(UserType::Other(99)));
    assert_eq!(operator.is_external, Some(true));

    let recording = vc(
        RECORDING_READY,
        json!({"meeting": {"meeting_no": "1"}, "url": "x".repeat(10_000), "duration": "-1"}),
    );
    let EventKind::RecordingReady { recording, .. } = recording else {
        panic!();
    };
    assert_eq!(recording.url.map(|u| u.len()), Some(MAX_TEXT));
    assert_eq!(recording.duration, None);
}

#[test]
fn payloads_that_are_not_events_are_errors() {
    assert_eq!(
        LarkEvent::parse(b"\xff not json"),
        Err(EnvelopeError::NotJson)
    );
    for body in [
        json!([]),
        json!({"schema": "2.0", "event": {}}),
        json!({"header": {"event_type": JOIN_MEETING}}),
        json!({"header": {"event_id": "e"}}),
        json!({"header": {"event_id": 5, "event_type": ""}}),
    ] {
        assert_eq!(
            LarkEvent::parse(body.to_string().as_bytes()),
            Err(EnvelopeError::NoHeader),
            "{body}"
        );
    }
    // A schema 1.0 envelope is an event of another kind.
    let v1 = json!({"uuid": "u-1", "token": "t", "ts": "1", "type": "event_callback",
                    "event": {"type": "message", "app_id": "cli_x"}});
    let event = LarkEvent::parse(v1.to_string().as_bytes()).unwrap();
    assert_eq!(event.header.event_id, "u-1");
    assert_eq!(event.header.event_type, "message");
    assert_eq!(event.kind, EventKind::Other);
}
