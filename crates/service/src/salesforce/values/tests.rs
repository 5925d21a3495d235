use serde_json::json;

use super::*;

/// Design §3 rule 17: dates and stored seconds from outside never panic.
#[test]
fn absurd_dates_and_seconds_are_refused_or_clamped() {
    for text in [
        "9999-12-31T23:59:59.000+0000",
        "0000-01-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "99999-01-01T00:00:00Z",
        "2026-11-26T25:00:00Z",
        "",
    ] {
        let parsed = parse_datetime(text);
        if let Some(t) = parsed {
            let _ = t + chrono::Duration::days(366);
        }
    }
    assert_eq!(parse_datetime("2026-02-30T10:00:00Z"), None);
}

#[test]
fn salesforce_datetimes_parse_both_ways() {
    let a = parse_datetime("2026-11-26T10:00:00.000+0000").unwrap();
    let b = parse_datetime("2026-11-26T10:00:00Z").unwrap();
    assert_eq!(a, b);
    assert_eq!(datetime_value(a), json!("2026-11-26T10:00:00.000Z"));
    assert!(parse_datetime("yesterday").is_none());
}

#[test]
fn long_messages_are_clipped_to_255_chars() {
    let m = clip(&"é".repeat(400));
    assert_eq!(m.chars().count(), 255);
    assert_eq!(clip("short"), "short");
}
