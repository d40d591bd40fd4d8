//! Choosing a pixel format, a frame size and a rate from what a camera offers.
//!
//! Pure functions over the offer list, so every rule is tested without a device. The rules:
//! - an infrared node (one offering only grey formats) captures grey: GREY, then Y10, Y12, Y16;
//! - a colour node prefers YUYV (no decoding artefacts, cheap to convert), then MJPG, NV12 and the
//!   rest; `force_mjpeg` (or an explicit format) allows that format only, and a camera without
//!   it is refused with the list of what it does offer;
//! - among the allowed formats the size closest to the wanted one (640x480 unless configured)
//!   wins, then a format that reaches the wanted rate at that size (uncompressed formats often
//!   do not at large sizes over USB 2), then the preference order above.

use super::Settings;
use crate::frame::{PixelFormat, MAX_PIXELS};
// The offer and choice types are plain data the frame side reads too (through `CameraInfo`).
pub use crate::frame::live::{offered_text, Choice, FormatOffer, SizeOffer};

/// Size asked for when the configuration leaves it automatic: faces are detected on frames
/// scaled down to `detection.max_height` rows, so more only costs bandwidth and decoding.
pub const AUTO_SIZE: (u32, u32) = (640, 480);

/// Rate asked for when the configuration leaves it automatic: at most this, at least what the
/// camera offers below it.
pub const AUTO_FPS: u32 = 30;

/// Rate below which a format is considered too slow at a size, when no rate is configured.
const ADEQUATE_FPS: f64 = 15.0;

/// Why no format could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoChoice {
    /// The format that was required (`force_mjpeg`, an explicit format) is not offered.
    NotOffered { wanted: String, offered: String },
    /// None of the offered formats can be decoded.
    NothingDecodable { offered: String },
}

/// Four-character codes of the formats infrared nodes offer: grey at 8 to 16 bits, packed or
/// not, and the interleaved stereo-IR formats of depth cameras.
const INFRARED_FOURCCS: [&[u8; 4]; 9] = [
    b"GREY", b"Y10 ", b"Y12 ", b"Y16 ", b"Y10B", b"Y10P", b"Y8I ", b"Y12I", b"Y16I",
];

/// Whether a node looks infrared: it offers formats, and every one of them is grey.
pub fn looks_infrared(offers: &[FormatOffer]) -> bool {
    !offers.is_empty()
        && offers
            .iter()
            .all(|o| INFRARED_FOURCCS.iter().any(|c| **c == o.fourcc))
}

/// Preference order of formats on an infrared node and on a colour node.
const INFRARED_ORDER: [PixelFormat; 4] = [
    PixelFormat::Grey,
    PixelFormat::Y10,
    PixelFormat::Y12,
    PixelFormat::Y16,
];
const COLOUR_ORDER: [PixelFormat; 10] = [
    PixelFormat::Yuyv,
    PixelFormat::Mjpeg,
    PixelFormat::Nv12,
    PixelFormat::Uyvy,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Grey,
    PixelFormat::Y16,
    PixelFormat::Y10,
    PixelFormat::Y12,
];

/// Pick format, size and rate.
pub fn choose(offers: &[FormatOffer], settings: &Settings) -> Result<Choice, NoChoice> {
    let required = settings
        .format
        .or(settings.force_mjpeg.then_some(PixelFormat::Mjpeg));
    let order: Vec<PixelFormat> = match required {
        Some(f) => vec![f],
        None if looks_infrared(offers) => INFRARED_ORDER.to_vec(),
        None => COLOUR_ORDER.to_vec(),
    };
    let wanted = settings.size.unwrap_or(AUTO_SIZE);
    let wanted_fps = settings.fps.map_or(ADEQUATE_FPS, f64::from);
    // (size distance, too slow, preference rank): smaller is better.
    type Rank = (u64, bool, usize);
    let mut best: Option<(Rank, Choice, Option<f64>)> = None;
    for offer in offers {
        let Some(format) = offer.format() else {
            continue;
        };
        let Some(rank) = order.iter().position(|f| *f == format) else {
            continue;
        };
        let size = closest_size(&offer.sizes, wanted);
        let (width, height, max_fps) = match size {
            Some(s) => (s.width, s.height, s.max_fps),
            // A driver that enumerates no sizes: ask for the wanted one and let it adjust.
            None if offer.sizes.is_empty() && fits(wanted) => (wanted.0, wanted.1, None),
            // Every size it lists is larger than facekey decodes (or it lists none and the wanted size is): this
            // format is no choice (asking anyway would only have the driver set a size refused later).
            None => continue,
        };
        let slow = max_fps.is_some_and(|f| f + 0.01 < wanted_fps);
        let key = (distance((width, height), wanted), slow, rank);
        if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
            let choice = Choice {
                format,
                width,
                height,
                fps: None,
            };
            best = Some((key, choice, max_fps));
        }
    }
    let Some((_, mut choice, max_fps)) = best else {
        let offered = offered_text(offers);
        return Err(match required {
            Some(f) => NoChoice::NotOffered {
                wanted: f.name(),
                offered,
            },
            None => NoChoice::NothingDecodable { offered },
        });
    };
    choice.fps = match (settings.fps, max_fps) {
        (Some(fps), _) => Some(fps),
        (None, Some(max)) => Some((max.round() as u32).clamp(1, AUTO_FPS)),
        (None, None) => None,
    };
    Ok(choice)
}

/// A size facekey decodes: no zero side, at most [`MAX_PIXELS`].
fn fits((width, height): (u32, u32)) -> bool {
    width > 0 && height > 0 && u64::from(width) * u64::from(height) <= MAX_PIXELS
}

/// The offered size closest to `wanted` (sum of the width and height differences); on a tie the
/// larger one. Sizes over [`MAX_PIXELS`] or with a zero side are never chosen: their frames would be refused.
fn closest_size(sizes: &[SizeOffer], wanted: (u32, u32)) -> Option<&SizeOffer> {
    // A size with no width or no height (a driver's nonsense) is no frame at all.
    let decodable = |s: &&SizeOffer| fits((s.width, s.height));
    sizes.iter().filter(decodable).min_by_key(|s| {
        (
            distance((s.width, s.height), wanted),
            std::cmp::Reverse(u64::from(s.width) * u64::from(s.height)),
        )
    })
}

fn distance(a: (u32, u32), b: (u32, u32)) -> u64 {
    u64::from(a.0.abs_diff(b.0)) + u64::from(a.1.abs_diff(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::fourcc_text;

    fn offer(code: &[u8; 4], sizes: &[(u32, u32, f64)]) -> FormatOffer {
        FormatOffer {
            fourcc: *code,
            description: fourcc_text(*code),
            sizes: sizes
                .iter()
                .map(|&(width, height, fps)| SizeOffer {
                    width,
                    height,
                    max_fps: Some(fps),
                })
                .collect(),
        }
    }

    /// A typical USB 2 colour webcam: YUYV is slow above 640x480, MJPG is not.
    fn webcam() -> Vec<FormatOffer> {
        vec![
            offer(
                b"YUYV",
                &[(640, 480, 30.0), (1280, 720, 10.0), (1920, 1080, 5.0)],
            ),
            offer(
                b"MJPG",
                &[(640, 480, 30.0), (1280, 720, 30.0), (1920, 1080, 30.0)],
            ),
        ]
    }

    /// A "Windows Hello" infrared node.
    fn infrared() -> Vec<FormatOffer> {
        vec![
            offer(b"Y16 ", &[(640, 360, 15.0)]),
            offer(b"GREY", &[(640, 360, 15.0), (340, 340, 30.0)]),
        ]
    }

    #[test]
    fn sizes_over_the_pixel_limit_are_never_chosen() {
        let settings = Settings {
            size: Some((65_535, 65_535)),
            ..Settings::default()
        };
        let hostile = [offer(
            b"YUYV",
            &[
                (65_535, 65_535, 30.0),
                (u32::MAX, 1, 30.0),
                (4096, 4096, 30.0),
            ],
        )];
        let choice = choose(&hostile, &settings).unwrap();
        assert_eq!((choice.width, choice.height), (4096, 4096));
    }

    #[test]
    fn only_grey_nodes_look_infrared() {
        assert!(looks_infrared(&infrared()));
        assert!(!looks_infrared(&webcam()));
        assert!(!looks_infrared(&[]));
        let mut mixed = infrared();
        mixed.push(offer(b"YUYV", &[(640, 360, 15.0)]));
        assert!(!looks_infrared(&mixed));
        assert!(looks_infrared(&[offer(b"Y10P", &[(640, 400, 30.0)])]));
    }

    #[test]
    fn colour_webcam_defaults_to_yuyv_at_640x480_and_30_fps() {
        let choice = choose(&webcam(), &Settings::default()).unwrap();
        assert_eq!(
            choice,
            Choice {
                format: PixelFormat::Yuyv,
                width: 640,
                height: 480,
                fps: Some(30)
            }
        );
    }

    #[test]
    fn large_size_prefers_the_format_that_keeps_the_rate() {
        let settings = Settings {
            size: Some((1280, 720)),
            ..Settings::default()
        };
        let choice = choose(&webcam(), &settings).unwrap();
        assert_eq!(
            (choice.format, choice.width, choice.height),
            (PixelFormat::Mjpeg, 1280, 720)
        );
        // Asking for 10 fps makes YUYV good enough again, and it is preferred.
        let slow = Settings {
            fps: Some(10),
            ..settings
        };
        let choice = choose(&webcam(), &slow).unwrap();
        assert_eq!((choice.format, choice.fps), (PixelFormat::Yuyv, Some(10)));
    }

    #[test]
    fn infrared_node_captures_grey_at_the_closest_size() {
        let choice = choose(&infrared(), &Settings::default()).unwrap();
        assert_eq!(
            choice,
            Choice {
                format: PixelFormat::Grey,
                width: 640,
                height: 360,
                fps: Some(15)
            }
        );
        // Y16 only: taken.
        let only_y16 = vec![offer(b"Y16 ", &[(640, 360, 15.0)])];
        assert_eq!(
            choose(&only_y16, &Settings::default()).unwrap().format,
            PixelFormat::Y16
        );
    }

    #[test]
    fn force_mjpeg_on_a_camera_without_mjpg_is_not_offered() {
        let vivid_like = vec![
            offer(b"YUYV", &[(640, 480, 30.0)]),
            offer(b"NV12", &[(640, 480, 30.0)]),
            offer(b"GREY", &[(640, 480, 30.0)]),
        ];
        let settings = Settings {
            force_mjpeg: true,
            ..Settings::default()
        };
        assert_eq!(
            choose(&vivid_like, &settings).unwrap_err(),
            NoChoice::NotOffered {
                wanted: "MJPG".into(),
                offered: "YUYV, NV12, GREY".into()
            }
        );
        let forced = choose(&webcam(), &settings).unwrap();
        assert_eq!(forced.format, PixelFormat::Mjpeg);
    }

    #[test]
    fn explicit_format_is_the_only_one_allowed() {
        let settings = Settings {
            format: Some(PixelFormat::Nv12),
            ..Settings::default()
        };
        let vivid_like = vec![
            offer(b"YUYV", &[(640, 480, 30.0)]),
            offer(b"NV12", &[(320, 240, 30.0), (640, 480, 30.0)]),
        ];
        let choice = choose(&vivid_like, &settings).unwrap();
        assert_eq!(
            (choice.format, choice.width, choice.height),
            (PixelFormat::Nv12, 640, 480)
        );
        assert!(matches!(
            choose(&webcam(), &settings),
            Err(NoChoice::NotOffered { .. })
        ));
    }

    #[test]
    fn undecodable_formats_are_skipped_and_reported_when_alone() {
        let h264_only = vec![offer(b"H264", &[(1920, 1080, 30.0)])];
        assert_eq!(
            choose(&h264_only, &Settings::default()).unwrap_err(),
            NoChoice::NothingDecodable {
                offered: "H264".into()
            }
        );
        let mut with_yuyv = h264_only;
        with_yuyv.push(offer(b"YUYV", &[(640, 480, 30.0)]));
        assert_eq!(
            choose(&with_yuyv, &Settings::default()).unwrap().format,
            PixelFormat::Yuyv
        );
    }

    #[test]
    fn configured_rate_is_asked_as_is_and_auto_rate_is_capped_at_30() {
        let fast = vec![offer(b"YUYV", &[(640, 480, 60.0)])];
        assert_eq!(choose(&fast, &Settings::default()).unwrap().fps, Some(30));
        let settings = Settings {
            fps: Some(60),
            ..Settings::default()
        };
        assert_eq!(choose(&fast, &settings).unwrap().fps, Some(60));
    }

    #[test]
    fn a_format_whose_every_size_is_too_large_is_not_chosen() {
        let huge = |fourcc: &[u8; 4]| FormatOffer {
            fourcc: *fourcc,
            description: String::new(),
            sizes: vec![SizeOffer {
                width: 16_843_009,
                height: 65_793,
                max_fps: None,
            }],
        };
        // Found by the negotiate fuzz target (fuzz/regressions/negotiate): it used to ask for 640x480 anyway.
        assert!(matches!(
            choose(&[huge(b"BGR3")], &Settings::default()),
            Err(NoChoice::NothingDecodable { .. })
        ));
        let mut fine = huge(b"YUYV");
        fine.sizes[0] = SizeOffer {
            width: 320,
            height: 240,
            max_fps: Some(30.0),
        };
        let choice = choose(&[huge(b"BGR3"), fine.clone()], &Settings::default()).unwrap();
        assert_eq!(
            (choice.format, choice.width, choice.height),
            (PixelFormat::Yuyv, 320, 240)
        );
        // Nor a size with a zero side (found by the same target: 21845x0 was chosen).
        let mut flat = fine;
        flat.sizes[0].height = 0;
        assert!(choose(&[flat.clone()], &Settings::default()).is_err());
        // Nor, from a format that lists no sizes, a wanted size too large to decode (found by the same target).
        flat.sizes.clear();
        let wanted = |size| Settings {
            size: Some(size),
            ..Settings::default()
        };
        assert!(choose(&[flat.clone()], &wanted((16_843_009, 1))).is_err());
        assert_eq!(
            choose(&[flat], &wanted((1280, 720)))
                .map(|c| (c.width, c.height))
                .ok(),
            Some((1280, 720))
        );
    }

    #[test]
    fn a_driver_without_size_lists_gets_the_wanted_size() {
        let bare = vec![FormatOffer {
            fourcc: *b"YUYV",
            description: "YUYV".into(),
            sizes: vec![],
        }];
        let choice = choose(&bare, &Settings::default()).unwrap();
        assert_eq!((choice.width, choice.height, choice.fps), (640, 480, None));
    }
}
