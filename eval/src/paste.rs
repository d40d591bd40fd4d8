//! Camera-sized frames synthesised from tight face crops: the crop pasted at a random size and place on a
//! smooth textured background, then optionally relit. Seeded: the same inputs give the same frames.

use image::{imageops, GrayImage, Luma, Rgb, RgbImage};

/// How a frame is lit, applied to the whole frame after pasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Light {
    /// As pasted.
    Normal,
    /// Grey (BT.601 luma), as an infrared camera or a grey sensor gives it.
    Grey,
    /// Under-exposed: levels times 0.4, with sensor noise of +-6 levels.
    Dim,
    /// Over-exposed, washed out: the distance to white times 0.4.
    Bright,
    /// Hard light from one side: levels times a ramp from 0.25 (left) to 1.3 (right), clipped.
    Side,
}

impl Light {
    pub const ALL: [Light; 5] = [
        Light::Normal,
        Light::Grey,
        Light::Dim,
        Light::Bright,
        Light::Side,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Light::Normal => "normal",
            Light::Grey => "grey",
            Light::Dim => "dim",
            Light::Bright => "bright",
            Light::Side => "side",
        }
    }
}

/// A synthesised frame and where the crop went in it (left, top, width, height).
pub struct Pasted {
    pub image: RgbImage,
    pub rect: [u32; 4],
}

/// The crop's height as a fraction of the frame's height is drawn from this range: a face at arm's length
/// from a laptop camera.
const HEIGHT_FRACTION: (f32, f32) = (0.40, 0.60);

/// Whether every pixel of `image` has equal channels.
pub fn is_grey(image: &RgbImage) -> bool {
    image.pixels().all(|p| p[0] == p[1] && p[1] == p[2])
}

/// A smooth random background: 8 x 6 random levels interpolated over the frame (a wall and a shelf out of
/// focus), plus fine grain. Grey when `grey`, muted colours otherwise. No face, human or animal.
pub fn background(width: u32, height: u32, grey: bool, rng: &mut fastrand::Rng) -> RgbImage {
    let mut coarse = RgbImage::new(8, 6);
    for p in coarse.pixels_mut() {
        let l = rng.u8(60..200);
        *p = if grey {
            Rgb([l, l, l])
        } else {
            // Half-desaturated colours around the level.
            let c = |rng: &mut fastrand::Rng| ((l as u16 + rng.u8(40..215) as u16) / 2) as u8;
            Rgb([c(rng), c(rng), c(rng)])
        };
    }
    let mut frame = imageops::resize(&coarse, width, height, imageops::FilterType::CatmullRom);
    for p in frame.pixels_mut() {
        let g = rng.i16(-8..=8);
        let grain = |v: u8| (v as i16 + g).clamp(0, 255) as u8;
        *p = if grey {
            let v = grain(p[0]);
            Rgb([v, v, v])
        } else {
            Rgb([grain(p[0]), grain(p[1]), grain(p[2])])
        };
    }
    frame
}

/// Paste `crop` into a `width` x `height` frame: scaled so its height is 40-60% of the frame's (never wider
/// than the frame), at a random place, on [`background`] (grey when the crop is grey); then `light`.
pub fn paste(crop: &RgbImage, width: u32, height: u32, light: Light, seed: u64) -> Pasted {
    let mut rng = fastrand::Rng::with_seed(seed);
    let grey = is_grey(crop);
    let mut frame = background(width, height, grey, &mut rng);
    let fraction = HEIGHT_FRACTION.0 + rng.f32() * (HEIGHT_FRACTION.1 - HEIGHT_FRACTION.0);
    let (cw, ch) = crop.dimensions();
    let mut scale = fraction * height as f32 / ch as f32;
    scale = scale.min(width as f32 / cw as f32);
    let w = ((cw as f32 * scale).round() as u32).clamp(1, width);
    let h = ((ch as f32 * scale).round() as u32).clamp(1, height);
    let scaled = imageops::resize(crop, w, h, imageops::FilterType::Triangle);
    let x = rng.u32(0..=width - w);
    let y = rng.u32(0..=height - h);
    imageops::replace(&mut frame, &scaled, x as i64, y as i64);
    relight(&mut frame, light, &mut rng);
    Pasted {
        image: frame,
        rect: [x, y, w, h],
    }
}

/// Apply `light` to a whole frame.
pub fn relight(frame: &mut RgbImage, light: Light, rng: &mut fastrand::Rng) {
    let width = frame.width().max(2);
    match light {
        Light::Normal => {}
        Light::Grey => {
            let grey: GrayImage = imageops::grayscale(frame);
            for (p, Luma([l])) in frame.pixels_mut().zip(grey.pixels()) {
                *p = Rgb([*l, *l, *l]);
            }
        }
        Light::Dim => {
            for p in frame.pixels_mut() {
                let n = rng.i16(-6..=6);
                for c in p.0.iter_mut() {
                    *c = ((*c as f32 * 0.4) as i16 + n).clamp(0, 255) as u8;
                }
            }
        }
        Light::Bright => {
            for p in frame.pixels_mut() {
                for c in p.0.iter_mut() {
                    *c = 255 - ((255 - *c) as f32 * 0.4) as u8;
                }
            }
        }
        Light::Side => {
            for (x, _, p) in frame.enumerate_pixels_mut() {
                let gain = 0.25 + 1.05 * x as f32 / (width - 1) as f32;
                for c in p.0.iter_mut() {
                    *c = (*c as f32 * gain).min(255.0) as u8;
                }
            }
        }
    }
}

/// A seed for image `image` of identity `identity` (stable across runs and platforms).
pub fn seed_for(identity: &str, image: &str, base: u64) -> u64 {
    // FNV-1a: tiny, fixed, and the same everywhere (std's hasher is not guaranteed stable).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
    for b in identity.bytes().chain([0u8]).chain(image.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paste_is_deterministic_and_keeps_the_crop_inside() {
        let crop = RgbImage::from_fn(92, 112, |x, y| {
            let v = ((x * 3 + y * 5) % 256) as u8;
            Rgb([v, v, v])
        });
        let a = paste(&crop, 640, 480, Light::Normal, 42);
        let b = paste(&crop, 640, 480, Light::Normal, 42);
        assert_eq!(a.image, b.image);
        assert_eq!(a.rect, b.rect);
        let [x, y, w, h] = a.rect;
        assert!(x + w <= 640 && y + h <= 480);
        assert!((192..=288).contains(&h), "{h}");
        assert!(is_grey(&a.image), "a grey crop gives a grey frame");
        let c = paste(&crop, 640, 480, Light::Normal, 43);
        assert_ne!(a.rect, c.rect, "another seed, another place");
    }

    #[test]
    fn lights_change_levels_as_stated() {
        let crop = RgbImage::from_pixel(50, 50, Rgb([100, 150, 200]));
        let normal = paste(&crop, 320, 240, Light::Normal, 1);
        let dim = paste(&crop, 320, 240, Light::Dim, 1);
        let bright = paste(&crop, 320, 240, Light::Bright, 1);
        let grey = paste(&crop, 320, 240, Light::Grey, 1);
        let mean = |i: &RgbImage| {
            i.pixels()
                .map(|p| p[0] as f64 + p[1] as f64 + p[2] as f64)
                .sum::<f64>()
                / (3 * i.width() * i.height()) as f64
        };
        assert!(mean(&dim.image) < 0.5 * mean(&normal.image));
        assert!(mean(&bright.image) > mean(&normal.image));
        assert!(is_grey(&grey.image) && !is_grey(&normal.image));
    }
}
