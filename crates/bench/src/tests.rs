use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::Method;

use lvb_simulators::RecordedRequest;

use super::*;

/// The bench itself, small: proves it runs end to end and its figures add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_burst_is_linked_with_one_refresh_per_expired_trainer() {
    let args = BenchArgs {
        bookings: 40,
        trainers: 4,
        expired_share: 0.5,
        latency_ms: 0,
        lone: 3,
        json_out: PathBuf::new(),
        service_process: false,
        service_bin: None,
    };
    let report = measure(&args).await.expect("the bench runs");

    let b = &report.burst;
    assert_eq!(b.linked, 40, "{:?}", b.statuses);
    assert_eq!(b.failed, 0);
    assert_eq!(
        b.lark_calls.get("apply"),
        Some(&40),
        "one apply per booking: {:?}",
        b.lark_calls
    );
    assert_eq!(b.lark_rate_limited, 0);
    assert!(
        b.salesforce_calls.get("composite").is_some_and(|&c| c >= 1),
        "{:?}",
        b.salesforce_calls
    );
    assert_eq!(
        b.salesforce_calls_total,
        b.salesforce_calls.values().sum::<usize>()
    );
    assert!(b.wall_secs > 0.0 && b.wall_secs >= b.first_link_secs);

    let r = &b.refreshes;
    assert_eq!(r.expired_trainers, 2);
    assert_eq!(r.per_expired_trainer, BTreeMap::from([(1, 2)]), "{r:?}");
    assert_eq!((r.of_valid_trainers, r.chained, r.total), (0, 0, 2));

    let l = &report.lone;
    assert_eq!(l.samples, 3);
    assert!(l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms);
    assert_eq!(
        l.lark_calls_by_kind.get("apply"),
        Some(&3),
        "{:?}",
        l.lark_calls_by_kind
    );
    // No latency simulated: the overhead is the whole latency.
    assert_eq!(l.overhead_p50_ms, l.p50_ms);

    let m = &report.resources;
    assert!(m.peak_rss_mb > 0.0 && m.process_cpu_secs > 0.0, "{m:?}");
    assert!(m.simulators_cpu_secs.is_some());
    assert_eq!(report.targets.len(), 7);
    let lark_target = report
        .targets
        .iter()
        .find(|t| t.target.starts_with("Lark calls per booking"))
        .expect("the Lark calls row");
    assert_eq!(lark_target.met, Some(true), "{lark_target:?}");
    let refresh_target = report.targets.last().unwrap();
    assert_eq!(refresh_target.met, Some(true), "{refresh_target:?}");
    serde_json::to_string(&report).expect("serialises");
}

#[test]
fn limit_bound_follows_both_sliding_windows() {
    assert_eq!(limit_bound_secs(&[], 0), 0.0);
    assert_eq!(limit_bound_secs(&[], 1), 0.0);
    assert_eq!(limit_bound_secs(&[], 50), 0.0);
    assert_eq!(limit_bound_secs(&[], 51), 1.0);
    assert_eq!(limit_bound_secs(&[], 1000), 19.0);
    // The 1001st waits for the first to leave the minute, then 50 a second again.
    assert_eq!(limit_bound_secs(&[], 1001), 60.0);
    assert_eq!(limit_bound_secs(&[], 2000), 79.0);
    // 31 applies 5 s before: 969 fit the first minute, the next 31 wait for them
    // to leave it (at 55 s), the 1001st for the burst's first (at 60 s).
    let prior = vec![-5.0; 31];
    assert_eq!(limit_bound_secs(&prior, 969), 19.0);
    assert_eq!(limit_bound_secs(&prior, 1000), 55.0);
    assert_eq!(limit_bound_secs(&prior, 1001), 60.0);
    // Within a second of each other, the prior ones also fill the per-second window.
    assert_eq!(limit_bound_secs(&[-0.5; 50], 1), 0.5);
}

#[test]
fn busiest_window_is_half_open() {
    let s = |v: &[u64]| {
        v.iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(busiest_window(&s(&[]), Duration::from_secs(1)), 0);
    assert_eq!(
        busiest_window(&s(&[0, 999, 1000, 1500]), Duration::from_secs(1)),
        3
    );
    assert_eq!(
        busiest_window(&s(&[0, 1000, 2000]), Duration::from_secs(1)),
        1
    );
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 0.50), 50.0);
    assert_eq!(percentile(&v, 0.99), 99.0);
    assert_eq!(percentile(&[7.0], 0.99), 7.0);
    assert_eq!(percentile(&[], 0.5), 0.0);
}

#[test]
fn proc_stat_times_are_read_after_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stat");
    // A name with spaces and a parenthesis, as thread names may have.
    std::fs::write(
        &path,
        "4242 (lvb-sim (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0",
    )
    .unwrap();
    let (name, secs) = read_stat(&path.to_string_lossy()).unwrap();
    assert_eq!(name, "lvb-sim (x) 1");
    assert_eq!(secs, 3.0);
}

#[test]
fn calls_are_classified_by_path() {
    let req = |method: Method, path: &str, body: &str| RecordedRequest {
        method,
        path: path.into(),
        query: String::new(),
        body: body.into(),
        status: 200,
    };
    assert_eq!(
        sf_kind(&req(
            Method::PATCH,
            "/services/data/v62.0/composite/sobjects",
            ""
        )),
        "composite"
    );
    assert_eq!(
        sf_kind(&req(
            Method::PATCH,
            "/services/data/v62.0/sobjects/X__c/a01",
            ""
        )),
        "update"
    );
    assert_eq!(
        sf_kind(&req(Method::GET, "/services/data/v62.0/queryAll", "")),
        "query"
    );
    assert_eq!(sf_kind(&req(Method::POST, "/cometd/62.0", "")), "streaming");
    assert_eq!(
        sf_kind(&req(Method::POST, "/services/oauth2/token", "")),
        "auth"
    );
    let refresh = req(
        Method::POST,
        "/open-apis/authen/v2/oauth/token",
        r#"{"grant_type":"refresh_token","refresh_token":"ur-abc"}"#,
    );
    assert_eq!(lark_kind(&refresh), "refresh");
    assert_eq!(refresh_token_of(&refresh).as_deref(), Some("ur-abc"));
    let code = req(
        Method::POST,
        "/open-apis/authen/v2/oauth/token",
        r#"{"grant_type":"authorization_code","code":"c"}"#,
    );
    assert_eq!(lark_kind(&code), "code_exchange");
    assert_eq!(
        lark_kind(&req(Method::PUT, "/open-apis/vc/v1/reserves/123", "")),
        "reserve_update"
    );
}
