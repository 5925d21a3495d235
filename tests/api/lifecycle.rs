//! The process around the work (design §2.1 and §3 rules 16–17), mostly against the real
//! binary: one `run` per store, admin commands beside a running service (delegated over
//! the control socket, or refused), failing loudly when an essential task stops, and
//! absurd Lark lifetimes clamped instead of panicking.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use axum::http::Method;
use lark_vc_bridge::salesforce::values::parse_datetime;
use lark_vc_bridge::tokens::grant::MAX_TOKEN_LIFETIME_SECS;
use lark_vc_bridge::tokens::AccessToken;
use lvb_simulators::common::RecordedRequest;
use lvb_simulators::launch::Simulators;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Value};

use crate::helpers::tid;
use crate::helpers::{captured_logs, connected_trainer, spawn_app, wait_ready, wait_until};

use crate::helpers::{free_port, BIN};
const TRAINER: &str = "Onboarding_Trainer__c";
const TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";

/// The environment every process of one test shares: the simulators' addresses, one
/// store, one set of keys (so commands read what `run` wrote).
fn shared_env(sims: &Simulators, dir: &Path) -> Vec<(String, String)> {
    lvb_simulators::service_env(
        &sims.salesforce.base_url(),
        &sims.lark.base_url(),
        &dir.join("store.db"),
    )
}

/// The binary with exactly `env` (nothing inherited from the test's own `LVB_*`).
fn command(env: &[(String, String)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("LVB__") || key == "LVB_CONFIG" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// `lark-vc-bridge run` as a child process, its output in a file; killed when dropped.
struct RunningService {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl RunningService {
    fn start(env: &[(String, String)], dir: &Path, name: &str) -> RunningService {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = command(env, &["run"]);
        cmd.env("LVB__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env(
                "LVB__SERVER__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        RunningService {
            child: cmd.spawn().expect("run starts"),
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn status_of(&self, path: &str) -> Option<u16> {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Connects `trainer` through this service's OAuth routes as the Lark user `email`,
    /// the way a browser does.
    async fn connect(&self, trainer: &str, email: &str) {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        lvb_simulators::browser::connect_trainer(&browser, &self.url, trainer, email, |_| {})
            .await
            .unwrap_or_else(|e| panic!("{email} connects: {e:#}"));
    }

    async fn wait_ready(&self) {
        wait_until("`run` is ready (/readyz 200)", || async {
            self.status_of("/readyz").await == Some(200)
        })
        .await;
    }

    /// Waits (bounded) for the process to exit on its own.
    async fn exit(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("`run` did not exit within a minute:\n{}", self.log()))
            .unwrap()
    }
}

/// Runs a one-shot command to the end: (success, stdout, stderr).
async fn one_shot(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), command(env, args).output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish within a minute"))
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every refresh request Lark received (v2 token endpoint, grant `refresh_token`).
fn refresh_calls(sims: &Simulators) -> Vec<RecordedRequest> {
    sims.lark.requests().matching(|r| {
        r.method == Method::POST
            && r.path == TOKEN_PATH
            && serde_json::from_str::<Value>(&r.body)
                .is_ok_and(|b| b["grant_type"] == "refresh_token")
    })
}

/// Design §3 rule 16: a second `run` on the same store exits non-zero naming the first;
/// the first keeps serving. The store, its lock and its control socket are private.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_store_exits_non_zero_naming_the_first() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    let first = RunningService::start(&env, dir.path(), "first");
    first.wait_ready().await;

    let mut second = RunningService::start(&env, dir.path(), "second");
    let status = second.exit().await;
    let said = second.log();
    assert!(!status.success(), "the second run must fail:\n{said}");
    let holder = format!("pid {}, `run`, started at ", first.pid());
    assert!(
        said.contains("is in use by another lark-vc-bridge process") && said.contains(&holder),
        "names the running one ({holder}):\n{said}"
    );
    assert_eq!(
        first.status_of("/readyz").await,
        Some(200),
        "the first one runs on"
    );
    #[cfg(unix)]
    for file in ["store.db", "store.db.lock", "store.db.sock"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
}

/// Design §2.1: while `run` is up, `refresh-tokens` three times at once never races it —
/// each is done by the running service under the trainer's single flight, so Lark sees
/// the refresh token used once and the trainer stays connected. `disconnect` is delegated
/// the same way; `rotate-key` refuses.
#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_while_run_is_up_are_done_by_it_or_refused() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    // A refresh token living an hour: inside the 48 h window, so Ann is due as soon as
    // she has connected; Lark's next pair lives the usual 7 days. (The commands follow
    // her connect within the second: one that waited for the refresh must not take the
    // pair Salesforce held before it for the newer one.)
    sims.lark.set_token_lifetimes(7200, 3600);
    let email = "ann@example.com";
    sims.lark.add_user(email, "Ann");
    let trainer = sims.salesforce.insert(
        TRAINER,
        json!({ "Name": "Ann", "Email__c": email }),
        SF_HUMAN_USER_ID,
    );
    let service = RunningService::start(&env, dir.path(), "run");
    service.wait_ready().await;
    service.connect(&trainer, email).await;
    sims.lark.set_token_lifetimes(7200, 604_800);
    let record = sims.salesforce.get(TRAINER, &trainer).unwrap();
    assert_eq!(record["Lark_Connected__c"], json!(true));
    assert!(refresh_calls(&sims).is_empty());

    let runs = futures::future::join_all((0..3).map(|_| one_shot(&env, &["refresh-tokens"]))).await;
    let mut refreshed = 0;
    for (ok, stdout, stderr) in &runs {
        assert!(ok, "refresh-tokens failed:\n{stdout}\n{stderr}");
        let count: usize = stdout
            .split("refreshed: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary in {stdout:?}"));
        refreshed += count;
    }
    assert_eq!(refreshed, 1, "one of the three refreshed: {runs:?}");
    let calls = refresh_calls(&sims);
    assert_eq!(calls.len(), 1, "Lark saw one refresh:\n{}", service.log());
    assert!(calls.iter().all(|r| r.status == 200), "no refresh refused");
    let sent: std::collections::HashSet<Value> = calls
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["refresh_token"].clone())
        .collect();
    assert_eq!(sent.len(), calls.len(), "each refresh token used once");
    let record = sims.salesforce.get(TRAINER, &trainer).unwrap();
    assert_eq!(record["Lark_Connected__c"], json!(true), "still connected");
    assert_eq!(
        service
            .log()
            .matches("admin command received on the control socket")
            .count(),
        3,
        "all three were done by the running service"
    );

    let (ok, stdout, stderr) = one_shot(&env, &["rotate-key"]).await;
    assert!(!ok, "rotate-key must refuse:\n{stdout}");
    assert!(
        stderr.contains("rotate-key does not run beside the service")
            && stderr.contains(&format!("pid {}", service.pid())),
        "{stderr}"
    );

    let (ok, stdout, stderr) = one_shot(&env, &["disconnect", email]).await;
    assert!(ok, "disconnect failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), format!("disconnected trainer {trainer}"));
    let record = sims.salesforce.get(TRAINER, &trainer).unwrap();
    assert_eq!(record["Lark_Connected__c"], json!(false));
    assert_eq!(
        service
            .log()
            .matches("admin command received on the control socket")
            .count(),
        4,
        "disconnect was done by the running service"
    );

    let (ok, stdout, stderr) = one_shot(&env, &["reconcile"]).await;
    assert!(ok, "reconcile failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("reconciled 0 bookings"), "{stdout}");
    assert_eq!(
        service
            .log()
            .matches("admin command received on the control socket")
            .count(),
        5,
        "reconcile was done by the running service"
    );
    assert_eq!(service.status_of("/readyz").await, Some(200));
}

/// Issue 15 through the control socket: a `refresh-tokens` the running service does for
/// the command still names, on the command's stderr, each trainer whose refresh failed,
/// and exits non-zero; once Lark is back it exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_delegated_refresh_tokens_names_each_failure_and_exits_non_zero() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    // A refresh token living an hour: inside the 48 h window, so Bea is due at once.
    sims.lark.set_token_lifetimes(7200, 3600);
    let email = "bea@example.com";
    sims.lark.add_user(email, "Bea");
    let trainer = sims.salesforce.insert(
        TRAINER,
        json!({ "Name": "Bea", "Email__c": email }),
        SF_HUMAN_USER_ID,
    );
    let service = RunningService::start(&env, dir.path(), "run");
    service.wait_ready().await;
    service.connect(&trainer, email).await;

    // Lark's token endpoint is down (every retry included).
    sims.lark.faults().inject(
        Some(Method::POST),
        TOKEN_PATH,
        100,
        500,
        r#"{"code":20050,"error":"server_error","error_description":"internal error"}"#,
        &[],
    );
    let (ok, stdout, stderr) = one_shot(&env, &["refresh-tokens"]).await;
    assert!(!ok, "must fail:\n{stdout}\n{stderr}");
    assert!(stdout.contains("refreshed: 0  failed: 1"), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("failed: trainer ") && l.contains(trainer.as_str())),
        "the trainer is named:\n{stderr}"
    );
    assert!(
        service
            .log()
            .contains("admin command received on the control socket"),
        "done by the running service"
    );

    sims.lark.faults().clear();
    let (ok, stdout, stderr) = one_shot(&env, &["refresh-tokens"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("failed: 0"), "{stdout}");
    assert!(!stderr.contains("failed: trainer"), "{stderr}");
}

/// Without a service on the store, a one-shot command does the work itself, serves
/// nothing (no listener) and leaves the store free again.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_service_a_command_works_alone_and_lets_go_of_the_store() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    let (ok, stdout, stderr) = one_shot(&env, &["refresh-tokens"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("refreshed: 0"), "{stdout}");
    assert!(!stderr.contains("asking the running service"), "{stderr}");
    assert!(!stderr.contains("listening"), "no HTTP listener: {stderr}");
    assert!(lark_vc_bridge::store::lock::StoreLock::is_free(
        &dir.path().join("store.db")
    ));
}

/// Design §3 rule 17: the streaming subscriber gives up for good (Salesforce answers its
/// handshake with a status it cannot recover from) → `/readyz` stops answering 200 and
/// `run` exits non-zero, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn run_exits_non_zero_when_the_subscriber_gives_up() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    let mut service = RunningService::start(&env, dir.path(), "run");
    service.wait_ready().await;

    sims.salesforce.faults().inject(
        None,
        "/cometd/",
        1_000,
        404,
        r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#,
        &[],
    );
    // The held long-poll returns at once with "handshake"; the handshake meets the 404.
    sims.salesforce.hub().drop_clients();
    let status = service.exit().await;
    let said = service.log();
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("the booking processor (with the streaming subscriber) stopped")
            && said.contains("supervisor restarts it"),
        "{said}"
    );
    assert_ne!(service.status_of("/readyz").await, Some(200));
}

/// The same in-process: the app's result is an error and readiness is down (what
/// `/readyz` answers 503 from) once the subscriber has given up.
#[tokio::test]
async fn an_essential_task_ending_turns_readiness_off_and_fails_the_run() {
    let app = spawn_app().await;
    wait_ready(&app).await;
    app.sf
        .faults()
        .inject(None, "/cometd/", 1_000, 404, "[]", &[]);
    app.sf.hub().drop_clients();
    let ended = tokio::time::timeout(Duration::from_secs(60), app.task)
        .await
        .expect("the app stops by itself")
        .expect("no panic");
    let e = ended.expect_err("a run whose subscriber gave up is an error");
    assert!(e.to_string().contains("stopped on its own"), "{e}");
    assert!(!app.readiness.ready());
}

/// Design §3 rule 17: Lark lifetimes of `i64::MAX` (connect and refresh) are clamped to
/// [`MAX_TOKEN_LIFETIME_SECS`]: the trainer connects, the refresh works, nothing panics.
#[tokio::test]
async fn absurd_token_lifetimes_from_lark_are_clamped() {
    let app = spawn_app().await;
    app.lark.set_token_lifetimes(i64::MAX, i64::MAX);
    let (id, open_id) = connected_trainer(&app, "Ann", "ann@example.com").await;
    let expiry = |field: &str| {
        let record = app.trainer(&id);
        parse_datetime(record[field].as_str().expect(field)).expect(field)
    };
    let now = chrono::Utc::now();
    let cap = chrono::Duration::seconds(MAX_TOKEN_LIFETIME_SECS);
    for field in ["Lark_Token_Expires_At__c", "Lark_Refresh_Expires_At__c"] {
        let at = expiry(field);
        assert!(
            at > now + cap - chrono::Duration::minutes(5)
                && at <= now + cap + chrono::Duration::minutes(5),
            "{field} = {at}"
        );
    }
    // A refresh answered with the same lifetimes: Lark rejected the access token.
    let (access, _) = app.lark.current_tokens(&open_id).unwrap();
    let trainer = app.tokens.trainers().get(&tid(&id)).await.unwrap().unwrap();
    app.tokens
        .access_token_after_rejection(&trainer, &AccessToken::new(access.clone()))
        .await
        .expect("the refresh works");
    let (rotated, _) = app.lark.current_tokens(&open_id).unwrap();
    assert_ne!(rotated, access, "Lark rotated the pair");
    assert!(expiry("Lark_Token_Expires_At__c") <= chrono::Utc::now() + cap);
    assert!(captured_logs().contains("out-of-range token lifetime; clamped"));
    assert_eq!(app.trainer(&id)["Lark_Connected__c"], json!(true));
}

/// The same against the real binary: a trainer connects while Lark hands out lifetimes of
/// `i64::MAX`; the connect page says so, the process keeps running, and Salesforce holds
/// expiries clamped to a year and a day.
#[tokio::test(flavor = "multi_thread")]
async fn run_survives_a_lifetime_of_i64_max_from_lark() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = shared_env(&sims, dir.path());
    sims.lark.set_token_lifetimes(i64::MAX, i64::MAX);
    let email = "ann@example.com";
    sims.lark.add_user(email, "Ann");
    let trainer = sims.salesforce.insert(
        TRAINER,
        json!({ "Name": "Ann", "Email__c": email }),
        SF_HUMAN_USER_ID,
    );
    let service = RunningService::start(&env, dir.path(), "run");
    service.wait_ready().await;
    service.connect(&trainer, email).await;
    let record = sims.salesforce.get(TRAINER, &trainer).unwrap();
    assert_eq!(record["Lark_Connected__c"], json!(true));
    let cap = chrono::Utc::now() + chrono::Duration::seconds(MAX_TOKEN_LIFETIME_SECS);
    for field in ["Lark_Token_Expires_At__c", "Lark_Refresh_Expires_At__c"] {
        let at = parse_datetime(record[field].as_str().expect(field)).expect(field);
        assert!(
            at <= cap && at > cap - chrono::Duration::minutes(5),
            "{field} = {at}"
        );
    }
    assert_eq!(
        service.status_of("/readyz").await,
        Some(200),
        "still running"
    );
    assert!(service
        .log()
        .contains("out-of-range token lifetime; clamped"));
    assert!(!service.log().contains("panicked"));
}

/// Rules 20–22 from outside, against the real `run` and the real `reconcile` beside it:
/// a connected trainer's booking gets its meeting and an event on their primary calendar
/// with the merchant invited; an unconnected trainer's booking gets a meeting the app
/// reserves on their behalf (`Created by App`); a booking that cannot have a meeting is
/// `Failed` and alerted in the admins' chat with its id; a booking near its start that
/// still has no meeting is alerted on the sweep — and nothing is alerted twice.
#[tokio::test]
async fn run_puts_the_session_on_the_calendar_hosts_for_the_unconnected_and_alerts_admins() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let trainers = sims.seed_trainers();
    let (alice, bruno, dana) = (&trainers[0], &trainers[1], &trainers[3]);
    assert!(!dana.has_lark_account);
    let chat = sims.lark.create_chat("Training admins");
    let dir = tempfile::tempdir().unwrap();
    let mut env = shared_env(&sims, dir.path());
    env.extend(
        [
            ("LVB__MEETINGS__UNCONNECTED", "app_hosted"),
            ("LVB__ALERTS__LARK_CHAT_ID", chat.as_str()),
            (
                "LVB__SALESFORCE__BOOKING__ATTENDEE_EMAIL_FIELD",
                "Merchant_Email__c",
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let service = RunningService::start(&env, dir.path(), "run");
    service.wait_ready().await;
    service.connect(&alice.id, &alice.email).await;

    let booking = |trainer: &str, start: i64, end: i64, guest: Option<&str>| {
        sims.salesforce.insert(
            "Training_Booking__c",
            json!({
                "Name": "Booking",
                "Trainer__c": trainer,
                "Training_Start__c": crate::helpers::sf_time_in(start),
                "Training_End__c": crate::helpers::sf_time_in(end),
                "Service_Type__c": "Remote",
                "Status__c": "Scheduled",
                "Merchant_Name__c": "Acme",
                "Merchant_Email__c": guest,
            }),
            SF_HUMAN_USER_ID,
        )
    };
    let field = |id: &str, f: &str| {
        sims.salesforce
            .get("Training_Booking__c", id)
            .and_then(|b| b.get(f)?.as_str().map(str::to_string))
    };
    let own = booking(&alice.id, 72, 73, Some("owner@acme.example"));
    let on_behalf = booking(&bruno.id, 96, 97, None);
    let broken = booking(&alice.id, 120, 119, None);
    let waiting = booking(&dana.id, 24, 25, None);
    wait_until("the four bookings are settled", || async {
        field(&own, "Lark_Calendar_Event_Id__c").is_some()
            && field(&on_behalf, "Lark_Meeting_Status__c").as_deref() == Some("Created by App")
            && field(&broken, "Lark_Meeting_Status__c").as_deref() == Some("Failed")
            && field(&waiting, "Lark_Meeting_Status__c").as_deref()
                == Some("Pending Trainer Connection")
    })
    .await;

    // Rule 20: the event is on Alice's primary calendar, with the link and the guest.
    let open_id = |email: &str| {
        sims.lark
            .users()
            .into_iter()
            .find(|u| u.email == email)
            .unwrap()
            .open_id
    };
    let event_id = field(&own, "Lark_Calendar_Event_Id__c").unwrap();
    let events = sims.lark.calendar_events();
    let event = events.iter().find(|e| e.event_id == event_id).unwrap();
    assert_eq!(
        event.calendar_id,
        sims.lark.primary_calendar_id(&open_id(&alice.email))
    );
    assert_eq!(
        event.vchat["meeting_url"],
        json!(field(&own, "Remote_Training_Meeting_Link__c").unwrap())
    );
    assert_eq!(
        event.attendees[0].third_party_email.as_deref(),
        Some("owner@acme.example")
    );
    assert_eq!(
        events.iter().filter(|e| !e.deleted).count(),
        1,
        "{events:?}"
    );

    // Rule 21: Bruno's meeting was reserved by the app, owned by him.
    let rid = field(&on_behalf, "Lark_Reservation_Id__c").unwrap();
    let reserve = sims
        .lark
        .reserves()
        .into_iter()
        .find(|r| r.id == rid)
        .unwrap();
    assert!(reserve.applied_by_app);
    assert_eq!(reserve.owner_open_id, open_id(&bruno.email));

    // Rule 22: the Failed booking is alerted once, with its id.
    let messages = || sims.lark.chat_messages(&chat);
    wait_until("the Failed booking is alerted", || async {
        messages().iter().any(|m| m.text.contains(&broken))
    })
    .await;
    // A sweep (reconcile, delegated to the running service) alerts the booking near its
    // start that has no meeting; a second sweep alerts nothing new.
    let (ok, out, err) = one_shot(&env, &["reconcile"]).await;
    assert!(ok, "{out}\n{err}");
    let after_first = messages();
    assert_eq!(
        after_first
            .iter()
            .filter(|m| m.text.contains(&waiting))
            .count(),
        1,
        "{after_first:?}"
    );
    assert_eq!(
        after_first
            .iter()
            .filter(|m| m.text.contains(&broken))
            .count(),
        1,
        "{after_first:?}"
    );
    let (ok, out, err) = one_shot(&env, &["reconcile"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(messages().len(), after_first.len(), "nothing alerted twice");
    assert!(!service.log().contains("panicked"), "{}", service.log());
}
