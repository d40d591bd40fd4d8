//! The model files facekey runs: which ones ([`catalogue`]: the shipped models and those installed with their
//! [`manifest`]), where each is, and how it is read.
//!
//! Every model is read through the trust check (root-owned, not writable by others, parents included),
//! hashed, and compared with the SHA-256 pinned here or in the manifest, or with the one the configuration
//! names explicitly. A file whose hash does not match is never handed to the inference engine. What follows
//! the reading is [`plan`] (parse, fold int8 weights with [`fold`], optimise). There is no prepared (cached)
//! form: tract cannot serialise an optimised plan, and its NNEF form loads no faster (docs/performance.md).

pub mod catalogue;
mod fold;
pub mod manifest;
pub mod plan;

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub use catalogue::{
    ActiveModels, Catalogue, EmbedderMeta, ModelEntry, Origin, Role, ShippedModel, DETECTOR,
    EMBEDDER_FP32, EMBEDDER_INT8,
};
pub use plan::{build_plan, declutter, parse_proto, plan_proto, Plan, CHANGE_AXES_PASS};

use crate::tract_knobs::PinError;
use crate::trust::{self, TrustError};
use std::sync::Arc;

/// Why a model could not be used.
#[derive(thiserror::Error, Debug)]
pub enum ModelError {
    #[error("model file refused: {0}")]
    Untrusted(#[from] TrustError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes, more than the {limit} a model file may have: not a model facekey uses")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}: SHA-256 is {found}, expected {expected}: the file is not the model facekey was \
         configured to trust (reinstall it, or set the hash explicitly in the configuration)"
    )]
    HashMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: not a usable model: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// An error met once while loading, told again to each caller that needed that model.
    #[error(transparent)]
    Shared(Arc<ModelError>),
    /// tract's knobs could not be pinned: no model is parsed.
    #[error("inference engine settings: {0}")]
    Knobs(#[from] PinError),
    /// The configuration names a model the catalogue does not have.
    #[error("{0}")]
    Unknown(String),
    /// The manifest of installed models could not be used.
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

/// Where a model file is and which hash it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLocation {
    pub path: PathBuf,
    pub sha256: String,
}

/// The largest model file read (the largest facekey knows, dlib's network in fp32, is 22.4 MB): a file larger
/// than this is refused before it is read, so a mistaken or sparse file cannot exhaust the memory of the process
/// that asks (a PAM client).
pub const MAX_MODEL_BYTES: u64 = 256 * 1024 * 1024;

/// Read a model file through the trust check and verify its hash.
pub fn read_verified(location: &ModelLocation) -> Result<Vec<u8>, ModelError> {
    let path = &location.path;
    let file = trust::open_trusted_file(path)?;
    let io = |source| ModelError::Io {
        path: path.clone(),
        source,
    };
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_MODEL_BYTES {
        return Err(ModelError::TooLarge {
            path: path.clone(),
            size,
            limit: MAX_MODEL_BYTES,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
    let found = sha256_hex(&bytes);
    if found != location.sha256 {
        return Err(ModelError::HashMismatch {
            path: path.clone(),
            found,
            expected: location.sha256.clone(),
        });
    }
    Ok(bytes)
}

/// A model file read through the trust check and verified against its hash: the bytes in memory,
/// ready to be parsed without opening anything.
pub struct VerifiedModel {
    pub location: ModelLocation,
    bytes: Vec<u8>,
}

impl VerifiedModel {
    /// Read and verify the file at `location` ([`read_verified`]).
    pub fn read(location: ModelLocation) -> Result<VerifiedModel, ModelError> {
        let bytes = read_verified(&location)?;
        Ok(VerifiedModel { location, bytes })
    }

    /// Bytes read some other way (a file being installed), verified against `location`'s hash.
    pub fn from_bytes(
        location: ModelLocation,
        bytes: Vec<u8>,
    ) -> Result<VerifiedModel, ModelError> {
        let found = sha256_hex(&bytes);
        if found != location.sha256 {
            return Err(ModelError::HashMismatch {
                path: location.path,
                found,
                expected: location.sha256,
            });
        }
        Ok(VerifiedModel { location, bytes })
    }

    /// The verified bytes, for parsing (the location comes along for messages).
    pub fn into_parts(self) -> (ModelLocation, Vec<u8>) {
        (self.location, self.bytes)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::fmt::Debug for VerifiedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedModel")
            .field("location", &self.location)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Both model files the active models name, read and verified, with what the embedder needs to be used right:
/// everything the models need from the file system. What follows ([`crate::engine::Engine::start_from`]) opens no
/// file.
#[derive(Debug)]
pub struct ModelFiles {
    pub detector: VerifiedModel,
    pub embedder: VerifiedModel,
    pub active: ActiveModels,
}

impl ModelFiles {
    /// Read and verify the detector and the embedder `config` makes active.
    pub fn read(config: &facekey_config::Config) -> Result<ModelFiles, ModelError> {
        ModelFiles::read_active(&ActiveModels::resolve(config)?)
    }

    /// Read and verify the detector and the embedder of `active`.
    pub fn read_active(active: &ActiveModels) -> Result<ModelFiles, ModelError> {
        Ok(ModelFiles {
            detector: VerifiedModel::read(active.detector.location())?,
            embedder: VerifiedModel::read(active.embedder.location())?,
            active: active.clone(),
        })
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of everything `reader` gives, read in blocks (for files that need not fit in memory).
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut block) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&block[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
