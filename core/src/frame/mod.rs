//! Frames and frame sources.
//!
//! A [`Frame`] is raw pixels as a source produced them: width, height, stride, pixel format, the
//! rotation to apply and a capture timestamp. [`FrameSource`] is what the decision loop reads
//! from; the sources themselves (replays of image files, the V4L2 camera) are opened in
//! [`crate::source`]. A source must never block past the deadline it is given, and decoding
//! (`decode.rs`, `mjpeg.rs`) must never trust the buffer to be tightly packed or complete, nor a
//! size a device or a file header states: `stride`, the data length and the pixel count are
//! checked before anything is allocated, and a frame that cannot be decoded is an error to skip,
//! not a panic.
//!
//! This module knows pixels, not devices: it must never import `crate::camera` (the camera
//! depends on it, not the other way round).

// Test builds only: a global allocator that notes allocation sizes (unsafe by nature of the trait).
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) mod alloc_probe;
pub mod decode;
pub mod live;
mod mjpeg;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::trust::TrustError;

pub use decode::{fourcc_text, DecodeError, PixelFormat, MAX_PIXELS};
pub use live::CameraInfo;

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
    /// A replay image or folder that fails the trust rules of enrolments: whoever could change it
    /// could choose the face that logs in.
    #[error("replay source {}: {source}", path.display())]
    Untrusted {
        /// The image or folder named in the source.
        path: PathBuf,
        source: TrustError,
    },
    #[error("{path}: {size} bytes, more than the {limit} a replayed image may have")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: more than {limit} images to replay; replay a smaller folder")]
    TooManyFiles { path: PathBuf, limit: usize },
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
    /// The user's samples were all enrolled with other cameras (`crate::camera::identity`).
    #[error("{device} is {current}, but every face of this user was enrolled with another camera ({enrolled}); if this camera is the user's, enrol with it (`facekey add`)")]
    OtherCamera {
        device: String,
        current: String,
        enrolled: String,
    },
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

/// BT.601 luma of an RGB pixel, in integer arithmetic (0-255).
pub fn luma([r, g, b]: [u8; 3]) -> u8 {
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8).min(255) as u8
}

/// Decode an encoded image (JPEG, PNG, ...) held in memory into an RGB frame. The size in its
/// header is checked against [`MAX_PIXELS`] before the picture is decoded or allocated.
pub fn decode_image(bytes: &[u8], origin: &str) -> Result<Frame, String> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    // The decoders' own working memory too: a little above the largest picture allowed.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(decode::MAX_FRAME_BYTES as u64);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    decode::check_pixels(width, height).map_err(|e| e.to_string())?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    Ok(Frame::from_rgb(image.into_rgb8(), origin))
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
    fn no_file_of_the_frame_module_imports_the_camera() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/frame");
        // Split so that this very test does not name them.
        let needles = [concat!("camera", "::"), concat!("source", "::")];
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            files += 1;
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !needles.iter().any(|n| code.contains(n)),
                    "{}:{}: the pixel side must not depend on the device side: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        assert!(files >= 4, "read {files} files in {}", dir.display());
    }
}
