//! The packaged `/etc/bramble/bramble.toml` (`packaging/bramble.toml`) against the code,
//! so the file cannot drift from [`RawConfig`] and the built-in defaults.
//!
//! The file's conventions (its header says them to operators):
//! - `# key = value` is a default: uncommenting every one (and every `# [section]`)
//!   must give exactly the built-in [`Config`];
//! - `# key = value  # example` is an example for a key without a literal default, and a
//!   `# [section]  # example` header makes its whole section examples; uncommenting
//!   everything, examples too, must still be a [`RawConfig`] (known keys, right types);
//! - an uncommented `key = value` is active (only `state_dir`, see the file).
//!
//! Every key [`RawConfig`] accepts, in every section, must appear: the keys are read
//! from serde itself (a probe key's "unknown field, expected one of ..." error), so a
//! new section or key added to the code fails [`every_key_of_the_code_is_in_the_file`]
//! until its line is written here.

use std::collections::BTreeSet;

use super::*;

const FILE: &str = include_str!("../../../packaging/bramble.toml");
/// The one active line of the file: the service user's home would otherwise pick
/// `~/.local/state/bramble`.
const PACKAGED_STATE_DIR: &str = "/var/lib/bramble";
/// Marks an example line or section in the file.
const EXAMPLE: &str = "# example";

/// One line of the file, classified.
#[derive(Debug)]
enum Line<'a> {
    /// A `[section]` or `[[section]]` header, commented or not.
    Header { commented: bool, example: bool, path: String, body: &'a str },
    /// A `key = value` setting, commented or not.
    Setting { commented: bool, example: bool, key: &'a str, body: &'a str },
    /// Text, blank lines.
    Other,
}

fn classify(line: &str) -> Line<'_> {
    let (commented, body) = match line.strip_prefix("# ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let example = body.contains(EXAMPLE);
    let head = body.split(" #").next().unwrap_or(body).trim_end();
    if head.starts_with('[') && head.ends_with(']') {
        let path = head.trim_matches(['[', ']']).to_string();
        if !path.is_empty() && path.chars().all(|c| c.is_ascii_lowercase() || "_.".contains(c)) {
            return Line::Header { commented, example, path, body };
        }
    }
    if let Some((key, _)) = body.split_once(" = ")
        && !key.is_empty()
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Line::Setting { commented, example, key, body };
    }
    Line::Other
}

/// The file with its default lines uncommented (and its example lines too, if
/// `examples`).
fn uncommented(examples: bool) -> String {
    let mut out = String::new();
    let mut section_is_example = false;
    for line in FILE.lines() {
        let text = match classify(line) {
            Line::Header { commented, example, body, .. } => {
                section_is_example = example;
                if commented && (examples || !example) { body } else { line }
            }
            Line::Setting { commented, example, body, .. } => {
                let example = example || section_is_example;
                if commented && (examples || !example) { body } else { line }
            }
            Line::Other => line,
        };
        out.push_str(text);
        out.push('\n');
    }
    out
}

/// Every `section.key` the file lists, commented or not.
fn keys_in_file() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in FILE.lines() {
        match classify(line) {
            Line::Header { path, .. } => section = path,
            Line::Setting { key, .. } if section.is_empty() => {
                keys.insert(key.to_string());
            }
            Line::Setting { key, .. } => {
                keys.insert(format!("{section}.{key}"));
            }
            Line::Other => {}
        }
    }
    keys
}

/// The fields of the table `doc` ends in, as serde lists them when a `__probe` key is
/// refused; `None` when `doc` does not end in a struct (a scalar or list key).
fn probe_fields(doc: &str) -> Option<Vec<String>> {
    let err = toml::from_str::<RawConfig>(&format!("{doc}__probe = 1\n")).err()?.to_string();
    let (_, expected) = err.split_once("unknown field `__probe`")?;
    Some(expected.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

/// Every leaf key `RawConfig` accepts, as `section.key` (`netboot.flat.interface`).
fn keys_in_code() -> BTreeSet<String> {
    fn walk(doc: &str, path: &str, out: &mut BTreeSet<String>) {
        let fields = probe_fields(doc).unwrap_or_else(|| panic!("no fields probed at {path:?}"));
        for f in fields {
            let full = if path.is_empty() { f.clone() } else { format!("{path}.{f}") };
            let table = format!("{doc}[{full}]\n");
            let array = format!("{doc}[[{full}]]\n");
            if probe_fields(&table).is_some() {
                walk(&table, &full, out);
            } else if probe_fields(&array).is_some() {
                walk(&array, &full, out);
            } else {
                out.insert(full);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", "", &mut out);
    out
}

fn load(text: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bramble.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn defaults() -> Config {
    let o = Overrides { state_dir: Some(PACKAGED_STATE_DIR.into()), ..Overrides::default() };
    Config::load(None, &o).expect("built-in defaults")
}

/// The lines of `got`'s and `want`'s pretty Debug that differ, for a readable failure.
fn differences(got: &Config, want: &Config) -> Vec<String> {
    let (got, want) = (format!("{got:#?}"), format!("{want:#?}"));
    let mut out: Vec<String> = got
        .lines()
        .zip(want.lines())
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("file: {} / built-in: {}", g.trim(), w.trim()))
        .collect();
    if out.is_empty() && got != want {
        out.push("the two differ in length".into());
    }
    out
}

#[test]
fn the_packaged_file_and_its_uncommented_defaults_are_the_built_in_defaults() {
    let want = defaults();
    let as_shipped = differences(&load(FILE), &want);
    assert!(as_shipped.is_empty(), "packaging/bramble.toml as shipped: {as_shipped:#?}");
    let uncommented = differences(&load(&uncommented(false)), &want);
    assert!(
        uncommented.is_empty(),
        "packaging/bramble.toml's `# key = value` lines are not the defaults: {uncommented:#?}"
    );
}

#[test]
fn the_packaged_file_with_examples_uncommented_is_well_formed() {
    let text = uncommented(true);
    if let Err(e) = toml::from_str::<RawConfig>(&text) {
        panic!("packaging/bramble.toml with every line uncommented: {e}");
    }
    // The uncommenting reached every setting: nothing that looks like one is left.
    let left: Vec<_> = text
        .lines()
        .filter(|l| {
            matches!(
                classify(l),
                Line::Setting { commented: true, .. } | Line::Header { commented: true, .. }
            )
        })
        .collect();
    assert!(left.is_empty(), "still commented: {left:?}");
}

#[test]
fn every_key_of_the_code_is_in_the_file() {
    let code = keys_in_code();
    assert!(code.contains("netboot.flat.interface") && code.contains("console.burst_bytes"));
    let file = keys_in_file();
    let missing: Vec<_> = code.difference(&file).collect();
    assert!(
        missing.is_empty(),
        "packaging/bramble.toml lacks {missing:?}: add a `# key = default` line (or \
         `# key = value  # example` when there is no literal default) with a one-line \
         explanation, under its `# [section]`"
    );
    let unknown: Vec<_> = file.difference(&code).collect();
    assert!(unknown.is_empty(), "packaging/bramble.toml names keys the code lacks: {unknown:?}");
}

#[test]
fn the_probe_sees_sections_and_refuses_scalars() {
    assert!(probe_fields("").is_some_and(|f| f.contains(&"listen".to_string())));
    assert!(probe_fields("[jobs]\n").is_some_and(|f| f.contains(&"max_parallel".to_string())));
    assert_eq!(probe_fields("[listen]\n"), None);
    assert_eq!(probe_fields("[[netboot.tftp_listen]]\n"), None);
}
