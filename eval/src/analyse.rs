//! facekey's engine over a folder of frames, and the same analyses served back to the real decision.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, Context, Result};
use facekey_config::Config;
use facekey_core::engine::{AnalyseError, AnalysedFace, Analyser, Engine};
use facekey_core::models::ModelError;
use image::RgbImage;

use crate::records::{FaceRecord, ImageRecord};

/// The configuration the evaluation runs with: the shipped defaults, the models in `models_dir`, liveness off
/// (a set of still photos has no motion to measure).
pub fn config(models_dir: &Path, embedder: &str) -> Config {
    let mut config = Config::default();
    config.models.dir = models_dir.to_path_buf();
    config.models.embedder = embedder.to_owned();
    config.camera.min_face_change = 0.0;
    config
}

/// The repository's models folder.
pub fn repo_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Every image under `dir` (`<identity>/<image>`), in path order.
pub fn frames_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let set = crate::set::LabelledSet::read(dir)?;
    Ok(set.identities.into_iter().flat_map(|i| i.images).collect())
}

/// Decode an image file to RGB.
pub fn load(path: &Path) -> Result<RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("{}", path.display()))?
        .to_rgb8())
}

/// Analyse every file with `engine` on `threads` threads; records in the files' order.
pub fn analyse_files(
    engine: &Engine,
    files: &[PathBuf],
    threads: usize,
) -> Result<Vec<ImageRecord>> {
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<ImageRecord>>> = (0..files.len()).map(|_| None).collect();
    let results: Vec<Vec<(usize, Result<ImageRecord>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        out.push((i, analyse_file(engine, file)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    for (i, r) in results.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| Err(anyhow!("{}: not analysed", files[i].display()))))
        .collect()
}

fn analyse_file(engine: &Engine, file: &Path) -> Result<ImageRecord> {
    let image = load(file)?;
    let faces = engine
        .analyse(&image)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok(ImageRecord {
        file: file.to_path_buf(),
        faces: faces.into_iter().map(FaceRecord::from_analysed).collect(),
    })
}

/// An [`Analyser`] that answers from analyses made earlier, looked up by the image's pixels: the decision runs
/// unchanged while each image is analysed once, however many attempts show it.
pub struct Cached {
    by_pixels: HashMap<u64, Vec<AnalysedFace>>,
    calibrated_threshold: f32,
}

fn pixels_key(image: &RgbImage) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    image.dimensions().hash(&mut h);
    image.as_raw().hash(&mut h);
    h.finish()
}

/// One image's analysis: its hash and the faces found in it.
type Analysed = (u64, Vec<AnalysedFace>);

impl Cached {
    /// Analyse every image once with `engine`, on `threads` threads.
    pub fn new(engine: &Engine, images: &[RgbImage], threads: usize) -> Result<Cached> {
        let chunk = images.len().div_ceil(threads.max(1)).max(1);
        let parts: Vec<Result<Vec<Analysed>>> = std::thread::scope(|s| {
            let workers: Vec<_> = images
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|image| {
                                let faces = engine.analyse(image).map_err(|e| anyhow!("{e}"))?;
                                Ok((pixels_key(image), faces))
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow!("an analysis thread panicked")))
                })
                .collect()
        });
        let mut by_pixels = HashMap::new();
        for part in parts {
            by_pixels.extend(part?);
        }
        Ok(Cached {
            by_pixels,
            calibrated_threshold: Analyser::calibrated_threshold(engine),
        })
    }
}

impl Analyser for Cached {
    fn analyse(&self, image: &RgbImage) -> Result<Vec<AnalysedFace>, AnalyseError> {
        self.by_pixels
            .get(&pixels_key(image))
            .cloned()
            .ok_or_else(|| {
                AnalyseError::Model(ModelError::Invalid {
                    path: "evaluation cache".into(),
                    reason: "an image that was not analysed beforehand".into(),
                })
            })
    }

    fn embedder_ready(&self) -> Result<(), ModelError> {
        Ok(())
    }

    fn calibrated_threshold(&self) -> f32 {
        self.calibrated_threshold
    }
}
