//! Face detection with YuNet.
//!
//! A frame is downscaled so its height is at most `detection.max_height` (the cost of detection must
//! not grow with the photo), then placed on a canvas whose sides are multiples of 32, as YuNet needs.
//! Small images (a 150x150 face chip, where the face fills the picture) are padded onto a larger
//! canvas so the detector sees the whole face with some context. Boxes and landmarks come back in the
//! coordinates of the original frame.

use std::path::PathBuf;
use std::sync::Mutex;

use facekey_config::Config;
use image::RgbImage;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::models::{self, ModelError, Plan};

/// A detected face, in frame coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Left, top, width, height.
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, right mouth corner, left mouth corner (as the subject sees them:
    /// the subject's right eye is on the image's left).
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

impl Face {
    /// Intersection over union of two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        iou(&self.bbox, &other.bbox)
    }
}

/// Intersection over union of two (left, top, width, height) boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let x0 = a[0].max(b[0]);
    let y0 = a[1].max(b[1]);
    let x1 = (a[0] + a[2]).min(b[0] + b[2]);
    let y1 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Why detection failed on a frame.
#[derive(thiserror::Error, Debug)]
#[error("face detection failed: {0}")]
pub struct DetectError(String);

/// Smallest canvas side: smaller images are padded up to this, so a face that fills a small chip is
/// still seen at a scale YuNet was trained on.
const MIN_CANVAS: u32 = 224;
/// YuNet's coarsest stride: canvas sides must be multiples of it.
const ALIGN: u32 = 32;
const STRIDES: [usize; 3] = [8, 16, 32];
/// How many input shapes keep an optimised plan (a camera uses one; photos of many sizes use more).
const PLAN_CACHE: usize = 4;

/// Detection settings taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    pub max_height: u32,
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub min_face_size: u32,
}

impl DetectorSettings {
    pub fn from_config(config: &Config) -> Self {
        let d = &config.detection;
        DetectorSettings {
            max_height: d.max_height,
            score_threshold: d.score_threshold,
            nms_iou: d.nms_iou,
            min_face_size: d.min_face_size,
        }
    }
}

/// The YuNet detector, with optimised plans cached per input shape.
pub struct Detector {
    proto: ModelProto,
    path: PathBuf,
    /// Index of each output (cls, obj, bbox, kps) x stride in the model's output list.
    outputs: [[usize; 3]; 4],
    plans: Mutex<Vec<((u32, u32), Plan)>>,
    pub settings: DetectorSettings,
}

/// Where a frame sits on the detector canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Canvas pixels per frame pixel.
    pub scale: f32,
    pub offset_x: u32,
    pub offset_y: u32,
    pub canvas_w: u32,
    pub canvas_h: u32,
    pub scaled_w: u32,
    pub scaled_h: u32,
}

impl Letterbox {
    /// The canvas for a `width` x `height` frame under `max_height`.
    pub fn for_frame(width: u32, height: u32, max_height: u32) -> Letterbox {
        let scale = if height > max_height {
            max_height as f32 / height as f32
        } else {
            1.0
        };
        let scaled_w = ((width as f32 * scale).round() as u32).max(1);
        let scaled_h = ((height as f32 * scale).round() as u32).max(1);
        let side = |s: u32| s.max(MIN_CANVAS).div_ceil(ALIGN) * ALIGN;
        let (canvas_w, canvas_h) = (side(scaled_w), side(scaled_h));
        // Small images go in the middle of the canvas so a face that fills them has context on all sides.
        let (offset_x, offset_y) = if scaled_w < MIN_CANVAS || scaled_h < MIN_CANVAS {
            ((canvas_w - scaled_w) / 2, (canvas_h - scaled_h) / 2)
        } else {
            (0, 0)
        };
        Letterbox {
            scale,
            offset_x,
            offset_y,
            canvas_w,
            canvas_h,
            scaled_w,
            scaled_h,
        }
    }

    fn to_frame(self, x: f32, y: f32) -> [f32; 2] {
        [
            (x - self.offset_x as f32) / self.scale,
            (y - self.offset_y as f32) / self.scale,
        ]
    }
}

impl Detector {
    /// Read the detector named by the configuration (trust and hash checked) and parse it.
    pub fn load(config: &Config) -> Result<Detector, ModelError> {
        let location = models::detector_location(config);
        let bytes = models::read_verified(&location)?;
        let proto = models::parse_proto(&bytes, &location.path)?;
        let names: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        let mut outputs = [[0usize; 3]; 4];
        for (k, kind) in ["cls", "obj", "bbox", "kps"].iter().enumerate() {
            for (s, stride) in STRIDES.iter().enumerate() {
                let name = format!("{kind}_{stride}");
                outputs[k][s] =
                    names
                        .iter()
                        .position(|n| *n == name)
                        .ok_or_else(|| ModelError::Invalid {
                            path: location.path.clone(),
                            reason: format!("no output '{name}': not a YuNet detector"),
                        })?;
            }
        }
        Ok(Detector {
            proto,
            path: location.path,
            outputs,
            plans: Mutex::new(Vec::new()),
            settings: DetectorSettings::from_config(config),
        })
    }

    /// Build (or reuse) the plan for a canvas size. Planning costs tens of milliseconds, so callers
    /// that know their frame size can warm it up while the camera starts.
    pub fn prepare(&self, canvas_w: u32, canvas_h: u32) -> Result<Plan, DetectError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = plans
            .iter()
            .position(|(size, _)| *size == (canvas_w, canvas_h))
        {
            let entry = plans.remove(pos);
            let plan = entry.1.clone();
            plans.push(entry);
            return Ok(plan);
        }
        let shape = [1, 3, canvas_h as usize, canvas_w as usize];
        let plan = models::plan_proto(&self.proto, &self.path, &shape)
            .map_err(|e| DetectError(e.to_string()))?;
        if plans.len() >= PLAN_CACHE {
            plans.remove(0);
        }
        plans.push(((canvas_w, canvas_h), plan.clone()));
        Ok(plan)
    }

    /// The canvas sizes that have an optimised plan, least recently used first.
    pub fn planned_sizes(&self) -> Vec<(u32, u32)> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans.iter().map(|(size, _)| *size).collect()
    }

    /// Plan the detector for frames of `width` x `height`.
    pub fn prepare_for_frame(&self, width: u32, height: u32) -> Result<Plan, DetectError> {
        let lb = Letterbox::for_frame(width, height, self.settings.max_height);
        self.prepare(lb.canvas_w, lb.canvas_h)
    }

    /// Every face in the image whose score passes the threshold, best first, after NMS.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let (w, h) = image.dimensions();
        let lb = Letterbox::for_frame(w, h, self.settings.max_height);
        let plan = self.prepare(lb.canvas_w, lb.canvas_h)?;
        let input = canvas_tensor(image, &lb)?;
        let outputs = plan
            .run(tvec!(input.into()))
            .map_err(|e| DetectError(format!("{e:#}")))?;
        let mut faces = self.decode(&outputs, &lb)?;
        faces = nms(faces, self.settings.nms_iou);
        let min = self.settings.min_face_size as f32;
        faces.retain(|f| f.bbox[2].min(f.bbox[3]) >= min);
        Ok(faces)
    }

    fn decode(&self, outputs: &[TValue], lb: &Letterbox) -> Result<Vec<Face>, DetectError> {
        let view = |i: usize| -> Result<&[f32], DetectError> {
            outputs
                .get(i)
                .ok_or_else(|| DetectError(format!("missing output {i}")))?
                .to_plain_array_view::<f32>()
                .map_err(|e| DetectError(format!("{e:#}")))?
                .to_slice()
                .ok_or_else(|| DetectError(format!("output {i} is not contiguous")))
        };
        let mut faces = Vec::new();
        for (s, &stride) in STRIDES.iter().enumerate() {
            let cols = lb.canvas_w as usize / stride;
            let rows = lb.canvas_h as usize / stride;
            let n = rows * cols;
            let cls = view(self.outputs[0][s])?;
            let obj = view(self.outputs[1][s])?;
            let bbox = view(self.outputs[2][s])?;
            let kps = view(self.outputs[3][s])?;
            if cls.len() < n || obj.len() < n || bbox.len() < n * 4 || kps.len() < n * 10 {
                return Err(DetectError(format!(
                    "output of stride {stride} has the wrong size"
                )));
            }
            let st = stride as f32;
            for i in 0..n {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score < self.settings.score_threshold {
                    continue;
                }
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                let b = &bbox[i * 4..i * 4 + 4];
                let cx = (c + b[0]) * st;
                let cy = (r + b[1]) * st;
                let bw = b[2].exp() * st;
                let bh = b[3].exp() * st;
                let [x0, y0] = lb.to_frame(cx - bw / 2.0, cy - bh / 2.0);
                let [x1, y1] = lb.to_frame(cx + bw / 2.0, cy + bh / 2.0);
                let k = &kps[i * 10..i * 10 + 10];
                let mut landmarks = [[0.0f32; 2]; 5];
                for (j, lm) in landmarks.iter_mut().enumerate() {
                    *lm = lb.to_frame((k[2 * j] + c) * st, (k[2 * j + 1] + r) * st);
                }
                if [x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
                    faces.push(Face {
                        bbox: [x0, y0, x1 - x0, y1 - y0],
                        landmarks,
                        score,
                    });
                }
            }
        }
        Ok(faces)
    }
}

/// The frame, scaled and placed on the canvas, as YuNet's input: [1, 3, H, W], BGR, 0..255.
fn canvas_tensor(image: &RgbImage, lb: &Letterbox) -> Result<Tensor, DetectError> {
    let scaled;
    let (src_w, src): (usize, &[u8]) = if (lb.scaled_w, lb.scaled_h) != image.dimensions() {
        scaled = downscale(image, lb.scaled_w, lb.scaled_h)?;
        (lb.scaled_w as usize, scaled.buffer())
    } else {
        (image.width() as usize, image.as_raw())
    };
    let (cw, ch) = (lb.canvas_w as usize, lb.canvas_h as usize);
    let plane = cw * ch;
    let mut data = vec![0f32; 3 * plane];
    for (y, row) in src.chunks_exact(src_w * 3).enumerate() {
        let base = (y + lb.offset_y as usize) * cw + lb.offset_x as usize;
        for (x, p) in row.chunks_exact(3).enumerate() {
            let idx = base + x;
            data[idx] = p[2] as f32;
            data[plane + idx] = p[1] as f32;
            data[2 * plane + idx] = p[0] as f32;
        }
    }
    Tensor::from_shape(&[1, 3, ch, cw], &data).map_err(|e| DetectError(format!("{e:#}")))
}

/// Bilinear (tent) downscale with fast_image_resize: SIMD, about four times faster than the image
/// crate's resize on a 640x480 frame.
pub fn downscale(
    image: &RgbImage,
    width: u32,
    height: u32,
) -> Result<fast_image_resize::images::Image<'static>, DetectError> {
    use fast_image_resize::{images, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let err = |e: &dyn std::fmt::Display| DetectError(format!("resize: {e}"));
    let src = images::ImageRef::new(
        image.width(),
        image.height(),
        image.as_raw(),
        PixelType::U8x3,
    )
    .map_err(|e| err(&e))?;
    let mut dst = images::Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| err(&e))?;
    Ok(dst)
}

/// Greedy non-maximum suppression, best score first.
fn nms(mut faces: Vec<Face>, threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for face in faces {
        if kept.iter().all(|k| k.iou(&face) <= threshold) {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_images_are_centred_on_a_padded_canvas() {
        let lb = Letterbox::for_frame(150, 150, 320);
        assert_eq!((lb.canvas_w, lb.canvas_h), (224, 224));
        assert_eq!((lb.offset_x, lb.offset_y), (37, 37));
        assert_eq!(lb.scale, 1.0);
    }

    #[test]
    fn large_frames_are_downscaled_to_max_height() {
        let lb = Letterbox::for_frame(1920, 1080, 320);
        assert_eq!(lb.scaled_h, 320);
        assert_eq!(lb.scaled_w, 569);
        assert_eq!((lb.canvas_w, lb.canvas_h), (576, 320));
        assert_eq!((lb.offset_x, lb.offset_y), (0, 0));
        // A canvas point maps back to frame coordinates.
        assert_eq!(lb.to_frame(160.0, 160.0), [540.0, 540.0]);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let face = |x: f32, score: f32| Face {
            bbox: [x, 0.0, 10.0, 10.0],
            landmarks: [[0.0; 2]; 5],
            score,
        };
        let kept = nms(vec![face(0.0, 0.7), face(1.0, 0.9), face(50.0, 0.8)], 0.3);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].bbox[0], 50.0);
    }
}
