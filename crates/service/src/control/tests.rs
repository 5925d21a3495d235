use super::*;

#[test]
fn requests_travel_as_one_json_object_each() {
    for (request, wire) in [
        (Request::Reconcile, r#"{"command":"reconcile"}"#),
        (Request::RefreshTokens, r#"{"command":"refresh-tokens"}"#),
        (
            Request::Disconnect {
                trainer: "ann@example.com".into(),
            },
            r#"{"command":"disconnect","trainer":"ann@example.com"}"#,
        ),
        (Request::Remind, r#"{"command":"remind"}"#),
    ] {
        assert_eq!(serde_json::to_string(&request).unwrap(), wire);
        assert_eq!(serde_json::from_str::<Request>(wire).unwrap(), request);
    }
}
