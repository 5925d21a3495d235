//! The README's configuration reference must list exactly the keys of
//! `config/default.toml`, with the same defaults, and start with the two set-up commands;
//! its rule table must name, for every rule 1–30 of the design, integration tests that
//! exist in `tests/api/`.

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
    let mut keys = BTreeMap::new();
    for line in section(&readme, "## Configuration reference").lines() {
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

/// The section of the README under `heading`, up to the next `## ` heading.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has {heading:?}"));
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len());
    &section[..end]
}

/// Names of the test functions of `tests/api/{file}.rs`: each `fn` that follows a
/// `#[test]` or `#[tokio::test…]` attribute (other attributes and doc lines may come
/// between).
fn test_functions(file: &str) -> Vec<String> {
    let path = format!("tests/api/{file}.rs");
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut names = Vec::new();
    let mut in_test = false;
    for line in text.lines().map(str::trim) {
        if line == "#[test]" || line.starts_with("#[tokio::test") {
            in_test = true;
        } else if in_test {
            let signature = line
                .strip_prefix("async fn ")
                .or_else(|| line.strip_prefix("fn "));
            if let Some(rest) = signature {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
                in_test = false;
            }
        }
    }
    names
}

/// Rows of the table "Every rule, checked from outside": rule number → the
/// `file::test_name`s its row names.
fn rule_rows() -> BTreeMap<u32, Vec<(String, String)>> {
    let readme = read("README.md");
    let mut rows: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for line in section(&readme, "## Every rule, checked from outside").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(rule) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        assert_eq!(
            cells.len(),
            5,
            "three cells in the row of rule {rule}: {line}"
        );
        let tests = rows.entry(rule).or_default();
        for named in cells[3].split('`').skip(1).step_by(2) {
            let (file, test) = named
                .split_once("::")
                .unwrap_or_else(|| panic!("rule {rule}: {named:?} is not file::test_name"));
            tests.push((file.to_string(), test.to_string()));
        }
    }
    rows
}

#[test]
fn every_rule_is_checked_from_outside_by_tests_that_exist() {
    let rows = rule_rows();
    for rule in 1..=30 {
        let tests = rows
            .get(&rule)
            .unwrap_or_else(|| panic!("README's rule table has no row for rule {rule}"));
        assert!(!tests.is_empty(), "rule {rule} names no test");
    }
    let unknown: Vec<u32> = rows
        .keys()
        .copied()
        .filter(|r| !(1..=30).contains(r))
        .collect();
    assert!(
        unknown.is_empty(),
        "rows for rules the design lacks: {unknown:?}"
    );
    let mut files = BTreeMap::new();
    for (rule, tests) in &rows {
        for (file, test) in tests {
            let defined = files
                .entry(file.clone())
                .or_insert_with(|| test_functions(file));
            assert!(
                defined.contains(test),
                "rule {rule}: tests/api/{file}.rs has no test fn {test}"
            );
        }
    }
}
