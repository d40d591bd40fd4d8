//! The one error type of this crate. Each message is a single line that starts with the file
//! (and, when known, `line:column`), then the dotted key, then the reason, so an editor or a
//! log reader can jump straight to it. Callers add context, not new wording.

use std::path::PathBuf;

/// Why a configuration could not be used.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The text is not valid TOML, or does not fit the schema: unknown section or key, wrong
    /// type, number out of the type's range, unknown enum value.
    #[error("{}:{line}:{column}: {}{message}", .path.display(), key_prefix(.key.as_deref()))]
    Parse {
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Dotted key (`section.key`) the error is about, when one could be found.
        key: Option<String>,
        message: String,
    },

    /// Well-formed, but a value breaks a rule (range, format, forbidden value).
    #[error("{}{}: {key}: {message}", .path.display(), location(*.line, *.column))]
    Invalid {
        path: PathBuf,
        /// 1-based line of the value, `None` when the value is a default, not from the file.
        line: Option<usize>,
        /// 1-based column of the value, in characters; `None` exactly when `line` is.
        column: Option<usize>,
        /// Dotted key, `section.key`.
        key: String,
        message: String,
    },
}

fn key_prefix(key: Option<&str>) -> String {
    key.map(|k| format!("{k}: ")).unwrap_or_default()
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        _ => String::new(),
    }
}
