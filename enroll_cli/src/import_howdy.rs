//! `facekey import-howdy`: Howdy's configuration and face models brought over to facekey.
//!
//! The reading, mapping and the rule for face models are `facekey_import::howdy`'s; this file finds the active
//! embedder and measures it against dlib on the built-in chips, prints the table, and writes through the paths
//! the other commands use: the configuration with `admin::switch::set_values` (comments kept, atomic), the
//! enrolments with `Store::save` (root-only, atomic).
//!
//! Must never: write with `--dry-run`, import a user's models when the rule refuses them, write a threshold
//! looser than facekey's own, or write an enrolment before the configuration that holds its threshold.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::embed::Embedder;
use facekey_core::models::catalogue::{Metric, Template};
use facekey_core::models::{ActiveModels, VerifiedModel};
use facekey_core::store::{Enrolment, Store, UserName, MAX_LABEL_CHARS};
use facekey_import::howdy::agreement::{self, Agreement, Refusal, AGREES_WITH_DLIB};
use facekey_import::howdy::config::{self, Item, Outcome, ThresholdLimit, Value};
use facekey_import::howdy::ini::Ini;
use facekey_import::howdy::models::{self as howdy_models, Model};
use facekey_import::howdy::{read_text, Layout, MAX_CONFIG_BYTES, MAX_MODELS_BYTES};

use crate::admin::switch;
use crate::demo::{ENROL, OTHER_PERSON, SAME_PERSON};
use crate::model::install::{Reference, DLIB_REFERENCE};
use crate::{load_config, print_json, CliResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct ImportHowdyArgs {
    /// The root of the tree Howdy is installed in: its files are read from DIR/etc/howdy (Howdy 3) or
    /// DIR/lib/security/howdy (Howdy 2).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Show what would be imported and written, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import the face models of these users only (comma-separated); default: every models/USER.dat.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    users: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What became of one user's Howdy models.
struct UserResult {
    user: String,
    file: PathBuf,
    outcome: Result<Imported, String>,
}

struct Imported {
    enrolment: Enrolment,
    added: Vec<u32>,
    already: usize,
}

pub(crate) fn run(config_path: Option<&Path>, args: &ImportHowdyArgs) -> CliResult<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            "facekey import-howdy reads Howdy's face models and writes facekey's configuration and enrolments: \
             run it as root (sudo facekey import-howdy)",
        ));
    }
    let config = load_config(config_path)?;
    let layout = Layout::find(&args.root).map_err(|e| Failure::from_error("Howdy", &e))?;
    let text = read_text(&layout.config, MAX_CONFIG_BYTES)
        .map_err(|e| Failure::from_error("Howdy", &e))?;
    let ini = Ini::parse(&text, &layout.config.display().to_string())
        .map_err(|e| Failure::from_error("Howdy", &e))?;
    let active = ActiveModels::resolve(&config).map_err(|e| Failure::from_error("models", &e))?;
    let calibrated = active.embedder.meta().threshold;

    let files = selected_users(&layout, &args.users)?;
    let agreement = if files.is_empty() {
        None
    } else {
        Some(measure(&active)?)
    };
    let store = Store::new(&config.storage.faces_dir);
    let embedder_ok = agreement.as_ref().map(|a| a.map(|m| m.reproduces_dlib()));
    let users: Vec<UserResult> = files
        .into_iter()
        .map(|(user, file)| {
            let outcome = match embedder_ok {
                Some(Some(true)) => import_user(&store, &active, &user, &file),
                Some(Some(false)) => Err(Refusal::Embedder {
                    largest: agreement.flatten().map(|a| a.largest),
                }
                .to_string()),
                _ => Err(Refusal::Embedder { largest: None }.to_string()),
            };
            UserResult {
                user,
                file,
                outcome,
            }
        })
        .collect();
    let imported = users.iter().any(|u| u.outcome.is_ok());

    let limit = threshold_limit(
        &config,
        calibrated,
        imported.then_some(agreement.flatten()).flatten(),
    );
    let mut items = config::map(&ini, &limit);
    if imported && ini.get("video", "certainty").is_none() {
        // Howdy used its default; the imported descriptors need the threshold held all the same.
        items.push(Item {
            section: "video".into(),
            key: "certainty".into(),
            value: format!(
                "(absent: Howdy's default {})",
                config::HOWDY_DEFAULT_CERTAINTY
            ),
            line: 0,
            outcome: config::certainty(config::HOWDY_DEFAULT_CERTAINTY, &limit),
        });
    }
    let config_file = config_path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));

    if !args.dry_run {
        let changes: Vec<(&str, &str, Option<toml_edit::Value>)> = items
            .iter()
            .filter_map(|i| match &i.outcome {
                Outcome::Set {
                    section,
                    key,
                    value,
                    ..
                } => Some((*section, *key, value.as_ref().map(toml_value))),
                _ => None,
            })
            .collect();
        switch::set_values(config_file, &changes)
            .map_err(|e| Failure::from_error("configuration", &e))?;
        if !changes.is_empty() {
            let keys: Vec<String> = changes
                .iter()
                .map(|(section, key, value)| match value {
                    Some(v) => format!("[{section}] {key} = {}", v.to_string().trim()),
                    None => format!("[{section}] {key} removed"),
                })
                .collect();
            crate::audit::record(
                &config,
                &crate::audit::Change {
                    action: "import-howdy-config",
                    user: None,
                    detail: format!(
                        "from {} into {}: {}",
                        layout.config.display(),
                        config_file.display(),
                        keys.join(", ")
                    ),
                },
            );
        }
    }
    let mut users = users;
    if !args.dry_run {
        for u in &mut users {
            if let Ok(imported) = &u.outcome {
                if let Err(e) = store.save(&imported.enrolment) {
                    u.outcome = Err(format!("enrolment store: {e}"));
                } else {
                    crate::audit::record(
                        &config,
                        &crate::audit::Change {
                            action: "import-howdy",
                            user: Some(imported.enrolment.user.as_str()),
                            detail: format!(
                                "{} sample(s) from Howdy's face model under {}",
                                imported.enrolment.samples.len(),
                                layout.models_dir.display()
                            ),
                        },
                    );
                }
            }
        }
    }

    let agreement_figure = agreement.flatten();
    if args.json {
        print_json(&report_json(
            &layout,
            &items,
            agreement_figure,
            &users,
            config_file,
            args.dry_run,
        ))?;
    } else {
        print_report(
            &layout,
            &items,
            agreement_figure,
            &users,
            config_file,
            &store,
            args.dry_run,
        );
    }
    Ok(if users.iter().any(|u| u.outcome.is_err()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The limit on the threshold written: the embedder's calibrated one less the agreement distance when descriptors
/// are imported, and never above a threshold the configuration already sets.
fn threshold_limit(
    config: &Config,
    calibrated: f32,
    imported_with: Option<Agreement>,
) -> ThresholdLimit {
    let mut limit = agreement::threshold_limit(calibrated, imported_with.as_ref());
    if let Some(own) = config.matching.threshold.filter(|&t| t < limit.largest) {
        limit.largest = own;
        limit.why = Some(format!(
            "the configuration's own [matching] threshold {own}"
        ));
    }
    limit
}

/// The users whose models are read: every `USER.dat`, or those named (a named user without a file is an error).
fn selected_users(layout: &Layout, wanted: &[String]) -> CliResult<Vec<(String, PathBuf)>> {
    let all = layout
        .users()
        .map_err(|e| Failure::from_error("Howdy", &e))?;
    if wanted.is_empty() {
        return Ok(all);
    }
    wanted
        .iter()
        .map(|w| {
            all.iter().find(|(u, _)| u == w).cloned().ok_or_else(|| {
                Failure::new(format!(
                    "Howdy has no face model for {w} ({} does not exist)",
                    layout.models_dir.join(format!("{w}.dat")).display()
                ))
            })
        })
        .collect()
}

/// The active embedder against dlib's own descriptors of the built-in chips (`None` for an embedder that cannot
/// stand in for dlib at all: another metric, template or length).
fn measure(active: &ActiveModels) -> CliResult<Option<Agreement>> {
    let meta = active.embedder.meta();
    if meta.metric != Metric::Euclidean
        || meta.template != Template::Dlib150
        || meta.dimension != howdy_models::DIMENSION
    {
        return Ok(None);
    }
    let reference: Reference = serde_json::from_str(DLIB_REFERENCE)
        .map_err(|e| Failure::new(format!("built-in dlib reference: {e}")))?;
    let embedder = Embedder::from_file(
        VerifiedModel::read(active.embedder.location())
            .map_err(|e| Failure::from_error("embedder", &e))?,
        active.embedder.embedder_id(),
        meta,
    )
    .map_err(|e| Failure::from_error("embedder", &e))?;
    let mut pairs = Vec::new();
    for (label, bytes) in ENROL.iter().chain(&SAME_PERSON).chain(&OTHER_PERSON) {
        let Some(want) = reference
            .chips
            .iter()
            .find(|c| c.path == format!("johns/{label}"))
        else {
            continue;
        };
        let chip = facekey_core::frame::decode_image(bytes, label)
            .and_then(|f| f.to_rgb().map_err(|e| e.to_string()))
            .map_err(|e| Failure::new(format!("built-in chip {label}: {e}")))?;
        let ours = embedder
            .embed(&chip)
            .map_err(|e| Failure::from_error("embedder", &e))?;
        pairs.push((ours.0, want.embedding.clone()));
    }
    Ok(Agreement::measure(
        pairs.iter().map(|(a, b)| (a.as_slice(), b.as_slice())),
    ))
}

/// Read one user's models, apply the rule, and build the enrolment they become (not written here).
fn import_user(
    store: &Store,
    active: &ActiveModels,
    user: &str,
    file: &Path,
) -> Result<Imported, String> {
    let name = UserName::new(user).map_err(|e| e.to_string())?;
    let text = read_text(file, MAX_MODELS_BYTES).map_err(|e| e.to_string())?;
    let models: Vec<Model> =
        howdy_models::parse(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
    agreement::check_user(&models).map_err(|r| r.to_string())?;
    let embedder = active.embedder.embedder_id();
    let existing = store
        .load(&name)
        .map_err(|e| format!("enrolment store: {e}"))?;
    if let Some(found) = existing.as_ref().filter(|e| e.embedder != embedder) {
        return Err(format!(
            "{}: enrolled with another model (sha256 {}); `facekey clear --user {user}` first",
            store.path_for(&name).display(),
            found.embedder.sha256
        ));
    }
    let mut enrolment = existing.unwrap_or_else(|| Enrolment::new(&name, embedder));
    let (mut added, mut already) = (Vec::new(), 0);
    for model in &models {
        let label: String = format!("howdy: {}", model.label)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LABEL_CHARS)
            .collect();
        for encoding in &model.encodings {
            if enrolment.samples.iter().any(|s| &s.embedding == encoding) {
                already += 1;
                continue;
            }
            added.push(enrolment.add_sample(&label, encoding.clone()));
        }
    }
    Ok(Imported {
        enrolment,
        added,
        already,
    })
}

fn toml_value(value: &Value) -> toml_edit::Value {
    match value {
        Value::Bool(b) => toml_edit::Value::from(*b),
        Value::Int(i) => toml_edit::Value::from(*i),
        Value::Float(x) => toml_edit::Value::from(*x),
        Value::Str(s) => toml_edit::Value::from(s.as_str()),
    }
}

fn howdy_key(item: &Item) -> String {
    format!(
        "[{}] {} = {}",
        item.section,
        item.key,
        item.value.replace('\n', " / ").replace('\t', " ")
    )
}

fn target(section: &str, key: &str, value: &Option<Value>) -> String {
    match value {
        Some(v) => format!("[{section}] {key} = {v}"),
        None => format!("[{section}] {key} removed (facekey's default)"),
    }
}

fn print_report(
    layout: &Layout,
    items: &[Item],
    agreement: Option<Agreement>,
    users: &[UserResult],
    config_file: &Path,
    store: &Store,
    dry_run: bool,
) {
    println!(
        "{} configuration {}:",
        layout.version.name(),
        layout.config.display()
    );
    let width = items
        .iter()
        .map(|i| howdy_key(i).chars().count())
        .max()
        .unwrap_or(0);
    type Section = (&'static str, fn(&Outcome) -> bool);
    let sections: [Section; 4] = [
        ("Mapped", |o| matches!(o, Outcome::Set { .. })),
        ("Already facekey's behaviour", |o| {
            matches!(o, Outcome::Always { .. })
        }),
        ("No equivalent (not imported)", |o| {
            matches!(o, Outcome::NoEquivalent { .. })
        }),
        ("Not imported: invalid or unknown to Howdy", |o| {
            matches!(o, Outcome::Invalid { .. } | Outcome::Unknown)
        }),
    ];
    for (title, wanted) in sections {
        let chosen: Vec<&Item> = items.iter().filter(|i| wanted(&i.outcome)).collect();
        if chosen.is_empty() {
            continue;
        }
        println!("  {title}:");
        for item in chosen {
            let key = howdy_key(item);
            let right = match &item.outcome {
                Outcome::Set {
                    section,
                    key,
                    value,
                    note,
                } => format!(
                    "-> {}{}",
                    target(section, key, value),
                    note.as_deref()
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default()
                ),
                Outcome::Always { note } => note.clone(),
                Outcome::NoEquivalent { reason } => reason.clone(),
                Outcome::Invalid { reason } => format!("invalid: {reason}"),
                Outcome::Unknown => "not a key Howdy reads".into(),
            };
            println!("    {key:<width$}  {right}");
        }
    }
    println!("Face models ({}):", layout.models_dir.display());
    if users.is_empty() {
        println!("  none");
    } else {
        match agreement {
            Some(a) => println!(
                "  the active embedder is at most {:.4} from dlib's own descriptors on {} built-in face chips \
                 (bound {AGREES_WITH_DLIB})",
                a.largest, a.chips
            ),
            None => println!("  the active embedder cannot be compared with dlib's descriptors"),
        }
    }
    for u in users {
        match &u.outcome {
            Ok(i) => {
                let ids = match (i.added.first(), i.added.last()) {
                    (Some(a), Some(b)) if a == b => format!(", id {a}"),
                    (Some(a), Some(b)) => format!(", ids {a}-{b}"),
                    _ => String::new(),
                };
                let already = if i.already > 0 {
                    format!(", {} already imported", i.already)
                } else {
                    String::new()
                };
                println!(
                    "  {}: {} {} encoding(s){ids}{already} -> {}",
                    u.user,
                    if dry_run { "would import" } else { "imported" },
                    i.added.len(),
                    store.dir().join(format!("{}.toml", u.user)).display()
                );
            }
            Err(why) => println!(
                "  {}: refused ({}): {why}; enrol again with `facekey add --user {}`",
                u.user,
                u.file.display(),
                u.user
            ),
        }
    }
    if dry_run {
        println!("Dry run: nothing written.");
    } else {
        println!("Configuration written to {}.", config_file.display());
    }
}

fn report_json(
    layout: &Layout,
    items: &[Item],
    agreement: Option<Agreement>,
    users: &[UserResult],
    config_file: &Path,
    dry_run: bool,
) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            let (kind, to, note) = match &i.outcome {
                Outcome::Set {
                    section,
                    key,
                    value,
                    note,
                } => (
                    "mapped",
                    Some(serde_json::json!({
                        "section": section, "key": key, "value": value.as_ref().map(|v| v.to_string()),
                    })),
                    note.clone(),
                ),
                Outcome::Always { note } => ("always", None, Some(note.clone())),
                Outcome::NoEquivalent { reason } => ("no_equivalent", None, Some(reason.clone())),
                Outcome::Invalid { reason } => ("invalid", None, Some(reason.clone())),
                Outcome::Unknown => ("unknown", None, None),
            };
            serde_json::json!({
                "section": i.section, "key": i.key, "value": i.value, "line": i.line,
                "outcome": kind, "facekey": to, "note": note,
            })
        })
        .collect();
    let users: Vec<serde_json::Value> = users
        .iter()
        .map(|u| match &u.outcome {
            Ok(i) => serde_json::json!({
                "user": u.user, "file": u.file, "imported": i.added, "already_imported": i.already,
            }),
            Err(why) => serde_json::json!({"user": u.user, "file": u.file, "refused": why}),
        })
        .collect();
    serde_json::json!({
        "howdy": layout.version.name(),
        "config": layout.config,
        "keys": keys,
        "agreement": agreement.map(|a| serde_json::json!({
            "largest": a.largest, "chips": a.chips, "bound": AGREES_WITH_DLIB,
        })),
        "users": users,
        "facekey_config": config_file,
        "dry_run": dry_run,
    })
}
