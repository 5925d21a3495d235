//! `lvb-bench`: a burst benchmark of the real service against the built-in simulators
//! (issue 7). It starts both simulators with a simulated network latency, seeds and
//! connects trainers through the real OAuth flow (a share of them with access tokens
//! that have already expired), starts the same service `run` starts, then measures:
//!
//! 1. lone bookings, one at a time: insert → write-back latency, and the overhead over
//!    the simulated latency of the calls on the booking's path;
//! 2. a burst of bookings inserted at once (`--bookings`, up to 10,000 and more): wall
//!    time until every one has its link against the ideal Lark's sliding windows allow,
//!    Salesforce calls and Lark calls per method with their 429s (from the simulators'
//!    request logs), primary-calendar lookups per trainer, refreshes per trainer whose
//!    token had expired, and the pacing: the head before the first apply, where the
//!    applies fell behind the windows, the tail after the last apply;
//! 3. peak RSS and CPU of the service (with `--service-process`, apart from the bench's
//!    own process and its peak RSS).
//!
//! It prints a table and writes the figures as JSON. It only observes: it never reaches
//! into the service's internals (every figure comes from the simulators or `/proc`), so
//! the service can also run as a separate process (`--service-process`), which is the
//! only way to see the service's own memory.
//!
//! - `phases.rs` — seeding and connecting trainers, the lone bookings, the burst
//! - `figures.rs` — the figures: what the simulators' logs and `/proc` say, and the targets
//! - `timeline.rs` — when the logged requests were answered, and the pacing figures
//! - `report.rs` — the printed table
//! - `service.rs` — the service under test (in process or a child), the simulators'
//!   runtime, `/proc` readings
//! - `ready.rs` — readiness, connecting trainers, waiting for a clear Lark minute

mod figures;
mod phases;
mod ready;
mod report;
mod service;
#[cfg(test)]
mod tests;
mod timeline;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;

use figures::*;
use phases::*;
use ready::*;
use report::*;
use service::*;
use timeline::*;

const BOOKING: &str = "Training_Booking__c";
const TRAINER: &str = "Onboarding_Trainer__c";
const STATUS_FIELD: &str = "Lark_Meeting_Status__c";
const LINK_FIELD: &str = "Remote_Training_Meeting_Link__c";
/// Lark's per-app limits on reserve apply (design §4), for the limit-bound ideal.
const LARK_APPLY_PER_MINUTE: usize = 1000;
const LARK_APPLY_PER_SECOND: usize = 50;
/// Calls a booking still waits for after its apply slot (the apply itself, the event
/// create, the write-back), added to the windows' bound to make the ideal wall time.
const PATH_AFTER_APPLY_CALLS: f64 = 3.0;
/// The margin the service's apply pacer adds to each of Lark's windows in the measured
/// code (`lark::pacing::WINDOW_MARGIN`, 100 ms): the 51st apply starts 1.1 s after the
/// 1st. Kept here, not imported, because it explains the "before" figures whatever the
/// service later does with it.
const PACER_MARGIN: Duration = Duration::from_millis(100);
/// Connect flows run at once while seeding (each is a handful of calls).
const CONNECT_CONCURRENCY: usize = 8;
/// Thread name of the simulators' runtime, so their CPU time can be told apart.
const SIM_THREAD: &str = "lvb-sim";
/// Thread name of the bench's own pollers and inserters.
const BENCH_THREAD: &str = "lvb-bench";
/// Linux reports process times in clock ticks of `sysconf(_SC_CLK_TCK)`, which is 100
/// on every Linux ABI in use (USER_HZ); the crate has no libc to ask.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// Access-token lifetime (seconds) given to the trainers whose token is to be expired:
/// inside the service's default 5-minute `refresh.access_token_skew`, so the service
/// counts it expired, yet long enough for the connect flow's own `user_info` call.
const SHORT_ACCESS_SECS: i64 = 60;
/// How long one preparation step (readiness, a connect, a lone booking) may take.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// A burst of bookings through the real service against the simulators, measured.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "lvb-bench", version, about)]
pub struct BenchArgs {
    /// Remote bookings created at once in the burst.
    #[arg(long, default_value_t = 2000)]
    pub bookings: usize,
    /// Trainers the bookings are spread over (all connected to Lark).
    #[arg(long, default_value_t = 100)]
    pub trainers: usize,
    /// The order the burst's bookings are inserted in: taking turns over the trainers, or
    /// trainer by trainer (each trainer's bookings one after another, so several of one
    /// trainer are in flight at once). Either way each trainer gets the same start times.
    #[arg(long, value_enum, default_value_t = BurstOrder::RoundRobin)]
    pub order: BurstOrder,
    /// Share of trainers whose access token has already expired when the burst starts.
    #[arg(long, default_value_t = 0.2)]
    pub expired_share: f64,
    /// Simulated latency of every Salesforce and Lark call, in milliseconds.
    #[arg(long, default_value_t = 30)]
    pub latency_ms: u64,
    /// Lone bookings measured one at a time before the burst.
    #[arg(long, default_value_t = 30)]
    pub lone: usize,
    /// Where the figures are written as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub json_out: PathBuf,
    /// Run the service as a child process (`lark-vc-bridge run`) instead of in this
    /// process, so peak RSS and CPU are the service's alone.
    #[arg(long)]
    pub service_process: bool,
    /// The `lark-vc-bridge` binary for `--service-process` (default: the one built next
    /// to this benchmark, e.g. `target/release/lark-vc-bridge`).
    #[arg(long, value_name = "PATH")]
    pub service_bin: Option<PathBuf>,
}

/// The order of the burst's inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BurstOrder {
    /// Booking `i` is trainer `i mod trainers`'s.
    RoundRobin,
    /// The first bookings are trainer 0's, then trainer 1's, …
    ByTrainer,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            bookings: 2000,
            trainers: 100,
            order: BurstOrder::RoundRobin,
            expired_share: 0.2,
            latency_ms: 30,
            lone: 30,
            json_out: PathBuf::from("bench-results.json"),
            service_process: false,
            service_bin: None,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = <BenchArgs as clap::Parser>::parse();
    lark_vc_bridge::telemetry::init_with_default("warn");
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How many one-hour bookings of one trainer fit in the burst's horizon without two of
/// them overlapping (the burst spreads each trainer's bookings evenly over it).
pub fn max_bookings_per_trainer() -> usize {
    (BURST_HORIZON_SECS / 3_600) as usize
}

/// `/proc/loadavg`'s first three fields ("" when unreadable).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the bench, prints the table and writes the JSON.
async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    print_report(&report);
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.json_out.display()))?;
    println!("\nfigures written to {}", args.json_out.display());
    Ok(())
}

/// Measures everything and returns the figures (no printing).
pub async fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.bookings == 0 || args.trainers == 0 {
        bail!("--bookings and --trainers must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.expired_share) {
        bail!("--expired-share must be between 0 and 1");
    }
    let per_trainer = args.bookings.div_ceil(args.trainers);
    let most_per_trainer = max_bookings_per_trainer();
    if per_trainer > most_per_trainer {
        bail!(
            "{} bookings over {} trainers would overlap in time ({per_trainer} each; at most \
             {most_per_trainer} one-hour bookings fit in a trainer's {} days): use more --trainers",
            args.bookings,
            args.trainers,
            BURST_HORIZON_SECS / 86_400
        );
    }
    let latency = Duration::from_millis(args.latency_ms);
    let sim_rt = SimRuntime::new()?;
    let sims = sim_rt.start().await?;
    let (sf, lark) = (sims.salesforce.clone(), sims.lark.clone());
    // The simulators sleep on tokio's millisecond timer, so a simulated call takes a
    // little longer than asked; measure by how much, as a footnote to the overhead.
    let probe = reqwest::Client::new();
    let bare = probe_round_trip(&probe, &sf.base_url()).await?;
    sf.faults().set_latency(latency);
    lark.faults().set_latency(latency);
    let slowed = probe_round_trip(&probe, &sf.base_url()).await?;
    let effective_latency = slowed.saturating_sub(bare);
    let trainers = seed_trainers(&sf, &lark, args);
    let expired_count = trainers.iter().filter(|t| t.expired).count();

    let dir = std::env::temp_dir().join(format!(
        "lark-vc-bridge-bench-{}-{}",
        std::process::id(),
        lvb_simulators::wire::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let started_at = Utc::now().to_rfc3339();
    let load_at_start = load_average();
    let rss_before_service = read_memory("self").map(|m| m.rss_kb);
    let cpu_before_service = CpuSplit::read_self();

    let service_bin = match (&args.service_bin, args.service_process) {
        (_, false) => None,
        (Some(path), true) => Some(path.clone()),
        (None, true) => Some(
            std::env::current_exe()?
                .with_file_name("lark-vc-bridge")
                .with_extension(std::env::consts::EXE_EXTENSION),
        ),
    };
    let mut service = Service::start(service_bin, &sf, &lark, &dir).await?;
    let result = phases(
        args,
        started_at,
        load_at_start,
        effective_latency,
        &mut service,
        &sf,
        &lark,
        &trainers,
        expired_count,
        rss_before_service,
        cpu_before_service,
    )
    .await;
    let stopped = service.stop().await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "bench failed; service store and logs kept in {}",
            dir.display()
        );
    }
    let report = result?;
    stopped?;
    drop(sims);
    Ok(report)
}
