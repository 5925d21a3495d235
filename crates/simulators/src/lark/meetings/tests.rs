//! A reserved meeting's life: the events each step raises (shapes per the Feishu event
//! pages), the two REST calls it feeds, and the simulator-only drive endpoints.

use axum::http::Method;
use serde_json::{json, Value};

use super::*;
use crate::lark::tests::{call, tenant_token, user_token};
use crate::lark::LarkSim;

const HOST: &str = "ana@example.com";
const COLLEAGUE: &str = "bob@example.com";
const SCOPES: &str = "vc:reserve offline_access vc:meeting:readonly";

/// A simulator with a host and a colleague, and one reservation of the host's:
/// (sim, host's user token, reserve id, meeting number).
async fn reserved() -> (LarkSim, String, String, String) {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user(HOST, "Ana Host");
    sim.add_user(COLLEAGUE, "Bob Colleague");
    let token = user_token(&sim, HOST, SCOPES).await;
    let (status, body) = call(
        &sim,
        Method::POST,
        "/open-apis/vc/v1/reserves/apply",
        &token,
        Some(json!({
            "end_time": (unix_now() + 3600).to_string(),
            "meeting_settings": { "topic": "Remote Training: Cafe" },
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reserve = &body["data"]["reserve"];
    (
        sim,
        token,
        reserve["id"].as_str().unwrap().to_string(),
        reserve["meeting_no"].as_str().unwrap().to_string(),
    )
}

/// (event type, event body) of every event raised so far.
fn raised(sim: &LarkSim) -> Vec<(String, Value)> {
    sim.long_connection()
        .events()
        .into_iter()
        .map(|e| (e.event_type, e.envelope["event"].clone()))
        .collect()
}

fn open_id_of(sim: &LarkSim, email: &str) -> String {
    sim.users()
        .into_iter()
        .find(|u| u.email == email)
        .unwrap()
        .open_id
}

#[tokio::test]
async fn a_meeting_raises_the_five_events_with_the_documented_shapes() {
    let (sim, _, reserve_id, meeting_no) = reserved().await;
    let life = sim.meetings();
    let host = open_id_of(&sim, HOST);
    let meeting = life.start(&reserve_id, &Person::Host).unwrap();
    assert_eq!(meeting.id.len(), 19);
    assert!(meeting.id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        (meeting.meeting_no.as_str(), meeting.topic.as_str()),
        (meeting_no.as_str(), "Remote Training: Cafe")
    );

    life.join(&meeting_no, &Person::Host).unwrap();
    life.join(&meeting.id, &Person::User(COLLEAGUE.into()))
        .unwrap();
    life.join(&meeting_no, &Person::Guest("Marta Merchant".into()))
        .unwrap();
    life.leave(
        &meeting_no,
        &Person::Guest("Marta Merchant".into()),
        LeaveReason::Left,
    )
    .unwrap();
    life.end(&meeting_no, &Person::Host).unwrap();
    let url = life.recording_ready(&meeting.id, 1_234_000).unwrap();

    let events = raised(&sim);
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "vc.meeting.meeting_started_v1",
            "vc.meeting.join_meeting_v1",
            "vc.meeting.join_meeting_v1",
            "vc.meeting.join_meeting_v1",
            "vc.meeting.leave_meeting_v1",
            "vc.meeting.leave_meeting_v1",
            "vc.meeting.leave_meeting_v1",
            "vc.meeting.meeting_ended_v1",
            "vc.meeting.recording_ready_v1",
        ]
    );

    let started = &events[0].1;
    let m = &started["meeting"];
    assert_eq!(m["id"], meeting.id.as_str());
    assert_eq!(m["meeting_no"], meeting_no.as_str());
    assert_eq!(m["topic"], "Remote Training: Cafe");
    assert_eq!(m["meeting_source"], 4);
    assert_eq!(m["start_time"], meeting.start_time.to_string());
    assert_eq!(m["calendar_event_id"], "");
    for user in [&m["host_user"], &m["owner"], &started["operator"]] {
        assert_eq!(user["id"]["open_id"], host.as_str(), "{started}");
        assert!(user["id"]["union_id"].as_str().unwrap().starts_with("on_"));
        assert_eq!(
            (user["user_role"].as_i64(), user["user_type"].as_i64()),
            (Some(2), Some(1))
        );
    }

    let (colleague_join, guest_join) = (&events[2].1, &events[3].1);
    assert!(
        colleague_join["meeting"].get("meeting_source").is_none(),
        "join has no source"
    );
    assert_eq!(
        colleague_join["operator"]["id"]["open_id"],
        open_id_of(&sim, COLLEAGUE).as_str()
    );
    assert_eq!(colleague_join["operator"]["user_role"], 1);
    let guest_id = guest_join["operator"]["id"]["open_id"].as_str().unwrap();
    assert!(guest_id.starts_with("ou_") && guest_id != host);
    assert_eq!(guest_join["operator"]["id"]["union_id"], "");

    let guest_leave = &events[4].1;
    assert_eq!(guest_leave["leave_reason"], 1);
    assert_eq!(
        guest_leave["operator"]["id"]["open_id"], guest_id,
        "the same guest"
    );
    // The end makes everyone still in leave (reason 2), then ends the meeting.
    let left_at_end: Vec<&str> = events[5..7]
        .iter()
        .map(|(_, e)| {
            assert_eq!(e["leave_reason"], 2);
            e["operator"]["id"]["open_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(left_at_end.len(), 2);
    assert!(left_at_end.contains(&host.as_str()));
    let ended = &events[7].1["meeting"];
    assert_eq!(ended["meeting_source"], 4);
    let end_time: i64 = ended["end_time"].as_str().unwrap().parse().unwrap();
    assert!(end_time >= meeting.start_time);
    assert_eq!(
        events[1].1["meeting"]["end_time"], "0",
        "no end time while in progress"
    );

    let recording = &events[8].1;
    assert_eq!(recording["url"], url.as_str());
    assert_eq!(recording["duration"], "1234000");
    assert_eq!(
        recording["meeting"]["owner"]["id"]["open_id"],
        host.as_str()
    );
    assert_eq!(recording["meeting"]["meeting_no"], meeting_no.as_str());
    for (_, event) in &events {
        assert_eq!(event["meeting"]["id"], meeting.id.as_str());
    }
}

#[tokio::test]
async fn steps_that_cannot_happen_are_refused_and_raise_nothing() {
    let (sim, token, reserve_id, meeting_no) = reserved().await;
    let life = sim.meetings();
    assert_eq!(
        life.start("123456789", &Person::Host).unwrap_err(),
        MeetingError::NoSuchReservation("123456789".into())
    );
    assert!(matches!(
        life.join(&meeting_no, &Person::Host),
        Err(MeetingError::NoSuchMeeting(_))
    ));
    let first = life.start(&meeting_no, &Person::Host).unwrap();
    assert_eq!(
        life.start(&reserve_id, &Person::Host).unwrap_err(),
        MeetingError::AlreadyInProgress(first.id.clone())
    );
    assert_eq!(
        life.join(&meeting_no, &Person::User("nobody@example.com".into()))
            .unwrap_err(),
        MeetingError::UnknownUser("nobody@example.com".into())
    );
    assert_eq!(
        life.leave(&meeting_no, &Person::Host, LeaveReason::Left)
            .unwrap_err(),
        MeetingError::NotIn
    );
    life.join(&meeting_no, &Person::Host).unwrap();
    assert_eq!(
        life.join(&meeting_no, &Person::Host).unwrap_err(),
        MeetingError::AlreadyIn
    );
    life.end(&first.id, &Person::Host).unwrap();
    assert_eq!(
        life.join(&first.id, &Person::Host).unwrap_err(),
        MeetingError::Ended(first.id.clone())
    );
    let raised_before = sim.long_connection().events().len();

    // The same reservation hosts a second meeting later, with a new id.
    let second = life.start(&meeting_no, &Person::Host).unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(sim.long_connection().events().len(), raised_before + 1);

    // A deleted reservation has no meeting.
    let (status, _) = call(
        &sim,
        Method::DELETE,
        &format!("/open-apis/vc/v1/reserves/{reserve_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    life.end(&second.id, &Person::Host).unwrap();
    assert!(matches!(
        life.start(&meeting_no, &Person::Host),
        Err(MeetingError::NoSuchReservation(_))
    ));
}

#[tokio::test]
async fn meeting_details_list_participants_for_the_app_and_the_owner() {
    let (sim, host_token, reserve_id, _) = reserved().await;
    let life = sim.meetings();
    let m = life.start(&reserve_id, &Person::Host).unwrap();
    life.join(&m.id, &Person::Host).unwrap();
    life.join(&m.id, &Person::Guest("Marta".into())).unwrap();
    let path = format!(
        "/open-apis/vc/v1/meetings/{}?with_participants=true&user_id_type=open_id",
        m.id
    );
    let tenant = tenant_token(&sim).await;

    let (status, body) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!(status, 200, "{body}");
    let meeting = &body["data"]["meeting"];
    assert_eq!(
        (
            meeting["status"].as_i64(),
            meeting["participant_count_accumulated"].as_str()
        ),
        (Some(2), Some("2"))
    );
    assert!(meeting.get("end_time").is_none(), "in progress");
    let participants = meeting["participants"].as_array().unwrap();
    let host = &participants[0];
    assert_eq!(host["id"], open_id_of(&sim, HOST).as_str());
    assert_eq!(
        (
            host["is_host"].as_bool(),
            host["is_external"].as_bool(),
            host["status"].as_i64()
        ),
        (Some(true), Some(false), Some(2))
    );
    assert_eq!(
        (
            participants[1]["is_external"].as_bool(),
            participants[1]["is_host"].as_bool()
        ),
        (Some(true), Some(false))
    );

    life.end(&m.id, &Person::Host).unwrap();
    let (_, body) = call(&sim, Method::GET, &path, &host_token, None).await;
    let meeting = &body["data"]["meeting"];
    assert_eq!(meeting["status"], 3, "{body}");
    assert_eq!(meeting["participant_count"], "2");
    let host = &meeting["participants"][0];
    assert_eq!(host["status"], 4);
    let joined: i64 = host["first_join_time"].as_str().unwrap().parse().unwrap();
    let left: i64 = host["final_leave_time"].as_str().unwrap().parse().unwrap();
    assert!(joined <= left);
    assert!(host["in_meeting_duration"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    assert!(meeting["end_time"].as_str().is_some());

    let (_, body) = call(
        &sim,
        Method::GET,
        &format!("/open-apis/vc/v1/meetings/{}", m.id),
        &tenant,
        None,
    )
    .await;
    assert!(
        body["data"]["meeting"].get("participants").is_none(),
        "only when asked"
    );
    let (_, body) = call(
        &sim,
        Method::GET,
        &format!(
            "/open-apis/vc/v1/meetings/{}?with_participants=true&user_id_type=union_id",
            m.id
        ),
        &tenant,
        None,
    )
    .await;
    assert!(body["data"]["meeting"]["participants"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("on_"));
}

#[tokio::test]
async fn meeting_details_are_refused_to_strangers_and_by_the_knob() {
    let (sim, host_token, reserve_id, _) = reserved().await;
    let m = sim.meetings().start(&reserve_id, &Person::Host).unwrap();
    let path = format!("/open-apis/vc/v1/meetings/{}?with_participants=true", m.id);
    let tenant = tenant_token(&sim).await;

    let colleague = user_token(&sim, COLLEAGUE, SCOPES).await;
    let (status, body) = call(&sim, Method::GET, &path, &colleague, None).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (403, Some(121005)),
        "not the colleague's meeting"
    );
    let unscoped = user_token(&sim, HOST, "vc:reserve offline_access").await;
    let (_, body) = call(&sim, Method::GET, &path, &unscoped, None).await;
    assert_eq!(body["code"], 99991679, "the user scope is needed");
    let (status, body) = call(
        &sim,
        Method::GET,
        "/open-apis/vc/v1/meetings/7000000000000000000",
        &tenant,
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(121004)));

    sim.meetings().refuse_tenant_token(true);
    let (status, body) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(121005)));
    let (status, _) = call(&sim, Method::GET, &path, &host_token, None).await;
    assert_eq!(status, 200, "the owner's token still works");
    sim.meetings().refuse_tenant_token(false);
    sim.set_app_scope("vc:meeting:readonly", false);
    let (_, body) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!(body["code"], 99991672);
    sim.set_app_scope("vc:meeting:readonly", true);
    let (status, _) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.requests()
            .count(&Method::GET, "/open-apis/vc/v1/meetings/"),
        7
    );
}

#[tokio::test]
async fn list_by_no_pages_through_a_numbers_meetings_in_a_window() {
    let (sim, _, reserve_id, meeting_no) = reserved().await;
    let life = sim.meetings();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = life.start(&reserve_id, &Person::Host).unwrap();
        life.end(&m.id, &Person::Host).unwrap();
        ids.push(m.id);
    }
    let tenant = tenant_token(&sim).await;
    let now = unix_now();
    let list = |extra: String| {
        format!(
            "/open-apis/vc/v1/meetings/list_by_no?meeting_no={meeting_no}&start_time={}&end_time={}{extra}",
            now - 3600,
            now + 60
        )
    };
    let (status, body) = call(
        &sim,
        Method::GET,
        &list("&page_size=2".into()),
        &tenant,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["has_more"], true);
    let first: Vec<&str> = data["meeting_briefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[0].as_str(), ids[1].as_str()]);
    let brief = &data["meeting_briefs"][0];
    assert_eq!(
        (brief["meeting_no"].as_str(), brief["topic"].as_str()),
        (Some(meeting_no.as_str()), Some("Remote Training: Cafe"))
    );
    assert!(brief["url"].as_str().unwrap().ends_with(&meeting_no));
    let token = data["page_token"].as_str().unwrap();
    let (_, body) = call(
        &sim,
        Method::GET,
        &list(format!("&page_size=2&page_token={token}")),
        &tenant,
        None,
    )
    .await;
    assert_eq!(body["data"]["has_more"], false);
    assert!(body["data"].get("page_token").is_none());
    assert_eq!(body["data"]["meeting_briefs"][0]["id"], ids[2].as_str());

    // Outside the window, nothing.
    let before = format!(
        "/open-apis/vc/v1/meetings/list_by_no?meeting_no={meeting_no}&start_time={}&end_time={}",
        now - 7200,
        now - 3601
    );
    let (_, body) = call(&sim, Method::GET, &before, &tenant, None).await;
    assert_eq!(body["data"]["meeting_briefs"], json!([]));

    for (bad, code) in [
        (format!("/open-apis/vc/v1/meetings/list_by_no?meeting_no={meeting_no}&start_time=0&end_time={now}"), 121003),
        (format!("/open-apis/vc/v1/meetings/list_by_no?meeting_no={meeting_no}&start_time={now}"), 121003),
        (format!("/open-apis/vc/v1/meetings/list_by_no?meeting_no=12&start_time={now}&end_time={now}"), 121003),
        (list("&page_size=51".into()), 99992402),
    ] {
        let (status, body) = call(&sim, Method::GET, &bad, &tenant, None).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(code)), "{bad}: {body}");
    }
}

#[tokio::test(start_paused = true)]
async fn list_by_no_is_limited_to_100_calls_a_minute() {
    let _frozen = crate::test_support::FrozenClock::hold();
    let (sim, _, _, meeting_no) = reserved().await;
    let tenant = tenant_token(&sim).await;
    let now = unix_now();
    let path = format!(
        "/open-apis/vc/v1/meetings/list_by_no?meeting_no={meeting_no}&start_time={}&end_time={now}",
        now - 60
    );
    for _ in 0..100 {
        let (status, _) = call(&sim, Method::GET, &path, &tenant, None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!((status, body["code"].as_i64()), (429, Some(99991400)));
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    let (status, _) = call(&sim, Method::GET, &path, &tenant, None).await;
    assert_eq!(status, 200);
}

/// POSTs JSON to a simulator-only endpoint; answers (status, body).
async fn drive(sim: &LarkSim, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_drive_endpoints_act_as_people_would() {
    let (sim, _, _, meeting_no) = reserved().await;
    let (status, body) = drive(
        &sim,
        "/sim/meetings/start",
        json!({ "reservation": meeting_no }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["meeting"]["id"].as_str().unwrap().to_string();
    for person in [
        json!({ "host": true }),
        json!({ "email": COLLEAGUE }),
        json!({ "guest": "Marta" }),
    ] {
        let (status, body) = drive(&sim, &format!("/sim/meetings/{meeting_no}/join"), person).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = drive(
        &sim,
        &format!("/sim/meetings/{id}/leave"),
        json!({ "guest": "Marta", "reason": 3 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let marta = body["meeting"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Marta")
        .unwrap()
        .clone();
    assert_eq!(
        (
            marta["in_meeting"].as_bool(),
            marta["is_external"].as_bool()
        ),
        (Some(false), Some(true))
    );
    let (status, body) = drive(&sim, &format!("/sim/meetings/{id}/end"), json!({})).await;
    assert_eq!(
        (status, body["meeting"]["end_time"].is_i64()),
        (200, true),
        "{body}"
    );
    let (status, body) = drive(
        &sim,
        &format!("/sim/meetings/{id}/recording"),
        json!({ "duration_ms": 60000 }),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["meeting"]["recording_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));

    let (status, body) = drive(&sim, &format!("/sim/meetings/{id}/join"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = drive(
        &sim,
        "/sim/meetings/start",
        json!({ "reservation": "nope" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = drive(
        &sim,
        &format!("/sim/meetings/{id}/join"),
        json!({ "email": "x@y", "guest": "z" }),
    )
    .await;
    assert_eq!(status, 400);

    let events: Value = reqwest::get(format!("{}/sim/events", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "vc.meeting.join_meeting_v1")
            .count(),
        3
    );
    assert_eq!(types.last(), Some(&"vc.meeting.recording_ready_v1"));
    assert_eq!(events["stats"]["acks"], 0);
    let leave_reasons: Vec<i64> = sim
        .long_connection()
        .events()
        .iter()
        .filter(|e| e.event_type == "vc.meeting.leave_meeting_v1")
        .map(|e| e.envelope["event"]["leave_reason"].as_i64().unwrap())
        .collect();
    assert_eq!(leave_reasons, [3, 2, 2]);
    let listed: Value = reqwest::get(format!("{}/sim/meetings", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["meetings"][0]["id"], id.as_str());
}
