//! Alignment: from a detected face to the chip the embedder expects (dlib's 150x150 for the shipped one).
//!
//! A similarity transform (rotation, uniform scale, translation; no shear) maps the five detected
//! landmarks onto the dlib chip template in the least-squares sense (Umeyama's method, closed form
//! in 2-D), and the chip is resampled bilinearly through its inverse. Written by hand: it is thirty
//! lines of arithmetic, and the image-processing crates that offer warps would add far more code to
//! the module than they save.

use image::RgbImage;

use crate::detect::Face;

/// Side of the chip the dlib ResNet takes.
pub const CHIP_SIZE: u32 = 150;

/// Where the five landmarks of a dlib-aligned 150x150 chip sit, in the detector's landmark order
/// (measured by running YuNet on dlib's own chips; see models/PROVENANCE.md).
pub const DLIB_CHIP_TEMPLATE: [[f32; 2]; 5] = [
    [47.1, 44.4],
    [101.9, 45.2],
    [74.6, 77.8],
    [49.8, 101.9],
    [97.7, 102.7],
];

/// A similarity transform `p' = [a -b; b a] p + [tx ty]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// The least-squares similarity taking `src` points onto `dst` points.
    pub fn estimate(src: &[[f32; 2]; 5], dst: &[[f32; 2]; 5]) -> Option<Similarity> {
        let n = src.len() as f64;
        let mean = |pts: &[[f32; 2]; 5]| {
            let (sx, sy) = pts
                .iter()
                .fold((0.0, 0.0), |(x, y), p| (x + p[0] as f64, y + p[1] as f64));
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut dot, mut cross, mut var) = (0.0f64, 0.0f64, 0.0f64);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (s[0] as f64 - msx, s[1] as f64 - msy);
            let (dx, dy) = (d[0] as f64 - mdx, d[1] as f64 - mdy);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            var += sx * sx + sy * sy;
        }
        if var < 1e-9 || !var.is_finite() {
            return None;
        }
        let a = dot / var;
        let b = cross / var;
        let tx = mdx - (a * msx - b * msy);
        let ty = mdy - (b * msx + a * msy);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: tx as f32,
            ty: ty as f32,
        })
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    pub fn inverse(&self) -> Option<Similarity> {
        let det = self.a * self.a + self.b * self.b;
        if det < 1e-12 {
            return None;
        }
        let (a, b) = (self.a / det, -self.b / det);
        let tx = -(a * self.tx - b * self.ty);
        let ty = -(b * self.tx + a * self.ty);
        Some(Similarity { a, b, tx, ty })
    }
}

/// Cut the aligned 150x150 dlib chip for `face` out of `image`. `None` when the landmarks are degenerate.
pub fn align(image: &RgbImage, face: &Face) -> Option<RgbImage> {
    align_to(image, face, &DLIB_CHIP_TEMPLATE, CHIP_SIZE)
}

/// Cut the `size` x `size` chip for `face` out of `image`, its landmarks moved onto `template` (points on that
/// chip, in the detector's landmark order). `None` when the landmarks are degenerate or `size` is 0.
pub fn align_to(
    image: &RgbImage,
    face: &Face,
    template: &[[f32; 2]; 5],
    size: u32,
) -> Option<RgbImage> {
    if size == 0 {
        return None;
    }
    let to_chip = Similarity::estimate(&face.landmarks, template)?;
    let to_image = to_chip.inverse()?;
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    let src = image.as_raw();
    let stride = w as usize * 3;
    let (max_x, max_y) = ((w - 1) as f32, (h - 1) as f32);
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            // Bilinear sample with edge clamping (pixels outside the image repeat the border).
            let [sx, sy] = to_image.apply([x as f32, y as f32]);
            let (sx, sy) = (sx.clamp(0.0, max_x), sy.clamp(0.0, max_y));
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let (r0, r1) = (y0 * stride, y1 * stride);
            let (c0, c1) = (x0 * 3, x1 * 3);
            for c in 0..3 {
                let top = src[r0 + c0 + c] as f32 * (1.0 - fx) + src[r0 + c1 + c] as f32 * fx;
                let bottom = src[r1 + c0 + c] as f32 * (1.0 - fx) + src[r1 + c1 + c] as f32 * fx;
                // Non-negative, so adding 0.5 and truncating is round(); f32::round is a libm
                // call on baseline x86-64 and cost most of this loop.
                out.push(((top * (1.0 - fy) + bottom * fy).clamp(0.0, 255.0) + 0.5) as u8);
            }
        }
    }
    RgbImage::from_raw(size, size, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn estimate_recovers_a_known_similarity() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 12.0,
            ty: -7.0,
        };
        let src = [
            [10.0, 20.0],
            [60.0, 22.0],
            [35.0, 50.0],
            [15.0, 80.0],
            [55.0, 82.0],
        ];
        let dst = src.map(|p| truth.apply(p));
        let got = Similarity::estimate(&src, &dst).unwrap();
        for (g, t) in [
            (got.a, truth.a),
            (got.b, truth.b),
            (got.tx, truth.tx),
            (got.ty, truth.ty),
        ] {
            assert!((g - t).abs() < 1e-3, "{got:?} vs {truth:?}");
        }
        let back = got.inverse().unwrap().apply(dst[2]);
        assert!((back[0] - src[2][0]).abs() < 1e-3 && (back[1] - src[2][1]).abs() < 1e-3);
    }

    #[test]
    fn degenerate_landmarks_give_no_chip() {
        let image = RgbImage::new(10, 10);
        let face = Face {
            bbox: [0.0, 0.0, 5.0, 5.0],
            landmarks: [[3.0, 3.0]; 5],
            score: 0.9,
        };
        assert!(align(&image, &face).is_none());
    }

    #[test]
    fn landmarks_on_the_template_give_the_image_back() {
        let mut image = RgbImage::new(CHIP_SIZE, CHIP_SIZE);
        for (x, y, p) in image.enumerate_pixels_mut() {
            *p = Rgb([x as u8, y as u8, 7]);
        }
        let face = Face {
            bbox: [0.0, 0.0, 150.0, 150.0],
            landmarks: DLIB_CHIP_TEMPLATE,
            score: 1.0,
        };
        let chip = align(&image, &face).unwrap();
        assert_eq!(chip.get_pixel(40, 90).0, [40, 90, 7]);
    }
}
