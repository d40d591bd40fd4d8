//! Face detection with YuNet.
//!
//! A frame is downscaled so its height is at most `detection.max_height` (the cost of detection must
//! not grow with the photo), then placed on a canvas whose sides are multiples of 32, as YuNet needs.
//! Small images (a 150x150 face chip, where the face fills the picture) are padded onto a larger
//! canvas so the detector sees the whole face with some context. Boxes and landmarks come back in the
//! coordinates of the original frame.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use facekey_config::Config;
use image::RgbImage;
use tract_onnx::pb::{type_proto, ModelProto, NodeProto, TensorProto, TypeProto};
use tract_onnx::prelude::*;

use crate::models::{self, ModelError, Plan, VerifiedModel};

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

/// The frame with its luma range stretched to the full 0-255 (the darkest and brightest 1% of pixels clipped),
/// the same gain applied to every channel; `None` when the range already spans at least 200 levels (nothing to
/// gain). A washed-out or murky grey frame gets the contrast a face detector was trained on.
pub fn stretch_contrast(image: &RgbImage) -> Option<RgbImage> {
    let mut histogram = [0u32; 256];
    for p in image.pixels() {
        histogram[usize::from(crate::frame::luma(p.0))] += 1;
    }
    let total: u32 = histogram.iter().sum();
    let clip = total / 100;
    let level = |order: &mut dyn Iterator<Item = usize>| {
        let mut seen = 0;
        for i in order {
            seen += histogram[i];
            if seen > clip {
                return i as f32;
            }
        }
        0.0
    };
    let low = level(&mut (0..256));
    let high = level(&mut (0..256).rev());
    if high - low >= 200.0 || high <= low {
        return None;
    }
    let gain = 255.0 / (high - low);
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = ((f32::from(*c) - low) * gain).round().clamp(0.0, 255.0) as u8;
        }
    }
    Some(out)
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
/// YuNet's heads, in the order of `Detector::outputs`: name prefix and channel count. An output is
/// named `{prefix}_{stride}` and holds, per anchor, a class logit, an objectness logit, a box
/// (centre offset and log size, in strides) or five landmarks (offsets, in strides).
const HEADS: [(&str, usize); 4] = [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)];
/// ONNX TensorProto data type of f32.
const ONNX_FLOAT: i32 = 1;
/// A first look whose best candidate scores at least this (but under the threshold) earns a second look.
/// Measured (docs/accuracy.md): every ORL face pasted into a frame, under every light, scores at least 0.5 at
/// the first look.
pub const SECOND_LOOK_SCORE: f32 = 0.5;
/// The second look searches the frame at up to this many times `max_height` rows (a 640x480 frame at its
/// full 480 rows under the default 320).
pub const SECOND_LOOK_SCALE: u32 = 2;
/// How many input shapes keep an optimised plan (a camera uses one; photos of many sizes use more).
const PLAN_CACHE: usize = 4;

/// Detection settings taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    pub max_height: u32,
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub min_face_size: u32,
    pub second_look: bool,
}

impl DetectorSettings {
    pub fn from_config(config: &Config) -> Self {
        let d = &config.detection;
        DetectorSettings {
            max_height: d.max_height,
            score_threshold: d.score_threshold,
            nms_iou: d.nms_iou,
            min_face_size: d.min_face_size,
            second_look: d.second_look,
        }
    }
}

/// The YuNet detector, with optimised plans cached per input shape.
pub struct Detector {
    proto: ModelProto,
    path: PathBuf,
    /// Index of each head output (cls, obj, bbox, kps) x stride in the model's output list. Each is
    /// the head convolution's raw NCHW output, [1, C, H / stride, W / stride] (see `cut_heads`).
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
    /// Read the detector named by the configuration (trust and hash checked), parse it, and cut its
    /// output post-processing off the graph (`cut_heads`).
    pub fn load(config: &Config) -> Result<Detector, ModelError> {
        Detector::from_file(
            VerifiedModel::read(models::ActiveModels::resolve(config)?.detector.location())?,
            config,
        )
    }

    /// [`Detector::load`] from a file already read and verified (opens no file).
    pub fn from_file(model: VerifiedModel, config: &Config) -> Result<Detector, ModelError> {
        let (location, bytes) = model.into_parts();
        let mut proto = models::parse_proto(&bytes, &location.path)?;
        let outputs = cut_heads(&mut proto).map_err(|reason| ModelError::Invalid {
            path: location.path.clone(),
            reason: format!("not a YuNet detector: {reason}"),
        })?;
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

    /// The graph each canvas size is planned from (heads already cut off).
    pub fn graph(&self) -> &ModelProto {
        &self.proto
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
    ///
    /// The first look is at `max_height` rows. When it finds no face above the threshold but a candidate
    /// scoring at least [`SECOND_LOOK_SCORE`] (a blurred, washed-out or small grey face: YuNet's scores for those
    /// sit at 0.8-0.9), and `second_look` is on, the frame is searched again at up to [`SECOND_LOOK_SCALE`]
    /// times `max_height` rows, then, if still nothing passes, once more with its contrast stretched
    /// ([`stretch_contrast`]). Every look keeps the same threshold: the second look finds faces the first one
    /// was unsure of, never with a lower bar.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let s = self.settings;
        let (sure, best_unsure) = self.look(image, s.max_height)?;
        if !sure.is_empty() || best_unsure < SECOND_LOOK_SCORE || !s.second_look {
            return Ok(sure);
        }
        let height = image
            .height()
            .min(s.max_height.saturating_mul(SECOND_LOOK_SCALE));
        if height > s.max_height {
            let (second, _) = self.look(image, height)?;
            if !second.is_empty() {
                return Ok(second);
            }
        }
        match stretch_contrast(image) {
            Some(stretched) => Ok(self.look(&stretched, height.max(s.max_height))?.0),
            None => Ok(Vec::new()),
        }
    }

    /// One look with the frame scaled to at most `max_height` rows: the faces scoring at least the threshold,
    /// and the best score under it (0 when none), which says whether a second look is worth it. Only faces that
    /// pass are decoded and go through NMS: a busy scene's many weak anchors cost one comparison each.
    fn look(&self, image: &RgbImage, max_height: u32) -> Result<(Vec<Face>, f32), DetectError> {
        let (w, h) = image.dimensions();
        let lb = Letterbox::for_frame(w, h, max_height);
        let plan = self.prepare(lb.canvas_w, lb.canvas_h)?;
        let input = canvas_tensor(image, &lb)?;
        let outputs = plan
            .run(tvec!(input.into()))
            .map_err(|e| DetectError(format!("{e:#}")))?;
        let (mut faces, best_unsure) = self.decode(&outputs, &lb)?;
        faces = nms(faces, self.settings.nms_iou);
        let min = self.settings.min_face_size as f32;
        faces.retain(|f| f.bbox[2].min(f.bbox[3]) >= min);
        Ok((faces, best_unsure))
    }

    /// Faces from the raw head outputs. Scores come from cls and obj alone; the box and landmarks
    /// are read only for the few anchors whose score passes the threshold.
    fn decode(&self, outputs: &[TValue], lb: &Letterbox) -> Result<(Vec<Face>, f32), DetectError> {
        let threshold = self.settings.score_threshold;
        let mut best_unsure = 0.0f32;
        let mut faces = Vec::new();
        for (s, &stride) in STRIDES.iter().enumerate() {
            let cols = lb.canvas_w as usize / stride;
            let rows = lb.canvas_h as usize / stride;
            let n = rows * cols;
            // Channel k of the anchor at row r, column c (i = r * cols + c) is at k * n + i.
            let head = |k: usize| -> Result<&[f32], DetectError> {
                let (kind, channels) = HEADS[k];
                let i = self.outputs[k][s];
                let tensor = outputs
                    .get(i)
                    .ok_or_else(|| DetectError(format!("missing output {i}")))?;
                if tensor.shape() != [1, channels, rows, cols] {
                    return Err(DetectError(format!(
                        "output {kind}_{stride} is {:?}, not [1, {channels}, {rows}, {cols}]",
                        tensor.shape()
                    )));
                }
                tensor
                    .to_plain_array_view::<f32>()
                    .map_err(|e| DetectError(format!("{e:#}")))?
                    .to_slice()
                    .ok_or_else(|| DetectError(format!("output {kind}_{stride} is not contiguous")))
            };
            let (cls, obj, bbox, kps) = (head(0)?, head(1)?, head(2)?, head(3)?);
            let st = stride as f32;
            for i in 0..n {
                let score =
                    (sigmoid(cls[i]).clamp(0.0, 1.0) * sigmoid(obj[i]).clamp(0.0, 1.0)).sqrt();
                if score < threshold {
                    best_unsure = best_unsure.max(score);
                    continue;
                }
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                let b = |k: usize| bbox[k * n + i];
                let cx = (c + b(0)) * st;
                let cy = (r + b(1)) * st;
                let bw = b(2).exp() * st;
                let bh = b(3).exp() * st;
                let [x0, y0] = lb.to_frame(cx - bw / 2.0, cy - bh / 2.0);
                let [x1, y1] = lb.to_frame(cx + bw / 2.0, cy + bh / 2.0);
                let k = |k: usize| kps[k * n + i];
                let mut landmarks = [[0.0f32; 2]; 5];
                for (j, lm) in landmarks.iter_mut().enumerate() {
                    *lm = lb.to_frame((k(2 * j) + c) * st, (k(2 * j + 1) + r) * st);
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
        Ok((faces, best_unsure))
    }
}

/// The logistic function, which the graph applied to the cls and obj logits before `cut_heads`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Make the head convolutions the graph's outputs.
///
/// YuNet ends each of its 12 heads (cls, obj, bbox, kps at strides 8, 16, 32) with
/// Conv -> Transpose (NCHW to NHWC) -> Reshape ([1, anchors, C]), and a Sigmoid for cls and obj.
/// Those nodes only reorder values and squash scores: `decode` can as well read the NCHW values in
/// place and apply the sigmoid itself. In the graph, tract pays for them at every plan (several
/// rewrite patches each: 5-6 ms of a 448x320 plan when measured, on every login) and runs them
/// on every frame (3-5% of a detection). So each head's Conv now writes the graph output itself,
/// raw NCHW, under the output's name (`cls_8` ... `kps_32`), and the nodes after it, with the
/// constants only they read, are removed. Returns where each head (kind x stride) is in the output
/// list.
///
/// Each head is found by walking back from its named output, so a graph of another shape is
/// refused with the reason rather than decoded wrongly.
fn cut_heads(proto: &mut ModelProto) -> Result<[[usize; 3]; 4], String> {
    let graph = proto.graph.as_mut().ok_or("the file holds no graph")?;
    let producers: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for input in graph.node.iter().flat_map(|n| n.input.iter()) {
        *readers.entry(input.as_str()).or_default() += 1;
    }
    let graph_outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut outputs = [[0usize; 3]; 4];
    let mut cut = vec![false; graph.node.len()];
    // (head Conv, output name) of each head.
    let mut heads: Vec<(usize, String)> = Vec::with_capacity(12);
    for (k, &(kind, channels)) in HEADS.iter().enumerate() {
        for (s, stride) in STRIDES.iter().enumerate() {
            let name = format!("{kind}_{stride}");
            outputs[k][s] = graph
                .output
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| format!("no output '{name}'"))?;
            // What computes the output, from the output back to the head's Conv.
            let chain: &[&str] = if channels == 1 {
                &["Sigmoid", "Reshape", "Transpose"]
            } else {
                &["Reshape", "Transpose"]
            };
            let mut tensor = name.as_str();
            for &op in chain.iter().chain(&["Conv"]) {
                let i = *producers
                    .get(tensor)
                    .filter(|&&i| graph.node[i].op_type == op)
                    .ok_or_else(|| {
                        format!("'{name}' is not computed by Conv -> {}", chain_text(chain))
                    })?;
                // Everything from the Conv on must serve this output alone: the output itself is
                // read by no node, each tensor before it only by the next node of the chain.
                let sole_use = if tensor == name {
                    !readers.contains_key(tensor)
                } else {
                    readers.get(tensor) == Some(&1) && !graph_outputs.contains(tensor)
                };
                if !sole_use {
                    return Err(format!("'{tensor}' (of '{name}') is also used elsewhere"));
                }
                let node = &graph.node[i];
                if op == "Conv" {
                    check_head_conv(node, channels, &graph.initializer)
                        .map_err(|e| format!("'{name}': {e}"))?;
                    heads.push((i, name.clone()));
                    break;
                }
                if op == "Transpose" && !is_nchw_to_nhwc(node) {
                    return Err(format!(
                        "'{name}': Transpose '{}' is not NCHW to NHWC",
                        node.name
                    ));
                }
                cut[i] = true;
                tensor = node.input.first().map(String::as_str).unwrap_or_default();
            }
        }
    }

    for (conv, name) in heads {
        graph.node[conv].output[0] = name;
    }
    // Keep what the outputs still need, dropping with the cut nodes whatever only they read (the
    // Reshape shapes, any Shape or Constant nodes before them): one pass from the outputs back, as
    // ONNX lists nodes in topological order.
    let mut live: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if !cut[i] && node.output.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(node.input.iter().cloned());
        }
    }
    let mut keep = keep.into_iter();
    graph.node.retain(|_| keep.next() == Some(true));
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !live.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    // Older exporters also list initialisers as graph inputs.
    graph.input.retain(|i| !dropped.contains(&i.name));
    graph.value_info.retain(|v| live.contains(&v.name));
    // The outputs' declared [1, anchors, C] shapes no longer hold: declare f32 of any shape (tract
    // infers the NCHW shapes from the convolutions).
    for output in &mut graph.output {
        output.r#type = Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: ONNX_FLOAT,
                shape: None,
            })),
            ..Default::default()
        });
    }
    Ok(outputs)
}

/// "Transpose -> Reshape -> Sigmoid", from the walk-back order.
fn chain_text(chain: &[&str]) -> String {
    chain.iter().rev().copied().collect::<Vec<_>>().join(" -> ")
}

/// Whether a Transpose turns NCHW into NHWC (the layout `decode` would otherwise have read).
fn is_nchw_to_nhwc(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|a| a.name == "perm" && a.ints == [0, 2, 3, 1])
}

/// A head Conv must have a constant weight with `channels` output channels: that is what `decode`
/// indexes by.
fn check_head_conv(
    node: &NodeProto,
    channels: usize,
    initializers: &[TensorProto],
) -> Result<(), String> {
    let weight = node
        .input
        .get(1)
        .and_then(|w| initializers.iter().find(|t| t.name == *w))
        .ok_or_else(|| format!("Conv '{}' has no constant weight", node.name))?;
    match weight.dims.first() {
        Some(&c) if c == channels as i64 => Ok(()),
        other => Err(format!(
            "Conv '{}' has {} output channels, expected {channels}",
            node.name,
            other.map_or("no".into(), |c| c.to_string())
        )),
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

    /// The shipped detector, parsed.
    fn yunet() -> ModelProto {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(models::DETECTOR.file_name);
        models::parse_proto(&std::fs::read(&path).unwrap(), &path).unwrap()
    }

    #[test]
    fn head_convolutions_become_the_outputs() {
        let mut proto = yunet();
        let outputs = cut_heads(&mut proto).unwrap();
        let graph = proto.graph.unwrap();
        // 106 nodes less 12 Transposes, 12 Reshapes and 6 Sigmoids; 112 initialisers less the 3
        // Reshape shapes.
        assert_eq!(graph.node.len(), 76);
        assert_eq!(graph.initializer.len(), 109);
        assert_eq!(graph.output.len(), 12);
        for (k, (kind, _)) in HEADS.iter().enumerate() {
            for (s, stride) in STRIDES.iter().enumerate() {
                let name = format!("{kind}_{stride}");
                assert_eq!(graph.output[outputs[k][s]].name, name);
                let producers: Vec<_> = graph
                    .node
                    .iter()
                    .filter(|n| n.output.contains(&name))
                    .collect();
                assert_eq!(producers.len(), 1, "{name}");
                assert_eq!(producers[0].op_type, "Conv", "{name}");
            }
        }
    }

    #[test]
    fn a_graph_of_another_shape_is_refused() {
        // A head whose Transpose does something else.
        let mut proto = yunet();
        let graph = proto.graph.as_mut().unwrap();
        let transpose = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "Transpose")
            .unwrap();
        transpose.attribute[0].ints = vec![0, 3, 1, 2];
        let err = cut_heads(&mut proto).unwrap_err();
        assert!(err.contains("is not NCHW to NHWC"), "{err}");

        // A score without its Sigmoid.
        let mut proto = yunet();
        let graph = proto.graph.as_mut().unwrap();
        graph.node.retain(|n| n.output != ["obj_16"]);
        let reshape = graph.node.iter_mut().find(|n| n.output == ["339"]).unwrap();
        reshape.output = vec!["obj_16".into()];
        let err = cut_heads(&mut proto).unwrap_err();
        assert!(
            err.contains("'obj_16' is not computed by Conv -> Transpose -> Reshape -> Sigmoid"),
            "{err}"
        );

        // An intermediate value something else reads too.
        let mut proto = yunet();
        let graph = proto.graph.as_mut().unwrap();
        let relu = NodeProto {
            op_type: "Relu".into(),
            input: vec!["353".into()],
            output: vec!["extra".into()],
            ..Default::default()
        };
        graph.node.push(relu);
        let err = cut_heads(&mut proto).unwrap_err();
        assert!(
            err.contains("'353' (of 'bbox_8') is also used elsewhere"),
            "{err}"
        );
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
