//! Frames and frame sources.
//!
//! A [`Frame`] is raw pixels as a source produced them: width, height, stride, pixel format, the
//! rotation to apply and a capture timestamp. [`FrameSource`] is what the decision loop reads
//! from: replay sources here, the V4L2 camera in [`crate::camera`]. A source must never block past
//! the deadline it is given, and decoding (`decode.rs`, `mjpeg.rs`) must never trust the buffer to be
//! tightly packed or complete: `stride` and the data length are checked, and a frame that cannot
//! be decoded is an error to skip, not a panic.

pub mod decode;
mod mjpeg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::camera::{self, CameraInfo};

pub use decode::{fourcc_text, DecodeError, PixelFormat};

/// Clockwise rotation applied when a frame is decoded (`camera.rotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    #[default]
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    /// The rotation for a number of degrees; `None` unless 0, 90, 180 or 270.
    pub fn from_degrees(degrees: u32) -> Option<Rotation> {
        match degrees {
            0 => Some(Rotation::None),
            90 => Some(Rotation::Cw90),
            180 => Some(Rotation::Cw180),
            270 => Some(Rotation::Cw270),
            _ => None,
        }
    }

    fn apply(self, image: RgbImage) -> RgbImage {
        use image::imageops;
        match self {
            Rotation::None => image,
            Rotation::Cw90 => imageops::rotate90(&image),
            Rotation::Cw180 => imageops::rotate180(&image),
            Rotation::Cw270 => imageops::rotate270(&image),
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Bytes per row in `data` (at least `format.min_stride(width)`; unused for MJPG).
    pub stride: usize,
    pub format: PixelFormat,
    /// The bytes the source filled (for a camera, `bytesused` of the buffer, never more).
    pub data: Vec<u8>,
    /// Applied by [`Frame::to_rgb`]; `width` and `height` are before rotation.
    pub rotation: Rotation,
    /// When the frame was captured (or read, for replay sources).
    pub timestamp: Instant,
    /// Where it came from, for messages (a file name, a device path).
    pub origin: String,
}

impl Frame {
    /// A frame holding an already decoded RGB image.
    pub fn from_rgb(image: RgbImage, origin: impl Into<String>) -> Frame {
        let (width, height) = image.dimensions();
        Frame {
            width,
            height,
            stride: width as usize * 3,
            format: PixelFormat::Rgb24,
            data: image.into_raw(),
            rotation: Rotation::None,
            timestamp: Instant::now(),
            origin: origin.into(),
        }
    }

    /// Decode to RGB, honouring the stride and checking the buffer really holds every row, then
    /// rotate.
    pub fn to_rgb(&self) -> Result<RgbImage, DecodeError> {
        let upright = decode::to_rgb(
            self.format,
            self.width,
            self.height,
            self.stride,
            &self.data,
        )?;
        Ok(self.rotation.apply(upright))
    }
}

/// Why a source could not give a frame.
#[derive(thiserror::Error, Debug)]
pub enum SourceError {
    #[error("unknown frame source '{0}' (expected file:PATH[,PATH...], dir:PATH or v4l2:DEVICE)")]
    BadSpec(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable image: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error("{path}: no image files in this directory")]
    EmptyDir { path: PathBuf },
    #[error("frame source {0}: not supported in this build")]
    Unsupported(String),
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
    #[error("{device}: busy (another program is using the camera); still busy after {} ms, at the deadline", waited.as_millis())]
    Busy { device: String, waited: Duration },
    #[error("{device}: {wanted} is not offered (the camera offers {offered})")]
    NotOffered {
        device: String,
        wanted: String,
        offered: String,
    },
    #[error("{device}: not an infrared camera (it offers {offered}); camera.require_ir refuses it: set require_ir = false to accept a colour camera, which a photo can fool")]
    NotInfrared { device: String, offered: String },
}

/// Something that yields frames: a camera or a replay of image files.
pub trait FrameSource: Send {
    /// The next frame, waiting at most until `deadline`. `Ok(None)` means the source has ended
    /// (a replay ran out) or the deadline passed with no frame.
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError>;

    /// A short human description (for messages and logs).
    fn describe(&self) -> String;

    /// What the camera is and how it was set up, when this source is a live camera (`None` for
    /// replays). Live sources get the liveness checks that need a sensor: see [`crate::liveness`].
    fn camera(&self) -> Option<&CameraInfo> {
        None
    }

    /// The size of the frames to come, when known before the first one arrives, so the detector can
    /// be planned for it while the other model loads. Only a hint: a wrong one costs time, not
    /// correctness.
    fn frame_size_hint(&self) -> Option<(u32, u32)> {
        self.camera().map(|c| (c.width, c.height))
    }
}

/// Parse a source specification and open it, with the default camera settings.
///
/// `file:A.jpg,B.png` replays the listed images, one frame each; `dir:PATH` replays every image in the
/// folder in name order; `v4l2:DEVICE` opens a camera (see [`open_source_with`]).
pub fn open_source(spec: &str) -> Result<Box<dyn FrameSource>, SourceError> {
    open_source_with(spec, &facekey_config::Camera::default())
}

/// [`open_source`] with the `[camera]` settings of a configuration: size, rate, format, exposure,
/// rotation. A camera starts streaming before this returns, so frames are already arriving while
/// the caller does other work (loads the models).
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
        return Ok(Box::new(ReplaySource::new(paths)));
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
        let settings = camera::Settings::from_config(settings);
        return Ok(Box::new(camera::Camera::open(
            Path::new(device),
            &settings,
        )?));
    }
    Err(SourceError::BadSpec(spec.to_string()))
}

/// File name endings the replay source reads.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "pgm", "ppm"];

/// Replays image files as frames, one frame per file, then ends.
pub struct ReplaySource {
    paths: Vec<PathBuf>,
    next: usize,
}

impl ReplaySource {
    pub fn new(paths: Vec<PathBuf>) -> ReplaySource {
        ReplaySource { paths, next: 0 }
    }

    /// Every image file in `dir`, sorted by name.
    pub fn from_dir(dir: &Path) -> Result<ReplaySource, SourceError> {
        let io = |source| SourceError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(SourceError::EmptyDir {
                path: dir.to_path_buf(),
            });
        }
        paths.sort();
        Ok(ReplaySource::new(paths))
    }
}

/// Read an image file into an RGB frame.
pub fn read_image(path: &Path) -> Result<Frame, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, &path.display().to_string()).map_err(|reason| SourceError::BadImage {
        path: path.to_path_buf(),
        reason,
    })
}

/// Decode an encoded image (JPEG, PNG, ...) held in memory into an RGB frame.
pub fn decode_image(bytes: &[u8], origin: &str) -> Result<Frame, String> {
    let image = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    Ok(Frame::from_rgb(image.into_rgb8(), origin))
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError> {
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let Some(path) = self.paths.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        read_image(path).map(Some)
    }

    fn describe(&self) -> String {
        match self.paths.as_slice() {
            [one] => format!("file:{}", one.display()),
            many => format!("replay of {} images", many.len()),
        }
    }

    /// The next image's size, from its header alone.
    fn frame_size_hint(&self) -> Option<(u32, u32)> {
        image::image_dimensions(self.paths.get(self.next)?).ok()
    }
}

/// Time left until `deadline` (zero once it has passed).
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(format: PixelFormat, width: u32, height: u32, stride: usize, data: Vec<u8>) -> Frame {
        Frame {
            width,
            height,
            stride,
            format,
            data,
            rotation: Rotation::None,
            timestamp: Instant::now(),
            origin: "test".into(),
        }
    }

    #[test]
    fn grey_frame_with_padded_rows_decodes_to_equal_channels() {
        // 3x2 luma with two padding bytes per row that must be ignored.
        let data = vec![10, 20, 30, 99, 99, 40, 50, 60, 99, 99];
        let rgb = frame(PixelFormat::Grey, 3, 2, 5, data).to_rgb().unwrap();
        assert_eq!(rgb.get_pixel(2, 0).0, [30, 30, 30]);
        assert_eq!(rgb.get_pixel(0, 1).0, [40, 40, 40]);
    }

    #[test]
    fn bgr_frame_swaps_channels() {
        let rgb = frame(PixelFormat::Bgr24, 1, 1, 3, vec![1, 2, 3])
            .to_rgb()
            .unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [3, 2, 1]);
    }

    #[test]
    fn yuyv_grey_levels_decode_to_grey() {
        // Limited-range black (16) and white (235) with neutral chroma.
        let rgb = frame(PixelFormat::Yuyv, 2, 1, 4, vec![16, 128, 235, 128])
            .to_rgb()
            .unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_panic() {
        let err = frame(PixelFormat::Rgb24, 4, 4, 12, vec![0; 40])
            .to_rgb()
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                width: 4,
                height: 4,
                format: PixelFormat::Rgb24,
                len: 40,
                needed: 48
            }
        );
        assert!(matches!(
            frame(PixelFormat::Rgb24, 4, 1, 8, vec![0; 12]).to_rgb(),
            Err(DecodeError::StrideTooSmall { .. })
        ));
        assert!(matches!(
            frame(PixelFormat::Grey, 0, 1, 0, vec![]).to_rgb(),
            Err(DecodeError::Empty { .. })
        ));
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
        let message = |spec: &str| match open_source(spec) {
            Err(e) => e.to_string(),
            Ok(s) => panic!("{spec} opened as {}", s.describe()),
        };
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
    fn rotation_turns_the_decoded_picture_clockwise() {
        // 2x1: red then blue.
        let mut f = frame(PixelFormat::Rgb24, 2, 1, 6, vec![255, 0, 0, 0, 0, 255]);
        f.rotation = Rotation::Cw90;
        let rgb = f.to_rgb().unwrap();
        assert_eq!(rgb.dimensions(), (1, 2));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(0, 1).0, [0, 0, 255]);
        f.rotation = Rotation::Cw180;
        assert_eq!(f.to_rgb().unwrap().get_pixel(0, 0).0, [0, 0, 255]);
        f.rotation = Rotation::Cw270;
        assert_eq!(f.to_rgb().unwrap().get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(Rotation::from_degrees(45), None);
        assert_eq!(Rotation::from_degrees(270), Some(Rotation::Cw270));
    }

    #[test]
    fn dir_source_replays_images_in_name_order_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        for (name, shade) in [("b.png", 200u8), ("a.png", 100u8)] {
            RgbImage::from_pixel(8, 4, image::Rgb([shade; 3]))
                .save(dir.path().join(name))
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let mut source = open_source(&format!("dir:{}", dir.path().display())).unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        let first = source.next_frame(far).unwrap().unwrap();
        assert!(first.origin.ends_with("a.png"));
        assert_eq!(first.to_rgb().unwrap().get_pixel(0, 0).0, [100; 3]);
        let second = source.next_frame(far).unwrap().unwrap();
        assert!(second.origin.ends_with("b.png"));
        assert!(source.next_frame(far).unwrap().is_none());
    }

    #[test]
    fn unreadable_image_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.jpg");
        std::fs::write(&path, b"\xff\xd8\xff garbage").unwrap();
        let mut source = open_source(&format!("file:{}", path.display())).unwrap();
        let err = source
            .next_frame(Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("broken.jpg"), "{err}");
    }
}
