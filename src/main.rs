//! `lark-vc-bridge`: parses the command line, starts telemetry, calls the service library
//! (`lark_vc_bridge`); `demo` and `simulate` also start the simulators (`lvb_simulators`).

mod cli;
mod demo;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
