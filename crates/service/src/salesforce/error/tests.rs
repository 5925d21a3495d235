use super::*;

#[test]
fn rest_errors_are_classified_by_status_and_code() {
    let e = SalesforceError::from_rest_response(
        400,
        br#"[{"message":"unexpected token: FRM","errorCode":"MALFORMED_QUERY"}]"#,
    );
    assert_eq!(
        e,
        SalesforceError::BadRequest {
            error_code: "MALFORMED_QUERY".into(),
            message: "unexpected token: FRM".into()
        }
    );
    assert_eq!(e.retry_hint(), RetryHint::Never);

    let e = SalesforceError::from_rest_response(
        403,
        br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
    );
    assert_eq!(e, SalesforceError::RequestLimitExceeded);
    assert_eq!(e.retry_hint(), RetryHint::Never);

    let e = SalesforceError::from_rest_response(503, b"<html>down</html>");
    assert!(matches!(e, SalesforceError::Server { status: 503, .. }));
    assert_eq!(e.retry_hint(), RetryHint::Backoff);

    let e = SalesforceError::from_rest_response(418, b"teapot");
    assert_eq!(
        e,
        SalesforceError::Unexpected {
            status: 418,
            body: "teapot".into()
        }
    );
    assert!(matches!(
        SalesforceError::from_rest_response(
            404,
            br#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#
        ),
        SalesforceError::NotFound { .. }
    ));
}

#[test]
fn long_bodies_are_truncated() {
    let body = "x".repeat(10_000);
    match SalesforceError::from_rest_response(500, body.as_bytes()) {
        SalesforceError::Server { body, .. } => {
            assert!(body.chars().count() <= MAX_ERROR_BODY + 1)
        }
        other => panic!("{other:?}"),
    }
}
