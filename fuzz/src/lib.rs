//! The bodies of facekey's fuzz targets: each takes the fuzzer's bytes, feeds them to one parser or decoder the
//! way a hostile device or file would, and checks what must hold of the answer (no panic, sizes as asked, a
//! parsed file that writes back to the same thing). libFuzzer runs them from `fuzz/libfuzzer` on the nightly
//! toolchain (`scripts/fuzz`); `cargo test` runs them on stable over the kept corpora and every input that
//! ever crashed one (`fuzz/regressions/<target>/`), so a fixed crash stays fixed.

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use facekey_core::camera::negotiate::{self, FormatOffer, SizeOffer};
use facekey_core::camera::Settings;
use facekey_core::frame::decode::{self, PixelFormat, ALL_FORMATS, MAX_PIXELS};
use facekey_core::{protocol, store, Engine};
use image::RgbImage;

/// A fuzz target: arbitrary bytes in, a panic or sanitizer report on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, as the directories under `fuzz/libfuzzer/corpus` and `fuzz/regressions` name them.
pub const TARGETS: [(&str, Target); 8] = [
    ("decode", decode),
    ("store", store),
    ("config", config),
    ("howdy", howdy),
    ("protocol", protocol),
    ("negotiate", negotiate),
    ("descriptors", descriptors),
    ("pipeline", pipeline),
];

/// A raw frame as a camera hands it over: a 10-byte header gives the pixel format (byte 0, an index into
/// [`ALL_FORMATS`]), width and height (bytes 1-2 and 3-4, little-endian) and the stride (byte 5 even: a packed
/// row plus byte 6 of padding; odd: bytes 6-9 as a raw stride, to 2^32), and the rest is the buffer. Sizes reach
/// 65535 so the layout checks meet sizes no buffer could hold; a decoded frame must be exactly the size asked.
pub fn decode(data: &[u8]) {
    let Some((header, pixels)) = data.split_first_chunk::<10>() else {
        return;
    };
    let format = ALL_FORMATS[usize::from(header[0]) % ALL_FORMATS.len()];
    let width = u32::from(u16::from_le_bytes([header[1], header[2]]));
    let height = u32::from(u16::from_le_bytes([header[3], header[4]]));
    let stride = if header[5] % 2 == 0 {
        format
            .min_stride(width)
            .saturating_add(usize::from(header[6]))
    } else {
        u32::from_le_bytes([header[6], header[7], header[8], header[9]]) as usize
    };
    if let Ok(image) = decode::to_rgb(format, width, height, stride, pixels) {
        assert_eq!(image.dimensions(), (width, height), "{format:?}");
        assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS);
    }
}

/// An enrolment file. One that parses writes back to text that parses to the same enrolment.
pub fn store(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let user = store::UserName::new("alice").expect("a valid name");
    let path = Path::new("/etc/facekey/faces/alice.toml");
    if let Ok(enrolment) = store::parse(path, text, &user) {
        let again = store::render(&enrolment).expect("a parsed enrolment renders");
        let reparsed = store::parse(path, &again, &user).expect("a rendered enrolment parses");
        assert_eq!(enrolment, reparsed);
    }
}

/// The files that set what facekey does: the configuration (the first byte even), the IR emitter settings, the
/// installed-model manifest. A configuration that parses and validates writes back to the same configuration.
pub fn config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = Path::new("/etc/facekey/config.toml");
    match which % 4 {
        0 | 1 => {
            if let Ok(config) = facekey_config::Config::from_toml_str(text, path) {
                let again = config.to_toml_string();
                let reparsed =
                    facekey_config::Config::from_toml_str(&again, path).unwrap_or_else(|e| {
                        panic!("the rendered configuration is refused: {e}\n{again}")
                    });
                assert_eq!(config, reparsed);
            }
        }
        2 => {
            let _ = facekey_core::camera::emitter::store::Settings::from_text(text, path);
        }
        _ => {
            let _ = facekey_core::models::manifest::Manifest::from_text(text, path);
        }
    }
}

/// Howdy's files: `config.ini` (odd first byte) mapped key by key, never to a threshold above the limit, and a
/// user's `USER.dat` face models with the checks an import makes.
pub fn howdy(data: &[u8]) {
    use facekey_import::howdy::{agreement, config, ini, models};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if which % 2 == 1 {
        let Ok(parsed) = ini::Ini::parse(text, "config.ini") else {
            return;
        };
        let limit = agreement::threshold_limit(0.42, None);
        for item in config::map(&parsed, &limit) {
            if let config::Outcome::Set {
                key: "threshold",
                value: Some(config::Value::Float(t)),
                ..
            } = item.outcome
            {
                assert!(
                    t <= f64::from(limit.largest),
                    "threshold {t} above the limit"
                );
            }
        }
    } else if let Ok(parsed) = models::parse(text, "USER.dat") {
        let _ = agreement::check_user(&parsed);
    }
}

/// The helper's pipe: lines as the module sends them and as the helper answers, cut into chunks as reads would.
/// A line that decodes encodes back to the same message.
pub fn protocol(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut buffer = protocol::LineBuffer::new();
    for chunk in rest.chunks(usize::from(cut).max(1)) {
        buffer.push(chunk);
        while let Ok(Some(line)) = buffer.next_line() {
            if let Ok(request) = protocol::decode_request(&line) {
                let again = protocol::encode(&request);
                let back = protocol::decode_request(again.strip_suffix(b"\n").unwrap_or(&again));
                assert_eq!(back.ok(), Some(request));
            }
            if let Ok(message) = protocol::decode_message(&line) {
                let again = protocol::encode(&message);
                let back = protocol::decode_message(again.strip_suffix(b"\n").unwrap_or(&again));
                assert_eq!(back.ok(), Some(message));
            }
        }
    }
}

/// Format negotiation on whatever format and size lists a device reports. A choice is one of the offers, a
/// format facekey decodes, within the pixel limit.
pub fn negotiate(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = NegotiateInput::arbitrary(&mut u) else {
        return;
    };
    let offers: Vec<FormatOffer> = input
        .offers
        .iter()
        .map(|o| FormatOffer {
            fourcc: match o.known {
                Some(i) => ALL_FORMATS[usize::from(i) % ALL_FORMATS.len()].fourcc(),
                None => o.fourcc,
            },
            description: String::new(),
            sizes: o
                .sizes
                .iter()
                .map(|&(width, height, fps)| SizeOffer {
                    width,
                    height,
                    max_fps: fps,
                })
                .collect(),
        })
        .collect();
    let settings = Settings {
        size: input.size,
        fps: input.fps,
        force_mjpeg: input.force_mjpeg,
        format: input
            .format
            .map(|i| ALL_FORMATS[usize::from(i) % ALL_FORMATS.len()]),
        ..Settings::default()
    };
    let _ = negotiate::looks_infrared(&offers);
    let _ = negotiate::offered_text(&offers);
    if let Ok(choice) = negotiate::choose(&offers, &settings) {
        // A device may list one format several times: the choice must be a size one of them offers, or the
        // wanted size for one that lists none.
        let same: Vec<&FormatOffer> = offers
            .iter()
            .filter(|o| o.format() == Some(choice.format))
            .collect();
        assert!(!same.is_empty(), "{choice:?} is not an offered format");
        assert!(PixelFormat::from_fourcc(same[0].fourcc).is_some());
        assert!(
            same.iter().any(|o| o.sizes.is_empty()
                || o.sizes
                    .iter()
                    .any(|s| (s.width, s.height) == (choice.width, choice.height))),
            "{choice:?} is not an offered size; offers {offers:?}, settings {settings:?}"
        );
        assert!(choice.width > 0 && choice.height > 0, "{choice:?}");
        assert!(
            u64::from(choice.width) * u64::from(choice.height) <= MAX_PIXELS,
            "{choice:?}"
        );
    }
}

// `Arbitrary` by hand, reading the fields in declaration order exactly as `#[derive(Arbitrary)]` does (so the
// kept corpus means what it meant): the derive needs syn's `extra-traits`, and a feature a workspace member turns
// on changes the build of every crate above syn, tract included, between a build of the product alone (the demo,
// the package) and one of the whole workspace (the tests): 6 to 9 minutes compiled twice.
#[derive(Debug)]
struct NegotiateInput {
    offers: Vec<OfferInput>,
    size: Option<(u32, u32)>,
    fps: Option<u32>,
    force_mjpeg: bool,
    format: Option<u8>,
}

impl<'a> Arbitrary<'a> for NegotiateInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(NegotiateInput {
            offers: u.arbitrary()?,
            size: u.arbitrary()?,
            fps: u.arbitrary()?,
            force_mjpeg: u.arbitrary()?,
            format: u.arbitrary()?,
        })
    }
}

#[derive(Debug)]
struct OfferInput {
    known: Option<u8>,
    fourcc: [u8; 4],
    sizes: Vec<(u32, u32, Option<f64>)>,
}

impl<'a> Arbitrary<'a> for OfferInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(OfferInput {
            known: u.arbitrary()?,
            fourcc: u.arbitrary()?,
            sizes: u.arbitrary()?,
        })
    }
}

/// A USB device's configuration descriptors as sysfs gives them (the camera writes them): the extension units
/// found, and the order discovery would try their controls in.
pub fn descriptors(data: &[u8]) {
    use facekey_core::camera::descriptors;
    let units = descriptors::extension_units(data);
    for unit in &units {
        assert!(unit.selectors.windows(2).all(|w| w[0] < w[1]), "{unit:?}");
    }
    // Every control of every unit, each exactly once (a unit may be listed twice by a hostile device).
    let order = descriptors::discovery_order(&units);
    let distinct: std::collections::HashSet<_> = units.iter().flat_map(|u| u.controls()).collect();
    assert_eq!(order.len(), distinct.len(), "{order:?}");
    assert!(order.iter().all(|c| distinct.contains(c)));
}

/// Detection, alignment and embedding on arbitrary pixels at an arbitrary size (to 1024 x 1024): at most
/// [`facekey_core::engine::MAX_FACES_PER_FRAME`] faces, each with a finite, unit-length embedding. Slow
/// (tens of milliseconds an input): run it briefly.
pub fn pipeline(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(w), Ok(h)) = (u.int_in_range(1u32..=1024), u.int_in_range(1u32..=1024)) else {
        return;
    };
    let pixels = u.take_rest();
    if pixels.is_empty() {
        return;
    }
    // The input's bytes, repeated to fill the frame: a small input still paints a whole picture.
    let image = RgbImage::from_fn(w, h, |x, y| {
        let i = ((y as usize * w as usize + x as usize) * 3) % pixels.len();
        image::Rgb([
            pixels[i],
            pixels[(i + 1) % pixels.len()],
            pixels[(i + 2) % pixels.len()],
        ])
    });
    let faces = engine().analyse(&image).expect("analysis of a valid image");
    assert!(faces.len() <= facekey_core::engine::MAX_FACES_PER_FRAME);
    for face in faces {
        let norm: f32 = face.embedding.0.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            norm.is_finite() && (norm - 1.0).abs() < 1e-3,
            "embedding norm {norm}"
        );
    }
}

/// The shipped models from the repository, loaded once.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = facekey_config::Config::default();
        config.models.dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        Engine::load(&config).expect("the repository's models load")
    })
}
