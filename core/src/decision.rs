//! The authentication decision: frames read until the deadline, compared with the user's enrolment.
//!
//! Front ends do not call in here: they send a request to [`crate::policy::attempt`], which applies the
//! policy and the rate limit and runs this decision in process ([`authenticate_enrolled_before`]) or in a
//! confined child ([`crate::isolated`], sharing [`decide_opened`]). [`decide`] stays public for an engine
//! already loaded and a source already open (benches, evaluation, `facekey test` without an enrolment).
//!
//! Given a user, a configuration and a frame source, it reads frames until the deadline and returns a
//! typed [`Outcome`]. Only [`Outcome::Matched`] means "let this person in", and it is produced only
//! when a face in a frame is closer than the threshold to an enrolled sample of that very user.
//! Anything that keeps the decision from being made properly is [`Outcome::Unavailable`], with the reason.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use facekey_config::Config;

use crate::engine::{AnalyseError, AnalysedFace, Analyser, Engine, EngineCache};
use crate::frame::{self, Frame, FrameSource, SourceError};
use crate::liveness::{self, Exposure, FaceMotion, Motion};
use crate::models::ModelError;
use crate::rule::Matcher;
use crate::store::{Enrolment, Store, StoreError, UserName};

/// What happened while deciding.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Frames read from the source.
    pub frames: u32,
    /// Frames that could not be decoded and were skipped.
    pub bad_frames: u32,
    /// Faces seen, over all frames.
    pub faces: u32,
    /// Frames skipped as dark (`camera.dark_threshold`): an infrared emitter between flashes.
    pub dark_frames: u32,
    /// Matching faces refused because they had not changed since the previous frame
    /// (`camera.min_face_change`): a frozen or injected picture.
    pub still_frames: u32,
    /// Time from the start of the decision to the first frame.
    pub first_frame: Option<Duration>,
    /// Time from the start of the decision to the outcome.
    pub elapsed: Duration,
    /// How the process that decided was confined, when the decision ran in a confined child
    /// ([`crate::isolated`]).
    pub confined: Option<String>,
    /// Why the stored infrared emitter setting could not be set when the camera was opened (the
    /// decision went on; the log line says so).
    #[serde(default)]
    pub emitter_failed: Option<String>,
}

/// One frame as the decision saw it (for `facekey test`).
pub struct FrameReport<'a> {
    pub frame: &'a Frame,
    /// The decoded, rotated picture; `None` when the frame could not be decoded.
    pub image: Option<&'a image::RgbImage>,
    pub exposure: Option<Exposure>,
    pub faces: &'a [AnalysedFace],
    /// Distance of the closest face to the closest enrolled sample.
    pub best_distance: Option<f32>,
    pub motion: Option<Motion>,
    pub verdict: FrameVerdict,
    /// The counts so far, this frame included.
    pub stats: &'a Stats,
}

/// What the decision made of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    Undecodable,
    Dark,
    NoFace,
    NoMatch,
    /// A matching face that cannot count yet: the first face from a camera, the reference the next
    /// one is compared with.
    Reference,
    /// A matching face that had not changed since the previous frame: refused.
    Still,
    /// A face that matches by itself, counted by the rule: `count` frames count towards it so far
    /// ([`crate::rule::Matcher::progress`]).
    Match {
        count: u32,
    },
}

/// The decision.
#[derive(Debug)]
pub enum Outcome {
    /// The frames met the matching rule against the user's enrolled samples. `distance` is the figure the rule
    /// compared with the threshold (the k-th frame's distance, or the mean of the k best); `sample_id` the sample
    /// closest to the frame that completed it.
    Matched {
        label: String,
        sample_id: u32,
        distance: f32,
        stats: Stats,
    },
    /// Faces were seen, none matched before the deadline or the end of the source.
    NoMatch { best_distance: f32, stats: Stats },
    /// No face was seen before the deadline or the end of the source.
    NoFace { stats: Stats },
    /// The decision could not be made; face authentication does not apply.
    Unavailable(Unavailable),
}

/// Why face authentication could not be attempted.
#[derive(thiserror::Error, Debug)]
pub enum Unavailable {
    #[error("face authentication is disabled in the configuration")]
    Disabled,
    #[error("{0}")]
    BadUser(String),
    #[error("user {user} has no enrolled face")]
    NoEnrolment { user: String },
    #[error("enrolment store: {0}")]
    Store(#[from] StoreError),
    #[error("models: {0}")]
    Model(#[from] ModelError),
    #[error("frame source: {0}")]
    Source(#[from] SourceError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The confined decision process could not decide: what it or its parent said.
    #[error("confined decision: {0}")]
    Confined(String),
}

impl Outcome {
    pub fn is_match(&self) -> bool {
        matches!(self, Outcome::Matched { .. })
    }

    pub fn stats_mut(&mut self) -> Option<&mut Stats> {
        match self {
            Outcome::Matched { stats, .. }
            | Outcome::NoMatch { stats, .. }
            | Outcome::NoFace { stats } => Some(stats),
            Outcome::Unavailable(_) => None,
        }
    }

    pub fn stats(&self) -> Option<&Stats> {
        match self {
            Outcome::Matched { stats, .. }
            | Outcome::NoMatch { stats, .. }
            | Outcome::NoFace { stats } => Some(stats),
            Outcome::Unavailable(_) => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Matched { label, sample_id, distance, stats } => write!(
                f,
                "matched '{label}' (sample {sample_id}), distance {distance:.3}, after {} frame(s) in {} ms{}",
                stats.frames,
                stats.elapsed.as_millis(),
                skipped(stats)
            ),
            Outcome::NoMatch { best_distance, stats } => write!(
                f,
                "no match: {} face(s) seen, best distance {best_distance:.3}, {} frame(s) in {} ms{}",
                stats.faces,
                stats.frames,
                stats.elapsed.as_millis(),
                skipped(stats)
            ),
            Outcome::NoFace { stats } => write!(
                f,
                "no face seen in {} frame(s) in {} ms{}",
                stats.frames,
                stats.elapsed.as_millis(),
                skipped(stats)
            ),
            Outcome::Unavailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

/// Frames the frame checks set aside and how the decision was confined, for the end of an outcome's line (""
/// when neither).
fn skipped(stats: &Stats) -> String {
    let mut parts = Vec::new();
    if stats.dark_frames > 0 {
        parts.push(format!("{} dark frame(s) skipped", stats.dark_frames));
    }
    if stats.still_frames > 0 {
        parts.push(format!(
            "{} matching face(s) refused as unchanged (a frozen or injected picture?)",
            stats.still_frames
        ));
    }
    if let Some(failed) = &stats.emitter_failed {
        parts.push(format!("infrared emitter not set: {failed}"));
    }
    if let Some(confined) = &stats.confined {
        parts.push(format!("decided confined: {confined}"));
    }
    parts.iter().map(|p| format!("; {p}")).collect()
}

/// A user and their enrolment, read before anything expensive.
#[derive(Debug)]
pub(crate) struct Enrolled {
    pub(crate) user: UserName,
    /// The store file it came from (for messages).
    pub(crate) path: std::path::PathBuf,
    pub(crate) enrolment: Enrolment,
}

/// Validate the user name and read the user's enrolment through the store's trust checks. A user
/// with no samples is [`Unavailable::NoEnrolment`]; this costs one small file read, so
/// [`crate::policy::attempt`] does it before anything expensive (the rate limit, the camera).
pub(crate) fn load_enrolled(user: &str, config: &Config) -> Result<Enrolled, Unavailable> {
    let user = UserName::new(user).map_err(|e| Unavailable::BadUser(e.to_string()))?;
    let store = Store::new(&config.storage.faces_dir);
    match store.load(&user)? {
        Some(enrolment) if !enrolment.samples.is_empty() => Ok(Enrolled {
            path: store.path_for(&user),
            user,
            enrolment,
        }),
        _ => Err(Unavailable::NoEnrolment {
            user: user.to_string(),
        }),
    }
}

/// The in-process decision for an enrolment already read with [`load_enrolled`]: the models load on
/// other threads while `open_source` opens the source here, then the frames.
fn authenticate_enrolled(
    enrolled: Enrolled,
    config: &Config,
    engines: &EngineCache,
    open_source: &mut dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError>,
    started: Instant,
    deadline: Instant,
    observer: &mut dyn FnMut(&FrameReport<'_>),
) -> Outcome {
    let Enrolled {
        path, enrolment, ..
    } = enrolled;
    // The models load on other threads while the source opens here; once the source knows its frame
    // size, the detector is planned for it. The engine is handed over as soon as the detector is
    // ready: the first frame is searched while the embedder is still loading (Engine::start). The
    // loader waits for the size no longer than the deadline, so it ends even when the source
    // stalls in open (the engine cache is not locked meanwhile: see EngineCache).
    let (size_tx, size_rx) = std::sync::mpsc::sync_channel::<Option<(u32, u32)>>(1);
    let (engine, source) = std::thread::scope(|scope| {
        let engine = scope.spawn(move || {
            engines.get_with_hint(config, move || {
                size_rx
                    .recv_timeout(frame::remaining(deadline))
                    .ok()
                    .flatten()
            })
        });
        let source = open_source();
        // A full buffer or a gone receiver (the engine was cached) only means the hint is not needed.
        let _ = size_tx.try_send(source.as_ref().ok().and_then(|s| s.frame_size_hint()));
        let engine = engine.join().unwrap_or_else(|_| {
            Err(ModelError::Invalid {
                path: "models".into(),
                reason: "loader failed".into(),
            })
        });
        (engine, source)
    });
    decide_opened(
        engine,
        source,
        (path, enrolment),
        config,
        started,
        deadline,
        observer,
    )
}

/// The rest of a decision once the models are loaded and the source is open, each or its error: the checks
/// that need both (a source that opened too late, infrared, the camera the samples were enrolled with, the
/// enrolment's embedder), then the frames. Shared by the in-process decision and the confined one
/// ([`crate::isolated`]).
pub(crate) fn decide_opened(
    engine: Result<Arc<Engine>, ModelError>,
    source: Result<Box<dyn FrameSource>, SourceError>,
    (path, enrolment): (std::path::PathBuf, Enrolment),
    config: &Config,
    started: Instant,
    deadline: Instant,
    observer: &mut dyn FnMut(&FrameReport<'_>),
) -> Outcome {
    let engine: Arc<Engine> = match engine {
        Ok(e) => e,
        Err(e) => return Outcome::Unavailable(e.into()),
    };
    let mut source = match source {
        Ok(s) => s,
        Err(e) => return Outcome::Unavailable(e.into()),
    };
    if Instant::now() >= deadline {
        // Opened too late to read a frame: say so rather than "no face seen".
        return Outcome::Unavailable(Unavailable::Source(SourceError::Device {
            device: config.camera.source.clone(),
            reason: "the frame source took until the deadline to open".into(),
        }));
    }
    if let Err(e) = liveness::check_infrared(&config.camera, source.as_ref()) {
        return Outcome::Unavailable(e.into());
    }
    // Only the samples enrolled with this camera (or with none recorded) are compared.
    let enrolment = match source.camera() {
        Some(camera) => match crate::camera::identity::samples_for(enrolment, camera) {
            Ok(enrolment) => enrolment,
            Err(e) => return Outcome::Unavailable(e.into()),
        },
        None => enrolment,
    };
    if enrolment.embedder != *engine.embedder_id() {
        return Outcome::Unavailable(Unavailable::Store(StoreError::ForeignEmbedder {
            path,
            found: enrolment.embedder.clone(),
            expected: engine.embedder_id().clone(),
        }));
    }
    decide(
        engine.as_ref(),
        &enrolment,
        config,
        source.as_mut(),
        started,
        deadline,
        observer,
    )
}

/// Read frames until the matching rule ([`crate::rule`]: `[matching] rule`, `required_matches`, `threshold`)
/// accepts the faces seen so far against `enrolment`'s samples, the source ends, or the deadline, telling
/// `observer` about every frame (`|_| {}` when nobody listens).
///
/// Dark frames are skipped before analysis; on a camera a face counts only once it has changed since the
/// previous face ([`liveness`]): the first face is the reference, an unchanged one is refused.
///
/// This is the one public way to decide below [`crate::policy::attempt`], for an analyser already loaded
/// and a source already open: benches and evaluation tools measure the frames with it, and the CLI shows
/// what the camera sees for a user with no enrolment. It applies no policy, no rate limit and no hard
/// deadline (a source that blocks holds it up): anything that lets someone in goes through
/// [`crate::policy::attempt`].
pub fn decide(
    engine: &dyn Analyser,
    enrolment: &Enrolment,
    config: &Config,
    source: &mut dyn FrameSource,
    started: Instant,
    deadline: Instant,
    observer: &mut dyn FnMut(&FrameReport<'_>),
) -> Outcome {
    let mut matcher = Matcher::new(&config.matching, engine.calibrated_threshold());
    let mut stats = Stats::default();
    let mut best = f32::INFINITY;
    let mut motion_check =
        FaceMotion::new(config.camera.min_face_change, source.camera().is_some());
    let dark_threshold =
        crate::camera::emitter::dark_threshold_for(config.camera.dark_threshold, source.camera());
    stats.emitter_failed = source
        .camera()
        .and_then(|c| c.emitter.as_ref())
        .and_then(|e| e.applied.clone().err());
    while Instant::now() < deadline {
        let frame = match source.next_frame(deadline) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => return Outcome::Unavailable(e.into()),
        };
        stats.frames += 1;
        stats.first_frame.get_or_insert_with(|| started.elapsed());
        let mut report = |stats: &Stats,
                          image,
                          exposure,
                          faces: &[AnalysedFace],
                          best_distance,
                          motion,
                          verdict| {
            observer(&FrameReport {
                frame: &frame,
                image,
                exposure,
                faces,
                best_distance,
                motion,
                verdict,
                stats,
            })
        };
        let Ok(image) = frame.to_rgb() else {
            stats.bad_frames += 1;
            report(
                &stats,
                None,
                None,
                &[],
                None,
                None,
                FrameVerdict::Undecodable,
            );
            continue;
        };
        let exposure = liveness::measure(&image);
        if liveness::is_dark(&exposure, dark_threshold) {
            stats.dark_frames += 1;
            let exposure = Some(exposure);
            report(
                &stats,
                Some(&image),
                exposure,
                &[],
                None,
                None,
                FrameVerdict::Dark,
            );
            continue;
        }
        let faces = match engine.analyse(&image) {
            Ok(faces) => faces,
            Err(AnalyseError::Model(e)) => return Outcome::Unavailable(e.into()),
            Err(e) => return Outcome::Unavailable(Unavailable::Internal(e.to_string())),
        };
        stats.faces += faces.len() as u32;
        // Any enrolled face among those in the frame counts: each sample's distance to its closest face, and the
        // closest (distance, sample, face) of all.
        let mut per_sample = vec![f32::INFINITY; enrolment.samples.len()];
        let mut frame_best: Option<(f32, usize, usize)> = None;
        for (j, face) in faces.iter().enumerate() {
            for (i, sample) in enrolment.samples.iter().enumerate() {
                let d = face.embedding.distance(&sample.embedding);
                per_sample[i] = per_sample[i].min(d);
                if frame_best.is_none_or(|(b, _, _)| d < b) {
                    frame_best = Some((d, i, j));
                }
            }
        }
        // The face the match is about (or the first face) is the one compared between frames.
        let subject = frame_best
            .map(|(_, _, j)| j)
            .or((!faces.is_empty()).then_some(0));
        let motion = subject
            .and_then(|j| liveness::face_crop(&image, &faces[j].face))
            .map(|crop| motion_check.observe(crop));
        let mut accepted = None;
        let verdict = match frame_best {
            Some((d, _, _)) => {
                best = best.min(d);
                let counts = match motion {
                    Some(m) => motion_check.may_count(m),
                    None => config.camera.min_face_change <= 0.0,
                };
                if !counts {
                    matcher.interrupt();
                    if !matcher.matches(d) {
                        FrameVerdict::NoMatch
                    } else if matches!(motion, Some(Motion::Still(_))) {
                        stats.still_frames += 1;
                        FrameVerdict::Still
                    } else {
                        FrameVerdict::Reference
                    }
                } else {
                    accepted = matcher.observe(&per_sample);
                    if accepted.is_some() || matcher.matches(d) {
                        FrameVerdict::Match {
                            count: matcher.progress(),
                        }
                    } else {
                        FrameVerdict::NoMatch
                    }
                }
            }
            None => {
                matcher.interrupt();
                if faces.is_empty() {
                    FrameVerdict::NoFace
                } else {
                    FrameVerdict::NoMatch
                }
            }
        };
        let best_distance = frame_best.map(|(d, _, _)| d);
        report(
            &stats,
            Some(&image),
            Some(exposure),
            &faces,
            best_distance,
            motion,
            verdict,
        );
        if let Some(accepted) = accepted {
            let sample = &enrolment.samples[accepted.sample];
            stats.elapsed = started.elapsed();
            return Outcome::Matched {
                label: sample.label.clone(),
                sample_id: sample.id,
                distance: accepted.score,
                stats,
            };
        }
    }
    stats.elapsed = started.elapsed();
    if stats.faces > 0 {
        Outcome::NoMatch {
            best_distance: best,
            stats,
        }
    } else if let Err(e) = engine.embedder_ready() {
        // A broken embedder is reported even when no face came to need it.
        Outcome::Unavailable(e.into())
    } else {
        Outcome::NoFace { stats }
    }
}

/// How long [`crate::policy::attempt`] waits past the deadline for a decision already under way (one frame still being
/// analysed) before giving up on it. The PAM module promises to return within the timeout plus 250 ms; this leaves
/// room for reading the configuration and the rate-limit state before the decision starts.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(150);

/// The in-process decision with a hard deadline, for an enrolment [`crate::policy::attempt`] already
/// read with [`load_enrolled`] (before the rate limit), after its checks (`policy::check`). `observer`
/// hears of every frame, on the worker thread (the policy learns from it whether frames were analysed).
///
/// The decision runs on a worker thread, and this returns by `deadline + grace` whatever the frame
/// source does (blocks in `open`, stalls, never returns). A decision that has not finished by then is
/// reported as [`Unavailable::Source`] (the source did not answer in time); the worker is left to
/// finish or block on its own and its result is dropped. It only holds owned copies and the `'static`
/// engine cache, so nothing it touches goes away under it. A process that loads this code through
/// `dlopen` must therefore never unload it while a worker may still run (the PAM module is linked
/// `-z nodelete` for this reason).
pub(crate) fn authenticate_enrolled_before(
    enrolled: Enrolled,
    config: &Config,
    engines: &'static EngineCache,
    mut open_source: Box<dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send>,
    deadline: Instant,
    grace: Duration,
    mut observer: Box<dyn FnMut(&FrameReport<'_>) + Send>,
) -> Outcome {
    let started = Instant::now();
    let worker_config = config.clone();
    run_before(config, deadline, grace, move || {
        authenticate_enrolled(
            enrolled,
            &worker_config,
            engines,
            &mut *open_source,
            started,
            deadline,
            &mut *observer,
        )
    })
}

/// Run `decision` on a worker thread and return its outcome, or give up at `deadline + grace`.
fn run_before(
    config: &Config,
    deadline: Instant,
    grace: Duration,
    decision: impl FnOnce() -> Outcome + Send + 'static,
) -> Outcome {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("facekey-decision".into())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting: the outcome is no longer wanted.
            let _ = tx.send(decision());
        });
    if let Err(e) = spawned {
        return Outcome::Unavailable(Unavailable::Internal(format!(
            "cannot start the decision thread: {e}"
        )));
    }
    let wait = (deadline + grace).saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(outcome) => outcome,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Outcome::Unavailable(Unavailable::Source(SourceError::Device {
                device: config.camera.source.clone(),
                reason: "no decision before the deadline: the frame source blocked or stalled, or a frame's analysis ran past it"
                    .into(),
            }))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Outcome::Unavailable(
            Unavailable::Internal("the decision thread ended without an outcome".into()),
        ),
    }
}
