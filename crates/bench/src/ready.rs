//! Getting ready: readiness, connecting trainers through the real OAuth flow, waiting for
//! a clear Lark minute before the burst.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use lvb_simulators::lark::LarkSim;
use lvb_simulators::salesforce::SalesforceSim;

use super::*;

pub(super) async fn wait_ready(
    http: &reqwest::Client,
    service: &mut Service,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    let url = format!("{}/readyz", service.url());
    loop {
        if http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        service.check_alive()?;
        if Instant::now() > deadline {
            bail!("the service was not ready after {STEP_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(super) async fn connect_all(
    http: &reqwest::Client,
    url: &str,
    trainers: &[&BenchTrainer],
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(trainers)
        .map(|t| async move {
            connect(http, url, &t.id, &t.email)
                .await
                .with_context(|| format!("connecting trainer {}", t.id))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A trainer connecting through the real redirects (the same scripted browser as `demo`).
pub(super) async fn connect(
    http: &reqwest::Client,
    url: &str,
    trainer_id: &str,
    email: &str,
) -> anyhow::Result<()> {
    lvb_simulators::browser::connect_trainer(http, url, trainer_id, email, |_| {}).await
}

/// The service's `lvb_*` samples from `/metrics` (empty when unreachable).
pub(super) async fn service_metrics(http: &reqwest::Client, url: &str) -> BTreeMap<String, f64> {
    let Ok(response) = http.get(format!("{url}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("lvb_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Waits until Lark's minute window has no reservation that would delay a burst of `n`.
pub(super) async fn wait_for_clear_minute(lark: &LarkSim, n: usize) {
    let window = Duration::from_secs(60);
    let now = tokio::time::Instant::now();
    let recent: Vec<tokio::time::Instant> = lark
        .reserves()
        .iter()
        .map(|r| r.applied_at)
        .filter(|&at| at + window > now)
        .collect();
    let mut prior: Vec<f64> = recent.iter().map(|&at| -(now - at).as_secs_f64()).collect();
    prior.sort_by(f64::total_cmp);
    if limit_bound_secs(&prior, n) <= limit_bound_secs(&[], n) {
        return;
    }
    if let Some(&last) = recent.iter().max() {
        let until = last + window + Duration::from_millis(200);
        eprintln!(
            "waiting {:.0} s for Lark's minute window to clear of the lone bookings' reservations",
            until.saturating_duration_since(now).as_secs_f64()
        );
        tokio::time::sleep_until(until).await;
    }
}

/// Median round trip of a request the simulator answers at once (an unknown path: 404),
/// over a few tries.
pub(super) async fn probe_round_trip(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..21 {
        let t0 = Instant::now();
        http.get(format!("{base}/lvb-bench/latency-probe"))
            .send()
            .await
            .context("probing the simulator")?;
        times.push(t0.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Waits until every trainer record says connected.
pub(super) async fn wait_connected(
    sf: &SalesforceSim,
    trainers: &[BenchTrainer],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let all = trainers.iter().all(|t| {
            sf.get(TRAINER, &t.id)
                .and_then(|r| r.get("Lark_Connected__c").cloned())
                == Some(json!(true))
        });
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not every trainer shows connected after {STEP_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
