//! The manifest of installed models: `manifest.toml` in `[models] installed_dir`, root-owned, read through the
//! trust check, listing each model's file, hash, role, licence and source, and for an embedder what the decision
//! needs to use it right ([`EmbedderMeta`]). facekey trusts a model installed there only as the manifest
//! describes it; `facekey model install` and `import-dlib` are what write it.
//!
//! ```toml
//! format = 1
//!
//! [[model]]
//! name = "dlib"
//! role = "embedder"
//! file = "dlib_face_recognition_resnet_model_v1.onnx"   # in the same directory
//! sha256 = "<64 lowercase hex digits>"
//! size = 22450000
//! licence = "CC0-1.0"
//! source = "dlib_face_recognition_resnet_model_v1.dat (sha256 ...), converted by facekey model import-dlib"
//! identity = "<64 lowercase hex digits>"   # what enrolments record; absent: sha256
//! installed = 1700000000
//!
//! [model.embedder]
//! template = "dlib-150"
//! chip_size = 150
//! order = "rgb"
//! mean = [0.0, 0.0, 0.0]
//! scale = 1.0
//! metric = "euclidean"
//! dimension = 128
//! threshold = 0.42
//! calibration = "how the threshold was measured"
//! ```

use std::fs::{self, DirBuilder, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalogue::{EmbedderMeta, Role};
use super::ModelError;
use crate::trust;

/// The file name of the manifest in its directory.
pub const FILE_NAME: &str = "manifest.toml";
/// The format this code reads and writes.
pub const FORMAT: u32 = 1;
/// Largest manifest read: a real one is a few KiB.
const MAX_BYTES: u64 = 1 << 20;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    #[serde(default, rename = "model")]
    pub models: Vec<Installed>,
}

/// One installed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub name: String,
    pub role: Role,
    /// A file name in the manifest's directory (no directories).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub licence: String,
    pub source: String,
    /// What enrolments made with this embedder record; absent: `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Unix seconds.
    pub installed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<EmbedderMeta>,
}

impl Manifest {
    /// The manifest in `dir`; an empty one when the file does not exist. Refused when untrusted, too large,
    /// not valid TOML of this format, or describing a model inconsistently.
    pub fn read(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(FILE_NAME);
        let file = match trust::open_trusted_file(&path) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => {
                return Ok(Manifest {
                    format: FORMAT,
                    models: Vec::new(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
        if text.len() as u64 > MAX_BYTES {
            return Err(bad(&path, format!("larger than {MAX_BYTES} bytes")));
        }
        Manifest::from_text(&text, &path)
    }

    /// The manifest the text of a file holds (`path` names it in errors), validated.
    pub fn from_text(text: &str, path: &Path) -> Result<Manifest, ModelError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| bad(path, e.to_string()))?;
        manifest.validate().map_err(|reason| bad(path, reason))?;
        Ok(manifest)
    }

    /// Every rule an entry must meet before the loader trusts it.
    fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this facekey reads {FORMAT})",
                self.format
            ));
        }
        let mut names = std::collections::HashSet::new();
        for m in &self.models {
            let name = &m.name;
            if !facekey_config::is_model_name(name) {
                return Err(format!("{name:?} is not a model name"));
            }
            if !names.insert(name) {
                return Err(format!("model {name:?} is listed twice"));
            }
            if !is_file_name(&m.file) {
                return Err(format!(
                    "model {name:?}: file {:?} is not a plain file name",
                    m.file
                ));
            }
            for hash in std::iter::once(&m.sha256).chain(m.identity.as_ref()) {
                if !is_sha256(hash) {
                    return Err(format!(
                        "model {name:?}: {hash:?} is not 64 lowercase hex digits"
                    ));
                }
            }
            match (m.role, &m.embedder) {
                (Role::Embedder, None) => {
                    return Err(format!(
                        "embedder {name:?} has no [model.embedder] table: facekey cannot use an embedder \
                         without knowing its alignment, input, metric and threshold"
                    ))
                }
                (Role::Detector, Some(_)) => {
                    return Err(format!("detector {name:?} has an [model.embedder] table"))
                }
                (_, Some(meta)) => meta.validate().map_err(|e| format!("embedder {name:?}: {e}"))?,
                (Role::Detector, None) => {}
            }
        }
        Ok(())
    }

    /// Write the manifest into `dir` atomically (temporary file, fsync, rename, fsync of the directory),
    /// root-owned 0644, creating `dir` (0755) when missing.
    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        self.validate()
            .map_err(|reason| bad(&dir.join(FILE_NAME), reason))?;
        let text = toml::to_string(self).map_err(|e| bad(&dir.join(FILE_NAME), e.to_string()))?;
        write_file(dir, FILE_NAME, text.as_bytes())
    }

    pub fn get(&self, name: &str) -> Option<&Installed> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Write `bytes` as `dir/name` atomically, mode 0644, creating `dir` with mode 0755 when missing (parents
/// included). Used for installed models, the manifests and the prepared cache.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".facekey-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(0o644))
        .map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    let target = dir.join(name);
    tmp.persist(&target).map_err(|e| ModelError::Io {
        path: target.clone(),
        source: e.error,
    })?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

fn bad(path: &Path, reason: String) -> ModelError {
    ModelError::Manifest {
        path: PathBuf::from(path),
        reason,
    }
}

/// A plain file name: no directory part, not hidden, not empty, at most 255 bytes.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
}

/// 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
