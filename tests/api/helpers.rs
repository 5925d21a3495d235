//! `spawn_app()`: the real app, built by `App::build` exactly as `run` builds it, against
//! both simulators on random loopback ports. Also a scripted browser for the OAuth
//! flow, a log capture shared by the whole binary, and `wait_until` (never sleep).

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lark_vc_bridge::app::{App, ShutdownHandle};
use lark_vc_bridge::config::Settings;
use lark_vc_bridge::ids::{BookingId, ReplayId, TrainerId};
use lark_vc_bridge::store::Store;
use lark_vc_bridge::tokens::TokenService;
use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;
use lvb_simulators::SF_HUMAN_USER_ID;
use serde_json::{json, Map, Value};

/// Every log line any test in this binary produced.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a debug-level subscriber writing into the shared capture.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buf
    });
}

/// Everything logged so far by any test in this binary.
pub fn captured_logs() -> String {
    capture_logs();
    String::from_utf8_lossy(&LOGS.get().unwrap().lock().unwrap()).into_owned()
}

/// A running app with its simulators.
pub struct TestApp {
    pub url: String,
    pub sf: SalesforceSim,
    pub lark: LarkSim,
    pub settings: Settings,
    pub tokens: TokenService,
    pub store: Store,
    /// The running app's engine (what `reconcile` and `refresh-tokens` call).
    pub engine: std::sync::Arc<lark_vc_bridge::bookings::Engine>,
    /// The running app's processor handle (what its timers enqueue work through).
    pub processor: lark_vc_bridge::bookings::ProcessorHandle,
    pub shutdown: ShutdownHandle,
    /// What `/readyz` reports.
    pub readiness: Arc<lark_vc_bridge::bookings::PipelineStatus>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub dir: tempfile::TempDir,
}

/// Starts both simulators and the app with default settings.
/// Settings pointing at the simulators at the given URLs (every key valid, fresh keys,
/// any free port).
pub fn sim_settings(
    sf_login_url: &str,
    lark_base_url: &str,
    store_path: &std::path::Path,
) -> Result<Settings, lark_vc_bridge::config::ConfigError> {
    Settings::load_from(
        None,
        lvb_simulators::service_env(sf_login_url, lark_base_url, store_path),
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts both simulators and the app; `adjust` may change settings first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    capture_logs();
    let sf = SalesforceSim::start(0).await.expect("salesforce sim");
    let lark = LarkSim::start(0).await.expect("lark sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = sim_settings(
        &sf.base_url(),
        &lark.base_url(),
        &dir.path().join("store.db"),
    )
    .expect("settings");
    adjust(&mut settings);
    start_app(sf, lark, settings, dir).await
}

/// Starts both simulators, lets `prepare` set the Lark one up before the app first talks
/// to it (its long connection's client config, a failing endpoint, a chat), then starts
/// the app with `adjust`ed settings, which get what `prepare` returned.
pub async fn spawn_app_after<P>(
    prepare: impl FnOnce(&LarkSim) -> P,
    adjust: impl FnOnce(&mut Settings, P),
) -> TestApp {
    capture_logs();
    let sf = SalesforceSim::start(0).await.expect("salesforce sim");
    let lark = LarkSim::start(0).await.expect("lark sim");
    let prepared = prepare(&lark);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = sim_settings(
        &sf.base_url(),
        &lark.base_url(),
        &dir.path().join("store.db"),
    )
    .expect("settings");
    adjust(&mut settings, prepared);
    start_app(sf, lark, settings, dir).await
}

/// Starts the app on existing simulators and store (restarts).
pub async fn start_app(
    sf: SalesforceSim,
    lark: LarkSim,
    mut settings: Settings,
    dir: tempfile::TempDir,
) -> TestApp {
    // Port 0 in both: the app listens on a free port and uses it in its redirect URI.
    settings.server.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.public_url = "http://127.0.0.1:0".parse().unwrap();
    // A process killed a moment ago (a dropped runtime) lets go of the store lock as its
    // tasks are dropped, the way the kernel releases a dead process's lock.
    wait_until("the store's previous holder let go of it", || async {
        lark_vc_bridge::store::lock::StoreLock::is_free(&settings.store.path)
    })
    .await;
    let app = App::build(settings.clone()).await.expect("app builds");
    let url = app.local_url();
    let settings = app.settings.as_ref().clone();
    let tokens = app.tokens.clone();
    let store = app.store.clone();
    let engine = app.engine();
    let processor = app.processor.clone();
    let shutdown = app.shutdown_handle();
    let readiness = app.readiness.clone();
    let task = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let t = TestApp {
        url,
        sf,
        lark,
        settings,
        tokens,
        store,
        engine,
        processor,
        shutdown,
        readiness,
        task,
        dir,
    };
    wait_until("the app answers /healthz", || async {
        reqwest::get(format!("{}/healthz", t.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    t
}

impl TestApp {
    /// Stops the app gracefully and waits for it; returns the simulators and store dir.
    pub async fn stop(self) -> (SalesforceSim, LarkSim, Settings, tempfile::TempDir) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the app stops within a minute")
            .expect("the app task did not panic")
            .expect("the app stopped without an error");
        (self.sf, self.lark, self.settings, self.dir)
    }

    /// Adds a trainer to Salesforce (as a human user) and, if `lark`, a Lark user with
    /// the same email. Returns the trainer id.
    pub fn add_trainer(&self, name: &str, email: Option<&str>, lark: bool) -> String {
        let mut fields = json!({ "Name": name });
        if let Some(e) = email {
            fields["Email__c"] = json!(e);
            if lark {
                self.lark.add_user(e, name);
            }
        }
        self.sf
            .insert("Onboarding_Trainer__c", fields, SF_HUMAN_USER_ID)
    }

    /// The trainer record as the Salesforce simulator holds it.
    pub fn trainer(&self, id: &str) -> Map<String, Value> {
        self.sf
            .get("Onboarding_Trainer__c", id)
            .expect("trainer exists")
    }

    /// The booking record as the Salesforce simulator holds it.
    pub fn booking(&self, id: &str) -> Map<String, Value> {
        self.sf
            .get("Training_Booking__c", id)
            .expect("booking exists")
    }
}

/// An HTTP client that does not follow redirects (the scripted browser follows them
/// itself, to see each hop).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One hop of the connect flow.
pub struct Hop {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

/// GET without following redirects, with an optional Cookie header.
pub async fn get(url: &str, cookie: Option<&str>) -> Hop {
    let mut req = browser().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap_or_default();
    Hop {
        status,
        location,
        set_cookie,
        body,
    }
}

/// The `name=value` part of a Set-Cookie header.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// Starts the flow for `trainer` and approves as `lark_email`; returns the callback's
/// URL (with code and state) and the cookie the start set.
pub async fn authorize(app: &TestApp, trainer: &str, lark_email: &str) -> (String, String) {
    let start = get(
        &format!("{}/oauth/lark/start?trainer={trainer}", app.url),
        None,
    )
    .await;
    assert_eq!(start.status, 302, "start: {}", start.body);
    let cookie = cookie_pair(start.set_cookie.as_deref().expect("state cookie"));
    let mut authorize = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("sim_user", lark_email);
    let approved = get(authorize.as_str(), None).await;
    assert_eq!(approved.status, 302, "authorize: {}", approved.body);
    (approved.location.unwrap(), cookie)
}

/// The whole connect flow as a browser runs it; returns the callback's answer.
pub async fn connect(app: &TestApp, trainer: &str, lark_email: &str) -> Hop {
    let (callback, cookie) = authorize(app, trainer, lark_email).await;
    get(&callback, Some(&cookie)).await
}

/// Waits until `check` is true, polling; panics with `what` after 30 s.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Booking helpers (bookings.rs, streaming.rs).

/// The booking object of the default configuration.
pub const BOOKING: &str = "Training_Booking__c";

/// A Salesforce DateTime `hours` from now, in the REST format.
pub fn sf_time_in(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Creates a booking as a human user (raising a CREATE event); `start`/`end` in hours
/// from now. Returns its id.
pub fn create_booking(app: &TestApp, trainer: &str, start: i64, end: i64, remote: bool) -> String {
    insert_booking(&app.sf, trainer, start, end, remote)
}

/// As [`create_booking`], straight on the simulator (while the app is down).
pub fn insert_booking(
    sf: &SalesforceSim,
    trainer: &str,
    start: i64,
    end: i64,
    remote: bool,
) -> String {
    sf.insert(
        BOOKING,
        json!({
            "Name": "Booking",
            "Trainer__c": trainer,
            "Training_Start__c": sf_time_in(start),
            "Training_End__c": sf_time_in(end),
            "Service_Type__c": if remote { "Remote" } else { "Onsite" },
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Acme",
        }),
        SF_HUMAN_USER_ID,
    )
}

/// Updates a booking as a human user (raising an UPDATE event).
pub fn edit_booking(app: &TestApp, id: &str, fields: Value) {
    app.sf.update(BOOKING, id, fields, SF_HUMAN_USER_ID);
}

/// A text field of a booking (None when null or absent).
pub fn field(app: &TestApp, booking: &str, name: &str) -> Option<String> {
    app.booking(booking)
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Waits until the booking's `Lark_Meeting_Status__c` is `status`.
pub async fn wait_for_status(app: &TestApp, booking: &str, status: &str) {
    wait_until(&format!("booking {booking} is {status}"), || async {
        field(app, booking, "Lark_Meeting_Status__c").as_deref() == Some(status)
    })
    .await;
}

/// Waits until `/readyz` answers 200 (Salesforce login and live subscription): events
/// raised after this are seen even on a first start from `latest`.
pub async fn wait_ready(app: &TestApp) {
    wait_until("the app is ready (/readyz 200)", || async {
        reqwest::get(format!("{}/readyz", app.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// Adds a trainer with a Lark account and connects them. Returns (trainer id, open_id).
pub async fn connected_trainer(app: &TestApp, name: &str, email: &str) -> (String, String) {
    let trainer = app.add_trainer(name, Some(email), true);
    let done = connect(app, &trainer, email).await;
    assert_eq!(done.status, 200, "connect {email}: {}", done.body);
    (trainer, open_id_of(app, email))
}

/// The Lark open_id of the simulator user with this email.
pub fn open_id_of(app: &TestApp, email: &str) -> String {
    app.lark
        .users()
        .into_iter()
        .find(|u| u.email == email)
        .expect("lark user")
        .open_id
}

/// The replay id of the last event the app checkpointed for its channel (it resumes right
/// after it).
pub fn checkpoint(app: &TestApp) -> Option<i64> {
    match app
        .store
        .checkpoint(&app.settings.salesforce.streaming.channel)
        .expect("checkpoint readable")?
        .resume
    {
        ReplayId::After(id) => Some(id),
        other => panic!("a checkpoint is after an event, not {other}"),
    }
}

/// Waits until the app has checkpointed every event the hub published so far (so the
/// work for all of them, own write-backs included, is done).
pub async fn wait_caught_up(app: &TestApp) {
    let last = last_booking_event(&app.sf, &app.settings.salesforce.streaming.channel);
    if last == 0 {
        return;
    }
    wait_until(
        &format!("the checkpoint reaches replay id {last}"),
        || async { checkpoint(app).is_some_and(|c| c >= last) },
    )
    .await;
}

/// The value of one `/metrics` sample (the whole `name{labels}` as rendered), 0 if absent.
pub async fn metric(app: &TestApp, sample: &str) -> f64 {
    metric_sample(app, sample).await.unwrap_or(0.0)
}

/// The value of one `/metrics` sample (the whole `name{labels}` as rendered), `None` when
/// `/metrics` does not show it at all.
pub async fn metric_sample(app: &TestApp, sample: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", app.url))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    self::sample(&text, sample)
}

/// The value of one sample (`name{labels}` exactly as rendered) in a `/metrics` text, if
/// present.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().ok())?
    })
}

/// Replay id of the newest retained event on `channel` (0 when none).
pub fn last_booking_event(sf: &SalesforceSim, channel: &str) -> i64 {
    sf.hub()
        .events()
        .iter()
        .filter(|e| e["channel"] == channel)
        .filter_map(|e| e["data"]["event"]["replayId"].as_i64())
        .max()
        .unwrap_or(0)
}

/// A booking DateTime field as unix seconds.
pub fn booking_time(app: &TestApp, booking: &str, name: &str) -> i64 {
    let text = field(app, booking, name).expect("time set");
    lvb_simulators::salesforce::schema::parse_datetime(&text)
        .expect("Salesforce DateTime")
        .timestamp()
}

// ---------------------------------------------------------------------------------------
// The real binary (cli.rs, ops.rs, alerts.rs, app_hosted.rs, server_waits.rs, bounds.rs).

/// The `lark-vc-bridge` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lark-vc-bridge");

/// Writes `dir/name`, a config file for the binary against `sims`: the simulators' keys,
/// a store in `dir` and valid keys. `lark_keys` go into the `[lark]` section (the
/// snippet's last), `extra` (whole sections) after the rest.
pub fn binary_config(
    sims: &lvb_simulators::launch::Simulators,
    dir: &std::path::Path,
    name: &str,
    lark_keys: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "{}{lark_keys}\n[store]\npath = \"{}\"\n\n[security]\nencryption_key = \"{}\"\nstate_secret = \"{}\"\n{extra}",
        sims.config_snippet(),
        dir.join("store.db").display(),
        "cd".repeat(32),
        "t".repeat(40),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a one-shot command of the binary with `--config` to the end (off the async
/// runtime).
pub async fn run_command(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error");
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

/// A child process (e.g. `run`), killed when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A booking id the tests hold as text, typed for the library's API.
pub fn bid(id: &str) -> BookingId {
    BookingId::parse(id).expect("a booking id")
}

/// A trainer id the tests hold as text, typed for the library's API.
pub fn tid(id: &str) -> TrainerId {
    TrainerId::parse(id).expect("a trainer id")
}

/// A loopback port free right now (a child binary binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `[server]` section on a free loopback port, and the URL it serves.
pub fn server_section() -> (String, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    (
        format!("\n[server]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"{url}\"\n"),
        url,
    )
}

/// Starts `lark-vc-bridge run` with `config` and waits until `/readyz` at `url` answers 200.
pub async fn start_run(config: &std::path::Path, url: &str) -> KillOnDrop {
    let run = KillOnDrop(
        std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run starts"),
    );
    wait_until("the binary is ready (/readyz 200)", || async {
        reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    run
}

/// The names of the fields whose values differ between two versions of a record: what a
/// failed "untouched" assertion prints instead of the records, whose encrypted tokens
/// must not reach a test's output.
pub fn changed_fields(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}
