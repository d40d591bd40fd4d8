//! MJPG frames: one JPEG image per frame, as UVC cameras send them.
//!
//! A camera frame is not a JPEG file from disk: USB transfers get cut short (the frame then has
//! no end-of-image marker), the buffer is often padded past the image with zeros, and many
//! cameras leave out the Huffman tables (the "MJPEG" convention of using the standard tables of
//! JPEG Annex K.3 without sending them). Each problem gives a [`DecodeError`] that the caller
//! counts and skips, never a panic and never a half-grey picture handed on to the detector.
//! The decoder is zune-jpeg (the one the `image` crate uses), in strict mode; a frame whose header
//! announces more than [`MAX_PIXELS`](super::decode::MAX_PIXELS), or another size than the
//! camera's, is refused before any pixel is decoded or the picture allocated (a JPEG bomb costs a
//! header parse, nothing more).

use image::RgbImage;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::decode::check_pixels;
use super::DecodeError;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;

/// Decode one MJPG frame that must be `width` x `height`.
pub fn decode(data: &[u8], width: u32, height: u32) -> Result<RgbImage, DecodeError> {
    check_pixels(width, height)?;
    let fail = |reason: &str| DecodeError::Jpeg {
        len: data.len(),
        reason: reason.to_owned(),
    };
    if data.len() < 4 || data[0] != 0xFF || data[1] != SOI {
        return Err(fail("no start-of-image marker"));
    }
    let end = image_end(data).ok_or_else(|| fail("truncated: no end-of-image marker"))?;
    let jpeg = &data[..end];
    let has_tables = huffman_tables_present(jpeg).map_err(|r| fail(&r))?;
    let spliced;
    let jpeg = if has_tables {
        jpeg
    } else {
        spliced = with_standard_tables(jpeg);
        &spliced[..]
    };
    // zune's own size limits (16384 a side by default) are lifted to what a JPEG header can say,
    // so that the checks below, the same for every frame, decide.
    let options = DecoderOptions::new_fast()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    // The header alone says the size: compare it before the image is allocated and decoded.
    decoder
        .decode_headers()
        .map_err(|e| fail(&format!("{e:?}")))?;
    let info = decoder.info().ok_or_else(|| fail("no image header"))?;
    let (found_width, found_height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(found_width, found_height)?;
    if (found_width, found_height) != (width, height) {
        return Err(DecodeError::SizeMismatch {
            width,
            height,
            found_width,
            found_height,
        });
    }
    let pixels = decoder.decode().map_err(|e| fail(&format!("{e:?}")))?;
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| fail("decoder returned a short image"))
}

/// Length of the JPEG in `data`: up to and including the last end-of-image marker. Bytes after it
/// are driver padding. A frame cut short has none.
fn image_end(data: &[u8]) -> Option<usize> {
    // Padding is normally zeros; a marker is never more than a few KiB from the end of a frame
    // that holds one, but the whole buffer is searched: it is cheap next to decoding.
    data.windows(2)
        .rposition(|w| w == [0xFF, EOI])
        .map(|i| i + 2)
}

/// Whether a DHT segment comes before the first scan. Walks the marker segments from SOI to SOS.
fn huffman_tables_present(jpeg: &[u8]) -> Result<bool, String> {
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if jpeg.get(i) != Some(&0xFF) {
            return Err(format!("no marker at byte {i} of the header"));
        }
        while jpeg.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *jpeg.get(i).ok_or("header ends inside a marker")?;
        i += 1;
        match marker {
            SOS => return Ok(false),
            DHT => return Ok(true),
            // Markers without a length field.
            0x01 | 0xD0..=0xD7 => continue,
            EOI => return Err("end-of-image marker before any scan".to_owned()),
            _ => {
                let len = jpeg
                    .get(i..i + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    .ok_or("header ends inside a segment length")?;
                if len < 2 {
                    return Err(format!("segment length {len} at byte {i}"));
                }
                i += len;
            }
        }
    }
}

/// `jpeg` with the standard Huffman tables (JPEG Annex K.3, what MJPEG senders leave out)
/// inserted right after the start-of-image marker.
fn with_standard_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + STANDARD_DHT_LEN + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, DHT]);
    out.extend_from_slice(&(STANDARD_DHT_LEN as u16 + 2).to_be_bytes());
    for (class_id, counts, values) in STANDARD_TABLES {
        out.push(class_id);
        out.extend_from_slice(&counts);
        out.extend_from_slice(values);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Bytes of the four tables in the DHT segment, after its length field.
const STANDARD_DHT_LEN: usize = 4 * 17 + 12 + 12 + 162 + 162;

/// (table class << 4 | id, code counts per length 1..=16, symbol values): Tables K.3 to K.6.
const STANDARD_TABLES: [(u8, [u8; 16], &[u8]); 4] = [
    (
        0x00,
        [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x01,
        [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x10,
        [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
        &[
            0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
            0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1,
            0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18,
            0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
            0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57,
            0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75,
            0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92,
            0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
            0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
            0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8,
            0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
    (
        0x11,
        [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
        &[
            0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
            0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09,
            0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25,
            0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38,
            0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56,
            0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74,
            0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
            0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
            0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA,
            0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6,
            0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    /// A 64x48 picture of four flat colour blocks (flat blocks survive JPEG almost exactly).
    fn picture() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| match (x / 32, y / 24) {
            (0, 0) => image::Rgb([200, 40, 40]),
            (1, 0) => image::Rgb([40, 200, 40]),
            (0, 1) => image::Rgb([40, 40, 200]),
            _ => image::Rgb([128, 128, 128]),
        })
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(image)
            .unwrap();
        out
    }

    fn close_to_picture(decoded: &RgbImage) {
        let want = picture();
        for (x, y) in [(10, 10), (50, 10), (10, 40), (50, 40)] {
            let (a, b) = (decoded.get_pixel(x, y).0, want.get_pixel(x, y).0);
            assert!(
                a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= 4),
                "({x},{y}): {a:?} vs {b:?}"
            );
        }
    }

    /// `jpeg` with every DHT segment removed, as many MJPEG cameras send it.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while jpeg[i + 1] != SOS {
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if jpeg[i + 1] != DHT {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn a_complete_frame_decodes_to_its_colours() {
        close_to_picture(&decode(&jpeg(&picture()), 64, 48).unwrap());
    }

    #[test]
    fn zero_padding_after_the_image_is_ignored() {
        let mut data = jpeg(&picture());
        data.extend(std::iter::repeat_n(0, 4096));
        close_to_picture(&decode(&data, 64, 48).unwrap());
    }

    #[test]
    fn a_frame_without_huffman_tables_gets_the_standard_ones() {
        let full = jpeg(&picture());
        let bare = strip_huffman_tables(&full);
        assert!(bare.len() < full.len());
        assert_eq!(huffman_tables_present(&bare), Ok(false));
        assert_eq!(huffman_tables_present(&full), Ok(true));
        close_to_picture(&decode(&bare, 64, 48).unwrap());
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let data = jpeg(&picture());
        for keep in [data.len() - 2, data.len() / 2, 600, 3] {
            let err = decode(&data[..keep], 64, 48).unwrap_err();
            assert!(matches!(err, DecodeError::Jpeg { .. }), "{keep}: {err}");
        }
        let err = decode(&data[..data.len() / 2], 64, 48).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn corrupt_frames_are_errors_not_panics() {
        let data = jpeg(&picture());
        // Not a JPEG at all.
        assert!(decode(&[0u8; 1000], 64, 48).is_err());
        // A broken segment length in the header.
        let mut bad_header = data.clone();
        bad_header[4] = 0;
        bad_header[5] = 1;
        assert!(decode(&bad_header, 64, 48).is_err());
        // Start and end markers around garbage.
        let mut garbage = vec![0xFF, SOI];
        garbage.extend((0..2000u32).map(|i| (i * 7919 % 251) as u8));
        garbage.extend_from_slice(&[0xFF, EOI]);
        assert!(decode(&garbage, 64, 48).is_err());
        // A header that ends before the first scan.
        let sos = data.windows(2).position(|w| w == [0xFF, SOS]).unwrap();
        let mut headless = data[..sos].to_vec();
        headless.extend_from_slice(&[0xFF, EOI]);
        assert!(decode(&headless, 64, 48).is_err());
        // Not checked, because no JPEG decoder can: entropy-coded data damaged in the middle
        // decodes to a wrong picture. uvcvideo flags frames that lost USB packets
        // (V4L2_BUF_FLAG_ERROR), and the camera drops those before decoding.
    }

    #[test]
    fn a_frame_of_another_size_than_announced_is_refused() {
        let data = jpeg(&picture());
        assert_eq!(
            decode(&data, 32, 24).unwrap_err(),
            DecodeError::SizeMismatch {
                width: 32,
                height: 24,
                found_width: 64,
                found_height: 48
            }
        );
        assert!(matches!(
            decode(&data, 128, 96),
            Err(DecodeError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn a_grey_jpeg_decodes_to_equal_channels() {
        let grey = image::GrayImage::from_pixel(16, 16, image::Luma([90]));
        let mut data = Vec::new();
        JpegEncoder::new_with_quality(&mut data, 95)
            .encode_image(&grey)
            .unwrap();
        let rgb = decode(&data, 16, 16).unwrap();
        let p = rgb.get_pixel(8, 8).0;
        assert!(p.iter().all(|c| c.abs_diff(90) <= 1), "{p:?}");
    }

    /// `jpeg` with the frame header (SOF0: height, then width, big-endian, 5 bytes after the
    /// marker) claiming `width` x `height`.
    fn claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
        let mut out = jpeg.to_vec();
        let sof = out.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        out
    }

    #[test]
    fn a_header_claiming_65535x65535_is_refused_before_anything_is_allocated_for_it() {
        let bomb = claiming(&jpeg(&picture()), 65_535, 65_535);
        for (width, height) in [(64, 48), (65_535, 65_535), (4096, 4096)] {
            let (result, largest) =
                crate::frame::alloc_probe::largest_allocation(|| decode(&bomb, width, height));
            assert!(
                largest < 1 << 20,
                "{width}x{height}: allocated {largest} bytes"
            );
            match result {
                Err(DecodeError::TooManyPixels {
                    width: 65_535,
                    height: 65_535,
                    ..
                }) => {}
                other => panic!("announced {width}x{height}: {other:?}"),
            }
        }
        // Within the limit, the header's size must still be the announced one.
        let other = claiming(&jpeg(&picture()), 4096, 4096);
        assert!(matches!(
            decode(&other, 64, 48),
            Err(DecodeError::SizeMismatch {
                found_width: 4096,
                found_height: 4096,
                ..
            })
        ));
        // A header of zero size is an empty frame, not a division or an allocation of nothing.
        let empty = claiming(&jpeg(&picture()), 0, 48);
        assert!(decode(&empty, 64, 48).is_err());
    }
}
