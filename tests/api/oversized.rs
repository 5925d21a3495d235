//! Outbound answers are read under a cap (design §3 rule 18, issue 21 item 6), through
//! the real binary: a Salesforce token endpoint or a CometD connect answering 300 MB
//! leaves the process small, and it says why.
//!
//! The peak is the kernel's `VmHWM` from `/proc/<pid>/status`, read while the process is
//! alive and after the oversized answer is over (the simulator sees the client hang up).

use std::time::{Duration, Instant};

use lvb_simulators::launch::Simulators;
use lvb_simulators::salesforce::oversized::OversizedAnswer;

use crate::bounds::run_binary;
use crate::helpers::{binary_config, run_command, wait_until, BIN};

/// What the oversized answers weigh.
const HUGE: u64 = 300 * 1024 * 1024;

/// The most the process may hold at its peak, in kB.
const PEAK_LIMIT_KB: u64 = 64 * 1024;

/// The peak resident size of a live process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Waits (with a deadline) until the simulator has seen `n` oversized answers end.
async fn wait_answers_over(sims: &Simulators, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sims.salesforce.oversized_answers_finished() < n {
        assert!(
            Instant::now() < deadline,
            "the oversized answer never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_token_endpoint_answer_leaves_check_and_connect_link_small_and_reported() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&sims, dir.path(), "check.toml", "", "");

    // `check` logs in to Salesforce first, then asks Lark; Lark answering late keeps the
    // process alive (and measurable) after the token answer is over.
    sims.salesforce
        .stream_oversized_answers(OversizedAnswer::TokenEndpoint, HUGE, 1);
    sims.lark.faults().set_latency(Duration::from_secs(3));
    let mut child = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    wait_answers_over(&sims, 1).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "`check` is still running (waiting for Lark)"
    );
    let peak_kb = peak_rss_kb(pid);
    let sent = sims.salesforce.oversized_bytes_sent();
    println!(
        "check: token endpoint answering {} MB → peak RSS {} MB, {:.1} MB sent before it hung up",
        HUGE >> 20,
        peak_kb / 1024,
        sent as f64 / 1048576.0
    );
    assert!(peak_kb < PEAK_LIMIT_KB, "peak RSS {peak_kb} kB");
    assert!(
        sent < HUGE / 10,
        "{sent} bytes sent: the body was read to the end"
    );
    sims.lark.faults().set_latency(Duration::ZERO);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check fails: {stdout}");
    let login = stdout
        .lines()
        .find(|l| l.contains("Salesforce login"))
        .unwrap_or_else(|| panic!("a Salesforce login line: {stdout}"));
    assert!(login.contains("cap"), "says why: {login}");
    assert!(!stdout.contains("xxxxxxxx"), "no padding quoted: {stdout}");

    // `connect-link` (the command the issue measured) reports it and stops.
    sims.salesforce
        .stream_oversized_answers(OversizedAnswer::TokenEndpoint, HUGE, 1);
    let before = sims.salesforce.oversized_bytes_sent();
    let started = Instant::now();
    let out = run_command(&["connect-link", "ann@example.com"], &config).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cap"), "says why: {stderr}");
    wait_answers_over(&sims, 2).await;
    let sent = sims.salesforce.oversized_bytes_sent() - before;
    println!(
        "connect-link: refused the token answer after {:.1} MB sent, in {:?}",
        sent as f64 / 1048576.0,
        started.elapsed()
    );
    assert!(sent < HUGE / 10, "{sent} bytes sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_connect_answer_leaves_run_small_running_and_saying_why() {
    let sims = Simulators::start(0, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    sims.salesforce
        .stream_oversized_answers(OversizedAnswer::CometdConnect, HUGE, 1);
    let bin = run_binary(&sims, dir.path(), "").await;
    wait_answers_over(&sims, 1).await;
    // It subscribes again and is ready, in the same process.
    let http = reqwest::Client::new();
    wait_until("`run` ready again after the oversized answer", || {
        let http = http.clone();
        let url = format!("{}/readyz", bin.url);
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let mut bin = bin;
    assert!(
        bin.child.try_wait().unwrap().is_none(),
        "`run` keeps running"
    );
    let peak_kb = peak_rss_kb(bin.child.id());
    let sent = sims.salesforce.oversized_bytes_sent();
    println!(
        "run: CometD connect answering {} MB → peak RSS {} MB, {:.1} MB sent before it hung up",
        HUGE >> 20,
        peak_kb / 1024,
        sent as f64 / 1048576.0
    );
    assert!(peak_kb < PEAK_LIMIT_KB, "peak RSS {peak_kb} kB");
    assert!(sent < HUGE / 10, "{sent} bytes sent");
    let said = bin.logged("answer too large");
    assert_eq!(said.len(), 1, "one warning says why");
    assert!(
        said[0]["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cap")),
        "{}",
        said[0]
    );
    let handshakes = sims
        .salesforce
        .requests()
        .matching(|r| r.path.starts_with("/cometd/") && r.body.contains("/meta/handshake"))
        .len();
    assert!(handshakes >= 2, "shook hands again: {handshakes}");
}
