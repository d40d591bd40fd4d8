//! Howdy's configuration and per-user face models, read for `facekey import-howdy`.
//!
//! - [`ini`]: the `config.ini` text as Python's configparser reads it (Howdy reads its file with it);
//! - [`config`]: each Howdy key mapped to the facekey key that means the same, or said to have none;
//! - [`models`]: a user's `models/USER.dat` (JSON, dlib's 128-d face descriptors);
//! - [`agreement`]: whether facekey's embedder reproduces dlib's descriptors closely enough for them to be used,
//!   and whether one user's descriptors are one plausible face.
//!
//! Where Howdy keeps its files: 2.x under `/lib/security/howdy/` (`config.ini`, `models/USER.dat`), 3.x
//! `config.ini` under `/etc/howdy/` and the models in `/etc/howdy/models/` (meson's `config_dir` and
//! `user_models_dir` defaults). [`Layout::find`] looks for both under a root folder.
//!
//! Everything read here is untrusted: files are read with a size cap, errors name the file, line or model, and
//! nothing panics. This module never writes: the caller decides what to do with the mapping and the models.

pub mod agreement;
pub mod config;
pub mod ini;
pub mod models;

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest `config.ini` read: Howdy's shipped file is under 5 KiB.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// The largest `USER.dat` read: one model is about 2.6 KiB of JSON per encoding, and Howdy warns from the fourth
/// model on; 4 MiB holds well over a thousand encodings.
pub const MAX_MODELS_BYTES: u64 = 4 * 1024 * 1024;
/// The most `USER.dat` files looked at in one models folder.
pub const MAX_USERS: usize = 10_000;

/// Why Howdy's files could not be read. Each message names the file and, where there is one, the line or model.
#[derive(Debug, thiserror::Error)]
pub enum HowdyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Howdy's file, or a folder above it, could have been written by someone other than root (the trust rules
    /// of facekey's own enrolments): whoever could write it would choose the faces or settings imported.
    #[error("{source}")]
    Untrusted {
        path: PathBuf,
        source: facekey_core::trust::TrustError,
    },
    #[error("{}: larger than {limit} bytes: not a file Howdy wrote", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{origin}, line {line}: {reason}")]
    Syntax {
        origin: String,
        line: usize,
        reason: String,
    },
    #[error("{origin}: {reason}")]
    Models { origin: String, reason: String },
    #[error(
        "no Howdy configuration under {}: looked for etc/howdy/config.ini (Howdy 3) and \
         lib/security/howdy/config.ini (Howdy 2)",
        root.display()
    )]
    NotFound { root: PathBuf },
}

/// Which Howdy wrote the tree, by where its files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Howdy 2.x: everything under `/lib/security/howdy`.
    Two,
    /// Howdy 3.x: `/etc/howdy` (the configuration and `models/`).
    Three,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::Two => "Howdy 2",
            Version::Three => "Howdy 3",
        }
    }
}

/// Where one Howdy installation's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub config: PathBuf,
    pub models_dir: PathBuf,
}

impl Layout {
    /// Howdy's files under `root` (`/` for this system): Howdy 3's location first, since an upgrade from 2 leaves
    /// the old folder behind.
    pub fn find(root: &Path) -> Result<Layout, HowdyError> {
        let candidates = [
            (Version::Three, root.join("etc/howdy")),
            (Version::Two, root.join("lib/security/howdy")),
        ];
        for (version, dir) in candidates {
            let config = dir.join("config.ini");
            if config.is_file() {
                return Ok(Layout {
                    version,
                    config,
                    models_dir: dir.join("models"),
                });
            }
        }
        Err(HowdyError::NotFound {
            root: root.to_owned(),
        })
    }

    /// The users with a `USER.dat` in the models folder, sorted; none when there is no folder.
    pub fn users(&self) -> Result<Vec<(String, PathBuf)>, HowdyError> {
        let io = |source| HowdyError::Io {
            path: self.models_dir.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&self.models_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut users = Vec::new();
        for entry in entries {
            let path = entry.map_err(io)?.path();
            let Some(user) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".dat"))
            else {
                continue;
            };
            if users.len() == MAX_USERS {
                return Err(HowdyError::Models {
                    origin: self.models_dir.display().to_string(),
                    reason: format!("more than {MAX_USERS} model files"),
                });
            }
            users.push((user.to_owned(), path));
        }
        users.sort();
        Ok(users)
    }
}

/// Read a file of at most `limit` bytes as text, opened under facekey's trust rules (owned by root, not writable
/// by group or others, the folders above it too, checked on the opened file; no link as the file itself, no FIFO
/// or device): what Howdy's files say becomes who can log in.
pub fn read_text(path: &Path, limit: u64) -> Result<String, HowdyError> {
    let file = facekey_core::trust::open_trusted_file(path).map_err(|source| {
        if source.is_not_found() {
            HowdyError::Io {
                path: path.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            }
        } else {
            HowdyError::Untrusted {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| HowdyError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(HowdyError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| HowdyError::NotText {
        path: path.to_owned(),
    })
}
