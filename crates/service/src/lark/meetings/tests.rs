//! Tests of [`super`] (meetings.rs) against a stub serving the docs' answers
//! (`fixtures/lark/meeting_get.json`, `meetings_list_by_no.json`): the requests sent, and
//! the answers read.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;
use crate::config::Settings;
use crate::lark::test_support::fast_policy;
use crate::lark::test_support::NoLedger;

/// Requests the stub saw: (path, query, Authorization).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/lark/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn stub() -> (LarkClient, Seen, tempfile::TempDir) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/open-apis/auth/v3/tenant_access_token/internal",
            post(|| async {
                Json(json!({"code": 0, "tenant_access_token": "t-app", "expire": 7200}))
            }),
        )
        .route("/open-apis/vc/v1/meetings/list_by_no", get(list_by_no))
        .route("/open-apis/vc/v1/meetings/{id}", get(meeting_get))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let settings =
        Settings::for_simulators("http://127.0.0.1:9", &base, &dir.path().join("s.db")).unwrap();
    let client = LarkClient::with_retry_policy(&settings.lark, fast_policy()).unwrap();
    (client, seen, dir)
}

fn note(seen: &Seen, path: String, query: Option<String>, headers: &HeaderMap) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock()
        .unwrap()
        .push((path, query.unwrap_or_default(), auth));
}

async fn meeting_get(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    note(
        &seen,
        format!("/open-apis/vc/v1/meetings/{id}"),
        query,
        &headers,
    );
    let app = headers["authorization"] == "Bearer t-app";
    if id == "7000000000000000001" && app {
        // The app may not see this one (design §4: 121005).
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"code": 121005, "msg": "no permission"})),
        );
    }
    (StatusCode::OK, Json(fixture("meeting_get.json")))
}

async fn list_by_no(
    State(seen): State<Seen>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Json<Value> {
    let query = query.unwrap_or_default();
    note(
        &seen,
        "/open-apis/vc/v1/meetings/list_by_no".into(),
        Some(query.clone()),
        &headers,
    );
    if query.contains("page_token=2") {
        return Json(json!({"code": 0, "msg": "", "data": {
            "has_more": false,
            "meeting_briefs": [{"id": "7011031045899354999", "meeting_no": "146453285", "topic": "third"}],
        }}));
    }
    // The docs' answer: two meetings, has_more with page_token "2".
    Json(fixture("meetings_list_by_no.json"))
}

fn at(secs: i64) -> Option<DateTime<Utc>> {
    Some(Utc.timestamp_opt(secs, 0).unwrap())
}

#[tokio::test]
async fn a_meeting_and_its_participants_as_the_app_and_as_a_user() {
    let (client, seen, _dir) = stub().await;
    let detail = client
        .meeting(MeetingAuth::App, "6911188411934433028")
        .await
        .unwrap();
    assert_eq!(
        detail,
        MeetingDetail {
            id: "6911188411934433028".into(),
            meeting_no: Some("123456789".into()),
            topic: Some("my meeting".into()),
            url: Some("https://vc.feishu.cn/j/337736498".into()),
            start_time: at(1608883322),
            end_time: at(1608888867),
            status: Some(MeetingState::InProgress),
            host_id: Some("ou_3ec3f6a28a0d08c45d895276e8e5e19b".into()),
            participant_count_accumulated: Some(10),
            participants: vec![Participant {
                id: "ou_3ec3f6a28a0d08c45d895276e8e5e19b".into(),
                first_join_time: at(1624438144),
                final_leave_time: at(1624438144),
                in_meeting_duration: Some(Duration::from_secs(123)),
                user_type: Some(UserType::Lark),
                is_host: true,
                is_cohost: false,
                is_external: false,
                status: Some(ParticipantState::InMeeting),
            }],
        }
    );
    let user = AccessToken::new("u-host");
    client
        .meeting(MeetingAuth::User(&user), "6911188411934433028")
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let (path, query, auth) = &seen[0];
    assert_eq!(path, "/open-apis/vc/v1/meetings/6911188411934433028");
    assert_eq!(query, "with_participants=true&user_id_type=open_id");
    assert_eq!(auth, "Bearer t-app");
    assert_eq!(seen[1].2, "Bearer u-host");
    assert_eq!(client.call_counts().meeting_get, 2);
}

#[tokio::test]
async fn a_meeting_the_app_may_not_see_says_so_and_the_owners_token_gets_it() {
    let (client, _seen, _dir) = stub().await;
    let err = client
        .meeting(MeetingAuth::App, "7000000000000000001")
        .await
        .unwrap_err();
    assert!(err.is_vc_no_permission(), "{err:?}");
    assert!(matches!(
        err,
        LarkError::PermissionDenied { code: 121005, .. }
    ));
    assert_eq!(
        client.call_counts().meeting_get,
        1,
        "a refusal is not retried"
    );
    let owner = AccessToken::new("u-owner");
    assert!(client
        .meeting(MeetingAuth::User(&owner), "7000000000000000001")
        .await
        .is_ok());
    // Not a meeting id: refused before any request.
    for bad in ["", "12/../34", "abc", &"1".repeat(40)] {
        let err = client.meeting(MeetingAuth::App, bad).await.unwrap_err();
        assert!(
            matches!(err, LarkError::InvalidParams { code: 0, .. }),
            "{bad:?}"
        );
    }
    assert_eq!(client.call_counts().meeting_get, 2);
}

#[tokio::test]
async fn meetings_by_number_reads_every_page_within_a_90_day_window() {
    let (client, seen, _dir) = stub().await;
    let from = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let to = from + chrono::Duration::days(2);
    let briefs = client
        .meetings_by_no(MeetingAuth::App, "146453285", from, to)
        .await
        .unwrap();
    let ids: Vec<&str> = briefs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "7011030664708603907",
            "7011031045899354115",
            "7011031045899354999"
        ]
    );
    assert_eq!(briefs[0].topic.as_deref(), Some("测试标题"));
    assert_eq!(briefs[0].meeting_no.as_deref(), Some("146453285"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "two pages");
    let first = &seen[0].1;
    assert_eq!(
        first,
        &format!(
            "meeting_no=146453285&start_time={}&end_time={}&page_size=50",
            from.timestamp(),
            to.timestamp()
        )
    );
    assert!(seen[1].1.ends_with("&page_token=2"), "{}", seen[1].1);
    assert_eq!(client.call_counts().meetings_by_no, 2);

    for (no, to) in [
        ("146453285", from + chrono::Duration::days(91)),
        ("146453285", from - chrono::Duration::seconds(1)),
        ("14645-3285", to),
        ("", to),
    ] {
        let err = client
            .meetings_by_no(MeetingAuth::App, no, from, to)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LarkError::InvalidParams { code: 0, .. }),
            "{no} {to}"
        );
    }
    assert_eq!(client.call_counts().meetings_by_no, 2);
}

/// Against the real simulator: a meeting held (host and an external guest), then read back.
#[tokio::test]
async fn a_simulated_meeting_read_back_as_the_app_and_by_number() {
    use lvb_simulators::lark::meetings::Person;
    let (sim, plain_client, dir) = crate::lark::test_support::sim_and_client().await;
    // The host's token reads meetings only with the user scope vc:meeting:readonly, which
    // lark.scopes does not ask for by default (design §2.2).
    let mut settings = Settings::for_simulators(
        "http://127.0.0.1:9",
        &sim.base_url(),
        &dir.path().join("s.db"),
    )
    .unwrap();
    settings.lark.scopes.push("vc:meeting:readonly".into());
    let client = LarkClient::with_retry_policy(&settings.lark, fast_policy()).unwrap();
    let host = sim.add_user("ana@example.com", "Ana");
    sim.add_user("bo@example.com", "Bo");
    let grant = crate::lark::test_support::connect(&sim, &client, "ana@example.com").await;
    let before = Utc::now() - chrono::Duration::minutes(1);
    let reserve = client
        .apply_reserve(
            &grant.access_token,
            Utc::now() + chrono::Duration::days(1),
            "Training",
            &NoLedger,
        )
        .await
        .unwrap();
    let life = sim.meetings();
    let meeting = life.start(&reserve.meeting_no, &Person::Host).unwrap();
    life.join(&meeting.id, &Person::Host).unwrap();
    life.join(&meeting.id, &Person::Guest("Merchant".into()))
        .unwrap();
    life.end(&meeting.id, &Person::Host).unwrap();

    let detail = client.meeting(MeetingAuth::App, &meeting.id).await.unwrap();
    assert_eq!(detail.id, meeting.id);
    assert_eq!(
        detail.meeting_no.as_deref(),
        Some(reserve.meeting_no.as_str())
    );
    assert_eq!(detail.status, Some(MeetingState::Ended));
    assert_eq!(detail.participant_count_accumulated, Some(2));
    assert_eq!(detail.participants.len(), 2);
    let trainer = detail.participants.iter().find(|p| p.is_host).unwrap();
    assert_eq!(trainer.id, host);
    assert!(!trainer.is_external && trainer.first_join_time.is_some());
    let guest = detail.participants.iter().find(|p| !p.is_host).unwrap();
    assert!(guest.is_external);
    assert_eq!(guest.status, Some(ParticipantState::Left));

    // The app refused (121005): the host's own token still reads it.
    life.refuse_tenant_token(true);
    let err = client
        .meeting(MeetingAuth::App, &meeting.id)
        .await
        .unwrap_err();
    assert!(err.is_vc_no_permission(), "{err:?}");
    let as_host = client
        .meeting(MeetingAuth::User(&grant.access_token), &meeting.id)
        .await
        .unwrap();
    assert_eq!(as_host.participants.len(), 2);
    // A trainer who connected without vc:meeting:readonly cannot be the fallback.
    let grant_without =
        crate::lark::test_support::connect(&sim, &plain_client, "bo@example.com").await;
    let err = client
        .meeting(MeetingAuth::User(&grant_without.access_token), &meeting.id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::PermissionDenied { code: 99991679, .. }),
        "{err:?}"
    );

    let briefs = client
        .meetings_by_no(
            MeetingAuth::App,
            &reserve.meeting_no,
            before,
            Utc::now() + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(briefs.len(), 1, "{briefs:?}");
    assert_eq!(briefs[0].id, meeting.id);
    assert_eq!(
        briefs[0].meeting_no.as_deref(),
        Some(reserve.meeting_no.as_str())
    );
    // A number that had no meeting yet: none (what the sweep reads as a no-show).
    let other = client
        .apply_reserve(
            &grant.access_token,
            Utc::now() + chrono::Duration::days(1),
            "Never held",
            &NoLedger,
        )
        .await
        .unwrap();
    let none = client
        .meetings_by_no(MeetingAuth::App, &other.meeting_no, before, Utc::now())
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}
