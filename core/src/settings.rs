//! Reading the configuration file through the trust check.
//!
//! The configuration decides who gets in (threshold, models, where enrolments live), so it is read
//! only from a file that passes [`trust::open_trusted_file`]: the opened file itself and every parent
//! directory root-owned (or owned by the invoking user, when not root) and not writable by others.

use std::io::Read;
use std::path::Path;

use facekey_config::{Config, ConfigError};

use crate::trust::{self, TrustError};

/// Why the configuration could not be used.
#[derive(thiserror::Error, Debug)]
pub enum SettingsError {
    #[error("configuration refused: {0}")]
    Untrusted(TrustError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {} KiB: not a facekey configuration", path.display(), MAX_CONFIG_BYTES / 1024)]
    TooLarge { path: std::path::PathBuf },
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

/// The largest configuration file read (the shipped one, all comments, is about 14 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What to do when the file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Use the built-in defaults (the default path, which a fresh system may not have yet).
    UseDefaults,
    /// Fail (a path the user named explicitly).
    Fail,
}

/// Load and validate the configuration at `path`.
pub fn load_config(path: &Path, if_missing: IfMissing) -> Result<Config, SettingsError> {
    let mut file = match trust::open_trusted_file(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() && if_missing == IfMissing::UseDefaults => {
            return Ok(Config::default())
        }
        Err(e) => return Err(SettingsError::Untrusted(e)),
    };
    let mut text = String::new();
    (&mut file)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| SettingsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SettingsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(Config::from_toml_str(&text, path)?)
}
