//! Embedding: an aligned 150x150 chip to a 128-d vector with the dlib ResNet metric network.
//!
//! Two chips of the same person land close together (Euclidean distance), two people far apart.
//! The model file is read through the trust and hash checks in `models`; the int8 file is folded
//! to fp32 weights there.

use facekey_config::Config;
use image::RgbImage;
use tract_onnx::prelude::*;

use crate::align::CHIP_SIZE;
use crate::models::{self, ModelError, ModelLocation, Plan, VerifiedModel};
use crate::store::EmbedderId;

/// Length of a dlib ResNet embedding.
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
}

impl Embedder {
    /// Read the embedder the configuration names (trust and hash checked) and plan it.
    pub fn load(config: &Config) -> Result<Embedder, ModelError> {
        Embedder::from_file(VerifiedModel::read(models::embedder_location(config))?)
    }

    /// Plan the embedder from a file already read and verified (opens no file).
    pub fn from_file(model: VerifiedModel) -> Result<Embedder, ModelError> {
        let (location, bytes) = model.into_parts();
        let shape = [1, 3, CHIP_SIZE as usize, CHIP_SIZE as usize];
        let plan = models::build_plan(bytes, &location.path, &shape)?;
        Ok(Embedder {
            plan,
            id: Embedder::id_for(&location),
        })
    }

    /// What enrolments made with the embedder at `location` record (its pinned hash).
    pub fn id_for(location: &ModelLocation) -> EmbedderId {
        EmbedderId {
            sha256: location.sha256.clone(),
            dimension: DIMENSION,
        }
    }

    /// What enrolments made with this embedder record, so another model's are refused.
    pub fn id(&self) -> &EmbedderId {
        &self.id
    }

    /// Embed one aligned chip.
    pub fn embed(&self, chip: &RgbImage) -> Result<Embedding, EmbedError> {
        if chip.dimensions() != (CHIP_SIZE, CHIP_SIZE) {
            return Err(EmbedError(format!(
                "chip is {:?}, expected 150x150",
                chip.dimensions()
            )));
        }
        let side = CHIP_SIZE as usize;
        let plane = side * side;
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in chip.pixels().enumerate() {
            data[i] = p.0[0] as f32;
            data[plane + i] = p.0[1] as f32;
            data[2 * plane + i] = p.0[2] as f32;
        }
        let input = Tensor::from_shape(&[1, 3, side, side], &data)
            .map_err(|e| EmbedError(format!("{e:#}")))?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| EmbedError(format!("{e:#}")))?;
        let values = out
            .first()
            .ok_or_else(|| EmbedError("the model gave no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(|e| EmbedError(format!("{e:#}")))?
            .to_slice()
            .ok_or_else(|| EmbedError("the output is not contiguous".into()))?
            .to_vec();
        if values.len() != DIMENSION || values.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError(format!(
                "the model gave {} values, not {DIMENSION} finite ones",
                values.len()
            )));
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
