//! What attendance keeps of each kind of event, from envelopes shaped as Lark sends them
//! (the Feishu pages' examples, as the simulator raises them).

use serde_json::json;

use super::*;

fn parse(event_type: &str, event: serde_json::Value) -> LarkEvent {
    let envelope = json!({
        "schema": "2.0",
        "header": {
            "event_id": "e1",
            "event_type": event_type,
            "create_time": "1795687261500",
            "app_id": "cli_x",
            "tenant_key": "t",
        },
        "event": event,
    });
    LarkEvent::parse(envelope.to_string().as_bytes()).unwrap()
}

fn user(open_id: &str, role: i64) -> serde_json::Value {
    json!({ "id": { "open_id": open_id, "union_id": "on_x", "user_id": "" }, "user_role": role, "user_type": 1 })
}

fn meeting() -> serde_json::Value {
    json!({
        "id": "7000000000000000001",
        "topic": "Remote Training: Acme",
        "meeting_no": "123456789",
        "start_time": "1795687260",
        "end_time": "0",
        "host_user": user("ou_host", 2),
        "owner": user("ou_host", 2),
    })
}

#[test]
fn a_join_keeps_the_meeting_the_operator_and_whole_seconds() {
    let event = parse(
        "vc.meeting.join_meeting_v1",
        json!({ "meeting": meeting(), "operator": user("ou_guest", 1) }),
    );
    let Recordable::Meeting(r) = Recordable::of(&event) else {
        panic!("a meeting event")
    };
    assert_eq!(r.happening, Happening::Joined);
    assert_eq!(r.meeting_no, "123456789");
    assert_eq!(r.meeting_id.as_deref(), Some("7000000000000000001"));
    assert_eq!(r.meeting_start, DateTime::from_timestamp(1_795_687_260, 0));
    assert_eq!(r.meeting_end, None, "a running meeting's end_time is 0");
    assert_eq!(r.owner_open_id.as_deref(), Some("ou_host"));
    assert_eq!(r.operator_open_id.as_deref(), Some("ou_guest"));
    assert!(!r.operator_is_host);
    assert_eq!(
        r.at,
        DateTime::from_timestamp(1_795_687_261, 0),
        "create_time in ms, kept in whole seconds"
    );
    assert_eq!(RecordedEvent::decode(&r.encode()), Some(r));
}

#[test]
fn a_recording_keeps_its_url_and_the_owner() {
    let event = parse(
        "vc.meeting.recording_ready_v1",
        json!({
            "meeting": { "id": "7000000000000000001", "meeting_no": "123456789", "owner": { "id": { "open_id": "ou_host" } } },
            "url": "https://meetings.feishu.cn/minutes/obcn1",
            "duration": "3600000",
        }),
    );
    let Recordable::Meeting(r) = Recordable::of(&event) else {
        panic!("a meeting event")
    };
    assert_eq!(r.happening, Happening::RecordingReady);
    assert_eq!(
        r.recording_url.as_deref(),
        Some("https://meetings.feishu.cn/minutes/obcn1")
    );
    assert_eq!(r.owner_open_id.as_deref(), Some("ou_host"));
    assert_eq!(r.operator_open_id, None);
}

#[test]
fn events_nothing_is_done_with_are_ignored_with_their_outcome() {
    let other = parse("im.message.receive_v1", json!({ "message": {} }));
    assert_eq!(Recordable::of(&other), Recordable::Ignored(OTHER_TYPE));
    let no_number = parse(
        "vc.meeting.meeting_started_v1",
        json!({ "meeting": { "id": "1" } }),
    );
    assert_eq!(
        Recordable::of(&no_number),
        Recordable::Ignored(NO_MEETING_NO)
    );
    assert_eq!(RecordedEvent::decode("{\"happening\":\"exploded\"}"), None);
}
