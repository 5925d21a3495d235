//! Admin alerts (design §3 rule 22), the `remind` command (§2.1) and the sweep's success
//! gauges, through the simulators: alerts land in a Lark group chat made with the
//! simulator's `create_chat` and are read back with `chat_messages`. Each subject is
//! alerted at most once a day, across a restart on the same store; a post Lark refuses
//! is not remembered, so the next sweep posts it. `remind` runs as the real binary, once
//! on its own and once delegated to a running `run`.

use std::process::Output;

use axum::http::Method;
use lark_vc_bridge::config::Settings;
use lvb_simulators::lark::{LarkSim, DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS};
use lvb_simulators::launch::Simulators;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Value};

use crate::helpers::tid;
use crate::helpers::{
    binary_config, capture_logs, connected_trainer, create_booking, edit_booking, field,
    insert_booking, metric, run_command, sf_time_in, sim_settings, start_app, start_run,
    wait_caught_up, wait_for_status, wait_ready, wait_until, TestApp, BOOKING,
};
use lark_vc_bridge::bookings::reconcile;
use lark_vc_bridge::tokens::refresh_pass;

const MESSAGES_PATH: &str = "/open-apis/im/v1/messages";
/// Issued refresh tokens expire inside the 48 h refresh window: the timer picks them.
const REFRESH_SOON_SECS: i64 = 3600;

/// Both simulators, a group chat with the bot in it, and the app posting alerts there.
pub async fn spawn_with_chat(adjust: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    capture_logs();
    let sf = SalesforceSim::start(0).await.expect("salesforce sim");
    let lark = LarkSim::start(0).await.expect("lark sim");
    let chat = lark.create_chat("Training admins");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = sim_settings(
        &sf.base_url(),
        &lark.base_url(),
        &dir.path().join("store.db"),
    )
    .expect("settings");
    settings.alerts.lark_chat_id = Some(chat.clone());
    adjust(&mut settings);
    (start_app(sf, lark, settings, dir).await, chat)
}

/// The same app stopped and started again on the same simulators and store.
async fn restart(app: TestApp) -> TestApp {
    let (sf, lark, settings, dir) = app.stop().await;
    start_app(sf, lark, settings, dir).await
}

fn chat_texts(app: &TestApp, chat: &str) -> Vec<String> {
    app.lark
        .chat_messages(chat)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// Connects (again) with tokens whose refresh token expires within the refresh window,
/// then has Lark revoke them and runs one refresh pass: Lark refuses, the trainer is
/// disconnected.
async fn connect_then_revoke(app: &TestApp, trainer: &str, email: &str, open_id: &str) {
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, REFRESH_SOON_SECS);
    let hop = crate::helpers::connect(app, trainer, email).await;
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    assert_eq!(hop.status, 200, "{}", hop.body);
    app.lark.revoke(open_id);
    let pass = refresh_pass(&app.tokens).await;
    assert_eq!(pass.disconnected, 1, "{pass:?}");
    assert_eq!(app.trainer(trainer)["Lark_Connected__c"], json!(false));
}

#[tokio::test]
async fn a_trainer_lark_disconnects_is_alerted_once_a_day_even_across_a_restart() {
    let (app, chat) = spawn_with_chat(|_| {}).await;
    let email = "ann@example.com";
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, REFRESH_SOON_SECS);
    let (trainer, open_id) = connected_trainer(&app, "Ann Alert", email).await;
    app.lark
        .set_token_lifetimes(DEFAULT_ACCESS_SECS, DEFAULT_REFRESH_SECS);
    assert!(chat_texts(&app, &chat).is_empty(), "nothing to alert yet");

    app.lark.revoke(&open_id);
    let pass = refresh_pass(&app.tokens).await;
    assert_eq!(pass.disconnected, 1, "{pass:?}");

    let texts = chat_texts(&app, &chat);
    assert_eq!(texts.len(), 1, "one alert: {texts:?}");
    let link = app.settings.server.connect_link(&tid(&trainer));
    for part in ["Ann Alert", trainer.as_str(), "revoked", link.as_str()] {
        assert!(texts[0].contains(part), "names {part}: {}", texts[0]);
    }
    // The trainer's own reminder went to them, not to the admins' chat.
    let to_trainer = app
        .lark
        .bot_messages()
        .into_iter()
        .filter(|m| m.receive_id == email)
        .count();
    assert_eq!(to_trainer, 1);
    assert_eq!(
        metric(
            &app,
            r#"lvb_alerts_total{outcome="sent",subject="disconnected"}"#
        )
        .await,
        1.0
    );

    // Reconnect and lose access again the same day: no second alert.
    connect_then_revoke(&app, &trainer, email, &open_id).await;
    assert_eq!(chat_texts(&app, &chat).len(), 1, "at most once a day");

    // Remembered across a restart on the same store.
    let app = restart(app).await;
    connect_then_revoke(&app, &trainer, email, &open_id).await;
    assert_eq!(
        chat_texts(&app, &chat).len(),
        1,
        "the day survives a restart"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_booking_is_alerted_once_with_its_id_and_record_url() {
    let (app, chat) = spawn_with_chat(|_| {}).await;
    wait_ready(&app).await;
    let (trainer, _) = connected_trainer(&app, "Flo", "flo@example.com").await;
    // Far from its start (no "still no meeting" alert), and ending before it starts.
    let booking = create_booking(&app, &trainer, 100, 99, true);
    wait_for_status(&app, &booking, "Failed").await;
    wait_until("the Failed alert is posted", || async {
        !chat_texts(&app, &chat).is_empty()
    })
    .await;
    let texts = chat_texts(&app, &chat);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let url = format!("{}/{booking}", app.sf.base_url().trim_end_matches('/'));
    for part in [booking.as_str(), "must be after", url.as_str()] {
        assert!(texts[0].contains(part), "names {part}: {}", texts[0]);
    }

    // Failed again, for another reason, the same day: the booking is not alerted twice.
    edit_booking(
        &app,
        &booking,
        json!({ "Trainer__c": null, "Training_End__c": sf_time_in(101) }),
    );
    wait_until("the booking shows its new reason", || async {
        field(&app, &booking, "Lark_Meeting_Error__c").is_some_and(|r| r.contains("no trainer"))
    })
    .await;
    wait_caught_up(&app).await;
    assert_eq!(chat_texts(&app, &chat).len(), 1, "once a day");
    assert_eq!(
        metric(&app, r#"lvb_alerts_total{outcome="sent",subject="failed"}"#).await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_booking_near_its_start_without_a_meeting_is_alerted_once_and_a_refused_post_retried() {
    // No reminders to trainers here: every bot message is an alert.
    let (app, chat) = spawn_with_chat(|s| s.lark.notify_trainers = false).await;
    wait_ready(&app).await;
    let trainer = app.add_trainer("Nia", Some("nia@example.com"), true);
    let near = create_booking(&app, &trainer, 5, 6, true);
    let far = create_booking(&app, &trainer, 100, 101, true);
    let onsite = create_booking(&app, &trainer, 3, 4, false);
    for b in [&near, &far] {
        wait_for_status(&app, b, "Pending Trainer Connection").await;
    }
    wait_caught_up(&app).await;
    assert!(
        chat_texts(&app, &chat).is_empty(),
        "pending alone is no alert"
    );

    // Lark refuses the first post: nothing is remembered, the next sweep posts it.
    app.lark.faults().inject(
        Some(Method::POST),
        MESSAGES_PATH,
        1,
        400,
        r#"{"code":230002,"msg":"Bot/User can NOT be out of the chat."}"#,
        &[],
    );
    reconcile(&app.engine).await.expect("sweep");
    assert!(chat_texts(&app, &chat).is_empty());
    assert_eq!(
        metric(
            &app,
            r#"lvb_alerts_total{outcome="failed",subject="pending"}"#
        )
        .await,
        1.0
    );
    reconcile(&app.engine).await.expect("sweep");
    let texts = chat_texts(&app, &chat);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let link = app.settings.server.connect_link(&tid(&trainer));
    for part in [
        near.as_str(),
        "Pending Trainer Connection",
        "Nia",
        link.as_str(),
    ] {
        assert!(texts[0].contains(part), "names {part}: {}", texts[0]);
    }
    assert!(!texts[0].contains(&far) && !texts[0].contains(&onsite));

    // The sweep's gauges: two upcoming remote bookings, both pending, one trainer who
    // has not connected.
    let gauge = |labels: &'static str| {
        let app = &app;
        async move { metric(app, labels).await }
    };
    assert_eq!(
        gauge(r#"lvb_upcoming_bookings{meeting_status="Pending Trainer Connection"}"#).await,
        2.0
    );
    assert_eq!(
        gauge(r#"lvb_upcoming_bookings{meeting_status="Created"}"#).await,
        0.0
    );
    assert_eq!(
        gauge(r#"lvb_trainers_with_upcoming_bookings{connected="false"}"#).await,
        1.0
    );
    assert_eq!(
        gauge(r#"lvb_trainers_with_upcoming_bookings{connected="true"}"#).await,
        0.0
    );

    // A sweep reads the upcoming bookings in one query, and the near ones without a
    // meeting once more after processing them: one query more, however many there are.
    let queries = || app.sf.requests().count(&Method::GET, "/query");
    let before = queries();
    reconcile(&app.engine).await.expect("sweep");
    assert_eq!(
        queries() - before,
        2,
        "the sweep's query and the near ones' re-read"
    );
    assert_eq!(chat_texts(&app, &chat).len(), 1, "once a day");
    let app = restart(app).await;
    reconcile(&app.engine).await.expect("sweep");
    assert_eq!(
        chat_texts(&app, &chat).len(),
        1,
        "the day survives a restart"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// `remind`, through the real binary

/// A config file for the binary against `sims`, with `lark.notify_trainers = false`
/// (which must not silence `remind`) and `extra` sections.
fn config_for(sims: &Simulators, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    binary_config(sims, dir, "remind.toml", "notify_trainers = false\n", extra)
}

fn trainer(sims: &Simulators, name: &str, email: &str, lark: bool) -> String {
    if lark {
        sims.lark.add_user(email, name);
    }
    sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": name, "Email__c": email }),
        SF_HUMAN_USER_ID,
    )
}

fn messages_to(sims: &Simulators, email: &str) -> usize {
    sims.lark
        .bot_messages()
        .iter()
        .filter(|m| m.receive_id_type == "email" && m.receive_id == email)
        .count()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn remind_twice_reaches_each_unconnected_trainer_once_alone_and_through_run() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = config_for(
        &sims,
        dir.path(),
        &format!("\n[server]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"{url}\"\n"),
    );

    let ann = trainer(&sims, "Ann", "ann@example.com", true);
    let bo = trainer(&sims, "Bo", "bo@example.com", false); // no Lark account
    let cy = trainer(&sims, "Cy", "cy@example.com", true); // only an onsite booking
    let di = trainer(&sims, "Di", "di@example.com", true); // only a cancelled one
    insert_booking(&sims.salesforce, &ann, 24, 25, true);
    insert_booking(&sims.salesforce, &ann, 48, 49, true);
    insert_booking(&sims.salesforce, &bo, 24, 25, true);
    insert_booking(&sims.salesforce, &cy, 24, 25, false);
    let cancelled = insert_booking(&sims.salesforce, &di, 24, 25, true);
    sims.salesforce.update(
        BOOKING,
        &cancelled,
        json!({ "Status__c": "Cancelled" }),
        SF_HUMAN_USER_ID,
    );

    let first = run_command(&["remind"], &config).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = stdout(&first);
    assert!(
        out.contains("reminded: 1  already reminded today: 0  not reachable: 1  failed: 0"),
        "{out}"
    );
    assert!(out.contains(&format!("reached: Ann ({ann})")), "{out}");
    assert!(out.contains(&format!("not reachable: Bo ({bo})")), "{out}");
    assert!(!out.contains(&cy) && !out.contains(&di), "{out}");
    assert_eq!(messages_to(&sims, "ann@example.com"), 1);
    let text = &sims.lark.bot_messages()[0].text;
    assert!(
        text.contains(&format!("{url}/oauth/lark/start?trainer={ann}")),
        "{text}"
    );
    for email in ["cy@example.com", "di@example.com"] {
        assert_eq!(messages_to(&sims, email), 0, "{email}");
    }

    // Again: nobody is messaged; Ann is reported as already reminded.
    let second = run_command(&["remind", "--json"], &config).await;
    assert!(second.status.success());
    let summary: Value = serde_json::from_slice(&second.stdout).expect("JSON");
    assert_eq!(summary["reached"], json!([]));
    assert_eq!(summary["already_reminded"][0]["id"], json!(ann));
    assert_eq!(summary["unreachable"][0]["id"], json!(bo));
    assert_eq!(messages_to(&sims, "ann@example.com"), 1);

    // While `run` holds the store, `remind` is done by it: a new trainer is reached
    // once, Ann is still within her day.
    let _run = start_run(&config, &url).await;
    let eve = trainer(&sims, "Eve", "eve@example.com", true);
    insert_booking(&sims.salesforce, &eve, 30, 31, true);
    let delegated = run_command(&["remind"], &config).await;
    assert!(
        delegated.status.success(),
        "{}",
        String::from_utf8_lossy(&delegated.stderr)
    );
    let out = stdout(&delegated);
    assert!(out.contains(&format!("reached: Eve ({eve})")), "{out}");
    assert!(
        out.contains(&format!("skipped (already reminded today): Ann ({ann})")),
        "{out}"
    );
    assert_eq!(messages_to(&sims, "eve@example.com"), 1);
    let again = run_command(&["remind"], &config).await;
    assert!(stdout(&again).starts_with("reminded: 0  already reminded today: 2"));
    assert_eq!(messages_to(&sims, "eve@example.com"), 1);
    assert_eq!(messages_to(&sims, "ann@example.com"), 1);
}
