//! Embedding: an aligned chip to a vector with a metric network (the shipped one: dlib's ResNet, 150x150 chips,
//! 128-d).
//!
//! Two chips of the same person land close together (Euclidean distance), two people far apart. How the chip is
//! fed in (size, channel order, normalisation) and how embeddings compare (raw or scaled to unit length) is the
//! embedder's [`EmbedderMeta`]. The model file is read through the trust and hash checks in `models`; the int8
//! file is folded to fp32 weights there.

use facekey_config::Config;
use image::RgbImage;
use tract_onnx::prelude::*;

use crate::models::catalogue::{ChannelOrder, Metric};
use crate::models::{self, ActiveModels, EmbedderMeta, ModelError, Plan, VerifiedModel};
use crate::store::EmbedderId;

/// Length of a dlib ResNet embedding (the shipped embedder's).
pub const DIMENSION: usize = 128;

/// A face embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Euclidean distance; `f32::INFINITY` when the lengths differ (never a match).
    pub fn distance(&self, other: &[f32]) -> f32 {
        distance(&self.0, other)
    }
}

/// Euclidean distance between two embeddings; `f32::INFINITY` when the lengths differ (never a match).
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Why an embedding could not be computed.
#[derive(thiserror::Error, Debug)]
#[error("face embedding failed: {0}")]
pub struct EmbedError(String);

/// The embedder, planned for its one input shape.
pub struct Embedder {
    plan: Plan,
    id: EmbedderId,
    meta: EmbedderMeta,
}

impl Embedder {
    /// Read the embedder the configuration makes active (trust and hash checked) and plan it.
    pub fn load(config: &Config) -> Result<Embedder, ModelError> {
        let active = ActiveModels::resolve(config)?;
        let model = VerifiedModel::read(active.embedder.location())?;
        Embedder::from_file(model, active.embedder.embedder_id(), active.embedder.meta())
    }

    /// Plan the embedder from a file already read and verified (opens no file).
    pub fn from_file(
        model: VerifiedModel,
        id: EmbedderId,
        meta: EmbedderMeta,
    ) -> Result<Embedder, ModelError> {
        let (location, bytes) = model.into_parts();
        let side = meta.chip_size as usize;
        let plan = models::build_plan(bytes, &location.path, &[1, 3, side, side])?;
        Ok(Embedder { plan, id, meta })
    }

    /// What enrolments made with this embedder record, so another model's are refused.
    pub fn id(&self) -> &EmbedderId {
        &self.id
    }

    /// How chips are cut and fed, and how embeddings compare.
    pub fn meta(&self) -> &EmbedderMeta {
        &self.meta
    }

    /// Embed one aligned chip.
    pub fn embed(&self, chip: &RgbImage) -> Result<Embedding, EmbedError> {
        let meta = &self.meta;
        let side = meta.chip_size;
        if chip.dimensions() != (side, side) {
            return Err(EmbedError(format!(
                "chip is {:?}, expected {side}x{side}",
                chip.dimensions()
            )));
        }
        let side = side as usize;
        let plane = side * side;
        let planes = match meta.order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in chip.pixels().enumerate() {
            for (c, &source) in planes.iter().enumerate() {
                data[c * plane + i] = (p.0[source] as f32 - meta.mean[c]) * meta.scale;
            }
        }
        let input = Tensor::from_shape(&[1, 3, side, side], &data)
            .map_err(|e| EmbedError(format!("{e:#}")))?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| EmbedError(format!("{e:#}")))?;
        let mut values = out
            .first()
            .ok_or_else(|| EmbedError("the model gave no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(|e| EmbedError(format!("{e:#}")))?
            .to_slice()
            .ok_or_else(|| EmbedError("the output is not contiguous".into()))?
            .to_vec();
        if values.len() != meta.dimension || values.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError(format!(
                "the model gave {} values, not {} finite ones",
                values.len(),
                meta.dimension
            )));
        }
        if meta.metric == Metric::Cosine {
            let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(EmbedError("the model gave an embedding of length 0".into()));
            }
            values.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(Embedding(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_euclidean_and_refuses_other_lengths() {
        let e = Embedding(vec![0.0, 3.0]);
        assert_eq!(e.distance(&[4.0, 0.0]), 5.0);
        assert_eq!(e.distance(&[1.0]), f32::INFINITY);
    }
}
