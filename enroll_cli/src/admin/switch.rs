//! `facekey enable` / `facekey disable`: set `[general] disabled` in the configuration file.
//!
//! The PAM files are never touched: with `disabled = true` the module answers "unavailable" to every
//! request and PAM moves on to the password, exactly as if facekey were not in the stack. The file is
//! edited as text (toml_edit), so the administrator's comments, order and spacing survive; it is read
//! through the trust check, and replaced atomically (a temporary file in the same directory with the
//! old file's owner and mode, fsync, rename, fsync of the directory), so a reader sees the old file or
//! the new one, never half of one.
//!
//! Must never: write a file that does not parse, widen a file's permissions, or follow a symbolic link
//! at the file itself.

use std::fs::{File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use facekey_config::{Config, DEFAULT_CONFIG_TOML};
use facekey_core::trust::{self, TrustError};
use toml_edit::{DocumentMut, Item, Table, Value};

/// What [`set_disabled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switched {
    /// The file already said so; it was not rewritten.
    Unchanged,
    /// The key was changed (or added) in the existing file.
    Written,
    /// There was no file: the shipped configuration was written with the key set.
    Created,
    /// There is no file and the built-in defaults already say so (only for enabling).
    DefaultsApply,
}

/// Why the switch could not be made. Each message names the file.
#[derive(thiserror::Error, Debug)]
pub enum SwitchError {
    #[error("configuration refused: {0}")]
    Untrusted(TrustError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML, left unchanged: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },
    #[error(
        "{}: the configuration is invalid, so facekey answers \"unavailable\" whatever `disabled` \
         says; fix it first (`facekey config check`): {reason}",
        path.display()
    )]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: [general] is not a table", path.display())]
    NotATable { path: PathBuf },
}

/// Set `[general] disabled` to `disabled` in the file at `path`.
///
/// A missing file: enabling needs nothing (the defaults are enabled); disabling writes the shipped
/// configuration with `disabled = true`, owned by the caller, mode 0644, in an existing trusted
/// directory. Enabling a file that would still be invalid afterwards is refused (it would not enable
/// anything); disabling is written whenever the file parses as TOML, and the result says whether the
/// configuration is valid.
pub fn set_disabled(
    path: &Path,
    disabled: bool,
) -> Result<(Switched, Option<String>), SwitchError> {
    let (text, existing) = match trust::open_trusted_file(path) {
        Ok(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io_error(path))?;
            let meta = file.metadata().map_err(io_error(path))?;
            (text, Some(meta))
        }
        Err(e) if e.is_not_found() => {
            if !disabled {
                return Ok((Switched::DefaultsApply, None));
            }
            (DEFAULT_CONFIG_TOML.to_owned(), None)
        }
        Err(e) => return Err(SwitchError::Untrusted(e)),
    };
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| SwitchError::Syntax {
                path: path.to_owned(),
                reason: e.to_string().trim().replace('\n', " "),
            })?;
    let changed = set_key(&mut doc, disabled).ok_or_else(|| SwitchError::NotATable {
        path: path.to_owned(),
    })?;
    let new_text = doc.to_string();
    let invalid = Config::from_toml_str(&new_text, path)
        .err()
        .map(|e| e.to_string());
    if let (Some(reason), false) = (&invalid, disabled) {
        return Err(SwitchError::Invalid {
            path: path.to_owned(),
            reason: reason.clone(),
        });
    }
    match existing {
        Some(_) if !changed => Ok((Switched::Unchanged, invalid)),
        Some(meta) => {
            replace(
                path,
                &new_text,
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777,
            )?;
            Ok((Switched::Written, invalid))
        }
        None => {
            // Through the trust check: the new file must land in a directory the module will accept.
            let dir = parent(path);
            trust::check_trusted_dir(&dir).map_err(SwitchError::Untrusted)?;
            let (uid, gid) = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            replace(path, &new_text, uid, gid, 0o644)?;
            Ok((Switched::Created, invalid))
        }
    }
}

/// Set the key in the document, keeping the decoration (comments, spacing) around an existing value.
/// Returns whether the value changed; `None` when `general` exists but is not a table.
fn set_key(doc: &mut DocumentMut, disabled: bool) -> Option<bool> {
    let present = doc
        .get("general")
        .and_then(Item::as_table_like)
        .is_some_and(|t| t.contains_key("disabled"));
    if !present && !disabled {
        // Absent means false: enabling needs no change.
        return doc
            .get("general")
            .map_or(Some(false), |g| g.as_table_like().map(|_| false));
    }
    if !doc.contains_key("general") {
        let mut table = Table::new();
        // First in the file, where the shipped configuration has it.
        table.set_position(Some(0));
        doc.insert("general", Item::Table(table));
    }
    let general = doc.get_mut("general")?.as_table_like_mut()?;
    match general.get_mut("disabled").and_then(Item::as_value_mut) {
        Some(value) if value.as_bool() == Some(disabled) => Some(false),
        Some(value) => {
            let decor = value.decor().clone();
            *value = Value::from(disabled);
            *value.decor_mut() = decor;
            Some(true)
        }
        None => {
            general.insert("disabled", toml_edit::value(disabled));
            Some(true)
        }
    }
}

/// Write `text` to a new file next to `path` with the given owner and mode, then rename it over `path`.
fn replace(path: &Path, text: &str, uid: u32, gid: u32, mode: u32) -> Result<(), SwitchError> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Created 0600 with O_EXCL under a random name, removed again on any early return.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(io_error(&dir))?;
    let file = temp.as_file();
    std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(io_error(temp.path()))?;
    // Never more than the old file allowed, and never writable by group or others: the module would
    // refuse such a file.
    file.set_permissions(Permissions::from_mode(mode & !0o022))
        .map_err(io_error(temp.path()))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io_error(temp.path()))?;
    temp.persist(path).map_err(|e| io_error(path)(e.error))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(&dir))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SwitchError + '_ {
    move |source| SwitchError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_replaced_and_comments_stay() {
        let mut doc: DocumentMut =
            "# top\n[general]\n# why\ndisabled = false # trailing\n\n[auth]\ntimeout = 2.0\n"
                .parse()
                .unwrap();
        assert_eq!(set_key(&mut doc, true), Some(true));
        assert_eq!(
            doc.to_string(),
            "# top\n[general]\n# why\ndisabled = true # trailing\n\n[auth]\ntimeout = 2.0\n"
        );
        assert_eq!(set_key(&mut doc, true), Some(false));
    }

    #[test]
    fn a_missing_section_or_key_is_added() {
        let mut doc: DocumentMut = "[auth]\ntimeout = 2.0\n".parse().unwrap();
        assert_eq!(set_key(&mut doc, true), Some(true));
        let text = doc.to_string();
        let config = Config::from_toml_str(&text, Path::new("x")).unwrap();
        assert!(config.general.disabled);
        assert_eq!(config.auth.timeout, 2.0);
        assert!(text.starts_with("[general]"), "{text}");

        let mut doc: DocumentMut = "[general]\n".parse().unwrap();
        assert_eq!(
            set_key(&mut doc, false),
            Some(false),
            "absent already means false"
        );
        assert_eq!(doc.to_string(), "[general]\n");
        assert_eq!(set_key(&mut doc, true), Some(true));
        assert_eq!(doc.to_string(), "[general]\ndisabled = true\n");
    }

    #[test]
    fn a_dotted_key_at_the_top_is_edited_in_place() {
        let mut doc: DocumentMut = "general.disabled = false\n".parse().unwrap();
        assert_eq!(set_key(&mut doc, true), Some(true));
        assert_eq!(doc.to_string(), "general.disabled = true\n");
    }

    #[test]
    fn general_that_is_not_a_table_is_refused() {
        let mut doc: DocumentMut = "general = 3\n".parse().unwrap();
        assert_eq!(set_key(&mut doc, true), None);
    }
}
