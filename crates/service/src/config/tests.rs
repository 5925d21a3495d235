use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn valid_env() -> Vec<(String, String)> {
    env(&[
        ("LVB__SALESFORCE__CLIENT_ID", "cid"),
        ("LVB__SALESFORCE__CLIENT_SECRET", "csecret-value"),
        ("LVB__LARK__APP_ID", "cli_app"),
        ("LVB__LARK__APP_SECRET", "lark-secret-value"),
        ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
        ("LVB__SECURITY__STATE_SECRET", &"s".repeat(40)),
    ])
}

#[test]
fn defaults_plus_secrets_from_env_load() {
    let s = Settings::load_from(None, valid_env()).expect("valid");
    assert_eq!(s.server.bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        s.salesforce.streaming.channel,
        "/data/Training_Booking__ChangeEvent"
    );
    assert_eq!(
        s.salesforce.booking.remote_values,
        vec!["Remote".to_string()]
    );
    assert_eq!(s.refresh.interval, Duration::from_secs(15 * 60));
    assert_eq!(
        s.refresh.refresh_token_window,
        Duration::from_secs(48 * 3600)
    );
    assert_eq!(s.processing.concurrency, 16);
    assert_eq!(s.processing.max_attempts, 8);
    assert_eq!(s.processing.retry_max_delay, Duration::from_secs(15 * 60));
    assert_eq!(s.processing.max_in_doubt_applies, 2);
    assert_eq!(s.processing.in_doubt_delay, Duration::from_secs(60));
    assert_eq!(
        s.server.redirect_uri(),
        "http://localhost:8080/oauth/lark/callback"
    );
    assert_eq!(s.lark.oauth_version, OAuthVersion::V2);
}

#[test]
fn env_overrides_nested_keys_and_lists() {
    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__SALESFORCE__BOOKING__REMOTE_VALUES", "Remote, Virtual"),
        ("LVB__PROCESSING__CONCURRENCY", "4"),
        ("LVB__LARK__NOTIFY_TRAINERS", "false"),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert_eq!(
        s.salesforce.booking.remote_values,
        vec!["Remote", "Virtual"]
    );
    assert_eq!(s.processing.concurrency, 4);
    assert!(!s.lark.notify_trainers);
}

#[test]
fn file_layer_sits_between_defaults_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\npublic_url = \"https://bridge.example.com\"\n[processing]\nconcurrency = 3\n",
    )
    .unwrap();
    let mut e = valid_env();
    e.push(("LVB__PROCESSING__CONCURRENCY".into(), "5".into()));
    let s = Settings::load_from(Some(&path), e).expect("valid");
    assert_eq!(
        s.server.redirect_uri(),
        "https://bridge.example.com/oauth/lark/callback"
    );
    assert_eq!(s.processing.concurrency, 5);
}

#[test]
fn every_problem_is_named_in_one_error_without_echoing_secrets() {
    let e = env(&[
        (
            "LVB__SECURITY__ENCRYPTION_KEY",
            "not-hex-super-secret-value",
        ),
        ("LVB__SECURITY__STATE_SECRET", "short-secret"),
        ("LVB__REFRESH__INTERVAL", "soon"),
    ]);
    let err = Settings::load_from(None, e).unwrap_err();
    let text = err.to_string();
    for key in [
        "salesforce.client_id",
        "salesforce.client_secret",
        "lark.app_id",
        "lark.app_secret",
        "security.encryption_key must be 64 hex characters",
        "security.state_secret must be at least 32 bytes",
        "refresh.interval",
    ] {
        assert!(text.contains(key), "{key} not named in: {text}");
    }
    assert!(!text.contains("not-hex-super-secret-value"));
    assert!(!text.contains("short-secret"));
}

#[test]
fn jwt_flow_needs_username_and_key_file() {
    let mut e = valid_env();
    e.push(("LVB__SALESFORCE__AUTH".into(), "jwt_bearer".into()));
    let text = Settings::load_from(None, e).unwrap_err().to_string();
    assert!(text.contains("salesforce.username is missing"));
    assert!(text.contains("salesforce.private_key_path is missing"));
}

#[test]
fn template_placeholders_are_found() {
    assert_eq!(
        template_fields("Remote Training: {Merchant_Name__c} ({Name})"),
        vec!["Merchant_Name__c", "Name"]
    );
    assert!(template_fields("no fields").is_empty());
}

#[test]
fn each_flow_carries_its_own_credentials() {
    let s = Settings::load_from(None, valid_env()).expect("valid");
    let SalesforceAuth::ClientCredentials {
        client_id,
        client_secret,
    } = &s.salesforce.auth
    else {
        panic!(
            "client credentials by default: {:?}",
            s.salesforce.auth.flow()
        );
    };
    assert_eq!(client_id, "cid");
    assert_eq!(client_secret.expose_secret(), "csecret-value");

    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__SALESFORCE__AUTH", "password"),
        ("LVB__SALESFORCE__USERNAME", "integration@example.com"),
        ("LVB__SALESFORCE__PASSWORD", "pw-and-token"),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert_eq!(s.salesforce.auth.flow(), SalesforceAuthFlow::Password);
    assert!(matches!(
        &s.salesforce.auth,
        SalesforceAuth::Password { username, password, .. }
            if username == "integration@example.com" && password.expose_secret() == "pw-and-token"
    ));

    let key = tempfile::NamedTempFile::new().unwrap();
    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__SALESFORCE__AUTH", "jwt_bearer"),
        ("LVB__SALESFORCE__USERNAME", "integration@example.com"),
        (
            "LVB__SALESFORCE__PRIVATE_KEY_PATH",
            key.path().to_str().unwrap(),
        ),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert!(matches!(
        &s.salesforce.auth,
        SalesforceAuth::JwtBearer { client_id, private_key_path, .. }
            if client_id == "cid" && private_key_path == key.path()
    ));
}

#[test]
fn password_flow_names_each_missing_credential() {
    let mut e = env(&[
        ("LVB__SALESFORCE__CLIENT_ID", "cid"),
        ("LVB__SALESFORCE__AUTH", "password"),
    ]);
    e.extend(valid_env().into_iter().skip(2));
    let text = Settings::load_from(None, e).unwrap_err().to_string();
    for key in [
        "salesforce.client_secret is missing (needed by auth = password)",
        "salesforce.username is missing (needed by auth = password)",
        "salesforce.password is missing (needed by auth = password)",
    ] {
        assert!(text.contains(key), "{key} not named in: {text}");
    }
}

#[test]
fn bind_and_keys_are_parsed_once_into_types() {
    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__SERVER__BIND", "0.0.0.0:9090"),
        (
            "LVB__SECURITY__PREVIOUS_KEYS",
            &format!("{}, {}", "cd".repeat(32), "ef".repeat(32)),
        ),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert_eq!(
        s.server.bind,
        std::net::SocketAddr::from(([0, 0, 0, 0], 9090))
    );
    assert_eq!(s.security.encryption_key.expose_bytes(), &[0xab; 32]);
    let previous: Vec<[u8; 32]> = s
        .security
        .previous_keys
        .iter()
        .map(|k| *k.expose_bytes())
        .collect();
    assert_eq!(previous, vec![[0xcd; 32], [0xef; 32]]);

    let mut e = valid_env();
    e.push(("LVB__SERVER__BIND".into(), "localhost".into()));
    let text = Settings::load_from(None, e).unwrap_err().to_string();
    assert!(text.contains("server.bind must be an address"), "{text}");
}

#[test]
fn encryption_keys_are_redacted_in_debug() {
    let s = Settings::load_from(None, valid_env()).expect("valid");
    let text = format!("{:?}", s.security);
    assert!(text.contains("EncryptionKey([REDACTED])"), "{text}");
    assert!(!text.to_lowercase().contains(&"ab".repeat(32)), "{text}");
    assert!(!text.contains("171, 171"), "no byte list either: {text}");
    assert!(EncryptionKey::from_hex(&"ab".repeat(31)).is_none());
    assert!(EncryptionKey::from_hex(&"zz".repeat(32)).is_none());
}

#[test]
fn calendar_meetings_and_alerts_keys_load_and_are_checked() {
    let s = Settings::load_from(None, valid_env()).expect("valid");
    assert!(s.calendar.enabled);
    assert_eq!(s.calendar.timezone, "UTC");
    assert_eq!(s.calendar.reminder_minutes, 15);
    assert_eq!(s.calendar.description_fields(), vec!["Merchant_Name__c"]);
    assert_eq!(s.meetings.unconnected, Unconnected::Pending);
    assert!(!s.meetings.auto_record);
    assert_eq!(s.alerts.lark_chat_id, None);
    assert_eq!(s.alerts.pending_horizon, Duration::from_secs(48 * 3600));
    assert_eq!(s.salesforce.booking.attendee_email_field, None);
    assert!(s.required_scopes().contains(&"calendar:calendar:readonly"));

    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__CALENDAR__ENABLED", "false"),
        ("LVB__MEETINGS__UNCONNECTED", "app_hosted"),
        ("LVB__MEETINGS__AUTO_RECORD", "true"),
        (
            "LVB__ALERTS__LARK_CHAT_ID",
            "oc_a0553eda9014c201e6969b478895c230",
        ),
        (
            "LVB__SALESFORCE__BOOKING__ATTENDEE_EMAIL_FIELD",
            "Merchant_Email__c",
        ),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert_eq!(s.meetings.unconnected, Unconnected::AppHosted);
    assert!(s.meetings.auto_record);
    assert!(!s
        .required_scopes()
        .iter()
        .any(|x| x.starts_with("calendar")));
    assert!(!s
        .requested_scopes()
        .iter()
        .any(|x| x.starts_with("calendar")));
    assert_eq!(
        s.salesforce.booking.attendee_email_field.as_deref(),
        Some("Merchant_Email__c")
    );

    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__CALENDAR__TIMEZONE", "+08:00"),
        ("LVB__CALENDAR__REMINDER_MINUTES", "99999"),
        ("LVB__MEETINGS__UNCONNECTED", "app"),
        ("LVB__ALERTS__LARK_CHAT_ID", "general"),
        ("LVB__ALERTS__PENDING_HORIZON", "soon"),
    ]));
    let problems = Settings::load_from(None, e).unwrap_err().problems;
    for key in [
        "calendar.timezone",
        "calendar.reminder_minutes",
        "meetings.unconnected",
        "alerts.lark_chat_id",
        "alerts.pending_horizon",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key} not named in {problems:?}"
        );
    }
}

#[test]
fn events_attendance_and_no_show_keys_load_with_their_defaults() {
    let s = Settings::load_from(None, valid_env()).expect("valid");
    assert_eq!(s.lark.events, LarkEvents::LongConnection);
    assert!(s.attendance.enabled);
    assert_eq!(s.attendance.grace, Duration::from_secs(3600));
    assert_eq!(s.alerts.no_show_after, Some(Duration::from_secs(600)));
    assert_eq!(
        s.salesforce.booking.session_status_field,
        "Lark_Session_Status__c"
    );
    assert!(s.notes.is_empty(), "{:?}", s.notes);

    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__ATTENDANCE__GRACE", "30m"),
        ("LVB__ALERTS__NO_SHOW_AFTER", "0s"),
        ("LVB__ATTENDANCE__ENABLED", "false"),
    ]));
    let s = Settings::load_from(None, e).expect("valid");
    assert_eq!(s.attendance.grace, Duration::from_secs(1800));
    assert_eq!(s.alerts.no_show_after, None, "0s turns the alert off");
    assert!(!s.attendance.enabled);
}

#[test]
fn attendance_without_events_is_allowed_with_a_note_and_no_show_is_off() {
    let mut e = valid_env();
    e.push(("LVB__LARK__EVENTS".into(), "off".into()));
    let s = Settings::load_from(None, e).expect("attendance without events is valid");
    assert_eq!(s.lark.events, LarkEvents::Off);
    assert!(s.attendance.enabled, "the sweep still fills attendance");
    assert_eq!(
        s.alerts.no_show_after, None,
        "without join events every host would look absent"
    );
    assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("sweep alone, 1h after"),
        "{:?}",
        s.notes
    );
    assert!(s.notes[1].contains("alerts.no_show_after"), "{:?}", s.notes);

    // Nothing to say when neither feature is asked for.
    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__LARK__EVENTS", "off"),
        ("LVB__ATTENDANCE__ENABLED", "false"),
        ("LVB__ALERTS__NO_SHOW_AFTER", "0s"),
    ]));
    assert!(Settings::load_from(None, e)
        .expect("valid")
        .notes
        .is_empty());
}

#[test]
fn events_attendance_and_no_show_values_are_checked() {
    let mut e = valid_env();
    e.extend(env(&[
        ("LVB__LARK__EVENTS", "webhook"),
        ("LVB__ATTENDANCE__ENABLED", "maybe"),
        ("LVB__ATTENDANCE__GRACE", "0s"),
        ("LVB__ALERTS__NO_SHOW_AFTER", "ten minutes"),
        (
            "LVB__SALESFORCE__BOOKING__SESSION_STATUS_FIELD",
            "Session Status",
        ),
    ]));
    let problems = Settings::load_from(None, e).unwrap_err().problems;
    for key in [
        "lark.events must be long_connection or off",
        "attendance.enabled must be true or false",
        "attendance.grace must be a positive duration",
        "alerts.no_show_after must be a duration",
        "salesforce.booking.session_status_field must be a Salesforce API name",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key} not named in {problems:?}"
        );
    }
}

#[test]
fn attendance_fields_are_output_fields() {
    let mut e = valid_env();
    e.push((
        "LVB__SALESFORCE__BOOKING__SESSION_STATUS_FIELD".into(),
        "Session_State__c".into(),
    ));
    let s = Settings::load_from(None, e).expect("valid");
    let booking = &s.salesforce.booking;
    assert_eq!(
        booking.attendance_fields(),
        [
            "Session_State__c",
            "Lark_Session_Started_At__c",
            "Lark_Session_Ended_At__c",
            "Lark_Trainer_Joined_At__c",
            "Lark_Participants__c",
            "Lark_Guest_Joined__c",
            "Lark_Recording_Url__c",
        ]
    );
    let outputs = booking.output_fields();
    for field in booking.attendance_fields() {
        assert!(outputs.contains(&field), "{field} is not an output field");
    }
    assert!(outputs.contains(&"Remote_Training_Meeting_Link__c"));
    assert!(!outputs.contains(&booking.start_field.as_str()));
}
