//! The stored emitter settings: `/etc/facekey/ir.toml` (`camera.emitter_settings`), one entry per
//! camera.
//!
//! A camera is keyed by its `/dev/v4l/by-id` name, which survives re-plugging and renumbering
//! (`/dev/video2` today may be `/dev/video4` after a dock is attached); the USB vendor:product is
//! kept beside it for `list` and `doctor`. A camera with no by-id name is keyed by the path it was
//! named by.
//!
//! The file decides what is written to a camera at every authentication, so it is read only
//! through [`crate::trust`] (root-owned, not writable by group or others, directories above
//! included, checked on the opened descriptor) and written atomically (a temporary file in the
//! same directory, renamed over the old one) with mode 0644.
//!
//! What this module must never do: read the file by name without the trust check, leave a
//! half-written file, or read more than [`MAX_FILE_BYTES`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EmitterSetting;
use crate::camera::descriptors::{hex, parse_hex};
use crate::camera::devices;
use crate::camera::xu::{ControlId, MAX_CONTROL_LEN};
use crate::trust::{self, TrustError};

/// The largest settings file read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why the settings file cannot be read or written.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("IR emitter settings not trusted: {0}")]
    Untrusted(#[from] TrustError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// One camera's setting, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `/dev/v4l/by-id/...` (or the path the camera was named by when it has none).
    pub device: String,
    /// USB "vendor:product", when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb: Option<String>,
    pub unit: u8,
    pub selector: u8,
    /// The value, hex.
    pub value: String,
    /// How it was found: "discovered", "known" (the built-in table, confirmed by the frames) or
    /// "set" (by hand).
    pub origin: String,
    /// Dark-frame threshold (percent) learnt at discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dark_threshold: Option<f32>,
}

impl Entry {
    /// The setting this entry describes; `Err` says what is wrong with it.
    pub fn setting(&self) -> Result<EmitterSetting, String> {
        let value = parse_hex(&self.value)
            .ok_or_else(|| format!("{}: value {:?} is not hex bytes", self.device, self.value))?;
        if value.len() > usize::from(MAX_CONTROL_LEN) {
            return Err(format!(
                "{}: value longer than {MAX_CONTROL_LEN} bytes",
                self.device
            ));
        }
        if self.unit == 0 {
            return Err(format!("{}: unit 0 is not an extension unit", self.device));
        }
        let dark_threshold = match self.dark_threshold {
            Some(t) if !(t > 0.0 && t <= 100.0) => {
                return Err(format!(
                    "{}: dark_threshold {t} is not in (0, 100]",
                    self.device
                ))
            }
            other => other,
        };
        Ok(EmitterSetting {
            control: ControlId {
                unit: self.unit,
                selector: self.selector,
            },
            value,
            dark_threshold,
        })
    }

    pub fn new(
        device: String,
        usb: Option<String>,
        setting: &EmitterSetting,
        origin: &str,
    ) -> Entry {
        Entry {
            device,
            usb,
            unit: setting.control.unit,
            selector: setting.control.selector,
            value: hex(&setting.value),
            origin: origin.to_owned(),
            dark_threshold: setting.dark_threshold,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default, rename = "camera")]
    cameras: Vec<Entry>,
}

/// The settings of every camera, as read from the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub entries: Vec<Entry>,
}

impl Settings {
    /// Read `path` through the trust rules. A missing file is an empty store; every entry is
    /// checked ([`Entry::setting`]) so that a bad one is refused here, with its device named.
    pub fn load(path: &Path) -> Result<Settings, StoreError> {
        let file = match trust::open_trusted_file(path) {
            Ok(file) => file,
            Err(e) if e.is_not_found() => return Ok(Settings::default()),
            Err(e) => return Err(e.into()),
        };
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge {
                path: path.to_owned(),
            });
        }
        Settings::from_text(&text, path)
    }

    /// The settings the text of a file holds (`path` names it in errors); every entry checked.
    pub fn from_text(text: &str, path: &Path) -> Result<Settings, StoreError> {
        let invalid = |reason: String| StoreError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let form: FileForm = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
        for entry in &form.cameras {
            entry.setting().map_err(invalid)?;
        }
        Ok(Settings {
            entries: form.cameras,
        })
    }

    /// The entry for the camera at `node` (any name of it: `/dev/videoN`, by-id, by-path).
    pub fn find(&self, node: &Path) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| Path::new(&e.device) == node)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| devices::same_node(Path::new(&e.device), node))
            })
    }

    /// Add or replace the entry for `entry.device`.
    pub fn put(&mut self, entry: Entry) {
        self.entries.retain(|e| e.device != entry.device);
        self.entries.push(entry);
    }

    /// Remove the entry for `node` (any name of it); whether there was one.
    pub fn remove(&mut self, node: &Path) -> bool {
        let Some(device) = self.find(node).map(|e| e.device.clone()) else {
            return false;
        };
        self.entries.retain(|e| e.device != device);
        true
    }

    /// Write the file atomically, mode 0644, after checking that its directory is trusted.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        trust::check_trusted_dir(dir)?;
        let form = FileForm {
            cameras: self.entries.clone(),
        };
        let body = toml::to_string(&form).map_err(|e| StoreError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let text = format!(
            "# facekey infrared emitter settings: written by `facekey ir discover` and `facekey ir set`.\n\
             # Applied each time facekey opens the camera. Manage with `facekey ir list|set|clear`.\n{body}"
        );
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// The key a camera is stored under: its first `/dev/v4l/by-id` name, else `node` as given.
pub fn device_key(node: &Path) -> String {
    device_key_in(Path::new("/dev/v4l"), node)
}

fn device_key_in(v4l: &Path, node: &Path) -> String {
    if node.starts_with(v4l.join("by-id")) {
        return node.display().to_string();
    }
    let links = devices::stable_links(v4l);
    devices::links_to(&links, node)
        .into_iter()
        .find(|l| l.starts_with(v4l.join("by-id")))
        .unwrap_or_else(|| node.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(device: &str) -> Entry {
        Entry {
            device: device.to_owned(),
            usb: Some("1d6b:0102".into()),
            unit: 4,
            selector: 6,
            value: "010303000000000000".into(),
            origin: "discovered".into(),
            dark_threshold: Some(42.5),
        }
    }

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn saved_settings_read_back_the_same_with_mode_0644() {
        let dir = private_dir();
        let path = dir.path().join("ir.toml");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let mut s = Settings::default();
        s.put(entry("/dev/v4l/by-id/usb-Gadget_IR-video-index0"));
        s.put(entry("/dev/video9"));
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let back = Settings::load(&path).unwrap();
        assert_eq!(back, s);
        let setting = back.entries[0].setting().unwrap();
        assert_eq!(setting.value, vec![1, 3, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            setting.control,
            ControlId {
                unit: 4,
                selector: 6
            }
        );
        assert_eq!(setting.dark_threshold, Some(42.5));
        // Replacing keeps one entry per device; removing by name.
        let mut s = back;
        s.put(Entry {
            value: "01".into(),
            ..entry("/dev/video9")
        });
        assert_eq!(s.entries.len(), 2);
        assert!(s.remove(Path::new("/dev/video9")));
        assert!(!s.remove(Path::new("/dev/video9")));
        assert_eq!(s.entries.len(), 1);
    }

    #[test]
    fn group_writable_settings_are_refused_with_the_fix() {
        let dir = private_dir();
        let path = dir.path().join("ir.toml");
        let mut s = Settings::default();
        s.put(entry("/dev/video9"));
        s.save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Untrusted(TrustError::Writable { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        // A group-writable directory refuses saving too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            Settings::load(&path),
            Err(StoreError::Untrusted(TrustError::Writable { .. }))
        ));
        assert!(matches!(
            s.save(&path),
            Err(StoreError::Untrusted(TrustError::Writable { .. }))
        ));
    }

    #[test]
    fn settings_owned_by_another_user_are_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to give the file away");
            return;
        }
        let dir = private_dir();
        let path = dir.path().join("ir.toml");
        let mut s = Settings::default();
        s.put(entry("/dev/video9"));
        s.save(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(crate::confine::NOBODY), None).unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Untrusted(TrustError::NotOwned { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("chown root:root"), "{err}");
    }

    #[test]
    fn malformed_entries_are_refused_naming_the_device() {
        let dir = private_dir();
        let path = dir.path().join("ir.toml");
        for (text, says) in [
            ("[[camera]]\ndevice = \"/dev/video9\"\nunit = 4\nselector = 6\nvalue = \"0g\"\norigin = \"set\"\n", "not hex"),
            ("[[camera]]\ndevice = \"/dev/video9\"\nunit = 0\nselector = 6\nvalue = \"01\"\norigin = \"set\"\n", "unit 0"),
            ("[[camera]]\ndevice = \"/dev/video9\"\nunit = 4\nselector = 6\nvalue = \"01\"\norigin = \"set\"\ndark_threshold = 0.0\n", "dark_threshold"),
            ("[[camera]]\ndevice = \"/dev/video9\"\nunit = 400\nselector = 6\nvalue = \"01\"\norigin = \"set\"\n", ""),
            ("[[camera]]\ndevice = \"/dev/video9\"\nunit = 4\nselector = 6\nvalue = \"01\"\norigin = \"set\"\nextra = 1\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("ir.toml"), "{err}");
        }
    }

    #[test]
    fn a_camera_is_keyed_by_its_by_id_name_and_found_under_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path();
        std::fs::write(dev.join("video2"), "").unwrap();
        std::fs::create_dir_all(dev.join("v4l/by-id")).unwrap();
        std::fs::create_dir_all(dev.join("v4l/by-path")).unwrap();
        let by_id = dev.join("v4l/by-id/usb-Acme_IR-video-index0");
        std::os::unix::fs::symlink(dev.join("video2"), &by_id).unwrap();
        let by_path = dev.join("v4l/by-path/pci-0000:00:14.0-usb-0:5:1.2-video-index0");
        std::os::unix::fs::symlink(dev.join("video2"), &by_path).unwrap();
        let v4l = dev.join("v4l");
        assert_eq!(
            device_key_in(&v4l, &dev.join("video2")),
            by_id.display().to_string()
        );
        assert_eq!(device_key_in(&v4l, &by_path), by_id.display().to_string());
        std::fs::write(dev.join("video7"), "").unwrap();
        assert_eq!(
            device_key_in(&v4l, &dev.join("video7")),
            dev.join("video7").display().to_string()
        );
        let mut s = Settings::default();
        s.put(entry(&by_id.display().to_string()));
        assert!(s.find(&dev.join("video2")).is_some());
        assert!(s.find(&by_path).is_some());
        assert!(s.find(&dev.join("video7")).is_none());
    }
}
