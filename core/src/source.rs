//! Frame sources by name: a `[camera] source` specification parsed and opened.
//!
//! `file:A.jpg,B.png` replays the listed images, one frame each; `dir:PATH` replays every image in
//! a folder in name order; `v4l2:DEVICE` opens a camera. This module is where the two sides meet:
//! it depends on [`crate::frame`] (pixels) and [`crate::camera`] (devices), which do not depend on
//! each other's sources.
//!
//! A replayed image decides who gets in just as a camera frame does, and it skips the checks that
//! need a sensor (infrared, liveness), so replays follow the trust rules of enrolments
//! ([`crate::trust`]): the folder and every directory above it, and each file, owned by root (or,
//! in a process that is not root, by its own effective uid) and not writable by group or others,
//! checked on the opened descriptors. Every file is opened when the source is opened, so the
//! descriptors checked are the ones read, and a process can confine itself after opening its
//! source and still read its frames.
//!
//! What this module must never do: read a replay file, or list a replay folder, by name without
//! those checks; wait on a FIFO or a device left where an image was expected (files are opened
//! non-blocking and must be regular); read more than [`MAX_REPLAY_FILE_BYTES`] of any file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::camera;
use crate::frame::{self, Frame, FrameSource, SourceError, MAX_PIXELS};
use crate::trust::{self, TrustedDir};

/// The largest image file a replay reads. A JPEG of a 16-Mpixel frame
/// ([`MAX_PIXELS`]) at high quality is well below this; a file above it is refused, unread.
pub const MAX_REPLAY_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The most images one replay source holds open.
pub const MAX_REPLAY_FILES: usize = 256;

/// File name endings the replay source reads in a folder.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "pgm", "ppm"];

/// Parse a source specification and open it, with the default camera settings.
///
/// `file:A.jpg,B.png` replays the listed images, one frame each; `dir:PATH` replays every image in the
/// folder in name order; `v4l2:DEVICE` opens a camera (see [`open_source_with`]).
pub fn open_source(spec: &str) -> Result<Box<dyn FrameSource>, SourceError> {
    open_source_with(spec, &facekey_config::Camera::default())
}

/// [`open_source`] with the `[camera]` settings of a configuration: size, rate, format, exposure,
/// rotation. A camera starts streaming before this returns, so frames are already arriving while
/// the caller does other work (loads the models). Replay files are opened and checked here.
pub fn open_source_with(
    spec: &str,
    settings: &facekey_config::Camera,
) -> Result<Box<dyn FrameSource>, SourceError> {
    if let Some(list) = spec.strip_prefix("file:") {
        let paths: Vec<PathBuf> = list
            .split(',')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if paths.is_empty() {
            return Err(SourceError::BadSpec(spec.to_string()));
        }
        return Ok(Box::new(ReplaySource::open(&paths)?));
    }
    if let Some(dir) = spec.strip_prefix("dir:") {
        return Ok(Box::new(ReplaySource::from_dir(Path::new(dir))?));
    }
    if let Some(device) = spec.strip_prefix("v4l2:") {
        if device.is_empty() {
            return Err(SourceError::BadSpec(spec.to_string()));
        }
        // The PAM module runs in whatever directory its host process is in.
        if !Path::new(device).is_absolute() {
            return Err(SourceError::Device {
                device: device.to_owned(),
                reason: "a camera must be named by an absolute path, such as /dev/video0".into(),
            });
        }
        let mut camera_settings = camera::Settings::from_config(settings);
        camera_settings.emitter = stored_emitter(&settings.emitter_settings, Path::new(device));
        return Ok(Box::new(camera::Camera::open(
            Path::new(device),
            &camera_settings,
        )?));
    }
    Err(SourceError::BadSpec(spec.to_string()))
}

/// The infrared emitter setting stored for `device` (`facekey ir`), applied by
/// [`camera::Camera::open`] right after opening. Every camera a front end opens comes through
/// here, once per open. A settings file that cannot be trusted or read sets nothing: the problem
/// travels with the camera's information into the decision's log line (and `facekey doctor`
/// names it), the camera still opens and the decision still runs.
fn stored_emitter(
    file: &Path,
    device: &Path,
) -> Option<Result<camera::emitter::EmitterSetting, String>> {
    match camera::emitter::store::Settings::load(file) {
        Ok(stored) => stored.find(device).map(|e| e.setting()),
        Err(e) => Some(Err(e.to_string())),
    }
}

fn untrusted(path: &Path) -> impl FnOnce(trust::TrustError) -> SourceError + '_ {
    move |source| SourceError::Untrusted {
        path: path.to_path_buf(),
        source,
    }
}

/// One image file of a replay, open and checked.
struct ReplayFile {
    path: PathBuf,
    file: File,
}

impl ReplayFile {
    /// Open through the trust rules and refuse a file over the size limit from its metadata,
    /// without reading it.
    fn open(path: &Path) -> Result<ReplayFile, SourceError> {
        let file = trust::open_trusted_file(path).map_err(untrusted(path))?;
        ReplayFile::checked(path.to_path_buf(), file)
    }

    fn checked(path: PathBuf, file: File) -> Result<ReplayFile, SourceError> {
        let size = file
            .metadata()
            .map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if size > MAX_REPLAY_FILE_BYTES {
            return Err(SourceError::FileTooLarge {
                path,
                size,
                limit: MAX_REPLAY_FILE_BYTES,
            });
        }
        Ok(ReplayFile { path, file })
    }

    /// The whole file, from its start, at most [`MAX_REPLAY_FILE_BYTES`] (a file that grew past
    /// the limit since it was opened is refused, not truncated).
    fn read(&self) -> Result<Vec<u8>, SourceError> {
        let io = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_REPLAY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_REPLAY_FILE_BYTES {
            return Err(SourceError::FileTooLarge {
                path: self.path.clone(),
                size: bytes.len() as u64,
                limit: MAX_REPLAY_FILE_BYTES,
            });
        }
        Ok(bytes)
    }

    fn decode(&self) -> Result<Frame, SourceError> {
        let bytes = self.read()?;
        frame::decode_image(&bytes, &self.path.display().to_string()).map_err(|reason| {
            SourceError::BadImage {
                path: self.path.clone(),
                reason,
            }
        })
    }

    /// The image's size from its header alone; `None` when unknown or over [`MAX_PIXELS`].
    fn dimensions(&self) -> Option<(u32, u32)> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).ok()?;
        let (w, h) = image::ImageReader::new(BufReader::new(file))
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?;
        (u64::from(w) * u64::from(h) <= MAX_PIXELS).then_some((w, h))
    }
}

/// Read one image file into an RGB frame, through the same trust rules and size limit as a
/// replay source.
pub fn read_image(path: &Path) -> Result<Frame, SourceError> {
    ReplayFile::open(path)?.decode()
}

/// Replays image files as frames, one frame per file, then ends.
pub struct ReplaySource {
    files: Vec<ReplayFile>,
    next: usize,
}

impl ReplaySource {
    /// Open each of `paths` (in this order) through the trust rules.
    pub fn open(paths: &[PathBuf]) -> Result<ReplaySource, SourceError> {
        if let Some(path) = paths.get(MAX_REPLAY_FILES) {
            return Err(SourceError::TooManyFiles {
                path: path.clone(),
                limit: MAX_REPLAY_FILES,
            });
        }
        let files = paths
            .iter()
            .map(|p| ReplayFile::open(p))
            .collect::<Result<_, _>>()?;
        Ok(ReplaySource { files, next: 0 })
    }

    /// Every image file in `dir`, sorted by name. The folder is listed through its checked
    /// descriptor, and each image opened through it: a folder (or any folder above it) that
    /// someone else could write is refused, and so is every image in it that is not a trusted
    /// regular file (a link, a FIFO, a file owned by another user), rather than skipped.
    pub fn from_dir(dir: &Path) -> Result<ReplaySource, SourceError> {
        let trusted = TrustedDir::open(dir).map_err(untrusted(dir))?;
        let mut names: Vec<_> = trusted
            .names()
            .map_err(untrusted(dir))?
            .into_iter()
            .filter(|name| {
                Path::new(name)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        if names.is_empty() {
            return Err(SourceError::EmptyDir {
                path: dir.to_path_buf(),
            });
        }
        if names.len() > MAX_REPLAY_FILES {
            return Err(SourceError::TooManyFiles {
                path: dir.to_path_buf(),
                limit: MAX_REPLAY_FILES,
            });
        }
        names.sort();
        let files = names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let file = trusted.open_file(name).map_err(untrusted(&path))?;
                ReplayFile::checked(path, file)
            })
            .collect::<Result<_, _>>()?;
        Ok(ReplaySource { files, next: 0 })
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError> {
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let Some(file) = self.files.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        file.decode().map(Some)
    }

    fn describe(&self) -> String {
        match self.files.as_slice() {
            [one] => format!("file:{}", one.path.display()),
            many => format!("replay of {} images", many.len()),
        }
    }

    /// The next image's size, from its header alone (read from the descriptor that was checked).
    fn frame_size_hint(&self) -> Option<(u32, u32)> {
        self.files.get(self.next)?.dimensions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::tests::{chmod, is_root, trusted_tempdir};
    use crate::trust::TrustError;
    use image::RgbImage;
    use std::os::unix::fs::chown;
    use std::time::Duration;

    /// nobody: a uid a replay file must not be trusted from.
    const NOBODY: u32 = 65_534;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// An 8x4 PNG of one shade, mode 0644.
    fn png(path: &Path, shade: u8) {
        RgbImage::from_pixel(8, 4, image::Rgb([shade; 3]))
            .save(path)
            .unwrap();
        chmod(path, 0o644);
    }

    fn message(result: Result<Box<dyn FrameSource>, SourceError>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(s) => panic!("opened as {}", s.describe()),
        }
    }

    #[test]
    fn unknown_source_spec_is_refused() {
        assert!(matches!(
            open_source("http://x"),
            Err(SourceError::BadSpec(_))
        ));
        assert!(matches!(open_source("file:"), Err(SourceError::BadSpec(_))));
    }

    #[test]
    fn camera_specs_that_cannot_name_a_camera_are_refused_by_name() {
        let message = |spec: &str| message(open_source(spec));
        assert!(matches!(open_source("v4l2:"), Err(SourceError::BadSpec(_))));
        assert!(message("v4l2:video0").contains("absolute path"));
        assert!(message("v4l2:/dev/video-none").starts_with("/dev/video-none: no such device"));
        assert!(message("v4l2:/dev/null").starts_with("/dev/null: not a V4L2 device"));
        assert!(message("v4l2:/dev/vid\0eo0").contains("NUL byte"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("video0");
        std::fs::write(&file, "not a device").unwrap();
        assert!(message(&format!("v4l2:{}", file.display())).contains("not a V4L2 device"));
    }

    #[test]
    fn dir_source_replays_images_in_name_order_then_ends() {
        let dir = trusted_tempdir();
        png(&dir.path().join("b.png"), 200);
        png(&dir.path().join("a.png"), 100);
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let mut source = open_source(&format!("dir:{}", dir.path().display())).unwrap();
        assert_eq!(source.frame_size_hint(), Some((8, 4)));
        let first = source.next_frame(far()).unwrap().unwrap();
        assert!(first.origin.ends_with("a.png"));
        assert_eq!(first.to_rgb().unwrap().get_pixel(0, 0).0, [100; 3]);
        let second = source.next_frame(far()).unwrap().unwrap();
        assert!(second.origin.ends_with("b.png"));
        assert!(source.next_frame(far()).unwrap().is_none());
        assert_eq!(source.frame_size_hint(), None);
    }

    #[test]
    fn unreadable_image_names_the_file() {
        let dir = trusted_tempdir();
        let path = dir.path().join("broken.jpg");
        std::fs::write(&path, b"\xff\xd8\xff garbage").unwrap();
        chmod(&path, 0o644);
        let mut source = open_source(&format!("file:{}", path.display())).unwrap();
        let err = source.next_frame(far()).unwrap_err();
        assert!(err.to_string().contains("broken.jpg"), "{err}");
    }

    #[test]
    fn a_missing_replay_file_is_an_error_when_the_source_opens() {
        let dir = trusted_tempdir();
        let err = message(open_source(&format!(
            "file:{}",
            dir.path().join("absent.jpg").display()
        )));
        assert!(err.contains("absent.jpg"), "{err}");
        // A missing folder on the way: the file is still the one named.
        let err = message(open_source("file:/nonexistent/face.jpg"));
        assert!(
            err.starts_with("replay source /nonexistent/face.jpg: "),
            "{err}"
        );
    }

    #[test]
    fn replay_file_owned_by_nobody_is_refused_with_the_fix() {
        if !is_root() {
            eprintln!("skipped: chown to nobody needs root");
            return;
        }
        let dir = trusted_tempdir();
        let path = dir.path().join("face.png");
        png(&path, 90);
        chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        for spec in [
            format!("file:{}", path.display()),
            format!("dir:{}", dir.path().display()),
        ] {
            let result = open_source(&spec);
            assert!(
                matches!(
                    result,
                    Err(SourceError::Untrusted {
                        source: TrustError::NotOwned { uid: NOBODY, .. },
                        ..
                    })
                ),
                "{spec}: {:?}",
                result.err()
            );
            let text = message(open_source(&spec));
            assert!(text.contains("chown root:root"), "{text}");
        }
        assert!(matches!(
            read_image(&path),
            Err(SourceError::Untrusted {
                source: TrustError::NotOwned { .. },
                ..
            })
        ));
        // The same file handed back to root is read.
        chown(&path, Some(0), Some(0)).unwrap();
        let mut source = open_source(&format!("file:{}", path.display())).unwrap();
        let frame = source.next_frame(far()).unwrap().unwrap();
        assert_eq!(frame.to_rgb().unwrap().get_pixel(0, 0).0, [90; 3]);
    }

    #[test]
    fn group_or_world_writable_replay_file_is_refused() {
        let dir = trusted_tempdir();
        let path = dir.path().join("face.png");
        png(&path, 90);
        for mode in [0o664, 0o646, 0o666] {
            chmod(&path, mode);
            for spec in [
                format!("file:{}", path.display()),
                format!("dir:{}", dir.path().display()),
            ] {
                let result = open_source(&spec);
                assert!(
                    matches!(
                        result,
                        Err(SourceError::Untrusted {
                            source: TrustError::Writable { .. },
                            ..
                        })
                    ),
                    "{spec} mode {mode:o}: {:?}",
                    result.err()
                );
                assert!(message(open_source(&spec)).contains("chmod go-w"));
            }
        }
        chmod(&path, 0o644);
        open_source(&format!("file:{}", path.display())).expect("0644 is trusted");
    }

    #[test]
    fn replay_folder_others_can_write_is_refused() {
        let dir = trusted_tempdir();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let path = open.join("face.png");
        png(&path, 90);
        for mode in [0o777, 0o775, 0o1777] {
            chmod(&open, mode);
            let result = open_source(&format!("dir:{}", open.display()));
            assert!(
                matches!(
                    result,
                    Err(SourceError::Untrusted {
                        source: TrustError::Writable { .. },
                        ..
                    })
                ),
                "dir: mode {mode:o}: {:?}",
                result.err()
            );
        }
        // A file in a folder others can write: its parent is checked as well (sticky would do).
        for mode in [0o777, 0o770] {
            chmod(&open, mode);
            let result = open_source(&format!("file:{}", path.display()));
            assert!(
                matches!(
                    result,
                    Err(SourceError::Untrusted {
                        source: TrustError::Writable { .. },
                        ..
                    })
                ),
                "file: parent mode {mode:o}: {:?}",
                result.err()
            );
        }
        chmod(&open, 0o755);
        open_source(&format!("dir:{}", open.display())).expect("0755 is trusted");
    }

    #[test]
    fn replay_folder_owned_by_nobody_is_refused() {
        if !is_root() {
            eprintln!("skipped: chown to nobody needs root");
            return;
        }
        let dir = trusted_tempdir();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        png(&theirs.join("face.png"), 90);
        chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        for spec in [
            format!("dir:{}", theirs.display()),
            format!("file:{}", theirs.join("face.png").display()),
        ] {
            let result = open_source(&spec);
            assert!(
                matches!(
                    result,
                    Err(SourceError::Untrusted {
                        source: TrustError::NotOwned { uid: NOBODY, .. },
                        ..
                    })
                ),
                "{spec}: {:?}",
                result.err()
            );
        }
    }

    #[test]
    fn fifo_or_link_in_place_of_an_image_is_refused_without_blocking() {
        let dir = trusted_tempdir();
        let fifo = dir.path().join("camera.jpg");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Opening a FIFO for reading with nobody writing would wait forever: these must return.
        let result = open_source(&format!("file:{}", fifo.display()));
        assert!(
            matches!(
                result,
                Err(SourceError::Untrusted {
                    source: TrustError::NotRegular { .. },
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
        let result = open_source(&format!("dir:{}", dir.path().display()));
        assert!(
            matches!(
                result,
                Err(SourceError::Untrusted {
                    source: TrustError::NotRegular { .. },
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
        std::fs::remove_file(&fifo).unwrap();

        let real = dir.path().join("real.png");
        png(&real, 10);
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            open_source(&format!("file:{}", link.display())),
            Err(SourceError::Untrusted {
                source: TrustError::Symlink { .. },
                ..
            })
        ));
        assert!(matches!(
            open_source(&format!("dir:{}", dir.path().display())),
            Err(SourceError::Untrusted {
                source: TrustError::Symlink { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_replay_file_over_the_size_limit_is_refused_unread() {
        let dir = trusted_tempdir();
        let path = dir.path().join("huge.jpg");
        let file = File::create(&path).unwrap();
        // Sparse: no disk space used, and nothing would show reading it but the time taken.
        file.set_len(MAX_REPLAY_FILE_BYTES + 1).unwrap();
        chmod(&path, 0o644);
        match open_source(&format!("file:{}", path.display())) {
            Err(SourceError::FileTooLarge { size, limit, .. }) => {
                assert_eq!(
                    (size, limit),
                    (MAX_REPLAY_FILE_BYTES + 1, MAX_REPLAY_FILE_BYTES)
                )
            }
            other => panic!("{:?}", other.err()),
        }
        // At the limit it is read (and is not an image).
        file.set_len(MAX_REPLAY_FILE_BYTES).unwrap();
        let mut source = open_source(&format!("file:{}", path.display())).unwrap();
        assert!(matches!(
            source.next_frame(far()),
            Err(SourceError::BadImage { .. })
        ));
    }

    #[test]
    fn a_replay_image_whose_header_claims_too_many_pixels_is_refused_before_decoding() {
        let dir = trusted_tempdir();
        let path = dir.path().join("bomb.jpg");
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode_image(&RgbImage::new(16, 16))
            .unwrap();
        // The frame header (SOF0) holds height then width, big-endian, 5 bytes after its marker:
        // claim 65535 x 65535, 12 GiB of RGB.
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        std::fs::write(&path, &bytes).unwrap();
        chmod(&path, 0o644);
        let mut source = open_source(&format!("file:{}", path.display())).unwrap();
        assert_eq!(source.frame_size_hint(), None, "no hint over the limit");
        let err = source.next_frame(far()).unwrap_err().to_string();
        assert!(err.contains("bomb.jpg"), "{err}");
        assert!(err.contains("65535x65535"), "{err}");
    }

    #[test]
    fn more_images_than_the_limit_are_refused() {
        let paths = vec![PathBuf::from("/nonexistent.png"); MAX_REPLAY_FILES + 1];
        assert!(matches!(
            ReplaySource::open(&paths),
            Err(SourceError::TooManyFiles { .. })
        ));
    }
}
