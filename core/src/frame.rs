//! Frames and frame sources.
//!
//! A [`Frame`] is raw pixels as a source produced them: width, height, stride, pixel format and a
//! capture timestamp. [`FrameSource`] is what the decision loop reads from: replay sources here, the
//! V4L2 camera in its own module. A source must never block past the deadline it is given, and
//! decoding must never trust the buffer to be tightly packed: `stride` and the data length are checked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

/// The pixel layouts a frame can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit R, G, B.
    Rgb24,
    /// 8-bit B, G, R.
    Bgr24,
    /// 8-bit luma (infrared cameras).
    Grey,
    /// Packed 4:2:2 Y0 U Y1 V.
    Yuyv,
}

impl PixelFormat {
    /// Bytes used by one row of `width` pixels, tightly packed.
    pub fn min_stride(self, width: u32) -> usize {
        let w = width as usize;
        match self {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => w * 3,
            PixelFormat::Grey => w,
            PixelFormat::Yuyv => w.div_ceil(2) * 4,
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Bytes per row in `data` (at least `format.min_stride(width)`).
    pub stride: usize,
    pub format: PixelFormat,
    pub data: Vec<u8>,
    /// When the frame was captured (or read, for replay sources).
    pub timestamp: Instant,
    /// Where it came from, for messages (a file name, a device path).
    pub origin: String,
}

/// Why a frame could not be decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error(
        "frame {width}x{height} {format:?}: stride {stride} is smaller than a row ({min} bytes)"
    )]
    StrideTooSmall {
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: usize,
        min: usize,
    },
    #[error("frame {width}x{height} {format:?}: {len} bytes of data, {needed} needed")]
    Truncated {
        width: u32,
        height: u32,
        format: PixelFormat,
        len: usize,
        needed: usize,
    },
    #[error("frame has no pixels ({width}x{height})")]
    Empty { width: u32, height: u32 },
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
            timestamp: Instant::now(),
            origin: origin.into(),
        }
    }

    /// Decode to RGB, honouring the stride and checking the buffer really holds every row.
    pub fn to_rgb(&self) -> Result<RgbImage, DecodeError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 {
            return Err(DecodeError::Empty {
                width: w,
                height: h,
            });
        }
        let min = self.format.min_stride(w);
        if self.stride < min {
            return Err(DecodeError::StrideTooSmall {
                width: w,
                height: h,
                format: self.format,
                stride: self.stride,
                min,
            });
        }
        let needed = self.stride * (h as usize - 1) + min;
        if self.data.len() < needed {
            return Err(DecodeError::Truncated {
                width: w,
                height: h,
                format: self.format,
                len: self.data.len(),
                needed,
            });
        }
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for row in self.data.chunks(self.stride).take(h as usize) {
            let row = &row[..min];
            match self.format {
                PixelFormat::Rgb24 => out.extend_from_slice(row),
                PixelFormat::Bgr24 => {
                    for p in row.chunks_exact(3) {
                        out.extend_from_slice(&[p[2], p[1], p[0]]);
                    }
                }
                PixelFormat::Grey => {
                    for &y in row {
                        out.extend_from_slice(&[y, y, y]);
                    }
                }
                PixelFormat::Yuyv => {
                    let mut pushed = 0;
                    for q in row.chunks_exact(4) {
                        let (y0, u, y1, v) = (q[0], q[1], q[2], q[3]);
                        for y in [y0, y1] {
                            if pushed < w as usize {
                                out.extend_from_slice(&yuv_to_rgb(y, u, v));
                                pushed += 1;
                            }
                        }
                    }
                }
            }
        }
        // The length was checked above, so the buffer matches the dimensions.
        RgbImage::from_raw(w, h, out).ok_or(DecodeError::Empty {
            width: w,
            height: h,
        })
    }
}

/// BT.601 limited-range YCbCr to RGB, the encoding UVC cameras use for YUYV.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as f32 - 16.0) * 1.164;
    let d = u as f32 - 128.0;
    let e = v as f32 - 128.0;
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        clamp(c + 1.596 * e),
        clamp(c - 0.392 * d - 0.813 * e),
        clamp(c + 2.017 * d),
    ]
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
}

/// Something that yields frames: a camera or a replay of image files.
pub trait FrameSource: Send {
    /// The next frame, waiting at most until `deadline`. `Ok(None)` means the source has ended
    /// (a replay ran out) or the deadline passed with no frame.
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError>;

    /// A short human description (for messages and logs).
    fn describe(&self) -> String;
}

/// Parse a source specification and open it.
///
/// `file:A.jpg,B.png` replays the listed images, one frame each; `dir:PATH` replays every image in the
/// folder in name order. Camera sources are added by the V4L2 module.
pub fn open_source(spec: &str) -> Result<Box<dyn FrameSource>, SourceError> {
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
    if spec.starts_with("v4l2:") {
        return Err(SourceError::Unsupported(spec.to_string()));
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
