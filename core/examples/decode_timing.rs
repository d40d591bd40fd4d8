//! How long decoding a 640x480 camera frame to RGB takes, per pixel format (median of 50 runs,
//! one thread), and the dark-frame measure on the result. The figures in docs/camera.md come
//! from `cargo run --release -p facekey-core --example decode_timing`.

use std::time::{Duration, Instant};

use facekey_core::frame::decode::{rgb_to_ycbcr, to_rgb};
use facekey_core::frame::PixelFormat;
use facekey_core::liveness;
use image::RgbImage;

const W: u32 = 640;
const H: u32 = 480;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    // A textured picture: a gradient with a pattern, so MJPG has something to compress.
    let picture = RgbImage::from_fn(W, H, |x, y| {
        image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x ^ y) & 0xff) as u8])
    });
    let yuv: Vec<[u8; 3]> = picture.pixels().map(|p| rgb_to_ycbcr(p.0)).collect();
    let at = |x: u32, y: u32| yuv[(y * W + x) as usize];
    let mut yuyv = Vec::with_capacity((W * H * 2) as usize);
    for y in 0..H {
        for x in (0..W).step_by(2) {
            let (a, b) = (at(x, y), at(x + 1, y));
            yuyv.extend_from_slice(&[a[0], a[1], b[0], a[2]]);
        }
    }
    let mut nv12: Vec<u8> = yuv.iter().map(|p| p[0]).collect();
    for y in (0..H).step_by(2) {
        for x in (0..W).step_by(2) {
            let p = at(x, y);
            nv12.extend_from_slice(&[p[1], p[2]]);
        }
    }
    let grey: Vec<u8> = yuv.iter().map(|p| p[0]).collect();
    let y16: Vec<u8> = grey
        .iter()
        .flat_map(|v| (u16::from(*v) << 8).to_le_bytes())
        .collect();
    let mut mjpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut mjpg, 85)
        .encode_image(&picture)
        .expect("JPEG encoding");
    let cases: [(PixelFormat, &[u8], usize); 6] = [
        (PixelFormat::Yuyv, &yuyv, (W * 2) as usize),
        (PixelFormat::Nv12, &nv12, W as usize),
        (PixelFormat::Grey, &grey, W as usize),
        (PixelFormat::Y16, &y16, (W * 2) as usize),
        (PixelFormat::Rgb24, picture.as_raw(), (W * 3) as usize),
        (PixelFormat::Mjpeg, &mjpg, 0),
    ];
    for (format, data, stride) in cases {
        let d = time(|| {
            to_rgb(format, W, H, stride, data).expect("decodes");
        });
        println!(
            "{format:>4} {W}x{H} -> RGB: {:.2} ms",
            d.as_secs_f64() * 1e3
        );
    }
    let d = time(|| {
        liveness::measure(&picture);
    });
    println!(
        "brightness and dark share of a {W}x{H} frame: {:.3} ms",
        d.as_secs_f64() * 1e3
    );
}
