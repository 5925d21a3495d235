use super::*;

#[test]
fn renders_counters_gauges_and_histograms() {
    let m = Metrics::default();
    m.inc(names::MEETINGS, &[("action", "created")]);
    m.inc(names::MEETINGS, &[("action", "created")]);
    m.set(names::STREAMING_LAG, &[], 1.5);
    m.observe(
        names::LARK_REQUEST_DURATION,
        &[("operation", "reserve_apply")],
        0.02,
    );
    let text = m.render();
    assert!(
        text.contains("lvb_meetings_total{action=\"created\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("lvb_streaming_lag_seconds 1.5\n"), "{text}");
    assert!(text.contains("lvb_events_received_total 0\n"), "{text}");
    assert!(
        text.contains(
            "lvb_lark_request_duration_seconds_bucket{le=\"0.025\",operation=\"reserve_apply\"} 1\n"
        ) || text.contains(
            "lvb_lark_request_duration_seconds_bucket{operation=\"reserve_apply\",le=\"0.025\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE lvb_booking_latency_seconds histogram\n")
            && text.contains("lvb_booking_latency_seconds_count 0\n"),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\n"),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "lvb_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(m.get(names::MEETINGS, &[("action", "created")]), 2);
}

#[test]
fn booking_latency_runs_from_the_earliest_commit_to_the_link() {
    let m = Metrics::default();
    let now = chrono::Utc::now();
    let (one, two) = (
        BookingId::parse("a01000000000001AAA").unwrap(),
        BookingId::parse("a01000000000002AAA").unwrap(),
    );
    m.change_committed(&one, now - chrono::Duration::seconds(2));
    m.change_committed(&one, now - chrono::Duration::seconds(1));
    m.change_committed(&two, now - chrono::Duration::seconds(1));
    m.link_written(&one);
    // Forgotten before its link: not measured.
    m.forget_changes(std::slice::from_ref(&two));
    m.link_written(&two);
    let text = m.render();
    assert!(
        text.contains("lvb_booking_latency_seconds_count 1\n"),
        "{text}"
    );
    assert!(
        text.contains("lvb_booking_latency_seconds_bucket{le=\"1.0\"} 0\n"),
        "2 s from the earlier commit: {text}"
    );
    assert!(
        text.contains("lvb_booking_latency_seconds_bucket{le=\"2.5\"} 1\n"),
        "{text}"
    );
}

#[test]
fn lark_event_metrics_show_from_the_start() {
    let m = Metrics::default();
    let text = m.render();
    assert!(text.contains("lvb_lark_events_connected 0.0\n"), "{text}");
    assert!(
        text.contains("lvb_lark_events_reconnects_total 0\n"),
        "{text}"
    );
    m.set(names::LARK_EVENTS_CONNECTED, &[], 1.0);
    m.inc(
        names::LARK_EVENTS,
        &[("type", "join_meeting"), ("outcome", "recorded")],
    );
    let text = m.render();
    assert!(text.contains("lvb_lark_events_connected 1.0\n"), "{text}");
    assert!(
        text.contains("lvb_lark_events_total{outcome=\"recorded\",type=\"join_meeting\"} 1\n"),
        "{text}"
    );
    assert_eq!(m.gauge(names::LARK_EVENTS_CONNECTED, &[]), 1.0);
}
