//! Frame quality and liveness: is this frame worth analysing, and is the face in it alive?
//!
//! Three checks, each a `[camera]` switch, each applied by [`crate::decision`]:
//! - **Dark frames** (`dark_threshold`): an infrared camera whose emitter flashes on every other
//!   frame delivers nearly black frames in between. A frame whose darkest eighth of the
//!   brightness range (levels 0-31) holds more than the threshold's share of pixels is skipped
//!   before detection and counted (Howdy's rule, same default of 60%).
//! - **Infrared** (`require_ir`): a camera that offers anything but grey formats is refused. This
//!   is the check that stops a photo: an infrared camera lit by its own emitter sees skin, not a
//!   phone screen (which emits no infrared) nor a print (which looks flat and wrong).
//! - **Face change** (`min_face_change`): a live face never gives two identical frames (sensor
//!   noise alone changes every pixel a little); a frozen camera, or a still picture injected
//!   through a virtual camera, does. Each frame's face is cropped, scaled to 64x64 grey by
//!   nearest-neighbour sampling (which keeps the per-pixel noise that averaging would smooth
//!   away) and compared with the previous face's crop. On a camera, the first face only serves
//!   as the reference.
//!
//! What these checks cannot do: tell a live face from a video of it replayed to a colour camera,
//! or from an injected stream that adds noise. Only an infrared camera raises that bar; see
//! docs/camera.md.

use image::{imageops, GrayImage, RgbImage};

use crate::camera::CameraInfo;
use crate::detect::Face;
use crate::frame::{FrameSource, SourceError};

/// Brightness of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// Mean luma, 0-255.
    pub mean: f32,
    /// Share of pixels with luma 0-31 (the darkest of eight histogram bins), 0-1.
    pub dark_fraction: f32,
}

/// Luma (BT.601 weights) statistics of an image, from every other pixel of every other row:
/// a dark frame is dark everywhere, and this keeps the cost under a millisecond at 640x480.
pub fn measure(image: &RgbImage) -> Exposure {
    let (w, h) = image.dimensions();
    let (mut sum, mut dark, mut n) = (0u64, 0u64, 0u64);
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            let luma = crate::frame::luma(image.get_pixel(x, y).0);
            sum += u64::from(luma);
            dark += u64::from(luma < 32);
            n += 1;
        }
    }
    if n == 0 {
        return Exposure {
            mean: 0.0,
            dark_fraction: 1.0,
        };
    }
    Exposure {
        mean: sum as f32 / n as f32,
        dark_fraction: dark as f32 / n as f32,
    }
}

/// Whether a frame is too dark to analyse, under `camera.dark_threshold` (percent; 100 never
/// skips).
pub fn is_dark(exposure: &Exposure, threshold_percent: f32) -> bool {
    threshold_percent < 100.0 && exposure.dark_fraction * 100.0 > threshold_percent
}

/// Refuse a camera that is not infrared when `camera.require_ir` is set. Replays of image files
/// are not cameras and pass (they are for tests and set up by whoever owns the configuration).
pub fn check_infrared(
    camera: &facekey_config::Camera,
    source: &dyn FrameSource,
) -> Result<(), SourceError> {
    match source.camera() {
        Some(info) if camera.require_ir && !info.infrared => Err(not_infrared(info)),
        _ => Ok(()),
    }
}

fn not_infrared(info: &CameraInfo) -> SourceError {
    SourceError::NotInfrared {
        device: info.device.display().to_string(),
        offered: info.offered_text(),
    }
}

/// Side of the square grey crop faces are compared on.
pub const CROP_SIDE: u32 = 64;

/// A face cut out of a frame, 64x64 grey.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceCrop(pub GrayImage);

/// The face's box, clamped to the image, as a 64x64 grey crop; `None` when the box lies outside.
pub fn face_crop(image: &RgbImage, face: &Face) -> Option<FaceCrop> {
    let (w, h) = image.dimensions();
    let [x, y, bw, bh] = face.bbox;
    let left = x.max(0.0).floor() as u32;
    let top = y.max(0.0).floor() as u32;
    let right = ((x + bw).ceil().max(0.0) as u32).min(w);
    let bottom = ((y + bh).ceil().max(0.0) as u32).min(h);
    if right <= left || bottom <= top {
        return None;
    }
    let patch = imageops::crop_imm(image, left, top, right - left, bottom - top).to_image();
    let small = imageops::resize(&patch, CROP_SIDE, CROP_SIDE, imageops::FilterType::Nearest);
    Some(FaceCrop(imageops::grayscale(&small)))
}

/// Mean absolute difference of two crops, in grey levels.
pub fn change(a: &FaceCrop, b: &FaceCrop) -> f32 {
    let total: u64 =
        a.0.as_raw()
            .iter()
            .zip(b.0.as_raw())
            .map(|(p, q)| u64::from(p.abs_diff(*q)))
            .sum();
    total as f32 / a.0.as_raw().len().max(1) as f32
}

/// What the face-change check says about a frame's face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// The check is off (`min_face_change = 0`).
    Off,
    /// No earlier face to compare with.
    First,
    /// Changed by this much since the previous face: alive as far as this check can tell.
    Changed(f32),
    /// Changed by less than the minimum: a frozen or injected picture.
    Still(f32),
}

/// The face-change check over the frames of one decision.
#[derive(Debug, Clone)]
pub struct FaceMotion {
    min_change: f32,
    live: bool,
    previous: Option<FaceCrop>,
}

impl FaceMotion {
    /// `live`: the frames come from a camera, where the first face cannot count (it has nothing
    /// to be compared with). A replay's first frame counts, so a single photo can be tested.
    pub fn new(min_change: f32, live: bool) -> FaceMotion {
        FaceMotion {
            min_change,
            live,
            previous: None,
        }
    }

    /// Compare a frame's face with the previous one, and keep it as the next reference.
    pub fn observe(&mut self, crop: FaceCrop) -> Motion {
        if self.min_change <= 0.0 {
            return Motion::Off;
        }
        let motion = match &self.previous {
            None => Motion::First,
            Some(previous) => {
                let c = change(previous, &crop);
                if c >= self.min_change {
                    Motion::Changed(c)
                } else {
                    Motion::Still(c)
                }
            }
        };
        self.previous = Some(crop);
        motion
    }

    /// Whether a matching face with this motion may count toward a match.
    pub fn may_count(&self, motion: Motion) -> bool {
        match motion {
            Motion::Off | Motion::Changed(_) => true,
            Motion::Still(_) => false,
            Motion::First => !self.live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, h: f32) -> Face {
        Face {
            bbox: [x, y, w, h],
            landmarks: [[0.0; 2]; 5],
            score: 0.95,
        }
    }

    #[test]
    fn black_frame_is_dark_and_grey_frame_is_not() {
        let black = RgbImage::from_pixel(64, 48, image::Rgb([5, 5, 5]));
        let grey = RgbImage::from_pixel(64, 48, image::Rgb([120, 120, 120]));
        let e = measure(&black);
        assert_eq!(e.dark_fraction, 1.0);
        assert!(e.mean < 6.0);
        assert!(is_dark(&e, 60.0));
        let e = measure(&grey);
        assert_eq!(e.dark_fraction, 0.0);
        assert!((e.mean - 120.0).abs() < 0.5);
        assert!(!is_dark(&e, 60.0));
    }

    #[test]
    fn dark_threshold_is_a_share_of_pixels_and_100_never_skips() {
        // Left 70% black, right 30% bright.
        let img = RgbImage::from_fn(100, 10, |x, _| {
            image::Rgb(if x < 70 { [0; 3] } else { [200; 3] })
        });
        let e = measure(&img);
        assert!((e.dark_fraction - 0.7).abs() < 0.02, "{e:?}");
        assert!(is_dark(&e, 60.0));
        assert!(!is_dark(&e, 75.0));
        assert!(!is_dark(&measure(&RgbImage::new(8, 8)), 100.0));
    }

    #[test]
    fn level_31_counts_as_dark_and_32_does_not() {
        let at = |v: u8| measure(&RgbImage::from_pixel(4, 4, image::Rgb([v; 3]))).dark_fraction;
        assert_eq!(at(31), 1.0);
        assert_eq!(at(32), 0.0);
    }

    #[test]
    fn crop_of_a_box_partly_outside_is_clamped_and_outside_is_none() {
        let img = RgbImage::from_pixel(100, 80, image::Rgb([50, 100, 150]));
        let crop = face_crop(&img, &face(-10.0, 60.0, 40.0, 40.0)).unwrap();
        assert_eq!(crop.0.dimensions(), (CROP_SIDE, CROP_SIDE));
        assert!(face_crop(&img, &face(120.0, 10.0, 20.0, 20.0)).is_none());
        assert!(face_crop(&img, &face(10.0, 10.0, 0.0, 20.0)).is_none());
    }

    #[test]
    fn identical_crops_do_not_change_and_the_first_counts_only_on_a_replay() {
        let img = RgbImage::from_fn(80, 80, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 9]));
        let crop = face_crop(&img, &face(10.0, 10.0, 50.0, 50.0)).unwrap();
        assert_eq!(change(&crop, &crop), 0.0);
        let mut camera = FaceMotion::new(0.5, true);
        let first = camera.observe(crop.clone());
        assert_eq!(first, Motion::First);
        assert!(!camera.may_count(first));
        let again = camera.observe(crop.clone());
        assert_eq!(again, Motion::Still(0.0));
        assert!(!camera.may_count(again));
        let replay = FaceMotion::new(0.5, false);
        assert!(replay.may_count(Motion::First));
        let off = FaceMotion::new(0.0, true).observe(crop);
        assert_eq!(off, Motion::Off);
    }
}
