//! Waits a server asks for are capped (design §3 rule 18, issue 12 item 5), seen from
//! outside: the real binary's `run` against the simulators, observed only through the
//! simulators' request logs and records.

use std::time::{Duration, Instant};

use lark_vc_bridge::salesforce::streaming::MAX_ADVICE_INTERVAL;
use lvb_simulators::launch::Simulators;

use crate::helpers::{binary_config, insert_booking};

use crate::helpers::BIN;

/// `/meta/connect` requests the Salesforce simulator has answered.
fn connects(sims: &Simulators) -> usize {
    sims.salesforce
        .requests()
        .matching(|r| r.path.starts_with("/cometd/") && r.body.contains("/meta/connect"))
        .len()
}

/// Polls `check` every 50 ms until it holds; panics with `what` once `within` has passed.
async fn wait_for(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server advising a ten-hour `advice.interval` on every connect must not stall the
/// stream: the service waits at most `MAX_ADVICE_INTERVAL` (30 s, under Salesforce's 40 s
/// reconnect deadline) and the next change still reaches the booking.
#[tokio::test(flavor = "multi_thread")]
async fn a_ten_hour_advice_interval_delays_the_stream_only_up_to_the_cap() {
    let sims = Simulators::start(0, 0).await.unwrap();
    sims.salesforce
        .hub()
        .advise_interval(Some(Duration::from_secs(10 * 3600)));
    let trainer = sims.seed_trainers().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let server = "\n[server]\nbind = \"127.0.0.1:0\"\n";
    let config = binary_config(&sims, dir.path(), "run.toml", "", server);
    let mut service = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");

    // The first connect is answered at once, advising ten hours before the next one.
    wait_for(
        "the first connect is answered",
        Duration::from_secs(30),
        || connects(&sims) >= 1,
    )
    .await;
    let advised_at = Instant::now();
    // Beyond the sweep's horizon (366 days): only its change event can bring it in, so a
    // start-up sweep that happens to run after this insert (a loaded machine) cannot write
    // its status before the capped wait and fail the test (seen 1 run in many).
    let booking = insert_booking(&sims.salesforce, &trainer.id, 400 * 24, 400 * 24 + 1, true);

    let status = || {
        sims.salesforce
            .get("Training_Booking__c", &booking)
            .and_then(|b| {
                b.get("Lark_Meeting_Status__c")?
                    .as_str()
                    .map(str::to_string)
            })
    };
    wait_for(
        "the booking's status is written after the capped wait",
        MAX_ADVICE_INTERVAL + Duration::from_secs(30),
        || status().as_deref() == Some("Pending Trainer Connection"),
    )
    .await;
    let waited = advised_at.elapsed();
    // The service did follow the advice (up to the cap) rather than ignore it.
    assert!(
        waited >= MAX_ADVICE_INTERVAL - Duration::from_secs(5),
        "the change arrived after {waited:?}, before the capped interval"
    );
    assert_eq!(connects(&sims), 2, "one connect per capped interval");
    assert!(
        service.try_wait().unwrap().is_none(),
        "the service is still running"
    );
    service.kill().await.unwrap();
}
