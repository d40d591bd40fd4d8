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
    let set = Some(Value::from(disabled));
    edit(path, !disabled, |doc| {
        if !disabled && !present(doc, "general", "disabled") {
            // Absent means false: enabling needs no change.
            return doc
                .get("general")
                .map_or(Some(false), |g| g.as_table_like().map(|_| false));
        }
        set_key(doc, "general", "disabled", set)
    })
}

/// Set (or, with `None`, remove) `[section] key` for each change, in the file at `path`, as [`set_disabled`]
/// does: comments kept, a missing file written from the shipped configuration, and the result refused unless it
/// is a valid configuration.
pub fn set_values(
    path: &Path,
    changes: &[(&str, &str, Option<Value>)],
) -> Result<Switched, SwitchError> {
    let (switched, _) = edit(path, true, |doc| {
        let mut changed = false;
        for (section, key, value) in changes {
            if value.is_none() && !present(doc, section, key) {
                continue;
            }
            changed |= set_key(doc, section, key, value.clone())?;
        }
        Some(changed)
    })?;
    Ok(switched)
}

/// Edit the configuration at `path` with `change` (which says whether it changed anything, `None` when a
/// section is not a table) and write it back atomically; `require_valid` refuses a result that is not a valid
/// configuration. Returns what was done and, when not required valid, why the result is invalid.
fn edit(
    path: &Path,
    require_valid: bool,
    change: impl FnOnce(&mut DocumentMut) -> Option<bool>,
) -> Result<(Switched, Option<String>), SwitchError> {
    let (text, existing) = match trust::open_trusted_file(path) {
        Ok(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io_error(path))?;
            let meta = file.metadata().map_err(io_error(path))?;
            (text, Some(meta))
        }
        Err(e) if e.is_not_found() => (DEFAULT_CONFIG_TOML.to_owned(), None),
        Err(e) => return Err(SwitchError::Untrusted(e)),
    };
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| SwitchError::Syntax {
                path: path.to_owned(),
                reason: e.to_string().trim().replace('\n', " "),
            })?;
    let changed = change(&mut doc).ok_or_else(|| SwitchError::NotATable {
        path: path.to_owned(),
    })?;
    if existing.is_none() && !changed {
        return Ok((Switched::DefaultsApply, None));
    }
    let new_text = doc.to_string();
    let invalid = Config::from_toml_str(&new_text, path)
        .err()
        .map(|e| e.to_string());
    if let (Some(reason), true) = (&invalid, require_valid) {
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

fn present(doc: &DocumentMut, section: &str, key: &str) -> bool {
    doc.get(section)
        .and_then(Item::as_table_like)
        .is_some_and(|t| t.contains_key(key))
}

/// Set `[section] key` to `value` (remove it with `None`) in the document, keeping the decoration (comments,
/// spacing) around an existing value; a missing section is added (`general` first in the file, where the shipped
/// configuration has it; others at the end). Returns whether the document changed; `None` when the section exists
/// but is not a table.
fn set_key(doc: &mut DocumentMut, section: &str, key: &str, value: Option<Value>) -> Option<bool> {
    if !doc.contains_key(section) {
        if value.is_none() {
            return Some(false);
        }
        let mut table = Table::new();
        if section == "general" {
            table.set_position(Some(0));
        }
        doc.insert(section, Item::Table(table));
    }
    let table = doc.get_mut(section)?.as_table_like_mut()?;
    let Some(new) = value else {
        return Some(table.remove(key).is_some());
    };
    let bare = |v: &Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        v.to_string()
    };
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) if bare(old) == bare(&new) => Some(false),
        Some(old) => {
            let decor = old.decor().clone();
            *old = new;
            *old.decor_mut() = decor;
            Some(true)
        }
        None => {
            table.insert(key, Item::Value(new));
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
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            Some(true)
        );
        assert_eq!(
            doc.to_string(),
            "# top\n[general]\n# why\ndisabled = true # trailing\n\n[auth]\ntimeout = 2.0\n"
        );
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            Some(false)
        );
    }

    #[test]
    fn a_missing_section_or_key_is_added() {
        let mut doc: DocumentMut = "[auth]\ntimeout = 2.0\n".parse().unwrap();
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            Some(true)
        );
        let text = doc.to_string();
        let config = Config::from_toml_str(&text, Path::new("x")).unwrap();
        assert!(config.general.disabled);
        assert_eq!(config.auth.timeout, 2.0);
        assert!(text.starts_with("[general]"), "{text}");

        let mut doc: DocumentMut = "[general]\n".parse().unwrap();
        assert_eq!(
            set_key(&mut doc, "general", "disabled", None),
            Some(false),
            "removing an absent key changes nothing"
        );
        assert_eq!(doc.to_string(), "[general]\n");
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            Some(true)
        );
        assert_eq!(doc.to_string(), "[general]\ndisabled = true\n");
        assert_eq!(set_key(&mut doc, "general", "disabled", None), Some(true));
        assert_eq!(doc.to_string(), "[general]\n");
    }

    #[test]
    fn other_sections_and_strings_are_set_in_place() {
        let mut doc: DocumentMut = "[models]\n# which\nembedder = \"int8\" # shipped\n"
            .parse()
            .unwrap();
        assert_eq!(
            set_key(&mut doc, "models", "embedder", Some(Value::from("dlib"))),
            Some(true)
        );
        assert_eq!(
            doc.to_string(),
            "[models]\n# which\nembedder = \"dlib\" # shipped\n"
        );
        assert_eq!(
            set_key(&mut doc, "models", "embedder", Some(Value::from("dlib"))),
            Some(false)
        );
        assert_eq!(
            set_key(&mut doc, "matching", "threshold", Some(Value::from(0.3))),
            Some(true)
        );
        assert!(
            doc.to_string().ends_with("[matching]\nthreshold = 0.3\n"),
            "{doc}"
        );
    }

    #[test]
    fn a_dotted_key_at_the_top_is_edited_in_place() {
        let mut doc: DocumentMut = "general.disabled = false\n".parse().unwrap();
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            Some(true)
        );
        assert_eq!(doc.to_string(), "general.disabled = true\n");
    }

    #[test]
    fn general_that_is_not_a_table_is_refused() {
        let mut doc: DocumentMut = "general = 3\n".parse().unwrap();
        assert_eq!(
            set_key(&mut doc, "general", "disabled", Some(Value::from(true))),
            None
        );
    }
}
