//! Issue 21 through the real binary: exactly once, nothing lost, across a full disk (rule
//! 23), SIGTERM while work is in flight (rule 24), kill -9 while each apply is in flight
//! (rules 13 and 23), and a delegated `refresh-tokens` cut by a shutdown (rule 24). Each
//! test drives `run` as an operator's supervisor would — signals and kills included — and
//! reads the outcome where it lands: the simulators' Salesforce records and Lark
//! reservations, `/readyz`, the exit status and the JSON log.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use axum::http::Method;
use lvb_simulators::launch::Simulators;
use serde_json::{json, Value};

use crate::bounds::{client_from, connect_with, run_with_config, RunningBinary};
use crate::helpers::{binary_config, insert_booking, wait_until, BIN, BOOKING};

const APPLY: &str = "/open-apis/vc/v1/reserves/apply";
const TOKEN: &str = "/open-apis/authen/v2/oauth/token";
const LINK: &str = "Remote_Training_Meeting_Link__c";
const STATUS: &str = "Lark_Meeting_Status__c";
const ERROR: &str = "Lark_Meeting_Error__c";

/// What every test here runs with: any free port; quick in-doubt and retry waits.
const BASE: &str = "\n[server]\nbind = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:0\"\n\n[processing]\nin_doubt_delay = \"1s\"\nretry_max_delay = \"2s\"\n";

/// Writes the config (store in `dir`) with `extra` sections after [`BASE`].
fn config(sims: &Simulators, dir: &Path, extra: &str) -> PathBuf {
    binary_config(sims, dir, "run.toml", "", &format!("{BASE}{extra}"))
}

/// A trainer with a Lark account, connected through the running binary's OAuth pages.
async fn connected_trainer(sims: &Simulators, run: &RunningBinary, email: &str) -> String {
    let trainer = sims.salesforce.insert(
        "Onboarding_Trainer__c",
        json!({ "Name": "Ann", "Email__c": email }),
        lvb_simulators::SF_HUMAN_USER_ID,
    );
    sims.lark.add_user(email, "Ann");
    let (status, body) =
        connect_with(&client_from(1), &run.url, &trainer, &[("sim_user", email)]).await;
    assert_eq!(status, 200, "{body}");
    trainer
}

fn booking(sims: &Simulators, id: &str) -> serde_json::Map<String, Value> {
    sims.salesforce.get(BOOKING, id).expect("booking")
}

fn text(sims: &Simulators, id: &str, field: &str) -> Option<String> {
    booking(sims, id)
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn applies(sims: &Simulators) -> usize {
    sims.lark.requests().count(&Method::POST, APPLY)
}

fn live_reserves(sims: &Simulators) -> Vec<String> {
    sims.lark
        .reserves()
        .into_iter()
        .filter(|r| !r.deleted)
        .map(|r| r.id)
        .collect()
}

async fn readyz(url: &str) -> u16 {
    match reqwest::get(format!("{url}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn wait_ready(run: &RunningBinary) {
    wait_until("`run` is ready", || async { readyz(&run.url).await == 200 }).await;
}

/// Sends SIGTERM, as a supervisor stopping the service does.
fn sigterm(run: &RunningBinary) {
    let ok = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM sent");
}

/// Waits up to `within` for the process to exit; its status.
async fn exit_within(run: &mut RunningBinary, within: Duration) -> ExitStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = run.child.try_wait().expect("waitable") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`run` did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// kill -9: nothing runs after it, nothing is cleaned up.
fn kill9(mut run: RunningBinary) {
    run.child.kill().expect("killed");
    run.child.wait().expect("reaped");
}

/// Rule 24: SIGTERM while an apply's answer takes 6 s — the service waits for it, writes
/// the link, exits 0; after the restart there is exactly the one reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_an_apply_is_answered_slowly_finishes_it_and_exits_zero() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sims, dir.path(), "");
    let mut run = run_with_config(&cfg).await;
    let trainer = connected_trainer(&sims, &run, "ann@example.com").await;
    wait_ready(&run).await;
    sims.lark
        .faults()
        .slow_answers(Some(Method::POST), APPLY, 1, Duration::from_secs(6));
    let b = insert_booking(&sims.salesforce, &trainer, 30, 31, true);
    wait_until("the apply reached Lark", || async { applies(&sims) == 1 }).await;
    let asked = tokio::time::Instant::now();
    sigterm(&run);
    let status = exit_within(&mut run, Duration::from_secs(40)).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "it waited for the slow answer: {:?}",
        asked.elapsed()
    );
    assert!(
        text(&sims, &b, LINK).is_some(),
        "the booking in flight got its link before the exit"
    );
    assert_eq!(live_reserves(&sims).len(), 1);

    // The restart has nothing left to do for it: a sweep confirms, no second apply.
    let run = run_with_config(&cfg).await;
    wait_ready(&run).await;
    let out = crate::helpers::run_command(&["reconcile"], &cfg).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(applies(&sims), 1, "nothing applied twice");
    assert_eq!(live_reserves(&sims).len(), 1);
    assert_eq!(text(&sims, &b, STATUS).as_deref(), Some("Created"));
    drop(run);
}

/// Rules 13 and 23: kill -9 three times in a row while each apply is in flight (sent,
/// answer not back) — at most `max_in_doubt_applies` (2) applies in all, and the booking
/// ends `Failed` saying a meeting may exist, with no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_each_apply_is_in_flight_never_multiplies_meetings() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sims, dir.path(), "");
    let run = run_with_config(&cfg).await;
    let trainer = connected_trainer(&sims, &run, "ann@example.com").await;
    wait_ready(&run).await;
    // Every apply is carried out at once and answered only much later: the kill always
    // lands while it is in flight.
    sims.lark
        .faults()
        .slow_answers(Some(Method::POST), APPLY, 10, Duration::from_secs(600));
    let b = insert_booking(&sims.salesforce, &trainer, 30, 31, true);
    wait_until("the first apply reached Lark", || async {
        applies(&sims) == 1
    })
    .await;
    kill9(run);

    let mut kills = 1;
    while kills < 3 {
        let run = run_with_config(&cfg).await;
        let before = applies(&sims);
        // Each restart either applies again (the first was in doubt, re-applied after the
        // delay) or, with the allowed applies spent, writes Failed.
        wait_until("another apply, or the booking Failed", || async {
            applies(&sims) > before || text(&sims, &b, STATUS).as_deref() == Some("Failed")
        })
        .await;
        kill9(run);
        kills += 1;
    }
    let run = run_with_config(&cfg).await;
    wait_until("the booking ends Failed", || async {
        text(&sims, &b, STATUS).as_deref() == Some("Failed")
    })
    .await;
    let reason = text(&sims, &b, ERROR).unwrap_or_default();
    assert!(reason.contains("may exist"), "{reason}");
    assert!(text(&sims, &b, LINK).is_none(), "no unconfirmed link");
    assert_eq!(applies(&sims), 2, "max_in_doubt_applies in all");
    drop(run);
}

/// Rule 24: SIGTERM while a `refresh-tokens` delegated to `run` waits 5 s for Lark's
/// answer — Lark has rotated the refresh token by then. The service finishes the refresh,
/// journals the rotated tokens, answers the command, exits 0; after the restart the
/// trainer is still connected, nothing is refused as already used, and the next booking
/// gets its link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_delegated_refresh_keeps_the_rotated_tokens() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Every connected trainer is due: their refresh token expires within the window.
    let cfg = config(
        &sims,
        dir.path(),
        "\n[refresh]\nrefresh_token_window = \"30d\"\n",
    );
    let mut run = run_with_config(&cfg).await;
    let trainer = connected_trainer(&sims, &run, "ann@example.com").await;
    wait_ready(&run).await;
    let refreshes = |sims: &Simulators| {
        sims.lark
            .requests()
            .matching(|r| {
                r.method == Method::POST
                    && r.path.contains(TOKEN)
                    && r.body.contains("refresh_token")
            })
            .len()
    };
    sims.lark
        .faults()
        .slow_answers(Some(Method::POST), TOKEN, 1, Duration::from_secs(5));
    let config = cfg.clone();
    let command = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["refresh-tokens", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()
            .expect("the command runs")
    });
    wait_until("Lark rotated the refresh token", || async {
        refreshes(&sims) == 1
    })
    .await;
    sigterm(&run);
    let status = exit_within(&mut run, Duration::from_secs(40)).await;
    assert!(status.success(), "{status:?}");
    let out = command.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("refreshed: 1"),
        "the delegated command got its answer: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = run_with_config(&cfg).await;
    wait_ready(&run).await;
    let t = sims
        .salesforce
        .get("Onboarding_Trainer__c", &trainer)
        .unwrap();
    assert_eq!(t["Lark_Connected__c"], json!(true), "still connected");
    let b = insert_booking(&sims.salesforce, &trainer, 30, 31, true);
    wait_until("the next booking's link", || async {
        text(&sims, &b, LINK).is_some()
    })
    .await;
    assert!(
        run.logged("already-used").is_empty() && run.logged("refused").is_empty(),
        "no refresh refused after the restart"
    );
    let now_refreshes = refreshes(&sims);
    assert!(
        now_refreshes <= 2,
        "at most a later refresh with the rotated token: {now_refreshes}"
    );
    drop(run);
}

/// A small filesystem of its own for the store (tmpfs), unmounted when dropped; `None`
/// where this process may not mount one.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    ballast: PathBuf,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?
            .success();
        let ballast = dir.path().join("ballast");
        ok.then_some(SmallDisk { dir, ballast })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every byte left, as another program filling the disk would.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(&self.ballast).expect("ballast");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk: byte by byte until the disk refuses.
        while f.write_all(&[0u8]).is_ok() {}
        let _ = f.sync_all();
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(&self.ballast).expect("ballast removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Rule 23: a store on a full disk. The new booking's apply cannot be recorded, so it is
/// not sent; the pipeline pauses (`/readyz` 503), says so once, and after 60 s of failing
/// writes the process exits non-zero. Once the space is back, the restarted service gives
/// the booking exactly one reservation, linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_pipeline_then_the_booking_gets_exactly_one_meeting() {
    let Some(disk) = SmallDisk::mount(16 * 1024 * 1024) else {
        eprintln!("SKIPPED: this process may not mount a tmpfs to fill (not root?)");
        return;
    };
    let sims = Simulators::start(0, 0).await.unwrap();
    let cfg = config(&sims, disk.path(), "");
    let mut run = run_with_config(&cfg).await;
    let trainer = connected_trainer(&sims, &run, "ann@example.com").await;
    wait_ready(&run).await;
    let warm_up = insert_booking(&sims.salesforce, &trainer, 20, 21, true);
    wait_until("the warm-up's link", || async {
        text(&sims, &warm_up, LINK).is_some()
    })
    .await;

    disk.fill();
    let b = insert_booking(&sims.salesforce, &trainer, 30, 31, true);
    wait_until("/readyz says the service cannot work", || async {
        readyz(&run.url).await == 503
    })
    .await;
    let status = exit_within(&mut run, Duration::from_secs(90)).await;
    assert!(!status.success(), "exits non-zero after 60 s: {status:?}");
    // The booking's apply leaves only if it could be recorded first (SQLite may still
    // find room in pages it already holds); never more than that one.
    let during = applies(&sims) - 1;
    assert!(
        during <= 1,
        "{during} applies for the booking on a full disk"
    );
    let said = run.logged("the store cannot be written");
    assert_eq!(said.len(), 1, "said once, not once a turn: {said:?}");
    assert_eq!(
        run.logged("giving up on the store").len(),
        1,
        "and once when it gave up"
    );

    disk.free();
    let run = run_with_config(&cfg).await;
    wait_until("the booking's link", || async {
        text(&sims, &b, LINK).is_some()
    })
    .await;
    assert_eq!(applies(&sims), 2, "one apply for the booking in all");
    assert_eq!(live_reserves(&sims).len(), 2, "one live reservation each");
    assert_eq!(text(&sims, &b, STATUS).as_deref(), Some("Created"));
    let linked = text(&sims, &b, "Lark_Reservation_Id__c").expect("linked");
    assert!(
        live_reserves(&sims).contains(&linked),
        "its reservation is the live one"
    );
    drop(run);
}

/// Rule 25: a booking cancelled while its trainer is disconnected shows `Cancelled` (link
/// cleared) at once; its meeting and calendar event cannot be deleted without the host's
/// token, so the deletions are owed and admins hear of it once; when the trainer
/// reconnects, both are deleted within seconds.
#[tokio::test]
async fn a_meeting_cancelled_while_its_host_is_disconnected_is_deleted_once_they_reconnect() {
    use crate::helpers::{connect, connected_trainer, create_booking, edit_booking, field, tid};
    use crate::helpers::{wait_for_status, wait_ready as app_ready};
    let (app, chat) = crate::alerts::spawn_with_chat(|_| {}).await;
    let (trainer, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    app_ready(&app).await;
    let b = create_booking(&app, &trainer, 30, 31, true);
    wait_for_status(&app, &b, "Created").await;
    wait_until("the session is on the trainer's calendar", || async {
        field(&app, &b, "Lark_Calendar_Event_Id__c").is_some()
    })
    .await;
    let reservation = field(&app, &b, "Lark_Reservation_Id__c").unwrap();
    let event = field(&app, &b, "Lark_Calendar_Event_Id__c").unwrap();
    let live = |app: &crate::helpers::TestApp| {
        let r = app
            .lark
            .reserves()
            .into_iter()
            .any(|r| r.id == reservation && !r.deleted);
        let e = app
            .lark
            .calendar_events()
            .into_iter()
            .any(|e| e.event_id == event && !e.deleted);
        (r, e)
    };
    let alerts_about = |app: &crate::helpers::TestApp| {
        app.lark
            .chat_messages(&chat)
            .into_iter()
            .filter(|m| m.text.contains(&b) && m.text.contains("could not be deleted"))
            .count()
    };

    app.tokens
        .disconnect(&tid(&trainer), "Disconnected by an administrator.")
        .await
        .unwrap();
    edit_booking(&app, &b, json!({ "Status__c": "Cancelled" }));
    wait_for_status(&app, &b, "Cancelled").await;
    assert!(
        field(&app, &b, LINK).is_none(),
        "the link is cleared at once"
    );
    assert_eq!(live(&app), (true, true), "nothing could be deleted yet");
    wait_until("admins hear of the meeting left behind", || async {
        alerts_about(&app) == 1
    })
    .await;

    let hop = connect(&app, &trainer, "ann@example.com").await;
    assert_eq!(hop.status, 200, "{}", hop.body);
    wait_until("the owed meeting and event are deleted", || async {
        live(&app) == (false, false)
    })
    .await;
    assert_eq!(alerts_about(&app), 1, "one alert in all");
    assert!(app.store.owed_deletions().unwrap().is_empty());
}

/// Rule 26: a booking `Failed` after lost answers waits for an edit. The admin checked
/// the trainer's Lark and deleted the meetings the lost answers made (README); a user
/// reschedules it once Lark answers again, and it gets one meeting, linked.
#[tokio::test]
async fn a_booking_failed_after_lost_answers_gets_its_meeting_when_a_user_edits_it() {
    use crate::helpers::{connected_trainer, create_booking, edit_booking, field, sf_time_in};
    use crate::helpers::{spawn_app_with, wait_for_status, wait_ready as app_ready};
    let app = spawn_app_with(|s| s.processing.in_doubt_delay = Duration::from_millis(200)).await;
    let (trainer, _) = connected_trainer(&app, "Ann", "ann@example.com").await;
    app_ready(&app).await;
    app.lark.faults().lose_answers(Some(Method::POST), APPLY, 2);
    let b = create_booking(&app, &trainer, 30, 31, true);
    wait_for_status(&app, &b, "Failed").await;
    let reason = field(&app, &b, ERROR).unwrap();
    assert!(reason.contains("may exist"), "{reason}");
    let lost: Vec<String> = app.lark.reserves().into_iter().map(|r| r.id).collect();
    assert_eq!(lost.len(), 2, "the two lost answers each made a meeting");
    for id in &lost {
        assert!(app.lark.delete_reserve_by_hand(id));
    }

    edit_booking(
        &app,
        &b,
        json!({ "Training_Start__c": sf_time_in(32), "Training_End__c": sf_time_in(33) }),
    );
    wait_for_status(&app, &b, "Created").await;
    let live: Vec<String> = app
        .lark
        .reserves()
        .into_iter()
        .filter(|r| !r.deleted)
        .map(|r| r.id)
        .collect();
    assert_eq!(live.len(), 1, "one live reservation");
    assert_eq!(
        field(&app, &b, "Lark_Reservation_Id__c"),
        Some(live[0].clone())
    );
    assert_eq!(
        app.lark.requests().count(&Method::POST, APPLY),
        3,
        "one apply after the edit"
    );
}

/// Rules 14 and 25: the hourly sweep makes each host's owed deletions on its own. A host
/// whose token cannot be refreshed now keeps theirs owed; the next host's are made in
/// the same sweep, and the sweep still goes on to the bookings. (It used to stop at the
/// first host's error: nobody else's deletions, and no booking, until that host's
/// trouble passed.)
#[tokio::test]
async fn one_host_whose_token_cannot_be_refreshed_holds_up_no_other_owed_deletion() {
    use crate::helpers::{connect, create_booking, field, spawn_app, tid, TestApp};
    use crate::helpers::{wait_for_status, wait_ready as app_ready};
    use lark_vc_bridge::bookings::reconcile;
    use lark_vc_bridge::ids::BookingId;
    use lark_vc_bridge::store::{OwedDeletion, OwedItem};
    use lvb_simulators::lark::DEFAULT_REFRESH_SECS;

    /// Connects the trainer and gives them a booking with its meeting.
    async fn booked(app: &TestApp, trainer: &str, email: &str) -> String {
        let hop = connect(app, trainer, email).await;
        assert_eq!(hop.status, 200, "{}", hop.body);
        let b = create_booking(app, trainer, 30, 31, true);
        wait_for_status(app, &b, "Created").await;
        b
    }

    let app = spawn_app().await;
    app_ready(&app).await;
    // The sweep takes hosts in id order: Ann's trouble comes first.
    let ann = app.add_trainer("Ann", Some("ann@example.com"), true);
    let bob = app.add_trainer("Bob", Some("bob@example.com"), true);
    assert!(ann < bob, "{ann} before {bob}");
    let bob_booking = booked(&app, &bob, "bob@example.com").await;
    // Ann's access tokens live 60 s, inside the service's 5-minute skew: every use of
    // them needs a refresh first (and a refresh brings another 60 s token).
    app.lark.set_token_lifetimes(60, DEFAULT_REFRESH_SECS);
    let ann_booking = booked(&app, &ann, "ann@example.com").await;

    // Both owe the deletion of their meeting (as after a cancel while disconnected).
    let owe = |booking: &str, host: &str| {
        let reservation_id = field(&app, booking, "Lark_Reservation_Id__c").unwrap();
        let d = OwedDeletion {
            item: OwedItem::Reservation {
                reservation_id: reservation_id.clone(),
            },
            booking_id: BookingId::parse(booking).unwrap(),
            trainer_id: tid(host),
            ends_at: chrono::Utc::now() + chrono::Duration::days(30),
        };
        assert!(app.store.owe_deletion(&d, chrono::Utc::now()).unwrap());
        reservation_id
    };
    let ann_meeting = owe(&ann_booking, &ann);
    let bob_meeting = owe(&bob_booking, &bob);
    // Lark's token endpoint is down: Ann's token cannot be refreshed.
    app.lark.faults().inject(
        Some(Method::POST),
        "/open-apis/authen/v2/oauth/token",
        1_000,
        503,
        r#"{"code":20050,"msg":"server error"}"#,
        &[],
    );

    let swept = reconcile(&app.engine).await;
    assert!(
        swept.is_ok(),
        "the sweep went on to the bookings: {swept:?}"
    );
    let deleted = |id: &str| app.lark.reserves().iter().any(|r| r.id == id && r.deleted);
    assert!(deleted(&bob_meeting), "Bob's owed meeting is deleted");
    assert!(!deleted(&ann_meeting), "Ann's cannot be, yet");
    let owed: Vec<String> = app
        .store
        .owed_deletions()
        .unwrap()
        .into_iter()
        .map(|d| d.trainer_id.to_string())
        .collect();
    assert_eq!(owed, vec![ann.clone()], "only Ann's deletion is still owed");
}
