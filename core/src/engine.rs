//! The engine: the loaded models and what they do to one image (detect, align, embed).
//!
//! Loading first reads and verifies both model files ([`ModelFiles::read`]), then builds the models
//! from those bytes ([`Engine::start_from`], which opens no file: a confined process reads, confines
//! itself, then builds). The embedder is built on its own thread while the detector is parsed (and
//! planned for the camera's frame size) on the caller's: a login waits for the slower of the two
//! rather than their sum. [`Engine::start`] returns as soon as the detector is ready, so the first
//! frame is searched for a face while the embedder is still being planned; the embedder is waited
//! for only when a face needs embedding.
//!
//! The [`EngineCache`] lock is held only to look an engine up or to store one: never while models
//! load nor while anything waits for a frame source, so one stalled attempt in a long-lived process
//! cannot hold up the next.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use facekey_config::Config;
use image::RgbImage;

use crate::align;
use crate::detect::{DetectError, Detector, Face};
use crate::embed::{EmbedError, Embedder, Embedding};
use crate::models::{ActiveModels, EmbedderMeta, ModelError, ModelFiles, VerifiedModel};
use crate::store::EmbedderId;

/// The two models: the detector ready to run, the embedder ready or still loading.
pub struct Engine {
    pub detector: Detector,
    embedder: PendingEmbedder,
    /// The active models this engine was built from (names, files, hashes, the embedder's metadata).
    active: ActiveModels,
    /// The embedder's alignment template on its chip, and the chip's side.
    template: ([[f32; 2]; 5], u32),
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

    /// Read and verify both model files, then [`Engine::start_from`] them.
    pub fn start(
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Engine, ModelError> {
        let active = ActiveModels::resolve(config)?;
        Engine::start_from(ModelFiles::read_active(&active)?, config, size_hint)
    }

    /// Start building the embedder on its own thread, parse the detector on this one and plan it
    /// for the frame size `size_hint` gives (it may block until the frame source knows it: bound
    /// that wait by the attempt's deadline), and return once the detector is ready.
    /// [`Engine::embedder`] waits for the embedder. Opens no file: `files` holds the verified bytes.
    pub fn start_from(
        files: ModelFiles,
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Engine, ModelError> {
        let ModelFiles {
            detector,
            embedder,
            active,
        } = files;
        let meta = active.embedder.meta();
        let template = (meta.template.points_for(meta.chip_size), meta.chip_size);
        let embedder = PendingEmbedder::start(embedder, active.embedder.embedder_id(), meta);
        // On an error here the embedder's thread is left to finish on its own: it holds only its
        // own bytes, and waiting for it would only delay the answer.
        let detector = Detector::from_file(detector, config)?;
        let engine = Engine {
            detector,
            embedder,
            active,
            template,
        };
        engine.plan_for(size_hint());
        Ok(engine)
    }

    /// Plan the detector for frames of this size ahead of the first one.
    fn plan_for(&self, size: Option<(u32, u32)>) {
        if let Some((width, height)) = size {
            // A failure here shows again, with its reason, on the first frame.
            let _ = self.detector.prepare_for_frame(width, height);
        }
    }

    /// The embedder, waiting for it to finish loading; its loading error if it failed.
    pub fn embedder(&self) -> Result<&Embedder, ModelError> {
        self.embedder.get()
    }

    /// Which embedder this engine runs (known before it has loaded: the catalogue's identity of it).
    pub fn embedder_id(&self) -> &EmbedderId {
        &self.embedder.id
    }

    /// The active models this engine runs.
    pub fn active(&self) -> &ActiveModels {
        &self.active
    }

    /// Detect every face in `image` and embed each one.
    pub fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError> {
        let mut faces = self.detector.detect(image)?;
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        // At most MAX_FACES_PER_FRAME faces, the largest: the person logging in is the one nearest the camera,
        // and a sheet of many printed faces must not buy many comparisons per frame.
        faces.sort_by(|a, b| (b.bbox[2] * b.bbox[3]).total_cmp(&(a.bbox[2] * a.bbox[3])));
        faces.truncate(MAX_FACES_PER_FRAME);
        let embedder = self.embedder()?;
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let Some(chip) = align::align_to(image, &face, &self.template.0, self.template.1)
            else {
                continue;
            };
            let embedding = embedder.embed(&chip)?;
            out.push(AnalysedFace { face, embedding });
        }
        Ok(out)
    }
}

/// The most faces of one frame that are embedded and compared (the largest ones). Howdy compares every face;
/// a photo sheet of a hundred faces would then be a hundred chances per frame.
pub const MAX_FACES_PER_FRAME: usize = 3;

/// What a decision needs of an engine: every face in an image, embedded. [`Engine`] is the one the product
/// runs; an evaluation tool may answer from analyses it made earlier of the same images.
pub trait Analyser {
    /// Detect every face in `image` and embed each one.
    fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError>;
    /// The embedder's loading error, if it failed (reported even when no face came to need it).
    fn embedder_ready(&self) -> Result<(), ModelError>;
    /// The embedder's calibrated threshold (used unless `[matching] threshold` is set: [`crate::rule::threshold`]).
    fn calibrated_threshold(&self) -> f32;
}

impl Analyser for Engine {
    fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError> {
        Engine::analyse(self, image)
    }

    fn embedder_ready(&self) -> Result<(), ModelError> {
        self.embedder().map(|_| ())
    }

    fn calibrated_threshold(&self) -> f32 {
        self.active.embedder.meta().threshold
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
    fn start(model: VerifiedModel, id: EmbedderId, meta: EmbedderMeta) -> PendingEmbedder {
        let pending = PendingEmbedder {
            id: id.clone(),
            path: model.location.path.clone(),
            loader: Mutex::new(None),
            done: OnceLock::new(),
        };
        // Shared so the bytes can be taken back when no thread can be started.
        let model = Arc::new(Mutex::new(Some(model)));
        let for_thread = model.clone();
        let (thread_id, thread_meta) = (id.clone(), meta.clone());
        let spawned = std::thread::Builder::new()
            .name("facekey-embedder".into())
            .spawn(move || match lock(&for_thread).take() {
                Some(model) => Embedder::from_file(model, thread_id, thread_meta),
                None => Err(ModelError::Invalid {
                    path: "embedder".into(),
                    reason: "the model was taken by another loader".into(),
                }),
            });
        match spawned {
            Ok(handle) => *lock(&pending.loader) = Some(handle),
            // No thread to be had: build it here, one model after the other.
            Err(_) => {
                let result = match lock(&model).take() {
                    Some(model) => Embedder::from_file(model, id, meta),
                    None => Err(ModelError::Invalid {
                        path: pending.path.clone(),
                        reason: "the model was taken by another loader".into(),
                    }),
                };
                let _ = pending.done.set(result.map_err(Arc::new));
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
///
/// The lock is held only to look the engine up and to store a new one. Models are read, parsed and
/// planned with no lock held, so an attempt whose frame source stalls (the size hint waits for it)
/// or whose disk is slow never blocks another attempt; two attempts that both find the cache empty
/// both load, and the later engine is kept.
#[derive(Default)]
pub struct EngineCache {
    slot: Mutex<Option<(ModelKey, Arc<Engine>)>>,
}

type ModelKey = (ActiveModels, facekey_config::Detection);

impl EngineCache {
    pub fn new() -> EngineCache {
        EngineCache::default()
    }

    /// The engine for this configuration, loading it on first use.
    pub fn get(&self, config: &Config) -> Result<Arc<Engine>, ModelError> {
        self.get_with_hint(config, || None)
    }

    /// [`EngineCache::get`]; a first load also plans the detector for the frame size the hint gives
    /// (see [`Engine::start`]), after the engine is stored, so a hint that waits holds nothing up.
    /// A cached engine already holds the plans of earlier frames: the hint is not asked.
    pub fn get_with_hint(
        &self,
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Arc<Engine>, ModelError> {
        let active = ActiveModels::resolve(config)?;
        let key = (active, config.detection.clone());
        if let Some(engine) = self.cached(&key) {
            return Ok(engine);
        }
        self.load(
            key.clone(),
            ModelFiles::read_active(&key.0)?,
            config,
            size_hint,
        )
    }

    /// [`EngineCache::get_with_hint`] for model files already read and verified: opens no file
    /// (for a process that reads first and confines itself before parsing).
    pub fn get_from(
        &self,
        files: ModelFiles,
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Arc<Engine>, ModelError> {
        let key = (files.active.clone(), config.detection.clone());
        if let Some(engine) = self.cached(&key) {
            return Ok(engine);
        }
        self.load(key, files, config, size_hint)
    }

    /// The stored engine for `key`, unless its embedder failed to load (the file may be fixed).
    fn cached(&self, key: &ModelKey) -> Option<Arc<Engine>> {
        let slot = lock(&self.slot);
        match slot.as_ref() {
            Some((k, engine)) if k == key && !engine.embedder.failed() => Some(engine.clone()),
            _ => None,
        }
    }

    fn load(
        &self,
        key: ModelKey,
        files: ModelFiles,
        config: &Config,
        size_hint: impl FnOnce() -> Option<(u32, u32)>,
    ) -> Result<Arc<Engine>, ModelError> {
        let engine = Arc::new(Engine::start_from(files, config, || None)?);
        *lock(&self.slot) = Some((key, engine.clone()));
        engine.plan_for(size_hint());
        Ok(engine)
    }
}
