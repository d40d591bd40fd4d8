//! The engine: the loaded models and what they do to one image (detect, align, embed).
//!
//! Loading reads and verifies both model files. The embedder loads on its own thread while the
//! detector loads (and is planned for the camera's frame size) on the caller's: a login waits for
//! the slower of the two rather than their sum. [`Engine::start`] returns as soon as the detector
//! is ready, so the first frame is searched for a face while the embedder is still being planned;
//! the embedder is waited for only when a face needs embedding.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use facekey_config::Config;
use image::RgbImage;

use crate::align;
use crate::detect::{DetectError, Detector, Face};
use crate::embed::{EmbedError, Embedder, Embedding};
use crate::models::{self, ModelError, ModelLocation};
use crate::store::EmbedderId;

/// The two models: the detector ready to run, the embedder ready or still loading.
pub struct Engine {
    pub detector: Detector,
    embedder: PendingEmbedder,
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
    /// The embedder could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl Engine {
    /// Load both models named by the configuration (in parallel) and wait for both.
    pub fn load(config: &Config) -> Result<Engine, ModelError> {
        let engine = Engine::start(config, || None)?;
        engine.embedder()?;
        Ok(engine)
    }

    /// Start loading the embedder on its own thread, load the detector on this one and plan it for
    /// the frame size `size_hint` gives (it may block until the frame source knows it), and return
    /// once the detector is ready. [`Engine::embedder`] waits for the embedder.
    pub fn start(
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Engine, ModelError> {
        let embedder = PendingEmbedder::start(config);
        let detector = Detector::load(config)?;
        if let Some((width, height)) = size_hint() {
            // A failure here shows again, with its reason, on the first frame.
            let _ = detector.prepare_for_frame(width, height);
        }
        // On an error above the embedder's thread is left to finish on its own: it holds only
        // its own copy of the configuration, and waiting for it would only delay the answer.
        Ok(Engine { detector, embedder })
    }

    /// The embedder, waiting for it to finish loading; its loading error if it failed.
    pub fn embedder(&self) -> Result<&Embedder, ModelError> {
        self.embedder.get()
    }

    /// Which embedder this engine runs (known before it has loaded: the configured file's hash).
    pub fn embedder_id(&self) -> &EmbedderId {
        &self.embedder.id
    }

    /// Detect every face in `image` and embed each one.
    pub fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError> {
        let faces = self.detector.detect(image)?;
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = self.embedder()?;
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let Some(chip) = align::align(image, &face) else {
                continue;
            };
            let embedding = embedder.embed(&chip)?;
            out.push(AnalysedFace { face, embedding });
        }
        Ok(out)
    }
}

/// The embedder, loading on its own thread until first asked for.
struct PendingEmbedder {
    id: EmbedderId,
    path: std::path::PathBuf,
    loader: Mutex<Option<JoinHandle<Result<Embedder, ModelError>>>>,
    /// The loaded embedder, or why it could not be loaded (told to every caller that asks).
    done: OnceLock<Result<Embedder, Arc<ModelError>>>,
}

impl PendingEmbedder {
    fn start(config: &Config) -> PendingEmbedder {
        let location = models::embedder_location(config);
        let pending = PendingEmbedder {
            id: Embedder::id_for(&location),
            path: location.path,
            loader: Mutex::new(None),
            done: OnceLock::new(),
        };
        let owned = config.clone();
        let spawned = std::thread::Builder::new()
            .name("facekey-embedder".into())
            .spawn(move || Embedder::load(&owned));
        match spawned {
            Ok(handle) => *lock(&pending.loader) = Some(handle),
            // No thread to be had: load here, one model after the other.
            Err(_) => {
                let _ = pending.done.set(Embedder::load(config).map_err(Arc::new));
            }
        }
        pending
    }

    fn get(&self) -> Result<&Embedder, ModelError> {
        // A second caller blocks in `get_or_init` until the first has joined the loader.
        let done = self.done.get_or_init(|| {
            let invalid = |reason: &str| ModelError::Invalid {
                path: self.path.clone(),
                reason: reason.into(),
            };
            let result = match lock(&self.loader).take() {
                Some(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(invalid("the loader thread failed"))),
                None => Err(invalid("the embedder loader is gone")),
            };
            result.map_err(Arc::new)
        });
        done.as_ref().map_err(|e| ModelError::Shared(e.clone()))
    }

    /// Whether loading finished with an error (a cache must not keep such an engine).
    fn failed(&self) -> bool {
        matches!(self.done.get(), Some(Err(_)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    /// (see [`Engine::start`]). A cached engine already holds the plans of earlier frames.
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
        let mut slot = lock(&self.slot);
        if let Some((k, engine)) = slot.as_ref() {
            // An engine whose embedder failed to load is loaded again (the file may be fixed).
            if *k == key && !engine.embedder.failed() {
                return Ok(engine.clone());
            }
        }
        let engine = Arc::new(Engine::start(config, size_hint)?);
        *slot = Some((key, engine.clone()));
        Ok(engine)
    }
}
