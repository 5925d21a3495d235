//! Tests of [`super`] (vc.rs) against the Lark simulator.

use std::time::Duration;

use super::*;
use crate::lark::pacing::APPLY_PER_SECOND;
use crate::lark::test_support::NoLedger;
use crate::lark::test_support::{
    connect, eventually, max_in_window, settle, sim_and_client, FrozenClock,
};
use axum::http::Method;

/// `days` from now, in whole seconds (what Lark keeps, so it compares with its answers).
fn in_days(days: i64) -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now() + chrono::Duration::days(days);
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

#[tokio::test]
async fn apply_update_get_delete_with_owner_checks() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    sim.add_user("bo@example.com", "Bo");
    let ana = connect(&sim, &client, "ana@example.com").await;
    let bo = connect(&sim, &client, "bo@example.com").await;

    let end = in_days(3);
    let reserve = client
        .apply_reserve(&ana.access_token, end, "Remote Training: Acme", &NoLedger)
        .await
        .unwrap();
    assert_eq!(reserve.end_time, Some(end));
    assert_eq!(reserve.meeting_no.len(), 9);
    assert!(
        reserve.url.ends_with(&reserve.meeting_no),
        "{}",
        reserve.url
    );
    let held = sim.reserves();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].owner_open_id, ana_id);
    assert_eq!(held[0].topic.as_deref(), Some("Remote Training: Acme"));
    assert_eq!(
        held[0].auto_record,
        Some(false),
        "meetings.auto_record is off by default"
    );

    let later = in_days(5);
    let updated = client
        .update_reserve(&ana.access_token, &reserve.id, Some(later), Some("Moved"))
        .await
        .unwrap();
    assert_eq!(updated.id, reserve.id);
    assert_eq!(updated.url, reserve.url, "the link survives an update");
    assert_eq!(updated.end_time, Some(later));
    assert_eq!(
        client
            .get_reserve(&ana.access_token, &reserve.id)
            .await
            .unwrap(),
        updated
    );
    assert_eq!(sim.reserves()[0].topic.as_deref(), Some("Moved"));

    let not_owner = client
        .delete_reserve(&bo.access_token, &reserve.id)
        .await
        .unwrap_err();
    assert!(
        matches!(not_owner, LarkError::PermissionDenied { code: 121005, .. }),
        "{not_owner:?}"
    );
    let not_owner_get = client
        .get_reserve(&bo.access_token, &reserve.id)
        .await
        .unwrap_err();
    assert!(matches!(not_owner_get, LarkError::PermissionDenied { .. }));
    assert!(!sim.reserves()[0].deleted);

    client
        .delete_reserve(&ana.access_token, &reserve.id)
        .await
        .unwrap();
    assert!(sim.reserves()[0].deleted);
    let gone = client
        .get_reserve(&ana.access_token, &reserve.id)
        .await
        .unwrap_err();
    assert!(
        matches!(gone, LarkError::NotFound { code: 121004, .. }),
        "{gone:?}"
    );
    let twice = client
        .delete_reserve(&ana.access_token, &reserve.id)
        .await
        .unwrap_err();
    assert!(matches!(twice, LarkError::NotFound { .. }));

    let counts = client.call_counts();
    assert_eq!(
        (counts.apply, counts.update, counts.get, counts.delete),
        (1, 1, 3, 3)
    );
}

#[tokio::test]
async fn end_times_outside_lark_limits_are_invalid_params_and_not_retried() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    let far = client
        .apply_reserve(&ana.access_token, in_days(31), "too far", &NoLedger)
        .await
        .unwrap_err();
    assert!(
        matches!(
            far,
            ApplyError::Failed(LarkError::InvalidParams { code: 121003, .. })
        ),
        "{far:?}"
    );
    let past = client
        .apply_reserve(&ana.access_token, in_days(-1), "past", &NoLedger)
        .await
        .unwrap_err();
    assert!(matches!(
        past,
        ApplyError::Failed(LarkError::InvalidParams { code: 121003, .. })
    ));
    assert_eq!(client.call_counts().apply, 2);
    assert!(sim.reserves().is_empty());
    assert!(matches!(
        client.get_reserve(&ana.access_token, "../../evil").await,
        Err(LarkError::InvalidParams { .. })
    ));
}

#[tokio::test]
async fn expired_user_token_is_reported_for_the_caller_to_refresh() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    sim.expire_access_tokens(&ana_id);
    let err = client
        .apply_reserve(&ana.access_token, in_days(1), "t", &NoLedger)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::Failed(LarkError::UserTokenInvalid { code: 99991677 })
        ),
        "{err:?}"
    );
    assert_eq!(client.call_counts().apply, 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_answer_is_waited_out_then_succeeds() {
    let _frozen = FrozenClock::hold();
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    sim.faults().inject(
        Some(Method::POST),
        APPLY_PATH,
        1,
        429,
        include_str!("../../../../../fixtures/lark/rate_limited.json"),
        &[
            ("x-ogw-ratelimit-reset", "3"),
            ("x-ogw-ratelimit-limit", "50"),
        ],
    );
    let applying = tokio::spawn({
        let client = client.clone();
        let token = ana.access_token.clone();
        async move {
            client
                .apply_reserve(&token, in_days(1), "t", &NoLedger)
                .await
        }
    });
    let applies = || sim.requests().count(&Method::POST, APPLY_PATH);
    eventually("the first, rate-limited apply", || applies() == 1).await;
    // Let the client read the 429 and start its wait before time moves.
    settle().await;
    tokio::time::advance(Duration::from_millis(2900)).await;
    settle().await;
    assert_eq!(applies(), 1, "retried before x-ogw-ratelimit-reset elapsed");
    tokio::time::advance(Duration::from_millis(100)).await;
    eventually("the retried apply", || applies() == 2).await;
    let reserve = applying.await.unwrap().unwrap();
    assert_eq!(sim.reserves()[0].id, reserve.id);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_applies_is_paced_at_fifty_a_second_and_none_is_refused() {
    let _frozen = FrozenClock::hold();
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    let t0 = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let client = client.clone();
            let token = ana.access_token.clone();
            tokio::spawn(async move {
                client
                    .apply_reserve(&token, in_days(2), &format!("Booking {i}"), &NoLedger)
                    .await
            })
        })
        .collect();
    let accepted = || sim.reserves().len();
    for (second, expected) in [(0u64, 50usize), (1, 100), (2, 120)] {
        eventually(&format!("{expected} reserves"), || accepted() == expected).await;
        settle().await;
        assert_eq!(
            accepted(),
            expected,
            "more than 50 started in second {second}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    for t in tasks {
        t.await.unwrap().expect("every apply succeeds");
    }
    let rejected = sim
        .requests()
        .matching(|r| r.path == APPLY_PATH && r.status == 429)
        .len();
    assert_eq!(rejected, 0, "the pacer kept under Lark's limit");
    assert_eq!(client.call_counts().apply, 120);
    let starts: Vec<_> = sim.reserves().iter().map(|r| r.applied_at).collect();
    assert_eq!(
        max_in_window(&starts, Duration::from_secs(1)),
        APPLY_PER_SECOND
    );
    assert!(starts.iter().all(|&t| t < t0 + Duration::from_millis(3300)));
}

#[tokio::test(start_paused = true)]
async fn an_apply_that_timed_out_is_not_sent_again() {
    let _frozen = FrozenClock::hold();
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    sim.faults().set_latency(Duration::from_secs(600));
    let applying = tokio::spawn({
        let client = client.clone();
        let token = ana.access_token.clone();
        async move {
            client
                .apply_reserve(&token, in_days(1), "t", &NoLedger)
                .await
        }
    });
    eventually("the apply to be sent", || client.call_counts().apply == 1).await;
    settle().await;
    // Past reqwest's request timeout, well short of the simulator's latency.
    tokio::time::advance(Duration::from_secs(26)).await;
    let err = applying.await.unwrap().unwrap_err();
    assert!(
        matches!(err, ApplyError::AnswerLost(LarkError::Timeout)),
        "a timeout after sending leaves the apply in doubt: {err:?}"
    );
    settle().await;
    assert_eq!(
        client.call_counts().apply,
        1,
        "a maybe-created meeting is not re-applied"
    );
}

#[tokio::test]
async fn the_app_reserves_for_an_owner_with_its_tenant_token() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    let end = in_days(2);
    let reserve = client
        .apply_reserve_for_owner(&ana_id, end, "Remote Training: Acme", &NoLedger)
        .await
        .unwrap();
    let held = sim.reserves();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].owner_open_id, ana_id,
        "the trainer owns and hosts it"
    );
    assert!(held[0].applied_by_app);
    let applied = sim
        .requests()
        .matching(|r| r.path == APPLY_PATH)
        .pop()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&applied.body).unwrap();
    assert_eq!(body["owner_id"], ana_id);
    assert_eq!(body["end_time"], end.timestamp().to_string());

    let later = in_days(4);
    let updated = client
        .update_reserve_for_owner(&ana_id, &reserve.id, Some(later), Some("Moved"))
        .await
        .unwrap();
    assert_eq!(
        (updated.url.as_str(), updated.end_time),
        (reserve.url.as_str(), Some(later))
    );
    // The trainer, once connected, manages it with their own token too.
    let ana = connect(&sim, &client, "ana@example.com").await;
    assert_eq!(
        client
            .get_reserve(&ana.access_token, &reserve.id)
            .await
            .unwrap()
            .id,
        reserve.id
    );
    client.delete_reserve_as_app(&reserve.id).await.unwrap();
    assert!(sim.reserves()[0].deleted);
    let gone = client.delete_reserve_as_app(&reserve.id).await.unwrap_err();
    assert!(matches!(gone, LarkError::NotFound { code: 121004, .. }));
    assert_eq!(client.call_counts().tenant_token, 1);
}

#[tokio::test]
async fn without_the_app_permission_an_app_hosted_apply_is_refused_once() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    sim.set_app_scope("vc:reserve", false);
    let err = client
        .apply_reserve_for_owner(&ana_id, in_days(1), "t", &NoLedger)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::Failed(LarkError::PermissionDenied { code: 99991672, .. })
        ),
        "{err:?}"
    );
    let unknown_owner = {
        sim.set_app_scope("vc:reserve", true);
        client
            .apply_reserve_for_owner("ou_nobody", in_days(1), "t", &NoLedger)
            .await
            .unwrap_err()
    };
    assert!(matches!(
        unknown_owner,
        ApplyError::Failed(LarkError::InvalidParams { code: 121003, .. })
    ));
    assert_eq!(client.call_counts().apply, 2, "refusals are not retried");
    assert!(sim.reserves().is_empty());
    assert!(client
        .apply_reserve_for_owner(" ", in_days(1), "t", &NoLedger)
        .await
        .is_err());
    assert_eq!(client.call_counts().apply, 2, "refused before sending");
}

#[tokio::test]
async fn a_lost_answer_is_told_apart_from_a_request_that_never_left() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    sim.faults().lose_answers(Some(Method::POST), APPLY_PATH, 1);
    let err = client
        .apply_reserve(&ana.access_token, in_days(1), "t", &NoLedger)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::AnswerLost(_)), "{err:?}");
    assert_eq!(sim.reserves().len(), 1, "the simulator did the work");
    assert_eq!(client.call_counts().apply, 1, "not sent again");

    // Nothing listens here: the connection is refused, so nothing can have landed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let settings =
        crate::config::Settings::for_simulators(&url, &url, &dir.path().join("s.db")).unwrap();
    let unreachable =
        LarkClient::with_retry_policy(&settings.lark, crate::lark::test_support::fast_policy())
            .unwrap();
    let err = unreachable
        .apply_reserve(&ana.access_token, in_days(1), "t", &NoLedger)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApplyError::Failed(LarkError::Transport(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_to_an_app_apply_is_in_doubt_and_not_sent_again() {
    let (sim, client, _dir) = sim_and_client().await;
    let ana_id = sim.add_user("ana@example.com", "Ana");
    sim.faults().lose_answers(Some(Method::POST), APPLY_PATH, 1);
    let err = client
        .apply_reserve_for_owner(&ana_id, in_days(1), "t", &NoLedger)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::AnswerLost(_)), "{err:?}");
    assert_eq!(sim.reserves().len(), 1, "the simulator did the work");
    assert!(sim.reserves()[0].applied_by_app);
    assert_eq!(client.call_counts().apply, 1, "not sent again");
}

#[test]
fn recorded_reserve_parses_with_string_end_time() {
    let d: Data<ReserveData> = serde_json::from_str(include_str!(
        "../../../../../fixtures/lark/reserve_apply.json"
    ))
    .unwrap();
    let r = d.data.reserve.into_reserve();
    assert_eq!(r.end_time.map(|t| t.timestamp()), Some(1_608_888_867));
    assert_eq!(r.meeting_no, "112000358");
    assert!(r.app_link.is_some());
}

#[tokio::test]
async fn auto_record_is_sent_when_configured() {
    let (sim, _, dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let mut settings = crate::config::Settings::for_simulators(
        "http://127.0.0.1:9",
        &sim.base_url(),
        &dir.path().join("store.db"),
    )
    .expect("settings");
    settings.meetings.auto_record = true;
    let client = LarkClient::for_service(&settings).expect("client");
    let ana = connect(&sim, &client, "ana@example.com").await;
    client
        .apply_reserve(&ana.access_token, in_days(1), "Recorded", &NoLedger)
        .await
        .unwrap();
    assert_eq!(sim.reserves()[0].auto_record, Some(true));
}

/// Records what an apply tells its ledger (rule 23).
#[derive(Default)]
struct CountingLedger {
    sent: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    refuse_to_record: bool,
}

impl ApplyLedger for CountingLedger {
    fn sending(&self) -> futures::future::BoxFuture<'_, Result<(), NotRecorded>> {
        let recorded = if self.refuse_to_record {
            Err(NotRecorded)
        } else {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        Box::pin(std::future::ready(recorded))
    }

    fn refused(&self) {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingLedger {
    fn seen(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.sent.load(SeqCst), self.refused.load(SeqCst))
    }
}

#[tokio::test]
async fn every_apply_is_told_to_the_ledger_before_it_leaves_and_nothing_leaves_unrecorded() {
    let (sim, client, _dir) = sim_and_client().await;
    sim.add_user("ana@example.com", "Ana");
    let ana = connect(&sim, &client, "ana@example.com").await;
    let applies = || sim.requests().count(&Method::POST, APPLY_PATH);

    let answered = CountingLedger::default();
    client
        .apply_reserve(&ana.access_token, in_days(2), "ok", &answered)
        .await
        .unwrap();
    assert_eq!(answered.seen(), (1, 0), "recorded once, not refused");

    let refused = CountingLedger::default();
    client
        .apply_reserve(&ana.access_token, in_days(-1), "past", &refused)
        .await
        .unwrap_err();
    assert_eq!(
        refused.seen(),
        (1, 1),
        "recorded, then settled: it made nothing"
    );

    let unrecorded = CountingLedger {
        refuse_to_record: true,
        ..CountingLedger::default()
    };
    let before = applies();
    let e = client
        .apply_reserve(&ana.access_token, in_days(2), "never sent", &unrecorded)
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::NotRecorded), "{e:?}");
    assert_eq!(applies(), before, "nothing reached Lark");
    assert_eq!(sim.reserves().len(), 1);
}
