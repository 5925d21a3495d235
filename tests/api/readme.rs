//! The README's configuration reference must list exactly the keys of
//! `config/default.toml`, with the same defaults, and start with the two set-up commands.

use std::collections::BTreeMap;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Keys of default.toml, including documented-but-unset ones (`# key = ""`), with the
/// default as text (None when unset).
fn default_toml_keys() -> BTreeMap<String, Option<String>> {
    let text = read("config/default.toml");
    let parsed: toml::Table = text.parse().unwrap();
    let mut keys = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let Some((key, _)) = body.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let full = format!("{section}.{key}");
        let value = if commented {
            None
        } else {
            let mut v: &toml::Value = &toml::Value::Table(parsed.clone());
            for part in full.split('.') {
                v = &v[part];
            }
            Some(match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        keys.insert(full, value);
    }
    keys
}

/// `| \`key\` | \`default\` | meaning |` rows of the README's configuration table.
fn readme_keys() -> BTreeMap<String, Option<String>> {
    let readme = read("README.md");
    let start = readme
        .find("## Configuration reference")
        .expect("section exists");
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len());
    let mut keys = BTreeMap::new();
    for line in section[..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_string();
        let default = cells[2];
        let default = (default != "—").then(|| default.trim_matches('`').to_string());
        keys.insert(key, default);
    }
    keys
}

#[test]
fn configuration_reference_matches_default_toml() {
    let toml_keys = default_toml_keys();
    let readme = readme_keys();
    assert!(toml_keys.len() > 40, "parsed {} keys", toml_keys.len());
    for (key, default) in &toml_keys {
        let documented = readme
            .get(key)
            .unwrap_or_else(|| panic!("README's configuration reference lacks {key}"));
        assert_eq!(documented, default, "default of {key}");
    }
    for key in readme.keys() {
        assert!(
            toml_keys.contains_key(key),
            "README documents {key}, which config/default.toml lacks"
        );
    }
}

#[test]
fn readme_starts_with_the_two_set_up_commands() {
    let readme = read("README.md");
    let first_block = readme.split("```").nth(1).expect("a code block");
    assert!(
        first_block.contains("cargo run --release -- demo"),
        "{first_block}"
    );
    assert!(first_block.contains("cargo test"), "{first_block}");
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test"),
        ".ci/run runs the README's test command"
    );
}
