//! The shipped `config.toml` and the code's defaults must say the same thing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use facekey_config::{Config, DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_TOML, DEFAULT_THRESHOLD};

/// Every `section.key` in a rendered configuration.
fn dotted_keys(text: &str) -> BTreeSet<String> {
    let table: toml::Table = text.parse().expect("rendered TOML parses");
    let mut keys = BTreeSet::new();
    for (section, value) in &table {
        let inner = value.as_table().expect("top level holds only sections");
        for key in inner.keys() {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn shipped_file_parses_to_the_default_config() {
    let parsed = Config::from_toml_str(DEFAULT_CONFIG_TOML, Path::new(DEFAULT_CONFIG_PATH))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed, Config::default());
}

#[test]
fn shipped_file_sets_every_key_of_the_rendered_default() {
    let shipped = dotted_keys(DEFAULT_CONFIG_TOML);
    let rendered = dotted_keys(&Config::default().to_toml_string());
    let missing: Vec<_> = rendered.difference(&shipped).collect();
    assert!(
        missing.is_empty(),
        "keys missing from config.toml: {missing:?}"
    );
    assert_eq!(shipped, rendered);
}

#[test]
fn shipped_file_shows_every_optional_key_as_a_commented_line() {
    let mut full = Config::default();
    full.models.detector_file = Some(PathBuf::from("/d.onnx"));
    full.models.detector_sha256 = Some("0".repeat(64));
    full.models.embedder_file = Some(PathBuf::from("/e.onnx"));
    full.models.embedder_sha256 = Some("0".repeat(64));
    let shipped = dotted_keys(DEFAULT_CONFIG_TOML);
    let optional: Vec<_> = dotted_keys(&full.to_toml_string())
        .into_iter()
        .filter(|k| !shipped.contains(k))
        .collect();
    assert_eq!(optional.len(), 4, "{optional:?}");
    for key in optional {
        let name = key.rsplit('.').next().unwrap_or(&key);
        let commented = format!("# {name} = ");
        assert!(
            DEFAULT_CONFIG_TOML
                .lines()
                .any(|l| l.starts_with(&commented)),
            "config.toml has no `{commented}...` line for {key}"
        );
    }
}

#[test]
fn shipped_file_documents_each_key_with_a_default_comment() {
    // Every uncommented `key = value` line is preceded by a comment block mentioning "Default".
    let lines: Vec<&str> = DEFAULT_CONFIG_TOML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_assignment =
            !line.starts_with('#') && !line.starts_with(' ') && line.contains(" = ");
        if !is_assignment {
            continue;
        }
        let comment: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        assert!(
            comment.iter().any(|l| l.contains("Default")),
            "config.toml line {}: `{line}` has no comment giving its default",
            i + 1
        );
    }
}

#[test]
fn default_threshold_is_the_one_constant() {
    // Not set by default: the active embedder's calibrated threshold applies, and the shipped file names it.
    assert_eq!(Config::default().matching.threshold, None);
    let line = format!("# threshold = {DEFAULT_THRESHOLD}");
    assert!(
        DEFAULT_CONFIG_TOML.lines().any(|l| l == line),
        "config.toml does not show `{line}`"
    );
}
