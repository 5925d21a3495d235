//! The binary as a user runs it: `demo --json` ends in the expected state, and `check`
//! passes against the simulators when everything is in place and names what is missing.

use std::process::Command;

use lvb_simulators::launch::Simulators;
use serde_json::Value;

use crate::helpers::{binary_config, BIN};

#[test]
fn demo_json_reports_the_final_state() {
    let out = Command::new(BIN)
        .args(["demo", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], Value::Bool(true));
    let bookings = report["bookings"].as_array().unwrap();
    assert_eq!(bookings.len(), 4);
    assert_eq!(bookings[0]["status"], "Created");
    assert!(bookings[0]["link"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert_eq!(bookings[1]["status"], "Cancelled");
    assert!(bookings[1]["link"].is_null());
    // Rule 20 through the real binary: the live booking shows its calendar event, the
    // cancelled one no longer does.
    assert!(
        bookings[0]["calendar_event_id"].is_string(),
        "{}",
        bookings[0]
    );
    assert!(
        bookings[1]["calendar_event_id"].is_null(),
        "{}",
        bookings[1]
    );
    // Rules 29 and 30 through the real binary: the session that took place shows its
    // attendance; the one whose trainer never showed is in progress (the merchant waits).
    let session = &bookings[2];
    assert_eq!(session["session_status"], "Completed", "{session}");
    assert_eq!(session["participants"].as_f64(), Some(2.0), "{session}");
    assert_eq!(session["guest_joined"], Value::Bool(true), "{session}");
    assert!(session["recording_url"].is_string(), "{session}");
    assert!(session["trainer_joined_at"].is_string(), "{session}");
    assert_eq!(
        bookings[3]["session_status"], "In Progress",
        "{}",
        bookings[3]
    );
    assert!(
        bookings[3]["trainer_joined_at"].is_null(),
        "{}",
        bookings[3]
    );
    for t in report["trainers"].as_array().unwrap() {
        assert_eq!(t["connected"], Value::Bool(true), "{t}");
    }
    let lark = &report["lark_calls"];
    assert_eq!(lark["apply"], 4, "one reservation per booking: {lark}");
    assert_eq!(lark["update"], 1, "one PUT for the reschedule: {lark}");
    assert_eq!(lark["delete"], 1, "one DELETE for the cancellation: {lark}");
    assert_eq!(
        lark["messages"], 3,
        "one reminder to the trainer who had not connected, then the no-show message to \
         the trainer and the admins' alert: {lark}"
    );
    assert_eq!(
        lark["calendar"], 10,
        "per trainer one primary-calendar lookup, one create and one invitation, then one \
         patch for the reschedule and one delete for the cancellation; one create for each \
         session of the attendance part (no guest email on those): {lark}"
    );
    assert_eq!(
        lark["meetings"], 3,
        "the participants call after the session's end, and the no-show check's \
         list_by_no and one meeting's participants: {lark}"
    );
    assert!(report["steps"].as_array().unwrap().len() >= 10);
}

/// A config file pointing at running simulators, with fresh keys.
fn config_for(sims: &Simulators, dir: &std::path::Path) -> std::path::PathBuf {
    binary_config(sims, dir, "check.toml", "", "")
}

fn run_check(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .output()
        .expect("check runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_when_everything_is_in_place_and_names_a_missing_field() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&sims, dir.path());

    let (ok, out) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || run_check(&c)
    })
    .await
    .unwrap();
    assert!(ok, "check failed:\n{out}");
    for line in [
        "✓ configuration valid",
        "✓ Salesforce login",
        "✓ integration user",
        "✓ fields of Training_Booking__c",
        "✓ fields of Onboarding_Trainer__c",
        "✓ streaming subscription",
        "✓ Lark app token",
        "✓ calendar scopes",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains('✗'), "{out}");
    let scopes = out.lines().find(|l| l.contains("calendar scopes")).unwrap();
    assert!(
        scopes.contains("calendar:calendar, calendar:calendar:readonly"),
        "names the scopes the Lark app needs: {scopes}"
    );

    sims.salesforce
        .remove_field("Training_Booking__c", "Lark_Meeting_Status__c");
    sims.salesforce
        .remove_field("Training_Booking__c", "Lark_Calendar_Event_Id__c");
    let (ok, out) = tokio::task::spawn_blocking(move || run_check(&config))
        .await
        .unwrap();
    assert!(!ok, "check must fail:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("✗ fields of Training_Booking__c"))
        .unwrap_or_else(|| panic!("no ✗ line for the booking fields:\n{out}"));
    assert!(
        line.contains("Training_Booking__c.Lark_Meeting_Status__c is missing"),
        "{line}"
    );
    assert!(
        line.contains("Training_Booking__c.Lark_Calendar_Event_Id__c is missing"),
        "the calendar's event field is checked: {line}"
    );
    assert!(
        line.contains("deploy salesforce-metadata/"),
        "says how to fix it: {line}"
    );
}

#[test]
fn check_names_every_missing_key_without_echoing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[security]\nencryption_key = \"not-a-key-but-secret\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("LVB__SECURITY__ENCRYPTION_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("✗ configuration valid"), "{stdout}");
    for key in [
        "lark.app_id",
        "salesforce.client_id",
        "security.state_secret",
        "security.encryption_key must be 64 hex",
    ] {
        assert!(stdout.contains(key), "{key} not named: {stdout}");
    }
    assert!(!stdout.contains("not-a-key-but-secret"));
}

/// `check` logs in with each flow the configuration names, carrying that flow's own
/// credentials (issue 10 item 5): the simulator sees one token request per run, of the
/// flow's grant type.
#[tokio::test(flavor = "multi_thread")]
async fn check_logs_in_with_the_password_and_jwt_flows() {
    use lvb_simulators::salesforce::{SF_PASSWORD, SF_USERNAME, TEST_JWT_PRIVATE_KEY_PATH};
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(config_for(&sims, dir.path())).unwrap();
    let flows = [
        (
            "password",
            format!("auth = \"password\"\nusername = \"{SF_USERNAME}\"\npassword = \"{SF_PASSWORD}\"\n"),
            "grant_type=password",
        ),
        (
            "jwt_bearer",
            format!(
                "auth = \"jwt_bearer\"\nusername = \"{SF_USERNAME}\"\nprivate_key_path = \"{TEST_JWT_PRIVATE_KEY_PATH}\"\n"
            ),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        ),
    ];
    for (flow, keys, grant) in flows {
        // The flow's keys go at the end of the [salesforce] table the snippet opens.
        let text = base.replacen("[salesforce]\n", &format!("[salesforce]\n{keys}"), 1);
        assert_ne!(text, base, "the snippet has a [salesforce] table");
        let config = dir.path().join(format!("{flow}.toml"));
        std::fs::write(&config, text).unwrap();
        let before = sims
            .salesforce
            .requests()
            .matching(|r| r.path == "/services/oauth2/token")
            .len();
        let (ok, out) = tokio::task::spawn_blocking(move || run_check(&config))
            .await
            .unwrap();
        assert!(ok, "check with auth = {flow} failed:\n{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("✓ Salesforce login"))
            .unwrap_or_else(|| panic!("no login line:\n{out}"));
        let expected = if flow == "password" {
            "Password"
        } else {
            "JwtBearer"
        };
        assert!(line.ends_with(&format!("via {expected}")), "{line}");
        let tokens = sims
            .salesforce
            .requests()
            .matching(|r| r.path == "/services/oauth2/token");
        assert_eq!(tokens.len(), before + 1, "one login per check with {flow}");
        let form = &tokens[before].body;
        assert!(form.contains(grant), "{flow}: {form}");
        assert!(!out.contains(SF_PASSWORD), "the password is never printed");
    }
}

#[test]
fn check_names_each_credential_the_chosen_flow_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt.toml");
    std::fs::write(
        &path,
        "[server]\nbind = \"not-an-address\"\n[salesforce]\nauth = \"jwt_bearer\"\nclient_id = \"cid\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("LVB__SALESFORCE__USERNAME")
        .env_remove("LVB__SALESFORCE__PRIVATE_KEY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for key in [
        "salesforce.username is missing (needed by auth = jwt_bearer)",
        "salesforce.private_key_path is missing (needed by auth = jwt_bearer)",
        "server.bind must be an address like 127.0.0.1:8080",
    ] {
        assert!(stdout.contains(key), "{key} not named: {stdout}");
    }
    assert!(
        !stdout.contains("salesforce.client_secret"),
        "jwt_bearer needs no client secret: {stdout}"
    );
}

/// `check` with `alerts.lark_chat_id` (rule 22) asks Lark whether the bot is in the chat,
/// read-only: a chat the bot is in passes, one it was removed from fails with the fix,
/// an id that names no chat fails naming the key — and nothing is ever posted.
#[tokio::test(flavor = "multi_thread")]
async fn check_says_whether_the_bot_can_post_to_the_alerts_chat() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&sims, dir.path());
    let base = std::fs::read_to_string(&config).unwrap();
    let chat = sims.lark.create_chat("Training admins");
    let with_chat = |chat: &str| {
        let path = dir.path().join(format!("{chat}.toml"));
        std::fs::write(
            &path,
            format!("{base}\n[alerts]\nlark_chat_id = \"{chat}\"\n"),
        )
        .unwrap();
        path
    };
    let line_of = |out: &str| {
        out.lines()
            .find(|l| l.contains("admin alerts chat"))
            .unwrap_or_else(|| panic!("no alerts line in:\n{out}"))
            .to_string()
    };

    let ok_config = with_chat(&chat);
    let (ok, out) = tokio::task::spawn_blocking(move || run_check(&ok_config))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(line_of(&out).starts_with('✓'), "{out}");

    sims.lark.remove_bot_from_chat(&chat);
    let removed = with_chat(&chat);
    let (ok, out) = tokio::task::spawn_blocking(move || run_check(&removed))
        .await
        .unwrap();
    assert!(!ok, "{out}");
    let line = line_of(&out);
    assert!(
        line.starts_with('✗') && line.contains("not a member") && line.contains("add the bot"),
        "{line}"
    );

    let unknown = with_chat("oc_0000000000000000");
    let (ok, out) = tokio::task::spawn_blocking(move || run_check(&unknown))
        .await
        .unwrap();
    assert!(!ok, "{out}");
    let line = line_of(&out);
    assert!(
        line.starts_with('✗') && line.contains("alerts.lark_chat_id"),
        "{line}"
    );
    assert!(
        sims.lark.chat_messages(&chat).is_empty(),
        "check posts nothing"
    );

    // Without the key there is no such line.
    let (_, out) = tokio::task::spawn_blocking(move || run_check(&config))
        .await
        .unwrap();
    assert!(!out.contains("admin alerts chat"), "{out}");
}
