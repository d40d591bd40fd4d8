//! `facekey model list` and `facekey model verify`.

use std::fs::File;
use std::process::ExitCode;

use facekey_config::Config;
use facekey_core::models::{self, ActiveModels, Catalogue, ModelEntry, Origin, Role};
use facekey_core::store::{Store, StoreError};
use facekey_core::trust;
use serde::Serialize;

use crate::{CliResult, Failure};

#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    role: &'static str,
    origin: Origin,
    file: String,
    /// Bytes on disk; `None` when the file is missing.
    size: Option<u64>,
    sha256: &'a str,
    licence: &'a str,
    source: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedder: Option<&'a models::EmbedderMeta>,
}

#[derive(Serialize)]
struct EnrolmentLine {
    user: String,
    /// The catalogue's name of the embedder that made it, when known.
    embedder: Option<String>,
    identity: String,
    /// Made by the active embedder: usable now.
    usable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Listing<'a> {
    models: Vec<Listed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_error: Option<String>,
    /// `None` when the enrolments cannot be read (not root).
    enrolments: Option<Vec<EnrolmentLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enrolments_error: Option<String>,
}

pub fn list(config: &Config, json: bool) -> CliResult<ExitCode> {
    let catalogue = Catalogue::load(config);
    let active = catalogue.active(config);
    let is_active = |m: &ModelEntry| {
        active.as_ref().is_ok_and(|a| {
            (m.role == Role::Detector && a.detector.name == m.name)
                || (m.role == Role::Embedder && a.embedder.name == m.name)
        })
    };
    let models: Vec<Listed> = catalogue
        .models
        .iter()
        .map(|m| Listed {
            name: &m.name,
            role: m.role.name(),
            origin: m.origin,
            file: m.path.display().to_string(),
            size: std::fs::metadata(&m.path).ok().map(|meta| meta.len()),
            sha256: &m.sha256,
            licence: &m.licence,
            source: &m.source,
            active: is_active(m),
            identity: (m.role == Role::Embedder).then_some(m.identity.as_str()),
            embedder: m.embedder.as_ref(),
        })
        .collect();
    let (enrolments, enrolments_error) = match enrolments(config, &catalogue, active.as_ref().ok())
    {
        Ok(e) => (Some(e), None),
        Err(e) => (None, Some(e)),
    };
    let listing = Listing {
        models,
        manifest_error: catalogue.manifest_error.as_ref().map(|e| e.to_string()),
        active_error: active.as_ref().err().map(|e| e.to_string()),
        enrolments,
        enrolments_error,
    };
    if json {
        crate::print_json(&listing)?;
    } else {
        print_text(&listing);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(l: &Listing) {
    for m in &l.models {
        let mark = if m.active { "*" } else { " " };
        let size = m.size.map_or("missing".to_owned(), |s| {
            format!("{:.1} MB", s as f64 / 1e6)
        });
        println!(
            "{mark} {:<10} {:<8} {:<9} {size:>9}  {}",
            m.name,
            m.role,
            format!("{:?}", m.origin).to_lowercase(),
            m.file
        );
        println!("      sha256 {}", m.sha256);
        if let Some(meta) = m.embedder {
            println!(
                "      {} chip {}x{}, {:?} metric, {} dimensions, threshold {} ({})",
                meta.template.name(),
                meta.chip_size,
                meta.chip_size,
                meta.metric,
                meta.dimension,
                meta.threshold,
                meta.calibration
            );
        }
        println!("      licence: {}", m.licence);
        println!("      source: {}", m.source);
    }
    println!("(* active)");
    if let Some(e) = &l.manifest_error {
        println!("installed models: {e}");
    }
    if let Some(e) = &l.active_error {
        println!("active models: {e}");
    }
    match (&l.enrolments, &l.enrolments_error) {
        (Some(list), _) if list.is_empty() => println!("enrolments: none"),
        (Some(list), _) => {
            println!("enrolments:");
            for e in list {
                let by = e.embedder.clone().unwrap_or_else(|| {
                    format!(
                        "an embedder not installed here (identity {}…)",
                        &e.identity[..12.min(e.identity.len())]
                    )
                });
                match (&e.error, e.usable) {
                    (Some(err), _) => println!("  {}: {err}", e.user),
                    (None, true) => println!("  {}: made by {by}, the active embedder", e.user),
                    (None, false) => println!(
                        "  {}: made by {by}, NOT the active embedder: refused until enrolled again \
                         (facekey add --user {})",
                        e.user, e.user
                    ),
                }
            }
        }
        (None, Some(e)) => println!("enrolments: {e}"),
        (None, None) => {}
    }
}

/// Which embedder made each enrolment, and whether the active one did.
fn enrolments(
    config: &Config,
    catalogue: &Catalogue,
    active: Option<&ActiveModels>,
) -> Result<Vec<EnrolmentLine>, String> {
    let store = Store::new(&config.storage.faces_dir);
    let users = match store.list_users() {
        Ok(u) => u,
        Err(StoreError::Untrusted(e)) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let active_id = active.map(|a| a.embedder.embedder_id());
    Ok(users
        .into_iter()
        .map(|user| match store.load(&user) {
            Ok(Some(e)) => EnrolmentLine {
                user: user.to_string(),
                // Several names may hold the same network (the same bytes installed twice): the active one first.
                embedder: active
                    .map(|a| &a.embedder)
                    .into_iter()
                    .chain(&catalogue.models)
                    .find(|m| m.role == Role::Embedder && m.embedder_id() == e.embedder)
                    .map(|m| m.name.clone()),
                identity: e.embedder.sha256.clone(),
                usable: active_id.as_ref() == Some(&e.embedder),
                error: None,
            },
            Ok(None) => EnrolmentLine {
                user: user.to_string(),
                embedder: None,
                identity: String::new(),
                usable: false,
                error: Some("no enrolment".into()),
            },
            Err(err) => EnrolmentLine {
                user: user.to_string(),
                embedder: None,
                identity: String::new(),
                usable: false,
                error: Some(err.to_string()),
            },
        })
        .collect())
}

#[derive(Serialize)]
struct Verified {
    name: String,
    role: &'static str,
    file: String,
    /// "ok", "mismatch", "missing", "refused" (trust check) or "absent" (a model nothing needs).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    found: Option<String>,
    expected: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Hash every model file (through the trust check, in blocks).
pub fn verify(config: &Config, json: bool) -> CliResult<ExitCode> {
    let catalogue = Catalogue::load(config);
    let active = catalogue.active(config).ok();
    let mut results: Vec<Verified> = Vec::new();
    for m in &catalogue.models {
        let needed = m.origin != Origin::Legacy
            || active.as_ref().is_some_and(|a| a.embedder.name == m.name);
        results.push(check_file(
            &m.name,
            m.role.name(),
            &m.path,
            &m.sha256,
            needed,
        ));
    }
    let mut failed: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r.status, "ok" | "absent"))
        .map(|r| r.file.clone())
        .collect();
    if let Some(e) = &catalogue.manifest_error {
        failed.push(e.to_string());
    }
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            files: &'a [Verified],
            #[serde(skip_serializing_if = "Option::is_none")]
            manifest_error: Option<String>,
        }
        crate::print_json(&Out {
            ok: failed.is_empty(),
            files: &results,
            manifest_error: catalogue.manifest_error.as_ref().map(|e| e.to_string()),
        })?;
    } else {
        for r in &results {
            match r.status {
                "ok" => println!("ok        {} ({}) {}", r.name, r.role, r.file),
                "absent" => println!("absent    {} ({}) {}: not needed", r.name, r.role, r.file),
                _ => println!(
                    "{:<9} {} ({}) {}: {}",
                    r.status.to_uppercase(),
                    r.name,
                    r.role,
                    r.file,
                    r.reason.as_deref().unwrap_or("")
                ),
            }
        }
        if let Some(e) = &catalogue.manifest_error {
            println!("FAILED    installed models' manifest: {e}");
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(format!(
            "{} model file(s) failed verification: {}",
            failed.len(),
            failed.join(", ")
        )))
    }
}

fn check_file(
    name: &str,
    role: &'static str,
    path: &std::path::Path,
    expected: &str,
    needed: bool,
) -> Verified {
    let mut v = Verified {
        name: name.to_owned(),
        role,
        file: path.display().to_string(),
        status: "ok",
        found: None,
        expected: expected.to_owned(),
        reason: None,
    };
    let file: File = match trust::open_trusted_file(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() && !needed => {
            v.status = "absent";
            return v;
        }
        Err(e) if e.is_not_found() => {
            v.status = "missing";
            v.reason = Some("the file does not exist".into());
            return v;
        }
        Err(e) => {
            v.status = "refused";
            v.reason = Some(e.to_string());
            return v;
        }
    };
    match models::sha256_reader(file) {
        Ok(found) if found == expected => {
            v.found = Some(found);
        }
        Ok(found) => {
            v.status = "mismatch";
            v.reason = Some(format!("SHA-256 is {found}, expected {expected}"));
            v.found = Some(found);
        }
        Err(e) => {
            v.status = "refused";
            v.reason = Some(e.to_string());
        }
    }
    v
}
