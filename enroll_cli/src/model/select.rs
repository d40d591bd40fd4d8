//! `facekey model use NAME`: make a model the active detector or embedder.

use std::path::Path;

use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::models::{Catalogue, Role};
use facekey_core::store::Store;
use toml_edit::Value;

use crate::admin::switch::{self, Switched};
use crate::{CliResult, Failure};

pub fn use_model(config_path: Option<&Path>, config: &Config, name: &str) -> CliResult<()> {
    let catalogue = Catalogue::load(config);
    let entry = catalogue
        .get(name)
        .ok_or_else(|| {
            let role_hint = catalogue
                .models
                .iter()
                .map(|m| format!("{} ({})", m.name, m.role.name()))
                .collect::<Vec<_>>()
                .join(", ");
            let manifest = catalogue
                .manifest_error
                .as_ref()
                .map(|e| format!("; the installed models cannot be read: {e}"))
                .unwrap_or_default();
            Failure::new(format!(
                "no model named {name:?} (known: {role_hint}){manifest}"
            ))
        })?
        .clone();
    // The file must be there and be the model before anything points at it.
    facekey_core::models::read_verified(&entry.location())
        .map_err(|e| Failure::from_error(&format!("model {name:?}"), &e))?;
    let (key, file_key, hash_key) = match entry.role {
        Role::Detector => ("detector", "detector_file", "detector_sha256"),
        Role::Embedder => ("embedder", "embedder_file", "embedder_sha256"),
    };
    let path = config_path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let switched = switch::set_values(
        path,
        &[
            ("models", key, Some(Value::from(name))),
            // A replacement file would override the named model: the switch drops it.
            ("models", file_key, None),
            ("models", hash_key, None),
        ],
    )
    .map_err(|e| Failure::from_error("configuration", &e))?;
    match switched {
        Switched::Unchanged | Switched::DefaultsApply => {
            println!("{} {name:?} is already the active {key}", entry.role.name())
        }
        Switched::Written | Switched::Created => {
            crate::audit::record(
                config,
                &crate::audit::Change {
                    action: "model-use",
                    user: None,
                    detail: format!(
                        "[models] {key} = {name:?} (SHA-256 {}) in {}",
                        entry.sha256,
                        path.display()
                    ),
                },
            );
            println!("{}: the active {key} is now {name:?}", path.display())
        }
    }
    if entry.role != Role::Embedder {
        return Ok(());
    }
    let meta = entry.meta();
    match config.matching.threshold {
        Some(t) if t != meta.threshold => println!(
            "note: [matching] threshold = {t} is set in the configuration and applies to {name:?} too; its \
             calibrated threshold is {} ({}). Remove the key to use it.",
            meta.threshold, meta.calibration
        ),
        _ => println!(
            "threshold: {name:?}'s calibrated {} ({})",
            meta.threshold, meta.calibration
        ),
    }
    // Enrolments of another embedder are refused at authentication: say which, and what to run.
    let store = Store::new(&config.storage.faces_dir);
    let expected = entry.embedder_id();
    let mut left = Vec::new();
    if let Ok(users) = store.list_users() {
        for user in users {
            if let Ok(Some(e)) = store.load(&user) {
                if e.embedder != expected {
                    let by = catalogue
                        .models
                        .iter()
                        .find(|m| m.embedder_id() == e.embedder)
                        .map_or_else(
                            || "another embedder".to_owned(),
                            |m| format!("{:?}", m.name),
                        );
                    left.push((user.to_string(), by));
                }
            }
        }
    }
    if left.is_empty() {
        println!("every enrolment was made with {name:?}");
    } else {
        println!(
            "{} enrolment(s) were made with another embedder and are refused until enrolled again \
             (embeddings of two networks are never compared):",
            left.len()
        );
        for (user, by) in &left {
            println!("  {user}: made with {by}: facekey add --user {user}");
        }
    }
    Ok(())
}
