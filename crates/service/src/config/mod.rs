//! Configuration: the layered settings of design §2.2, loaded with the `config` crate and
//! validated into typed [`Settings`].
//!
//! Layers, later wins: `config/default.toml` (embedded in the binary) → the file from
//! `--config`/`LVB_CONFIG` → environment variables `LVB__SECTION__KEY`.
//! Validation collects every missing or invalid key into one [`ConfigError`]; no message
//! ever contains a secret's value.

//!
//! - `defaults.rs` — the embedded `config/default.toml` and the layers read over it
//! - `raw.rs` — the keys as deserialized, all optional
//! - `validate.rs` — raw → typed, every problem named in one [`ConfigError`]
//! - `settings.rs` — the typed [`Settings`] the rest of the service reads
//!
//! Adding a key is one local edit in each of `raw.rs`, `validate.rs` and `settings.rs`,
//! plus its documented default in `config/default.toml`.

mod defaults;
mod raw;
mod settings;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use defaults::DEFAULT_TOML;
pub use settings::*;
pub use validate::is_api_name;

/// Every problem found while loading the configuration, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One entry per missing or invalid key, naming the key.
    pub problems: Vec<String>,
}

impl Settings {
    /// Loads defaults, then `file` (if any), then `LVB__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, env)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        defaults::read_layers(file, env)?.validate()
    }
}

/// Random bytes as hex (generated keys for the simulators and demo).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod test_support;
