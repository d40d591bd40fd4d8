//! The engine: the loaded models and what they do to one image (detect, align, embed).
//!
//! Loading reads and verifies both model files; the detector and the embedder are loaded on two
//! threads, because a login waits for the slower of the two rather than their sum.

use std::sync::{Arc, Mutex};

use facekey_config::Config;
use image::RgbImage;

use crate::align;
use crate::detect::{DetectError, Detector, Face};
use crate::embed::{EmbedError, Embedder, Embedding};
use crate::models::{self, ModelError, ModelLocation};

/// The two models, ready to run.
pub struct Engine {
    pub detector: Detector,
    pub embedder: Embedder,
}

/// A face found in an image, with its embedding when it could be aligned.
#[derive(Debug, Clone)]
pub struct AnalysedFace {
    pub face: Face,
    pub embedding: Embedding,
}

/// Why an image could not be analysed.
#[derive(thiserror::Error, Debug)]
pub enum AnalyseError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

impl Engine {
    /// Load both models named by the configuration, in parallel.
    pub fn load(config: &Config) -> Result<Engine, ModelError> {
        Engine::load_with_hint(config, || None)
    }

    /// [`Engine::load`], and plan the detector for the frame size `size_hint` gives (it may block
    /// until the frame source knows it) while the embedder is still loading on the other thread.
    pub fn load_with_hint(
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Engine, ModelError> {
        std::thread::scope(|scope| {
            let embedder = scope.spawn(|| Embedder::load(config));
            let detector = Detector::load(config).inspect(|detector| {
                if let Some((width, height)) = size_hint() {
                    // A failure here shows again, with its reason, on the first frame.
                    let _ = detector.prepare_for_frame(width, height);
                }
            });
            let embedder = embedder.join().unwrap_or_else(|_| {
                Err(ModelError::Invalid {
                    path: models::embedder_location(config).path,
                    reason: "the loader thread failed".into(),
                })
            });
            Ok(Engine {
                detector: detector?,
                embedder: embedder?,
            })
        })
    }

    /// Detect every face in `image` and embed each one.
    pub fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError> {
        let faces = self.detector.detect(image)?;
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let Some(chip) = align::align(image, &face) else {
                continue;
            };
            let embedding = self.embedder.embed(&chip)?;
            out.push(AnalysedFace { face, embedding });
        }
        Ok(out)
    }
}

/// Keeps one loaded engine for as long as the configuration names the same model files, so a
/// long-lived process (the PAM module inside a screen locker) loads the models once.
#[derive(Default)]
pub struct EngineCache {
    slot: Mutex<Option<(ModelKey, Arc<Engine>)>>,
}

type ModelKey = (ModelLocation, ModelLocation, facekey_config::Detection);

impl EngineCache {
    pub fn new() -> EngineCache {
        EngineCache::default()
    }

    /// The engine for this configuration, loading it on first use.
    pub fn get(&self, config: &Config) -> Result<Arc<Engine>, ModelError> {
        self.get_with_hint(config, || None)
    }

    /// [`EngineCache::get`]; a first load also plans the detector for the frame size the hint gives
    /// (see [`Engine::load_with_hint`]). A cached engine already holds the plans of earlier frames.
    pub fn get_with_hint(
        &self,
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Arc<Engine>, ModelError> {
        let key = (
            models::detector_location(config),
            models::embedder_location(config),
            config.detection.clone(),
        );
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, engine)) = slot.as_ref() {
            if *k == key {
                return Ok(engine.clone());
            }
        }
        let engine = Arc::new(Engine::load_with_hint(config, size_hint)?);
        *slot = Some((key, engine.clone()));
        Ok(engine)
    }
}
