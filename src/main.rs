//! `lark-vc-bridge`: parses the command line, starts telemetry, calls the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lark_vc_bridge::cli::Cli::parse();
    let quiet = matches!(
        cli.command,
        lark_vc_bridge::cli::Command::Demo { .. }
            | lark_vc_bridge::cli::Command::Simulate { .. }
            | lark_vc_bridge::cli::Command::Bench(_)
    );
    lark_vc_bridge::telemetry::init_with_default(if quiet { "warn" } else { "info" });
    match lark_vc_bridge::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
