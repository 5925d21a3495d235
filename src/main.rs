//! `lark-vc-bridge`: parses the command line, starts telemetry, calls the service library
//! (`lark_vc_bridge`); `demo` and `simulate` also start the simulators (`lvb_simulators`).

mod cli;
mod demo;

use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    // One thread runs every task. The service waits on the network almost all the time
    // (Lark paces it at 50 applies a second): a second worker only added hand-overs
    // between threads — wake-ups, context switches, work stealing — and the CPU they
    // cost. Measured with the benchmark (2,000-booking burst, calendar on, one run after
    // the other): 0.77 ms of CPU per booking against 1.01 ms with Tokio's default two
    // workers, wall time and lone-booking latency unchanged (README "Benchmark").
    // Blocking work (DNS lookups) still goes to Tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the Tokio runtime");
    runtime.block_on(async_main())
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and each
/// arena keeps its freed memory: in the 2,000-booking burst that was about 6 MiB of peak
/// RSS for nothing, as Tokio's workers and blocking threads each touched one (measured
/// with the benchmark, one run after the other: 33.6 MiB with the default, 32.7 MiB with
/// two arenas, 27.7 MiB with one; CPU 1.21 ms per booking with one against 1.38–1.42
/// with more, so the one arena's lock is not contended at the burst's pace).
/// Set before any thread starts, as `mallopt` requires; `MALLOC_ARENA_MAX` in the
/// environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only changes a glibc malloc parameter; it is called before
        // any other thread exists, so no allocation races with it.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

async fn async_main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let quiet = matches!(
        cli.command,
        cli::Command::Demo { .. } | cli::Command::Simulate { .. }
    );
    lark_vc_bridge::telemetry::init_with_default(if quiet { "warn" } else { "info" });
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
