//! What an operator sees, through the real binary against simulators started here:
//! `/metrics` of a running `run` after a booking got its link (histograms, process
//! metrics, build info), `check --json`, and `reconcile` failing loudly when Salesforce
//! refuses a write-back.

use lvb_simulators::launch::Simulators;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Value};

use crate::helpers::{
    binary_config, cookie_pair, get, insert_booking, run_command, sample, server_section,
    start_run, wait_until, BOOKING,
};

/// Adds a trainer with a Lark account, who connects through the running binary's OAuth
/// routes as a browser would. Returns the trainer id.
async fn connect_through(url: &str, sims: &Simulators, name: &str, email: &str) -> String {
    sims.lark.add_user(email, name);
    let trainer = sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": name, "Email__c": email }),
        SF_HUMAN_USER_ID,
    );
    let start = get(&format!("{url}/oauth/lark/start?trainer={trainer}"), None).await;
    assert_eq!(start.status, 302, "start: {}", start.body);
    let cookie = cookie_pair(start.set_cookie.as_deref().expect("state cookie"));
    let mut authorize = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    authorize.query_pairs_mut().append_pair("sim_user", email);
    let approved = get(authorize.as_str(), None).await;
    assert_eq!(approved.status, 302, "authorize: {}", approved.body);
    let done = get(approved.location.as_deref().unwrap(), Some(&cookie)).await;
    assert_eq!(done.status, 200, "callback: {}", done.body);
    trainer
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_the_running_binary_show_histograms_after_a_booking_gets_its_link() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server_section();
    let config = binary_config(&sims, dir.path(), "ops.toml", "", &server);
    let _run = start_run(&config, &url).await;

    let trainer = connect_through(&url, &sims, "Mia", "mia@example.com").await;

    // A booking created in Salesforce reaches the binary as a change event.
    let booking = insert_booking(&sims.salesforce, &trainer, 24, 25, true);
    let metrics = || async {
        let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        (content_type, response.text().await.unwrap())
    };
    wait_until("the booking's latency is observed", || async {
        sample(&metrics().await.1, "lvb_booking_latency_seconds_count") == Some(1.0)
    })
    .await;
    let link = sims.salesforce.get(BOOKING, &booking).unwrap()["Remote_Training_Meeting_Link__c"]
        .as_str()
        .map(str::to_string);
    assert!(
        link.is_some_and(|l| l.starts_with("https://")),
        "the link is written"
    );

    let (content_type, text) = metrics().await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let latency = sample(&text, "lvb_booking_latency_seconds_sum").unwrap();
    assert!(
        latency > 0.0 && latency < 60.0,
        "commit → link took {latency} s"
    );
    assert_eq!(
        sample(
            &text,
            "lvb_lark_request_duration_seconds_count{operation=\"reserve_apply\"}"
        ),
        Some(1.0),
        "one apply, timed: {text}"
    );
    assert_eq!(
        sample(
            &text,
            "lvb_lark_request_duration_seconds_bucket{le=\"+Inf\",operation=\"reserve_apply\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for timed in [
        "lvb_lark_request_duration_seconds_count{operation=\"token_exchange\"}",
        "lvb_salesforce_request_duration_seconds_count{operation=\"login\"}",
        "lvb_salesforce_request_duration_seconds_count{operation=\"query\"}",
        "lvb_salesforce_request_duration_seconds_count{operation=\"composite_update\"}",
    ] {
        assert!(
            sample(&text, timed).is_some_and(|n| n >= 1.0),
            "{timed}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "lvb_meetings_total{action=\"created\"}"),
        Some(1.0)
    );
    // Rule 23: the one apply was recorded durably before it left, in one commit.
    assert_eq!(
        sample(&text, "lvb_store_intent_commits_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "lvb_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6));
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n >= 3.0));
    assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|s| s > 0.0));
    // The start time is `btime` (whole seconds since the epoch, from /proc/stat) plus
    // the process's start in clock ticks after boot: exact to a tick after boot, but the
    // boot instant itself is only known to the second. So it is compared with the wall
    // clock at the same (fractional) precision and allowed that one second: a process
    // scraped in its first second used to fail `started <= whole-second now`.
    let started = sample(&text, "process_start_time_seconds").unwrap();
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} vs {now}"
    );
    // Labels carry kinds, never ids.
    assert!(
        !text.contains(&booking) && !text.contains(&trainer),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_json_parses_and_keeps_the_exit_code() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&sims, dir.path(), "ops.toml", "", "");

    let out = run_command(&["check", "--json"], &config).await;
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["ok"], json!(true), "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in [
        "configuration valid",
        "Salesforce login",
        "fields of Training_Booking__c",
        "streaming subscription",
        "Lark app token",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    for c in checks {
        assert_eq!(c["ok"], json!(true), "{c}");
        assert!(c["detail"].is_string(), "{c}");
    }

    sims.salesforce
        .remove_field("Training_Booking__c", "Lark_Meeting_Status__c");
    let out = run_command(&["check", "--json"], &config).await;
    assert!(!out.status.success(), "a failed check still exits non-zero");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on failure too");
    assert_eq!(report["ok"], json!(false));
    let fields = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fields of Training_Booking__c")
        .expect("the fields check");
    assert_eq!(fields["ok"], json!(false));
    assert!(
        fields["detail"]
            .as_str()
            .unwrap()
            .contains("Training_Booking__c.Lark_Meeting_Status__c is missing"),
        "{fields}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_json_of_a_bad_configuration_names_keys_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[security]\nencryption_key = \"secret-not-a-key\"\n").unwrap();
    let out = run_command(&["check", "--json"], &path).await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["ok"], json!(false));
    assert_eq!(report["checks"][0]["name"], "configuration valid");
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("security.state_secret"),
        "{report:#}"
    );
    assert!(!stdout.contains("secret-not-a-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_exits_non_zero_and_names_a_write_back_salesforce_refused() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&sims, dir.path(), "ops.toml", "", "");
    // A trainer who has not connected: each booking's write-back is its pending status.
    let trainer = sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": "Noor", "Email__c": "noor@example.com" }),
        SF_HUMAN_USER_ID,
    );
    let refused = insert_booking(&sims.salesforce, &trainer, 24, 25, true);
    let fine = insert_booking(&sims.salesforce, &trainer, 48, 49, true);
    // A validation rule refuses writes to that one record. (The write-backs share one
    // collection call in the order the bookings finish, which is not fixed: refusing
    // "the first record of the call" named the other booking now and then.)
    sims.salesforce
        .set_validation_rule(&refused, Some("Bookings are locked for audit"));

    let out = run_command(&["reconcile"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("reconciled 2 bookings") && stdout.contains("1 write-backs refused"),
        "{stdout}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains(&refused))
        .unwrap_or_else(|| panic!("the refused booking is named:\n{stderr}"));
    assert!(
        line.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION")
            && line.contains("Bookings are locked for audit"),
        "{line}"
    );
    assert!(!stderr.contains(&fine), "only the refused one: {stderr}");
    assert_eq!(
        sims.salesforce.get(BOOKING, &fine).unwrap()["Lark_Meeting_Status__c"],
        json!("Pending Trainer Connection")
    );

    // Nothing refused any more: the next reconcile writes it and exits 0.
    sims.salesforce.set_validation_rule(&refused, None);
    let out = run_command(&["reconcile"], &config).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sims.salesforce.get(BOOKING, &refused).unwrap()["Lark_Meeting_Status__c"],
        json!("Pending Trainer Connection")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_exits_non_zero_and_names_the_trainer_whose_refresh_failed() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server_section();
    let config = binary_config(&sims, dir.path(), "ops.toml", "", &server);
    // Refresh tokens that live an hour: inside the 48 h window, so the pass refreshes them.
    sims.lark.set_token_lifetimes(7200, 3600);
    let run = start_run(&config, &url).await;
    let first = connect_through(&url, &sims, "Ola", "ola@example.com").await;
    let second = connect_through(&url, &sims, "Pia", "pia@example.com").await;
    drop(run);

    // Lark's token endpoint is down (every retry included).
    sims.lark.requests().clear();
    sims.lark.faults().inject(
        Some(axum::http::Method::POST),
        "/open-apis/authen/v2/oauth/token",
        100,
        500,
        r#"{"code":20050,"error":"server_error","error_description":"internal error"}"#,
        &[],
    );
    let out = run_command(&["refresh-tokens"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail:\n{stdout}\n{stderr}");
    assert!(stdout.contains("refreshed: 0  failed: 2"), "{stdout}");
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("failed: trainer "))
        .collect();
    assert_eq!(named.len(), 2, "{stderr}");
    for trainer in [&first, &second] {
        assert!(
            named.iter().any(|l| l.contains(trainer.as_str())),
            "{trainer} named: {stderr}"
        );
    }
    assert!(
        sims.lark
            .requests()
            .count_path("/open-apis/authen/v2/oauth/token")
            >= 2,
        "the refreshes were tried"
    );

    // Lark is back: the next pass refreshes both and exits 0.
    sims.lark.faults().clear();
    let out = run_command(&["refresh-tokens"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("refreshed: 2  failed: 0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_over_many_bookings_shows_progress_on_stderr() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&sims, dir.path(), "ops.toml", "", "");
    let trainer = sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": "Raj", "Email__c": "raj@example.com" }),
        SF_HUMAN_USER_ID,
    );
    for hours in 0..250 {
        insert_booking(&sims.salesforce, &trainer, 24 + hours, 25 + hours, true);
    }

    let out = run_command(&["reconcile"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("reconciled 250 bookings"), "{stdout}");
    for line in [
        "reconcile: 100 of 250 bookings done",
        "reconcile: 200 of 250 bookings done",
    ] {
        assert!(stderr.lines().any(|l| l == line), "{line:?} in:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_key_over_many_trainers_shows_progress_on_stderr() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old_key = "ef".repeat(32);
    let old = lark_vc_bridge::tokens::Vault::from_hex(&old_key, &[]).unwrap();
    // Trainers whose tokens an earlier key encrypted (as a connected trainer's are).
    for n in 0..150 {
        sims.salesforce.insert(
            "Onboarding_Trainer__c",
            json!({
                "Name": format!("Trainer {n}"),
                "Email__c": format!("t{n}@example.com"),
                "Lark_User_ID__c": format!("ou_{n}"),
                "Lark_Access_Token__c": old.encrypt(&format!("u-access-{n}")),
                "Lark_Refresh_Token__c": old.encrypt(&format!("ur-refresh-{n}")),
            }),
            SF_HUMAN_USER_ID,
        );
    }
    let config = binary_config(&sims, dir.path(), "ops.toml", "", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[security]\n",
        &format!("[security]\nprevious_keys = [\"{old_key}\"]\n"),
    );
    std::fs::write(&config, text).unwrap();

    let out = run_command(&["rotate-key"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("re-encrypted: 300"), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "rotate-key: 150 of 150 trainers written"),
        "{stderr}"
    );
    assert!(!stderr.contains("u-access-") && !stdout.contains("u-access-"));
}

/// `backup` while `run` holds the store (SQLite's locks included: nothing else can read the
/// file then) is made by the running service; with no service up, by the command itself.
/// Either way the copy is a store with the committed rows, private, and never written over;
/// a copy the target's disk refuses leaves nothing and does not pause the service.
/// `connect-link`, which needs no store, runs beside `run`.
#[tokio::test(flavor = "multi_thread")]
async fn backup_copies_the_store_through_the_running_service_and_alone_and_connect_link_runs_beside(
) {
    use std::os::unix::fs::PermissionsExt;
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server_section();
    let config = binary_config(&sims, dir.path(), "backup.toml", "", &server);
    let run = start_run(&config, &url).await;
    let trainer = connect_through(&url, &sims, "Bea", "bea@example.com").await;
    let booking = insert_booking(&sims.salesforce, &trainer, 24, 25, true);
    let link = || {
        sims.salesforce.get(BOOKING, &booking).unwrap()["Remote_Training_Meeting_Link__c"]
            .as_str()
            .map(str::to_string)
    };
    wait_until("the booking has its link", || async { link().is_some() }).await;

    let copy = dir.path().join("copy.db");
    let out = run_command(&["backup", copy.to_str().unwrap()], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backed up the store to"), "{stdout}");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the copy holds encrypted tokens");
    let journalled = |path: &std::path::Path| {
        lark_vc_bridge::store::Store::open(path)
            .unwrap()
            .reservation(&crate::helpers::bid(&booking))
            .unwrap()
            .map(|r| r.url)
    };
    assert_eq!(journalled(&copy), link(), "the copy has the reservation");

    // A copy the target's disk refuses fails alone: no partial file, and the service's
    // own store is not taken for unwritable (the pipeline does not pause).
    match crate::exactly_once::SmallDisk::mount(1024 * 1024) {
        Some(disk) => {
            disk.fill();
            let refused = disk.path().join("copy.db");
            let out = run_command(&["backup", refused.to_str().unwrap()], &config).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "a full disk takes no copy");
            assert!(stderr.contains("cannot back up"), "{stderr}");
            assert!(!refused.exists(), "no partial copy is left");
            // The processor checks the store before it takes each command in its turn:
            // after the second `reconcile`, a pause the refusal caused would have been
            // counted.
            for _ in 0..2 {
                let out = run_command(&["reconcile"], &config).await;
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap();
            let text = metrics.text().await.unwrap();
            assert_eq!(
                sample(&text, "lvb_store_pauses_total"),
                Some(0.0),
                "the pipeline never paused"
            );
        }
        None => eprintln!("SKIPPED the full-disk backup: this process may not mount a tmpfs"),
    }

    // `connect-link` reads Salesforce only: it runs beside `run` without touching the store.
    let link_out = run_command(&["connect-link", "bea@example.com"], &config).await;
    assert!(
        link_out.status.success(),
        "{}",
        String::from_utf8_lossy(&link_out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&link_out.stdout).contains(&trainer),
        "the trainer's connect link"
    );

    let again = run_command(&["backup", copy.to_str().unwrap()], &config).await;
    assert!(
        !again.status.success(),
        "an existing file is not written over"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");

    drop(run);
    let alone = dir.path().join("alone.db");
    let out = run_command(&["backup", alone.to_str().unwrap()], &config).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        journalled(&alone),
        link(),
        "the command alone copies it too"
    );
}
