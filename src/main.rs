//! `lark-vc-bridge`: parses the command line, starts telemetry, calls the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lark_vc_bridge::cli::Cli::parse();
    lark_vc_bridge::telemetry::init();
    match lark_vc_bridge::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
