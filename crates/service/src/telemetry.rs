//! Tracing set-up: human-readable lines by default, JSON with `LVB_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`). Log lines carry ids, never tokens.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber at `info` unless `RUST_LOG` says otherwise. Safe to
/// call more than once (later calls are no-ops).
pub fn init() {
    init_with_default("info");
}

/// As [`init`], with another default level (the demo narrates, so it logs only warnings).
pub fn init_with_default(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = std::env::var("LVB_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colours only for a terminal: a log file or journald gets plain text, not escape
    // codes (and each line costs less to write).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
