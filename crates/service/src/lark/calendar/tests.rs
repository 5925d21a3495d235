//! Tests of [`super`] (calendar.rs) against the Lark simulator.

use std::time::Duration;

use axum::http::Method;

use chrono::{DateTime, Utc};

use super::*;
use crate::lark::test_support::{eventually, settle, sim_and_client, FrozenClock, REDIRECT};
use crate::lark::TokenGrant;
use lvb_simulators::lark::LarkSim;

const CALENDAR_SCOPES: &str =
    "vc:reserve offline_access calendar:calendar calendar:calendar:readonly";

/// Connects `email` with the calendar scopes granted.
async fn connect_with_calendar(sim: &LarkSim, client: &LarkClient, email: &str) -> TokenGrant {
    connect_with_scopes(sim, client, email, CALENDAR_SCOPES).await
}

/// Connects `email`, granting `scopes` whatever the configured ones are.
async fn connect_with_scopes(
    sim: &LarkSim,
    client: &LarkClient,
    email: &str,
    scopes: &str,
) -> TokenGrant {
    let (verifier, challenge) = crate::lark::test_support::pkce();
    let mut url = client.authorize_url(
        REDIRECT,
        &crate::lark::secret::OAuthState::new("st"),
        &challenge,
    );
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "scope" {
                (k, scopes.to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("sim_user", email);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let code = crate::lark::secret::AuthCode::new(
        url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned(),
    );
    let grant = client
        .exchange_code(&code, REDIRECT, &verifier)
        .await
        .unwrap();
    assert!(sim.users().iter().any(|u| u.email == email));
    grant
}

fn new_event(start: DateTime<Utc>) -> NewCalendarEvent {
    NewCalendarEvent {
        summary: "Remote Training: Acme".into(),
        description: "Remote training for Acme. Join: https://vc.larksuite.com/j/1".into(),
        start: EventTime {
            at: start,
            timezone: "Europe/Paris".into(),
        },
        end: EventTime {
            at: start + hours(1.0),
            timezone: "Europe/Paris".into(),
        },
        meeting_url: "https://vc.larksuite.com/j/123456789".into(),
        reminder_minutes: 15,
    }
}

/// This time tomorrow, in whole seconds (what Lark keeps, so it compares with answers).
fn tomorrow() -> DateTime<Utc> {
    let t = Utc::now() + chrono::Duration::days(1);
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

fn hours(n: f64) -> chrono::Duration {
    chrono::Duration::seconds((n * 3600.0) as i64)
}

#[test]
fn idempotency_keys_are_stable_distinct_and_within_lark_limits() {
    let a = idempotency_key(&["a0X000000000001AAA", "6911188411932033028"]);
    assert_eq!(
        a,
        idempotency_key(&["a0X000000000001AAA", "6911188411932033028"])
    );
    assert_ne!(
        a,
        idempotency_key(&["a0X000000000001AAA", "6911188411932033029"])
    );
    assert_ne!(idempotency_key(&["ab", "c"]), idempotency_key(&["a", "bc"]));
    assert!(IDEMPOTENCY_KEY_LEN.contains(&a.len()));
}

#[tokio::test]
async fn an_event_is_made_once_moved_shared_with_the_guest_and_deleted() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    let ana = connect_with_calendar(&sim, &client, "ana@example.com").await;
    let token = &ana.access_token;

    let calendar = client.primary_calendar_id(token).await.unwrap();
    assert_eq!(calendar, sim.primary_calendar_id(&ana_id));

    let start = tomorrow();
    let key = idempotency_key(&["a0X000000000001AAA", "6911188411932033028"]);
    let event = client
        .create_calendar_event(token, &calendar, &key, &new_event(start))
        .await
        .unwrap();
    assert_eq!(
        (event.start, event.end),
        (Some(start), Some(start + hours(1.0)))
    );
    assert_eq!(event.calendar_id, calendar);
    assert_eq!(
        event.meeting_url.as_deref(),
        Some("https://vc.larksuite.com/j/123456789")
    );
    // A repeat (a lost answer, a retried booking) gets the same event.
    let again = client
        .create_calendar_event(token, &calendar, &key, &new_event(start))
        .await
        .unwrap();
    assert_eq!(again.event_id, event.event_id);
    let held = sim.calendar_events();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].summary, "Remote Training: Acme");
    assert_eq!(held[0].start.timezone, "Europe/Paris");
    assert_eq!(held[0].vchat["vc_type"], "third_party");
    assert_eq!(
        held[0].vchat["meeting_url"],
        "https://vc.larksuite.com/j/123456789"
    );
    assert_eq!(held[0].reminders, vec![15]);
    assert!(!held[0].need_notification, "the host is not notified");

    let guests = client
        .add_calendar_guests(
            token,
            &calendar,
            &event.event_id,
            &["merchant@shop.example"],
            true,
        )
        .await
        .unwrap();
    assert_eq!(guests.len(), 1);
    assert_eq!(guests[0].kind, "third_party");
    assert_eq!(
        guests[0].third_party_email.as_deref(),
        Some("merchant@shop.example")
    );
    let invited = &sim.calendar_events()[0].attendees;
    assert_eq!(invited.len(), 1);
    assert!(invited[0].notified, "the guest gets the invitation");

    let moved_start = EventTime {
        at: start + hours(2.0),
        timezone: "UTC".into(),
    };
    let moved_end = EventTime {
        at: start + hours(2.5),
        timezone: "UTC".into(),
    };
    let moved = client
        .patch_calendar_event_times(
            token,
            &calendar,
            &event.event_id,
            &moved_start,
            &moved_end,
            true,
        )
        .await
        .unwrap();
    assert_eq!(moved.event_id, event.event_id);
    assert_eq!(
        (moved.start, moved.end),
        (Some(start + hours(2.0)), Some(start + hours(2.5)))
    );
    let read = client
        .get_calendar_event(token, &calendar, &event.event_id)
        .await
        .unwrap();
    assert_eq!(read, moved);

    client
        .delete_calendar_event(token, &calendar, &event.event_id)
        .await
        .unwrap();
    let gone = &sim.calendar_events()[0];
    assert!(gone.deleted);
    assert_eq!(gone.deleted_with_notification, Some(false));
    let twice = client
        .delete_calendar_event(token, &calendar, &event.event_id)
        .await
        .unwrap_err();
    assert!(
        matches!(twice, LarkError::NotFound { code: 193003, .. }),
        "{twice:?}"
    );

    let counts = client.call_counts();
    assert_eq!(
        (
            counts.calendar_primary,
            counts.event_create,
            counts.event_attendees,
            counts.event_patch,
            counts.event_get,
            counts.event_delete
        ),
        (1, 2, 1, 1, 1, 2)
    );
    assert_eq!(
        sim.requests()
            .matching(|r| r.method == Method::DELETE && r.query == "need_notification=false")
            .len(),
        2
    );
}

#[tokio::test]
async fn lark_refusals_are_classified_and_not_retried() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    sim.add_user("bo@example.com", "Bo");
    let ana = connect_with_calendar(&sim, &client, "ana@example.com").await;
    let bo = connect_with_calendar(&sim, &client, "bo@example.com").await;
    let ana_calendar = client.primary_calendar_id(&ana.access_token).await.unwrap();

    let key = idempotency_key(&["b", "r"]);
    let not_yours = client
        .create_calendar_event(
            &bo.access_token,
            &ana_calendar,
            &key,
            &new_event(tomorrow()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(not_yours, LarkError::PermissionDenied { code: 191002, .. }),
        "{not_yours:?}"
    );
    let unknown = client
        .get_calendar_event(&ana.access_token, &ana_calendar, "0000_0")
        .await
        .unwrap_err();
    assert!(matches!(unknown, LarkError::NotFound { code: 193001, .. }));
    let no_calendar = client
        .create_calendar_event(
            &ana.access_token,
            "nobody@group.calendar.larksuite.com",
            &key,
            &new_event(tomorrow()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        no_calendar,
        LarkError::NotFound { code: 191000, .. }
    ));
    let mut inverted = new_event(tomorrow());
    inverted.end.at = inverted.start.at - chrono::Duration::seconds(1);
    let params = client
        .create_calendar_event(&ana.access_token, &ana_calendar, &key, &inverted)
        .await
        .unwrap_err();
    assert!(matches!(
        params,
        LarkError::InvalidParams { code: 190002, .. }
    ));
    sim.set_calendar_read_only(&ana_id, true);
    let read_only = client
        .create_calendar_event(
            &ana.access_token,
            &ana_calendar,
            &key,
            &new_event(tomorrow()),
        )
        .await
        .unwrap_err();
    assert!(matches!(read_only, LarkError::PermissionDenied { .. }));
    assert_eq!(
        client.call_counts().event_create,
        4,
        "no refusal is retried"
    );
    assert!(sim.calendar_events().is_empty());

    // Refused before anything is sent.
    let short_key = client
        .create_calendar_event(
            &ana.access_token,
            &ana_calendar,
            "short",
            &new_event(tomorrow()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        short_key,
        LarkError::InvalidParams { code: 0, .. }
    ));
    let bad_path = client
        .delete_calendar_event(&ana.access_token, "../../x", "e_0")
        .await
        .unwrap_err();
    assert!(matches!(bad_path, LarkError::InvalidParams { code: 0, .. }));
    let bad_guest = client
        .add_calendar_guests(&ana.access_token, &ana_calendar, "e_0", &["nope"], true)
        .await
        .unwrap_err();
    assert!(matches!(
        bad_guest,
        LarkError::InvalidParams { code: 0, .. }
    ));
    assert_eq!(client.call_counts().event_create, 4);
    assert_eq!(client.call_counts().event_delete, 0);

    // A token without the calendar scopes: Lark's scope error, a permission problem.
    let vc_only =
        connect_with_scopes(&sim, &client, "bo@example.com", "vc:reserve offline_access").await;
    let scope = client
        .primary_calendar_id(&vc_only.access_token)
        .await
        .unwrap_err();
    assert!(
        matches!(scope, LarkError::PermissionDenied { code: 99991679, .. }),
        "{scope:?}"
    );

    // No error names a token.
    sim.revoke(&ana_id);
    let revoked = client
        .create_calendar_event(
            &ana.access_token,
            &ana_calendar,
            &key,
            &new_event(tomorrow()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        revoked,
        LarkError::UserTokenInvalid { code: 99991668 }
    ));
    for err in [&revoked, &scope, &not_yours, &params] {
        let shown = format!("{err} {err:?}");
        for token in [&ana.access_token, &bo.access_token, &vc_only.access_token] {
            assert!(!shown.contains(token.secret()), "{shown}");
        }
    }
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_key_keeps_it_to_one_event() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect_with_calendar(&sim, &client, "ana@example.com").await;
    let calendar = client.primary_calendar_id(&ana.access_token).await.unwrap();
    sim.faults().inject(
        Some(Method::POST),
        "/events",
        1,
        500,
        r#"{"code":190003,"msg":"internal service error"}"#,
        &[],
    );
    let key = idempotency_key(&["booking", "reserve"]);
    let event = client
        .create_calendar_event(&ana.access_token, &calendar, &key, &new_event(tomorrow()))
        .await
        .unwrap();
    assert_eq!(client.call_counts().event_create, 2);
    assert_eq!(sim.calendar_events().len(), 1);
    assert_eq!(sim.calendar_events()[0].event_id, event.event_id);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_creates_is_paced_at_fifty_a_second_and_none_is_refused() {
    let _frozen = FrozenClock::hold();
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect_with_calendar(&sim, &client, "ana@example.com").await;
    let calendar = client.primary_calendar_id(&ana.access_token).await.unwrap();
    let tasks: Vec<_> = (0..70)
        .map(|i| {
            let client = client.clone();
            let token = ana.access_token.clone();
            let calendar = calendar.clone();
            tokio::spawn(async move {
                let key = idempotency_key(&["booking", &i.to_string()]);
                client
                    .create_calendar_event(&token, &calendar, &key, &new_event(tomorrow()))
                    .await
            })
        })
        .collect();
    let made = || sim.calendar_events().len();
    eventually("the first 50 events", || made() == 50).await;
    settle().await;
    assert_eq!(made(), 50, "more than 50 started in the first second");
    tokio::time::advance(Duration::from_secs(1)).await;
    eventually("all 70 events", || made() == 70).await;
    for t in tasks {
        t.await.unwrap().expect("every create succeeds");
    }
    let refused = sim.requests().matching(|r| r.status == 429).len();
    assert_eq!(refused, 0, "the pacer kept under Lark's limit");
    assert_eq!(
        sim.requests()
            .matching(|r| r.path.ends_with("/events"))
            .len(),
        70
    );
}

#[tokio::test]
async fn a_rate_limited_answer_is_waited_out() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect_with_calendar(&sim, &client, "ana@example.com").await;
    sim.faults().inject(
        Some(Method::POST),
        PRIMARY_PATH,
        1,
        429,
        r#"{"code":190005,"msg":"app rate limited"}"#,
        &[("x-ogw-ratelimit-reset", "0")],
    );
    client.primary_calendar_id(&ana.access_token).await.unwrap();
    assert_eq!(client.call_counts().calendar_primary, 2);
}
