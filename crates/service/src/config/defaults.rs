//! The defaults and the layers: `config/default.toml` embedded in the binary (every key
//! documented there), then the file from `--config`/`LVB_CONFIG`, then the environment
//! (`LVB__SECTION__KEY`), read into the [raw layer](super::raw).

use std::collections::HashMap;
use std::path::Path;

use super::raw::Raw;
use super::ConfigError;

/// The checked-in defaults, embedded so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

/// Prefix of environment overrides (`LVB__LARK__APP_SECRET`).
const ENV_PREFIX: &str = "LVB";

/// Reads the layers, later wins, into the raw layer. Only deserialization problems are
/// reported here; validation names everything else.
pub(super) fn read_layers(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Raw, ConfigError> {
    let mut builder = config::Config::builder().add_source(config::File::from_str(
        DEFAULT_TOML,
        config::FileFormat::Toml,
    ));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError {
                problems: vec![format!("config file {} does not exist", path.display())],
            });
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let env_map: HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env_map)),
    );
    builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError {
            // config's messages name the key and the expected type, never the value.
            problems: vec![scrub_config_error(&e.to_string())],
        })
}

/// `config` errors may quote the offending value ("invalid type: string \"abc\"");
/// drop any quoted part so a mistyped secret is never echoed.
fn scrub_config_error(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…");
            }
            in_quote = !in_quote;
            if !in_quote {
                out.push('"');
            }
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    out
}
