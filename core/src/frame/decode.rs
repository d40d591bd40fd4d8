//! Pixel formats and their conversion to RGB.
//!
//! Every decoder reads rows through the frame's stride and checks that the buffer really holds
//! every row (and plane) before touching it: drivers pad rows, report `bytesused` larger than the
//! image (vivid's GREY) or hand over a short buffer, and none of that may panic or read stale
//! bytes. A frame that cannot be decoded is an error the caller skips, never a crash.
//!
//! Sizes come from the device or a file header, so they are hostile until checked: width x height
//! is held to [`MAX_PIXELS`] and the bytes a layout needs to [`MAX_FRAME_BYTES`] before anything
//! sized by them is allocated, and that arithmetic is done in types it cannot overflow
//! ([`check_layout`]).
//!
//! YCbCr is converted with hand-written BT.601 limited-range integer arithmetic rather than the
//! `yuv` crate: it is the encoding UVC cameras use for YUYV and NV12, a 640x480 frame converts in
//! about a millisecond (against tens of milliseconds of detection), the results are exact integers
//! the tests can state, and it keeps a SIMD-heavy dependency out of every process that loads the
//! PAM module.

use image::RgbImage;

use super::mjpeg;

/// The most pixels (width x height) a frame may have, checked before anything sized by the frame is
/// allocated. 16 Mpixel (4096 x 4096) is twice 4K UHD, above anything a face camera sends, and the
/// detector scales every frame down to `detection.max_height` rows anyway; decoded to RGB such a
/// frame is 48 MiB. Every size limit on frames derives from this one.
pub const MAX_PIXELS: u64 = 16 * 1024 * 1024;

/// The most bytes a raw frame's layout may need (rows `stride` apart): four bytes per pixel at
/// [`MAX_PIXELS`], room for the widest format (RGB24, three) with its rows padded by a third.
pub const MAX_FRAME_BYTES: usize = (MAX_PIXELS * 4) as usize;

/// The pixel layouts a frame can carry (V4L2 four-character codes in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 8-bit R, G, B (`RGB3`).
    Rgb24,
    /// 8-bit B, G, R (`BGR3`).
    Bgr24,
    /// 8-bit luma (`GREY`, also called Y8): infrared cameras.
    Grey,
    /// 10-bit luma in the low bits of 16-bit little-endian words (`Y10 `).
    Y10,
    /// 12-bit luma in the low bits of 16-bit little-endian words (`Y12 `).
    Y12,
    /// 16-bit little-endian luma (`Y16 `).
    Y16,
    /// Packed 4:2:2 Y0 U Y1 V (`YUYV`).
    Yuyv,
    /// Packed 4:2:2 U Y0 V Y1 (`UYVY`).
    Uyvy,
    /// 4:2:0: a luma plane, then a plane of interleaved U V at half height (`NV12`).
    Nv12,
    /// A complete JPEG image per frame (`MJPG`, also `JPEG`).
    Mjpeg,
}

/// Every format, in no particular order.
pub const ALL_FORMATS: [PixelFormat; 10] = [
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Grey,
    PixelFormat::Y10,
    PixelFormat::Y12,
    PixelFormat::Y16,
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
    PixelFormat::Nv12,
    PixelFormat::Mjpeg,
];

impl PixelFormat {
    /// Bytes used by one row of `width` pixels, tightly packed (of the luma plane for NV12; 0 for
    /// MJPG, which has no rows). Saturates where `usize` cannot hold it (32-bit targets), which
    /// no frame within [`MAX_PIXELS`] comes near.
    pub fn min_stride(self, width: u32) -> usize {
        let w = u64::from(width);
        let bytes = match self {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => w * 3,
            PixelFormat::Grey => w,
            PixelFormat::Y10 | PixelFormat::Y12 | PixelFormat::Y16 => w * 2,
            PixelFormat::Yuyv | PixelFormat::Uyvy => w.div_ceil(2) * 4,
            // The chroma rows hold a U V pair per two pixels: an odd width still needs w + 1.
            PixelFormat::Nv12 => w.div_ceil(2) * 2,
            PixelFormat::Mjpeg => 0,
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// Bytes a `width` x `height` frame with rows `stride` apart must hold: the last row need not
    /// be padded. `None` for MJPG, whose size varies with the picture, and when the size does not
    /// fit in `usize` (see [`check_layout`] for the checked form with the limits).
    pub fn needed_len(self, width: u32, height: u32, stride: usize) -> Option<usize> {
        if self == PixelFormat::Mjpeg {
            return None;
        }
        usize::try_from(self.needed_bytes(width, height, stride)).ok()
    }

    /// [`PixelFormat::needed_len`] in a type no `u32` height and `usize` stride can overflow
    /// (under 2^97); 0 for MJPG.
    fn needed_bytes(self, width: u32, height: u32, stride: usize) -> u128 {
        let (h, stride) = (u128::from(height), stride as u128);
        if h == 0 {
            return 0;
        }
        let min = self.min_stride(width) as u128;
        match self {
            PixelFormat::Mjpeg => 0,
            // The chroma plane starts right after `height` luma rows.
            PixelFormat::Nv12 => stride * h + stride * (h.div_ceil(2) - 1) + min,
            _ => stride * (h - 1) + min,
        }
    }

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        *match self {
            PixelFormat::Rgb24 => b"RGB3",
            PixelFormat::Bgr24 => b"BGR3",
            PixelFormat::Grey => b"GREY",
            PixelFormat::Y10 => b"Y10 ",
            PixelFormat::Y12 => b"Y12 ",
            PixelFormat::Y16 => b"Y16 ",
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Uyvy => b"UYVY",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::Mjpeg => b"MJPG",
        }
    }

    /// The format of a V4L2 four-character code, when facekey can decode it.
    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        if &code == b"JPEG" {
            return Some(PixelFormat::Mjpeg);
        }
        ALL_FORMATS.into_iter().find(|f| f.fourcc() == code)
    }

    /// The format named in text (`YUYV`, `grey`, `Y10`, `mjpg`, `rgb24`), for command lines.
    pub fn parse(name: &str) -> Option<PixelFormat> {
        let upper = name.trim().to_ascii_uppercase();
        match upper.as_str() {
            "RGB24" => return Some(PixelFormat::Rgb24),
            "BGR24" => return Some(PixelFormat::Bgr24),
            "Y8" => return Some(PixelFormat::Grey),
            _ => {}
        }
        let mut code = [b' '; 4];
        if upper.len() > 4 {
            return None;
        }
        code[..upper.len()].copy_from_slice(upper.as_bytes());
        PixelFormat::from_fourcc(code)
    }

    /// Grey formats: the only ones infrared cameras offer.
    pub fn is_luma_only(self) -> bool {
        matches!(
            self,
            PixelFormat::Grey | PixelFormat::Y10 | PixelFormat::Y12 | PixelFormat::Y16
        )
    }

    /// The four-character code as text, trailing spaces removed (`Y10`, `YUYV`).
    pub fn name(self) -> String {
        fourcc_text(self.fourcc())
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A four-character code as text, trailing spaces removed, unprintable bytes escaped.
pub fn fourcc_text(code: [u8; 4]) -> String {
    code.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect::<String>()
        .trim_end()
        .to_owned()
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
    #[error(
        "frame {width}x{height} has {} pixels, more than the {limit} facekey decodes",
        u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("frame {width}x{height} {format:?}: rows {stride} bytes apart need {needed} bytes, more than the {limit} a frame may hold")]
    TooManyBytes {
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: usize,
        needed: u128,
        limit: usize,
    },
    #[error("MJPG frame ({len} bytes): {reason}")]
    Jpeg { len: usize, reason: String },
    #[error("MJPG frame is {found_width}x{found_height}, the camera announced {width}x{height}")]
    SizeMismatch {
        width: u32,
        height: u32,
        found_width: u32,
        found_height: u32,
    },
}

/// Refuse a frame with no pixels or more than [`MAX_PIXELS`]. The product is taken in `u64`,
/// where two `u32` cannot overflow.
pub fn check_pixels(width: u32, height: u32) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Check a raw frame's layout as a device describes it, before any buffer is sized by it: pixels
/// within [`MAX_PIXELS`], rows at least one packed row apart, and the bytes the layout needs
/// within [`MAX_FRAME_BYTES`]. Returns those bytes (0 for MJPG, which has no rows).
pub fn check_layout(
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
) -> Result<usize, DecodeError> {
    check_pixels(width, height)?;
    if format == PixelFormat::Mjpeg {
        return Ok(0);
    }
    let min = format.min_stride(width);
    if stride < min {
        return Err(DecodeError::StrideTooSmall {
            width,
            height,
            format,
            stride,
            min,
        });
    }
    let needed = format.needed_bytes(width, height, stride);
    match usize::try_from(needed) {
        Ok(n) if n <= MAX_FRAME_BYTES => Ok(n),
        _ => Err(DecodeError::TooManyBytes {
            width,
            height,
            format,
            stride,
            needed,
            limit: MAX_FRAME_BYTES,
        }),
    }
}

/// Decode `data` (rows `stride` bytes apart) to RGB, checking the layout ([`check_layout`]) and
/// that `data` holds every row before anything is allocated.
pub fn to_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
    data: &[u8],
) -> Result<RgbImage, DecodeError> {
    let (w, h) = (width, height);
    let needed = check_layout(format, w, h, stride)?;
    if format == PixelFormat::Mjpeg {
        return mjpeg::decode(data, w, h);
    }
    let min = format.min_stride(w);
    if data.len() < needed {
        return Err(DecodeError::Truncated {
            width: w,
            height: h,
            format,
            len: data.len(),
            needed,
        });
    }
    let (wu, hu) = (w as usize, h as usize);
    let mut out = Vec::with_capacity(wu * hu * 3);
    if format == PixelFormat::Nv12 {
        let (luma, chroma) = data.split_at(stride * hu);
        for r in 0..hu {
            let y_row = &luma[r * stride..r * stride + wu];
            let c_start = (r / 2) * stride;
            let c_row = &chroma[c_start..c_start + min];
            for (x, &y) in y_row.iter().enumerate() {
                let pair = &c_row[(x / 2) * 2..(x / 2) * 2 + 2];
                out.extend_from_slice(&ycbcr_to_rgb(y, pair[0], pair[1]));
            }
        }
    } else {
        for row in data.chunks(stride).take(hu) {
            convert_row(format, &row[..min], wu, &mut out);
        }
    }
    // Exactly w * h * 3 bytes were pushed, so this cannot fail; an error would still be no panic.
    RgbImage::from_raw(w, h, out).ok_or(DecodeError::Empty {
        width: w,
        height: h,
    })
}

/// One packed row (exactly `min_stride` bytes) to `width` RGB pixels appended to `out`.
fn convert_row(format: PixelFormat, row: &[u8], width: usize, out: &mut Vec<u8>) {
    match format {
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
        PixelFormat::Y10 | PixelFormat::Y12 | PixelFormat::Y16 => {
            let shift = match format {
                PixelFormat::Y10 => 2,
                PixelFormat::Y12 => 4,
                _ => 8,
            };
            for p in row.chunks_exact(2) {
                // Bits above the format's depth are out of spec: saturate rather than wrap.
                let v = (u16::from_le_bytes([p[0], p[1]]) >> shift).min(255) as u8;
                out.extend_from_slice(&[v, v, v]);
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let mut pushed = 0;
            for q in row.chunks_exact(4) {
                let (y0, u, y1, v) = match format {
                    PixelFormat::Yuyv => (q[0], q[1], q[2], q[3]),
                    _ => (q[1], q[0], q[3], q[2]),
                };
                for y in [y0, y1] {
                    // An odd width leaves the last pair's second pixel unused.
                    if pushed < width {
                        out.extend_from_slice(&ycbcr_to_rgb(y, u, v));
                        pushed += 1;
                    }
                }
            }
        }
        // Handled by the caller: not row-packed.
        PixelFormat::Nv12 | PixelFormat::Mjpeg => {}
    }
}

/// BT.601 limited-range Y'CbCr to R'G'B', in 8.8 fixed point (the coefficients 1.164, 1.596,
/// 0.392, 0.813 and 2.017 scaled by 256), rounded and clamped.
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = 298 * (y as i32 - 16);
    let d = cb as i32 - 128;
    let e = cr as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

/// R'G'B' to BT.601 limited-range Y'CbCr (the inverse of [`ycbcr_to_rgb`], for building test frames).
pub fn rgb_to_ycbcr(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb.map(|v| v as i32);
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let cb = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let cr = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    [y, cb, cr].map(|v| v.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Colours with exact round trips through BT.601 limited range, and a mid grey.
    const BARS: [[u8; 3]; 8] = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];

    fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
    }

    #[test]
    fn fourcc_round_trips_and_unknown_codes_are_none() {
        for f in ALL_FORMATS {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
        }
        assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"H264"), None);
        assert_eq!(PixelFormat::parse("y10"), Some(PixelFormat::Y10));
        assert_eq!(PixelFormat::parse("Y8"), Some(PixelFormat::Grey));
        assert_eq!(PixelFormat::parse("rgb24"), Some(PixelFormat::Rgb24));
        assert_eq!(PixelFormat::parse("nv21"), None);
        assert_eq!(PixelFormat::Y16.name(), "Y16");
        assert_eq!(fourcc_text(*b"\x01AB "), "\\x01AB");
    }

    #[test]
    fn only_grey_formats_are_luma_only() {
        let luma: Vec<PixelFormat> = ALL_FORMATS
            .into_iter()
            .filter(|f| f.is_luma_only())
            .collect();
        assert_eq!(
            luma,
            [
                PixelFormat::Grey,
                PixelFormat::Y10,
                PixelFormat::Y12,
                PixelFormat::Y16
            ]
        );
    }

    #[test]
    fn bt601_limited_range_maps_the_nominal_extremes_exactly() {
        assert_eq!(ycbcr_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(ycbcr_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(ycbcr_to_rgb(126, 128, 128), [128, 128, 128]);
        // Footroom and headroom clamp rather than wrap.
        assert_eq!(ycbcr_to_rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(ycbcr_to_rgb(255, 128, 128), [255, 255, 255]);
        for rgb in BARS {
            let [y, cb, cr] = rgb_to_ycbcr(rgb);
            assert!(close(ycbcr_to_rgb(y, cb, cr), rgb, 2), "{rgb:?}");
        }
        // Pure red is Y 82, Cb 90, Cr 240 in BT.601 limited range.
        assert_eq!(rgb_to_ycbcr([255, 0, 0]), [82, 90, 240]);
    }

    #[test]
    fn grey_honours_the_stride_and_ignores_padding() {
        // 3x2 luma with two padding bytes per row that must be ignored.
        let data = [10, 20, 30, 99, 99, 40, 50, 60, 99, 99];
        let rgb = to_rgb(PixelFormat::Grey, 3, 2, 5, &data).unwrap();
        assert_eq!(rgb.get_pixel(2, 0).0, [30, 30, 30]);
        assert_eq!(rgb.get_pixel(0, 1).0, [40, 40, 40]);
    }

    #[test]
    fn grey_with_bytesused_larger_than_the_image_decodes_the_image_only() {
        // vivid reports 2*w*h bytes used for GREY: the extra bytes are not pixels.
        let mut data = vec![7u8; 4 * 2];
        data.extend_from_slice(&[255; 4 * 2]);
        let rgb = to_rgb(PixelFormat::Grey, 4, 2, 4, &data).unwrap();
        assert!(rgb.pixels().all(|p| p.0 == [7, 7, 7]));
    }

    #[test]
    fn y10_y12_and_y16_scale_to_eight_bits() {
        let word = |v: u16| v.to_le_bytes();
        // Y10: 0, 512 (half), 1023 (full), 1028 (out of range: saturates).
        let y10: Vec<u8> = [0u16, 512, 1023, 1028]
            .iter()
            .flat_map(|v| word(*v))
            .collect();
        let rgb = to_rgb(PixelFormat::Y10, 4, 1, 8, &y10).unwrap();
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, [0, 128, 255, 255]);
        // Y12: 4095 is white, 2048 half.
        let y12: Vec<u8> = [4095u16, 2048].iter().flat_map(|v| word(*v)).collect();
        let rgb = to_rgb(PixelFormat::Y12, 2, 1, 4, &y12).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(rgb.get_pixel(1, 0).0, [128; 3]);
        // Y16 little-endian: 0x8000 is half, 0xFFFF white, 0x00FF nearly black.
        let y16: Vec<u8> = [0x8000u16, 0xFFFF, 0x00FF]
            .iter()
            .flat_map(|v| word(*v))
            .collect();
        let rgb = to_rgb(PixelFormat::Y16, 3, 1, 6, &y16).unwrap();
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, [128, 255, 0]);
    }

    #[test]
    fn y16_rows_honour_the_stride() {
        // 2x2, stride 6: one 16-bit padding word per row.
        let data = [0, 0x10, 0, 0x20, 0xEE, 0xEE, 0, 0x30, 0, 0x40, 0xEE, 0xEE];
        let rgb = to_rgb(PixelFormat::Y16, 2, 2, 6, &data).unwrap();
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, [0x10, 0x20, 0x30, 0x40]);
    }

    /// A YUYV (or UYVY) frame of the eight bars, one pixel pair per bar, with `pad` bytes per row.
    fn packed_422(format: PixelFormat, rows: usize, pad: usize) -> (Vec<u8>, usize) {
        let stride = BARS.len() * 4 + pad;
        let mut data = Vec::new();
        for _ in 0..rows {
            for rgb in BARS {
                let [y, u, v] = rgb_to_ycbcr(rgb);
                match format {
                    PixelFormat::Yuyv => data.extend_from_slice(&[y, u, y, v]),
                    _ => data.extend_from_slice(&[u, y, v, y]),
                }
            }
            data.extend(std::iter::repeat_n(0xAB, pad));
        }
        (data, stride)
    }

    #[test]
    fn yuyv_and_uyvy_decode_known_colours_through_padded_rows() {
        for format in [PixelFormat::Yuyv, PixelFormat::Uyvy] {
            let (data, stride) = packed_422(format, 3, 6);
            let rgb = to_rgb(format, 16, 3, stride, &data).unwrap();
            for row in 0..3 {
                for (i, want) in BARS.iter().enumerate() {
                    for x in [2 * i as u32, 2 * i as u32 + 1] {
                        let got = rgb.get_pixel(x, row).0;
                        assert!(
                            close(got, *want, 2),
                            "{format:?} ({x},{row}): {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn yuyv_black_and_white_are_exact() {
        let rgb = to_rgb(PixelFormat::Yuyv, 2, 1, 4, &[16, 128, 235, 128]).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
    }

    #[test]
    fn yuyv_with_an_odd_width_drops_the_unused_last_pixel() {
        let rgb = to_rgb(
            PixelFormat::Yuyv,
            3,
            1,
            8,
            &[16, 128, 235, 128, 235, 128, 16, 128],
        )
        .unwrap();
        assert_eq!(rgb.dimensions(), (3, 1));
        assert_eq!(rgb.get_pixel(2, 0).0, [255, 255, 255]);
    }

    #[test]
    fn nv12_decodes_both_planes_through_the_stride() {
        // 4x4 in four 2x2 quadrants: red, green / blue, white. Stride 6 (2 padding bytes).
        let quadrant = |x: usize, y: usize| match (x / 2, y / 2) {
            (0, 0) => [255, 0, 0],
            (1, 0) => [0, 255, 0],
            (0, 1) => [0, 0, 255],
            _ => [255, 255, 255],
        };
        let stride = 6;
        let mut data = vec![0xEEu8; stride * 4 + stride * 2];
        for y in 0..4 {
            for x in 0..4 {
                data[y * stride + x] = rgb_to_ycbcr(quadrant(x, y))[0];
            }
        }
        for cy in 0..2 {
            for cx in 0..2 {
                let [_, u, v] = rgb_to_ycbcr(quadrant(cx * 2, cy * 2));
                data[4 * stride + cy * stride + cx * 2] = u;
                data[4 * stride + cy * stride + cx * 2 + 1] = v;
            }
        }
        let rgb = to_rgb(PixelFormat::Nv12, 4, 4, stride, &data).unwrap();
        for y in 0..4 {
            for x in 0..4 {
                let got = rgb.get_pixel(x as u32, y as u32).0;
                assert!(close(got, quadrant(x, y), 2), "({x},{y}): {got:?}");
            }
        }
        // The last chroma row need not be padded; one byte less is truncated.
        let tight = stride * 4 + stride + 4;
        assert!(to_rgb(PixelFormat::Nv12, 4, 4, stride, &data[..tight]).is_ok());
        assert!(matches!(
            to_rgb(PixelFormat::Nv12, 4, 4, stride, &data[..tight - 1]),
            Err(DecodeError::Truncated { needed, .. }) if needed == tight
        ));
    }

    #[test]
    fn nv12_needs_one_and_a_half_bytes_per_pixel_and_yuyv_two() {
        assert_eq!(PixelFormat::Nv12.needed_len(640, 480, 640), Some(460_800));
        assert_eq!(PixelFormat::Yuyv.needed_len(640, 480, 1280), Some(614_400));
    }

    #[test]
    fn rgb24_and_bgr24_give_the_same_picture_through_padded_rows() {
        // 3x2 with stride 10: one padding byte (99) per row.
        let rgb_data = [
            255, 0, 0, 0, 255, 0, 0, 0, 255, 99, //
            1, 2, 3, 4, 5, 6, 7, 8, 9, 99,
        ];
        let bgr_data = [
            0, 0, 255, 0, 255, 0, 255, 0, 0, 99, //
            3, 2, 1, 6, 5, 4, 9, 8, 7, 99,
        ];
        let a = to_rgb(PixelFormat::Rgb24, 3, 2, 10, &rgb_data).unwrap();
        let b = to_rgb(PixelFormat::Bgr24, 3, 2, 10, &bgr_data).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(a.get_pixel(2, 0).0, [0, 0, 255]);
        assert_eq!(a.get_pixel(1, 1).0, [4, 5, 6]);
        assert_eq!(a.get_pixel(2, 1).0, [7, 8, 9]);
    }

    #[test]
    fn short_buffers_and_small_strides_are_errors_for_every_raw_format() {
        for format in ALL_FORMATS.into_iter().filter(|f| *f != PixelFormat::Mjpeg) {
            let stride = format.min_stride(8);
            let needed = format.needed_len(8, 4, stride).unwrap();
            let data = vec![0u8; needed];
            assert!(to_rgb(format, 8, 4, stride, &data).is_ok(), "{format:?}");
            assert!(
                matches!(
                    to_rgb(format, 8, 4, stride, &data[..needed - 1]),
                    Err(DecodeError::Truncated { .. })
                ),
                "{format:?}"
            );
            assert!(
                matches!(
                    to_rgb(format, 8, 4, stride - 1, &data),
                    Err(DecodeError::StrideTooSmall { .. })
                ),
                "{format:?}"
            );
            assert!(matches!(
                to_rgb(format, 0, 4, stride, &data),
                Err(DecodeError::Empty { .. })
            ));
        }
    }

    /// Allocations allowed while refusing a frame: error messages, a JPEG header's tables.
    const SMALL: usize = 1 << 20;

    /// `to_rgb` on hostile sizes: returns the error, having allocated nothing of the hostile size.
    fn refused(format: PixelFormat, w: u32, h: u32, stride: usize, data: &[u8]) -> DecodeError {
        let (result, largest) =
            crate::frame::alloc_probe::largest_allocation(|| to_rgb(format, w, h, stride, data));
        assert!(
            largest < SMALL,
            "{format:?} {w}x{h} stride {stride}: allocated {largest} bytes"
        );
        match result {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("{w}x{h}")) || text.contains("MJPG"),
                    "{text}"
                );
                e
            }
            Ok(_) => panic!("{format:?} {w}x{h} stride {stride}: decoded"),
        }
    }

    #[test]
    fn hostile_sizes_are_refused_for_every_format_without_allocating_them() {
        let data = vec![0u8; 4096];
        for format in ALL_FORMATS {
            // width x height overflows u32 (and 32-bit usize): refused on the pixel count.
            for (w, h) in [(u32::MAX, u32::MAX), (u32::MAX, 2), (65_536, 65_536)] {
                assert!(
                    matches!(
                        refused(format, w, h, usize::MAX, &data),
                        DecodeError::TooManyPixels { .. }
                    ),
                    "{format:?} {w}x{h}"
                );
            }
            // One pixel over the limit, and the limit itself with too little data.
            assert!(matches!(
                refused(format, 4097, 4096, format.min_stride(4097), &data),
                DecodeError::TooManyPixels { .. }
            ));
            let at_limit = refused(format, 4096, 4096, format.min_stride(4096), &data);
            if format == PixelFormat::Mjpeg {
                assert!(matches!(at_limit, DecodeError::Jpeg { .. }), "{at_limit}");
                continue;
            }
            assert!(
                matches!(at_limit, DecodeError::Truncated { .. }),
                "{format:?}: {at_limit}"
            );
            // A stride of u32::MAX (V4L2's bytesperline is a u32) and of usize::MAX: the rows
            // would need more than any frame may hold.
            for stride in [u32::MAX as usize, usize::MAX, usize::MAX / 2 + 1] {
                match refused(format, 640, 480, stride, &data) {
                    DecodeError::TooManyBytes { needed, limit, .. } => {
                        assert!(needed > limit as u128, "{format:?} stride {stride}")
                    }
                    other => panic!("{format:?} stride {stride}: {other}"),
                }
            }
            // stride smaller than width x bytes per pixel.
            let min = format.min_stride(640);
            assert!(matches!(
                refused(format, 640, 480, min - 1, &data),
                DecodeError::StrideTooSmall { .. }
            ));
            // bytesused smaller than stride x height (and an empty buffer).
            let needed = format.needed_len(640, 480, min).unwrap();
            let short = vec![0u8; needed - 1];
            for buffer in [&short[..], &[]] {
                match refused(format, 640, 480, min, buffer) {
                    DecodeError::Truncated { len, needed: n, .. } => {
                        assert_eq!((len, n), (buffer.len(), needed))
                    }
                    other => panic!("{format:?}: {other}"),
                }
            }
        }
    }

    #[test]
    fn layout_checks_name_the_sizes_and_the_limit() {
        assert_eq!(check_layout(PixelFormat::Yuyv, 640, 480, 1280), Ok(614_400));
        assert_eq!(check_layout(PixelFormat::Mjpeg, 640, 480, 0), Ok(0));
        let text = check_layout(PixelFormat::Grey, 640, 480, u32::MAX as usize)
            .unwrap_err()
            .to_string();
        assert!(text.contains("640x480"), "{text}");
        assert!(text.contains(&u32::MAX.to_string()), "{text}");
        assert!(text.contains(&MAX_FRAME_BYTES.to_string()), "{text}");
        let text = check_pixels(65_535, 65_535).unwrap_err().to_string();
        assert!(text.contains("65535x65535"), "{text}");
        assert!(text.contains(&MAX_PIXELS.to_string()), "{text}");
        // The probe sees a real decode's picture (so its silence above means something).
        let grey = vec![0u8; 1024 * 1024];
        let (decoded, largest) = crate::frame::alloc_probe::largest_allocation(|| {
            to_rgb(PixelFormat::Grey, 1024, 1024, 1024, &grey)
        });
        assert!(decoded.is_ok());
        assert!(largest >= 3 * 1024 * 1024, "{largest}");
        // needed_len reports sizes it cannot hold as None instead of wrapping.
        assert_eq!(PixelFormat::Rgb24.needed_len(1, 3, usize::MAX), None);
    }
}
