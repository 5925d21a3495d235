use super::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Coded {
    #[serde(default, deserialize_with = "lenient_i64")]
    code: Option<i64>,
}

#[test]
fn code_parses_from_number_string_or_absence() {
    let n: Coded = serde_json::from_str(r#"{"code": 20037}"#).unwrap();
    let s: Coded = serde_json::from_str(r#"{"code": "20037"}"#).unwrap();
    let zero: Coded = serde_json::from_str(r#"{"code": "0"}"#).unwrap();
    let none: Coded = serde_json::from_str(r#"{}"#).unwrap();
    let null: Coded = serde_json::from_str(r#"{"code": null}"#).unwrap();
    assert_eq!(n.code, Some(20037));
    assert_eq!(s.code, Some(20037));
    assert_eq!(zero.code, Some(0));
    assert_eq!(none.code, None);
    assert_eq!(null.code, None);
    assert!(serde_json::from_str::<Coded>(r#"{"code": "abc"}"#).is_err());
}

#[test]
fn code_parses_from_whole_floats_and_padded_or_empty_strings_only() {
    let code = |json: &str| serde_json::from_str::<Coded>(json).map(|c| c.code);
    assert_eq!(code(r#"{"code": 7200.0}"#).unwrap(), Some(7200));
    assert_eq!(code(r#"{"code": " 7200 "}"#).unwrap(), Some(7200));
    assert_eq!(code(r#"{"code": ""}"#).unwrap(), None);
    assert_eq!(code(r#"{"code": -1}"#).unwrap(), Some(-1));
    assert!(code(r#"{"code": 1.5}"#).is_err());
    assert!(code(r#"{"code": 18446744073709551615}"#).is_err());
    assert!(code(r#"{"code": true}"#).is_err());
    assert!(code(r#"{"code": [1]}"#).is_err());
}

#[test]
fn grant_codes_map_to_failures_only_on_grant_endpoints() {
    let kind = |code| match classify(ErrorContext::Grant, 400, Some(code), "x".into(), None, None) {
        LarkError::InvalidGrant { kind, .. } => Some(kind),
        _ => None,
    };
    assert_eq!(kind(20026), Some(GrantFailure::Invalid));
    assert_eq!(kind(20037), Some(GrantFailure::Expired));
    assert_eq!(kind(20064), Some(GrantFailure::Revoked));
    assert_eq!(kind(20073), Some(GrantFailure::AlreadyUsed));
    assert_eq!(kind(20003), Some(GrantFailure::CodeInvalid));
    assert_eq!(kind(20049), Some(GrantFailure::CodeInvalid));
    assert_eq!(kind(20050), None);
    assert!(matches!(
        classify(
            ErrorContext::Grant,
            500,
            Some(20050),
            "x".into(),
            None,
            None
        ),
        LarkError::Retryable { code: 20050, .. }
    ));
    assert!(matches!(
        classify(
            ErrorContext::Grant,
            400,
            Some(20002),
            "x".into(),
            None,
            None
        ),
        LarkError::PermissionDenied { code: 20002, .. }
    ));
    // The same number from a non-token endpoint is not a grant failure.
    assert!(matches!(
        classify(ErrorContext::Api, 400, Some(20026), "x".into(), None, None),
        LarkError::InvalidParams { .. }
    ));
}

#[test]
fn api_codes_map_to_variants_and_retry_hints() {
    let c = |status, code| {
        classify(
            ErrorContext::Api,
            status,
            Some(code),
            "m".into(),
            None,
            None,
        )
    };
    assert!(matches!(c(404, 121004), LarkError::NotFound { .. }));
    assert!(matches!(c(403, 121005), LarkError::PermissionDenied { .. }));
    assert!(matches!(c(400, 121003), LarkError::InvalidParams { .. }));
    assert!(matches!(
        c(401, 99991677),
        LarkError::UserTokenInvalid { code: 99991677 }
    ));
    assert!(matches!(c(500, 121001), LarkError::Retryable { .. }));
    assert!(matches!(
        c(502, 12345),
        LarkError::Server { status: 502, .. }
    ));
    let limited = classify(
        ErrorContext::Api,
        400,
        Some(99991400),
        "request trigger frequency limit".into(),
        None,
        Some(Duration::from_secs(7)),
    );
    assert_eq!(
        limited.retry_hint(),
        RetryHint::After(Duration::from_secs(7))
    );
    assert_eq!(c(500, 121001).retry_hint(), RetryHint::Backoff);
    // Calendar codes.
    assert!(matches!(c(404, 191000), LarkError::NotFound { .. }));
    assert!(matches!(c(404, 193001), LarkError::NotFound { .. }));
    assert!(matches!(c(403, 193003), LarkError::NotFound { .. }));
    assert!(matches!(c(403, 191002), LarkError::PermissionDenied { .. }));
    assert!(matches!(c(403, 193002), LarkError::PermissionDenied { .. }));
    assert!(matches!(c(400, 190002), LarkError::InvalidParams { .. }));
    assert!(matches!(c(500, 190003), LarkError::Retryable { .. }));
    // A calendar rate limit is waited out even when it arrives without HTTP 429.
    assert!(matches!(c(400, 190005), LarkError::RateLimited { .. }));
    assert!(matches!(c(400, 230002), LarkError::PermissionDenied { .. }));
    assert_eq!(c(400, 121003).retry_hint(), RetryHint::Never);
    assert_eq!(LarkError::Timeout.retry_hint(), RetryHint::Backoff);
}

#[test]
fn rate_limit_resets_are_capped_and_never_panic() {
    assert_eq!(rate_limit_reset("3"), Some(Duration::from_secs(3)));
    assert_eq!(rate_limit_reset(" 0.5 "), Some(Duration::from_millis(500)));
    assert_eq!(rate_limit_reset("36000"), Some(MAX_RATE_LIMIT_WAIT));
    assert_eq!(rate_limit_reset("1e300"), Some(MAX_RATE_LIMIT_WAIT));
    for bad in ["", "soon", "-1", "NaN", "inf"] {
        assert_eq!(rate_limit_reset(bad), None, "{bad:?}");
    }
}

#[test]
fn long_bodies_are_truncated() {
    let long = "é".repeat(1000);
    let cut = truncate(&long);
    assert!(cut.len() <= MAX_ERROR_BODY + '…'.len_utf8());
    assert!(cut.ends_with('…'));
}
