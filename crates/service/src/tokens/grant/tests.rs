use super::*;

#[test]
fn a_grant_lacks_the_calendar_unless_both_scopes_are_in_it() {
    assert!(lacks_calendar_scopes("vc:reserve offline_access"));
    assert!(lacks_calendar_scopes("vc:reserve calendar:calendar"));
    assert!(!lacks_calendar_scopes(
        "vc:reserve calendar:calendar:readonly offline_access calendar:calendar"
    ));
}

#[test]
fn lifetimes_from_lark_are_clamped_never_overflowed() {
    let now = Utc::now();
    let cap = chrono::Duration::seconds(MAX_TOKEN_LIFETIME_SECS);
    assert_eq!(
        expiry(now, 7200, "expires_in"),
        now + chrono::Duration::seconds(7200)
    );
    assert_eq!(expiry(now, i64::MAX, "expires_in"), now + cap);
    assert_eq!(expiry(now, -5, "expires_in"), now);
    assert_eq!(expiry(now, i64::MIN, "refresh_token_expires_in"), now);
}
