//! Writes a first corpus for every fuzz target from the repository's own data (face pictures as raw frames in
//! every pixel format, a real enrolment, the shipped configuration, Howdy's fixture files, helper lines, the
//! descriptors of two IR cameras), into `fuzz/libfuzzer/corpus/<target>/`. `scripts/fuzz` runs it when a
//! target has no corpus yet; libFuzzer grows the corpus from there.
//!
//! `cargo run --release -p facekey-fuzz --example seed`

use std::fs;
use std::path::{Path, PathBuf};

use facekey_core::camera::identity::CameraIdentity;
use facekey_core::frame::decode::{rgb_to_ycbcr, PixelFormat, ALL_FORMATS};
use facekey_core::protocol::{
    self, Body, CheckRequest, HelperMessage, VerdictKind, VerdictSummary,
};
use facekey_core::store::{EmbedderId, Enrolment, UserName};
use image::imageops::FilterType;
use image::RgbImage;

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = repo.join("fuzz/libfuzzer/corpus");
    let face = first_jpeg(&repo.join("tests/data/faces/johns/John_Simm"))
        .expect("a face picture")
        .to_rgb8();

    // decode: the face at 32 x 24 in every format, packed and with padded rows; and the JPEG itself.
    let small = image::imageops::resize(&face, 32, 24, FilterType::Triangle);
    for format in ALL_FORMATS {
        for pad in [0u8, 5] {
            let bytes = raw(&small, format, pad);
            let mut input = vec![index_of(format)];
            input.extend((small.width() as u16).to_le_bytes());
            input.extend((small.height() as u16).to_le_bytes());
            input.extend([0, pad, 0, 0, 0]);
            input.extend(bytes);
            write(
                &corpus,
                "decode",
                &format!("{}-pad{pad}", format.name().trim()),
                &input,
            );
        }
    }

    // store: an enrolment with two samples.
    let user = UserName::new("alice").unwrap();
    let mut enrolment = Enrolment::new(
        &user,
        EmbedderId {
            sha256: "ab".repeat(32),
            dimension: 4,
        },
    );
    enrolment.add_sample("desk", vec![0.5, 0.5, 0.5, 0.5]);
    enrolment.add_sample_from(
        "glasses",
        vec![1.0, 0.0, 0.0, 0.0],
        Some(CameraIdentity {
            driver: "uvcvideo".into(),
            card: "Integrated IR Camera".into(),
            bus: "usb-0000:00:14.0-5".into(),
            usb: Some("04f2:b6d9".into()),
        }),
    );
    let text = facekey_core::store::render(&enrolment).expect("a valid enrolment");
    write(&corpus, "store", "two-samples-one-camera", text.as_bytes());

    // config: the shipped configuration, and files of the other two kinds.
    let shipped = fs::read(repo.join("config/config.toml")).unwrap();
    write(
        &corpus,
        "config",
        "shipped",
        &[[0u8].as_slice(), &shipped].concat(),
    );
    let ir =
        "[[cameras]]\ndevice = \"/dev/v4l/by-id/usb-cam-video-index1\"\nunit = 4\nselector = 6\n\
              value = \"010303000000000000\"\n";
    write(
        &corpus,
        "config",
        "ir",
        &[[2u8].as_slice(), ir.as_bytes()].concat(),
    );
    let manifest =
        "format = 1\n\n[[models]]\nname = \"yunet\"\nrole = \"detector\"\nfile = \"y.onnx\"\n\
                    sha256 = \""
            .to_owned()
            + &"cd".repeat(32)
            + "\"\nsize = 1\nlicence = \"MIT\"\nsource = \"x\"\ninstalled = 0\n";
    write(
        &corpus,
        "config",
        "manifest",
        &[[3u8].as_slice(), manifest.as_bytes()].concat(),
    );

    // howdy: both config.ini fixtures, and a USER.dat of one encoding.
    for name in ["config-2.ini", "config-3.ini"] {
        let ini = fs::read(repo.join("tests/data/howdy").join(name)).unwrap();
        write(&corpus, "howdy", name, &[[1u8].as_slice(), &ini].concat());
    }
    let encoding: Vec<String> = (0..128)
        .map(|i| format!("{:.4}", (i as f32 - 64.0) / 700.0))
        .collect();
    let dat = format!(
        "[{{\"time\": 1700000000, \"label\": \"Initial model\", \"id\": 0, \"data\": [[{}]]}}]",
        encoding.join(", ")
    );
    write(
        &corpus,
        "howdy",
        "user-dat",
        &[[0u8].as_slice(), dat.as_bytes()].concat(),
    );

    // protocol: a request and each kind of helper line, one per read and cut into 7-byte reads.
    let request = CheckRequest {
        protocol: protocol::PROTOCOL_VERSION,
        user: "alice".into(),
        service: Some("kde".into()),
        rhost: None,
        ruser: None,
        tty: Some(":0".into()),
        config: None,
        timeout_ms: 4000,
    };
    let mut lines = protocol::encode(&request);
    for body in [
        Body::Notice("Looking for face...".into()),
        Body::Verdict(VerdictSummary::plain(VerdictKind::NoMatch, "no match")),
        Body::Refused("protocol 9".into()),
    ] {
        lines.extend(protocol::encode(&HelperMessage::new(body)));
    }
    write(
        &corpus,
        "protocol",
        "whole",
        &[[255u8].as_slice(), &lines].concat(),
    );
    write(
        &corpus,
        "protocol",
        "cut7",
        &[[7u8].as_slice(), &lines].concat(),
    );

    // negotiate: bytes that arbitrary reads as offer lists.
    for (i, seed) in [[0x01u8; 64], [0x55; 64], [0xa7; 64]].iter().enumerate() {
        write(&corpus, "negotiate", &format!("pattern{i}"), seed);
    }

    // descriptors: two real IR cameras' descriptors.
    for name in ["thinkpad-e15-gen2-ir.hex", "thinkpad-p16s-gen2-ir.hex"] {
        let hex = fs::read_to_string(repo.join("tests/data/uvc").join(name)).unwrap();
        let bytes = facekey_core::camera::descriptors::parse_hex(
            &hex.lines()
                .filter(|l| !l.starts_with('#'))
                .flat_map(|l| l.split_whitespace())
                .collect::<String>(),
        )
        .expect("hex descriptors");
        write(
            &corpus,
            "descriptors",
            name.trim_end_matches(".hex"),
            &bytes,
        );
    }

    // pipeline: the face at 96 x 96 (size bytes then pixels).
    let chip = image::imageops::resize(&face, 96, 96, FilterType::Triangle);
    let mut input = Vec::new();
    input.extend(95u32.to_le_bytes());
    input.extend(95u32.to_le_bytes());
    input.extend(chip.as_raw());
    write(&corpus, "pipeline", "face96", &input);
}

fn first_jpeg(dir: &Path) -> image::ImageResult<image::DynamicImage> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    image::open(&files[0])
}

fn index_of(format: PixelFormat) -> u8 {
    ALL_FORMATS.iter().position(|f| *f == format).unwrap() as u8
}

fn write(corpus: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus.join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// `image` in `format`, each row followed by `pad` bytes (MJPG: the JPEG).
fn raw(image: &RgbImage, format: PixelFormat, pad: u8) -> Vec<u8> {
    let (w, h) = image.dimensions();
    let px = |x: u32, y: u32| image.get_pixel(x.min(w - 1), y.min(h - 1)).0;
    let luma = |x, y| rgb_to_ycbcr(px(x, y))[0];
    let mut out = Vec::new();
    let row_end = |out: &mut Vec<u8>| out.extend(std::iter::repeat_n(0u8, usize::from(pad)));
    match format {
        PixelFormat::Mjpeg => {
            let mut jpeg = Vec::new();
            image
                .write_to(
                    &mut std::io::Cursor::new(&mut jpeg),
                    image::ImageFormat::Jpeg,
                )
                .unwrap();
            return jpeg;
        }
        PixelFormat::Nv12 => {
            for y in 0..h {
                out.extend((0..w).map(|x| luma(x, y)));
                row_end(&mut out);
            }
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let [_, cb, cr] = rgb_to_ycbcr(px(x, y));
                    out.extend([cb, cr]);
                }
                row_end(&mut out);
            }
            return out;
        }
        _ => {}
    }
    for y in 0..h {
        for x in 0..w {
            let [r, g, b] = px(x, y);
            let l = luma(x, y);
            let [_, cb, cr] = rgb_to_ycbcr(px(x & !1, y));
            match format {
                PixelFormat::Rgb24 => out.extend([r, g, b]),
                PixelFormat::Bgr24 => out.extend([b, g, r]),
                PixelFormat::Grey => out.push(l),
                PixelFormat::Y10 => out.extend((u16::from(l) << 2).to_le_bytes()),
                PixelFormat::Y12 => out.extend((u16::from(l) << 4).to_le_bytes()),
                PixelFormat::Y16 => out.extend((u16::from(l) << 8).to_le_bytes()),
                PixelFormat::Yuyv => out.extend(if x % 2 == 0 { [l, cb] } else { [l, cr] }),
                PixelFormat::Uyvy => out.extend(if x % 2 == 0 { [cb, l] } else { [cr, l] }),
                PixelFormat::Mjpeg | PixelFormat::Nv12 => unreachable!(),
            }
        }
        row_end(&mut out);
    }
    out
}
