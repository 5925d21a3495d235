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
        order: BurstOrder::RoundRobin,
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

    // Issue 22: Lark calls per method with their 429s, from the request log.
    let methods = &b.lark_methods;
    let calls = |m: &str| methods.get(m).map_or(0, |f| f.calls);
    assert_eq!(calls("apply"), 40, "{methods:?}");
    assert_eq!(calls("calendar_event_create"), 40, "{methods:?}");
    assert_eq!(calls("refresh"), 2, "{methods:?}");
    assert_eq!(
        methods.values().map(|m| m.calls).sum::<usize>(),
        b.lark_calls.values().sum::<usize>()
    );
    assert!(methods.values().all(|m| m.rate_limited == 0), "{methods:?}");
    assert_eq!(methods["apply"].per_booking, 1.0);
    assert_eq!(methods["apply"].busiest_minute, 40);
    let p = &b.primary_lookups;
    assert_eq!(p.lookups, calls("calendar_primary"));
    assert_eq!(p.trainers, 4, "every trainer's calendar got events: {p:?}");
    assert_eq!(
        b.calendar_calls,
        40 + p.lookups + calls("calendar_attendees")
    );
    // Pacing, from the stamped logs: every step of the head and the tail was seen.
    let pace = &b.pacing;
    for (name, at) in [
        ("first event delivered", pace.first_event_delivered_secs),
        ("first query", pace.first_query_secs),
        ("first apply", pace.first_apply_secs),
        ("first event create", pace.first_event_create_secs),
        ("last apply", pace.last_apply_secs),
        ("last event create", pace.last_event_create_secs),
    ] {
        let at = at.unwrap_or_else(|| panic!("{name} not seen: {pace:?}"));
        assert!(
            at >= 0.0 && at <= pace.last_link_secs + 0.01,
            "{name} {at}: {pace:?}"
        );
    }
    assert!(pace.first_apply_secs <= pace.last_apply_secs);
    assert!(pace.tail_secs >= 0.0 && pace.head_secs > 0.0, "{pace:?}");
    assert_eq!(pace.busiest_minute_applies, 40);
    assert_eq!(pace.apply_checkpoints.first().map(|c| c.index), Some(0));
    assert_eq!(pace.apply_checkpoints.last().map(|c| c.index), Some(39));
    // 40 applies fit in one second with no latency: the ideal is 0 s.
    assert_eq!(b.limit_bound_wall_secs, 0.0);
    assert!(
        (b.ratio_to_ideal - b.limit_bound_wall_secs / b.wall_secs).abs() < 0.01,
        "{} against {} / {}",
        b.ratio_to_ideal,
        b.limit_bound_wall_secs,
        b.wall_secs
    );

    let l = &report.lone;
    assert_eq!(l.path_calls, 4, "the calendar is on");
    assert_eq!(l.link_p50_beyond_path_ms, l.p50_ms, "no latency simulated");
    // Each lone trainer's calendar was looked up by its untimed warm-up booking.
    assert_eq!(l.lark_calls_by_kind.get("calendar_primary"), None, "{l:?}");

    let m = &report.resources;
    assert!(m.peak_rss_mb > 0.0 && m.process_cpu_secs > 0.0, "{m:?}");
    assert!(m.bench_peak_rss_mb > 0.0, "{m:?}");
    assert!(m.simulators_cpu_secs.is_some());
    assert_eq!(
        m.service_cpu_ms_per_booking,
        round4(1000.0 * m.service_cpu_secs_burst / 40.0)
    );
    assert!(!report.setup.load_at_start.is_empty());
    assert_eq!(report.targets.iter().filter(|t| t.issue == 7).count(), 7);
    assert_eq!(report.targets.iter().filter(|t| t.issue == 22).count(), 7);
    let target = |prefix: &str| {
        report
            .targets
            .iter()
            .find(|t| t.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("no target row {prefix:?}"))
    };
    let lark_target = target("Lark calls per booking");
    assert_eq!(lark_target.met, Some(true), "{lark_target:?}");
    let refresh_target = target("Exactly one refresh");
    assert_eq!(refresh_target.met, Some(true), "{refresh_target:?}");
    let no_429 = target("0 × 429 from every Lark method");
    assert_eq!(no_429.met, Some(true), "{no_429:?}");
    // In process, the service's memory and CPU are not its own: not judged.
    assert_eq!(target("Peak RSS of the service").met, None);
    serde_json::to_string(&report).expect("serialises");
}

#[tokio::test]
async fn bookings_that_would_overlap_a_trainer_are_refused_before_anything_starts() {
    let args = BenchArgs {
        bookings: max_bookings_per_trainer() * 2 + 1,
        trainers: 2,
        ..BenchArgs::default()
    };
    let err = measure(&args).await.expect_err("too many per trainer");
    assert!(err.to_string().contains("use more --trainers"), "{err:#}");
    // 10,000 over the default 100 trainers fit.
    assert!(10_000usize.div_ceil(100) <= max_bookings_per_trainer());
}

#[test]
fn both_orders_give_each_trainer_the_same_slots() {
    for (n, trainers) in [(2000, 100), (103, 10), (7, 10), (40, 4), (1, 1)] {
        let slots = |order| {
            let mut per_trainer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for i in 0..n {
                let (t, slot) = burst_slot(order, i, n, trainers);
                per_trainer.entry(t).or_default().push(slot);
            }
            for v in per_trainer.values_mut() {
                v.sort_unstable();
            }
            per_trainer
        };
        let round_robin = slots(BurstOrder::RoundRobin);
        assert_eq!(
            round_robin,
            slots(BurstOrder::ByTrainer),
            "{n} over {trainers}"
        );
        let all: std::collections::BTreeSet<usize> =
            round_robin.values().flatten().copied().collect();
        assert_eq!(all.len(), n, "every slot once");
    }
    // Trainer by trainer: the first inserts are all trainer 0's.
    let first: Vec<usize> = (0..20)
        .map(|i| burst_slot(BurstOrder::ByTrainer, i, 2000, 100).0)
        .collect();
    assert_eq!(first, vec![0; 20]);
    assert_eq!(burst_slot(BurstOrder::ByTrainer, 20, 2000, 100), (1, 1));
}

#[test]
fn a_log_entry_takes_the_time_its_log_was_first_seen_holding_it() {
    let mut clock = LogClock::default();
    let ms = Duration::from_millis;
    clock.observe(ms(0), 10);
    clock.observe(ms(1), 10); // no growth: no stamp
    clock.observe(ms(2), 13);
    clock.observe(ms(5), 14);
    assert_eq!(clock.time_of(9), Some(ms(0)));
    assert_eq!(clock.time_of(10), Some(ms(2)));
    assert_eq!(clock.time_of(12), Some(ms(2)));
    assert_eq!(clock.time_of(13), Some(ms(5)));
    assert_eq!(clock.time_of(14), None, "logged after the last look");
}

#[test]
fn written_ids_come_from_collection_bodies_and_record_paths() {
    let req = |method: Method, path: &str, body: &str| RecordedRequest {
        method,
        path: path.into(),
        query: String::new(),
        body: body.into(),
        status: 200,
        at: tokio::time::Instant::now(),
    };
    let composite = req(
        Method::PATCH,
        "/services/data/v62.0/composite/sobjects",
        r#"{"allOrNone":false,"records":[{"attributes":{"type":"Training_Booking__c"},"id":"a01A"},{"attributes":{"type":"Training_Booking__c"},"id":"a01B"}]}"#,
    );
    assert_eq!(
        written_ids(&composite),
        Some(vec!["a01A".to_string(), "a01B".to_string()])
    );
    let one = req(
        Method::PATCH,
        "/services/data/v62.0/sobjects/Training_Booking__c/a01C",
        "{}",
    );
    assert_eq!(written_ids(&one), Some(vec!["a01C".to_string()]));
    let truncated = req(
        Method::PATCH,
        "/services/data/v62.0/composite/sobjects",
        r#"{"allOrNone":false,"records":[{"id":"a01"#,
    );
    assert_eq!(
        written_ids(&truncated),
        None,
        "cut short: look at everything"
    );
    let query = req(Method::GET, "/services/data/v62.0/query", "");
    assert_eq!(written_ids(&query), Some(vec![]));
}

fn lark_call(method: Method, path: &str, status: u16) -> RecordedRequest {
    RecordedRequest {
        method,
        path: path.into(),
        query: String::new(),
        body: String::new(),
        status,
        at: tokio::time::Instant::now(),
    }
}

#[test]
fn lark_calls_are_counted_per_method_with_their_429s_and_busiest_windows() {
    let started = tokio::time::Instant::now();
    let call = |path: &str, status: u16, ms: u64| RecordedRequest {
        at: started + Duration::from_millis(ms),
        ..lark_call(Method::POST, path, status)
    };
    let apply = "/open-apis/vc/v1/reserves/apply";
    let calls = vec![
        call(apply, 200, 0),
        call(apply, 429, 400),
        call(apply, 200, 900),
        call(apply, 200, 1500),
        call("/open-apis/calendar/v4/calendars/primary", 200, 61_000),
    ];
    let m = method_figures(&calls, started, 2);
    assert_eq!(
        m["apply"],
        MethodFigures {
            calls: 4,
            per_booking: 2.0,
            rate_limited: 1,
            busiest_second: 3,
            busiest_minute: 4,
        }
    );
    assert_eq!(m["calendar_primary"].calls, 1);
    assert_eq!(m["calendar_primary"].busiest_second, 1);
    assert_eq!(m["calendar_primary"].busiest_minute, 1);
}

#[test]
fn primary_lookups_are_counted_against_the_calendars_that_got_events() {
    let primary = lark_call(
        Method::POST,
        "/open-apis/calendar/v4/calendars/primary",
        200,
    );
    let on_a = lark_call(
        Method::POST,
        "/open-apis/calendar/v4/calendars/cal_a/events",
        200,
    );
    let on_b = lark_call(
        Method::POST,
        "/open-apis/calendar/v4/calendars/cal_b/events",
        200,
    );
    let guests = lark_call(
        Method::POST,
        "/open-apis/calendar/v4/calendars/cal_a/events/ev_0/attendees",
        200,
    );
    assert_eq!(calendar_of(&on_a), Some("cal_a"));
    assert_eq!(calendar_of(&guests), None);
    let at = |ms: u64| Some(Duration::from_millis(ms));
    let calls = vec![
        Timed {
            at: at(10),
            request: &primary,
        },
        Timed {
            at: at(20),
            request: &primary,
        },
        Timed {
            at: at(40),
            request: &on_a,
        },
        Timed {
            at: at(1200),
            request: &primary,
        },
        Timed {
            at: at(1300),
            request: &on_b,
        },
        Timed {
            at: at(1310),
            request: &on_a,
        },
        Timed {
            at: at(1320),
            request: &guests,
        },
    ];
    let p = primary_lookups(&calls);
    assert_eq!((p.lookups, p.trainers), (3, 2));
    assert_eq!(p.per_trainer, 1.5);
    assert_eq!(p.per_second, vec![2, 1]);
    assert_eq!(p.creates_before_last_lookup, 1);
}

#[test]
fn applies_are_compared_with_the_ideal_by_checkpoint_and_by_run_of_a_thousand() {
    // The padded windows of the service's pacer: the 51st 1.1 s after the 1st.
    let padded = ideal_schedule(&[], 51, 1.1, 60.1);
    assert_eq!(padded[49], 0.0);
    assert_eq!(padded[50], 1.1);
    assert_eq!(
        ideal_schedule(&[], 2000, 1.0, 60.0).last().copied(),
        Some(limit_bound_secs(&[], 2000))
    );
    let ideal = ideal_schedule(&[], 1200, 1.0, 60.0);
    // Every apply from #1000 on 0.5 s late.
    let late: Vec<f64> = ideal
        .iter()
        .enumerate()
        .map(|(k, &t)| if k >= 1000 { t + 0.5 } else { t })
        .collect();
    let (checkpoints, blocks) = apply_lateness(&late, &[], 0.1);
    assert_eq!(
        checkpoints.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 49, 50, 99, 499, 999, 1000, 1199]
    );
    let at = |k: usize| checkpoints.iter().find(|c| c.index == k).unwrap();
    assert_eq!((at(999).actual_secs, at(999).ideal_secs), (19.0, 19.0));
    assert_eq!((at(1000).actual_secs, at(1000).ideal_secs), (60.5, 60.0));
    assert_eq!(
        blocks,
        vec![
            ApplyBlock {
                first: 0,
                last: 999,
                start_secs: 0.0,
                span_secs: 19.0,
                ideal_span_secs: 19.0,
                pacer_bound_span_secs: 20.9,
            },
            ApplyBlock {
                first: 1000,
                last: 1199,
                start_secs: 60.5,
                span_secs: 3.0,
                ideal_span_secs: 3.0,
                pacer_bound_span_secs: 3.3,
            },
        ]
    );
}

#[test]
fn a_booking_is_known_by_its_merchant_in_the_topic_or_the_summary() {
    let with = |path: &str, body: &str| lark_call_with_body(path, body);
    let apply = with(
        "/open-apis/vc/v1/reserves/apply",
        r#"{"end_time":"1","meeting_settings":{"topic":"Remote Training: Merchant 17"}}"#,
    );
    let event = with(
        "/open-apis/calendar/v4/calendars/cal_a/events",
        r#"{"summary":"Remote Training: Merchant 170","description":"x"}"#,
    );
    assert_eq!(booking_index(&apply), Some(17));
    assert_eq!(booking_index(&event), Some(170));
    assert_eq!(booking_index(&with("/x", "{}")), None);
    let ms = |v: u64| Some(Duration::from_millis(v));
    let calls = vec![
        Timed {
            at: ms(100),
            request: &apply,
        },
        Timed {
            at: ms(150),
            request: &event,
        },
    ];
    let applies = per_booking(&calls, "apply", 200);
    assert_eq!((applies[17], applies[170]), (ms(100), None));
    let events = per_booking(&calls, "calendar_event_create", 200);
    assert_eq!(events[170], ms(150));
    let mut later = vec![None; 200];
    later[17] = ms(130);
    assert_eq!(gaps(&applies, &later), vec![30.0]);
    let spread = Spread::of(vec![3.0, 1.0, 2.0]);
    assert_eq!((spread.samples, spread.p50, spread.max), (3, 2.0, 3.0));
}

fn lark_call_with_body(path: &str, body: &str) -> RecordedRequest {
    RecordedRequest {
        method: Method::POST,
        path: path.into(),
        query: String::new(),
        body: body.into(),
        status: 200,
        at: tokio::time::Instant::now(),
    }
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
        at: tokio::time::Instant::now(),
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
