//! Identification: who, among every enrolled user, is in front of the camera, or nobody.
//!
//! Each frame is compared with every enrolled user's samples; the matching rule ([`crate::rule`]) gives each
//! user an attempt score over the frames so far. A user is named only when
//!
//! - their score is under the threshold tightened for the number of users enrolled, [`threshold_for`]: with N
//!   users a stranger has N chances, so the per-user threshold moves down by [`TIGHTENING_PER_DECADE`] for every
//!   factor of ten users: on the ORL faces the per-user false-accept rate of an attempt under the shipped rule
//!   falls tenfold for every 0.066 the threshold moves down (1% at 0.524, 0.1% at 0.458; docs/accuracy.md), so N
//!   users at the tightened threshold give a stranger about the chance one user gives at the configured one; and
//! - the second-best user's score is at least [`MARGIN`] higher (on ORL, the closest second-best user of a
//!   genuine attempt was 0.175 behind the right one).
//!
//! Identification is for the CLI (`facekey identify`); the PAM module only ever verifies the user who asks.

use std::time::Instant;

use facekey_config::Config;

use crate::decision::{Stats, Unavailable};
use crate::engine::{AnalyseError, Analyser};
use crate::frame::FrameSource;
use crate::liveness::{self, FaceMotion, Motion};
use crate::rule;
use crate::store::Enrolment;

/// How far the best user's score must be ahead of the second-best's.
pub const MARGIN: f32 = 0.1;
/// How much the threshold tightens for every factor of ten users enrolled.
pub const TIGHTENING_PER_DECADE: f32 = 0.066;

/// The per-user threshold with `users` enrolled users: `threshold - 0.066 * log10(users)` (the configured
/// threshold for one user; 0.355 for 10 users and 0.315 for 39 under the default 0.42).
pub fn threshold_for(threshold: f32, users: usize) -> f32 {
    threshold - TIGHTENING_PER_DECADE * (users.max(1) as f32).log10()
}

/// The user `scores` (each user's attempt score) name, if any: the best under `threshold` and at least
/// [`MARGIN`] ahead of the second best.
pub fn choose(scores: &[f32], threshold: f32) -> Option<usize> {
    let mut order: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].is_finite())
        .collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let best = *order.first()?;
    let second = order.get(1).map_or(f32::INFINITY, |&i| scores[i]);
    (scores[best] < threshold && second - scores[best] >= MARGIN).then_some(best)
}

/// The best score among every user but `user` (`f32::INFINITY` when there is no other): what `user` must lead.
pub fn runner_up(scores: &[f32], user: usize) -> f32 {
    scores
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != user)
        .map(|(_, &s)| s)
        .fold(f32::INFINITY, f32::min)
}

/// What identification found.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Identification {
    /// `user` (an index into the enrolments given), with their score and how far ahead of the second best.
    Identified {
        user: usize,
        score: f32,
        ahead_by: f32,
        threshold: f32,
        stats: Stats,
    },
    /// Nobody passed the rule before the deadline or the end of the source: the closest user and score, if any
    /// face was seen.
    Nobody {
        closest: Option<(usize, f32)>,
        threshold: f32,
        stats: Stats,
    },
    /// Identification could not be made.
    Unavailable(String),
}

/// Identify the person in front of `source` among `enrolments` (every one made by the engine's embedder),
/// frame by frame until someone is named, the source ends or `deadline`. Dark frames are skipped and, on a
/// camera, a face counts only once it has changed since the previous one, as in [`crate::decision::decide`].
pub fn identify(
    engine: &dyn Analyser,
    enrolments: &[Enrolment],
    config: &Config,
    source: &mut dyn FrameSource,
    started: Instant,
    deadline: Instant,
) -> Identification {
    let threshold = threshold_for(
        crate::rule::threshold(&config.matching, engine.calibrated_threshold()),
        enrolments.len(),
    );
    let (rule_kind, required) = (config.matching.rule, config.matching.required_matches);
    let mut stats = Stats::default();
    // Per user: each counted frame's distance to each of their samples.
    let mut history: Vec<Vec<Vec<f32>>> = vec![Vec::new(); enrolments.len()];
    let mut motion_check =
        FaceMotion::new(config.camera.min_face_change, source.camera().is_some());
    let dark_threshold =
        crate::camera::emitter::dark_threshold_for(config.camera.dark_threshold, source.camera());
    let mut closest: Option<(usize, f32)> = None;
    while Instant::now() < deadline {
        let frame = match source.next_frame(deadline) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => return Identification::Unavailable(Unavailable::from(e).to_string()),
        };
        stats.frames += 1;
        stats.first_frame.get_or_insert_with(|| started.elapsed());
        let Ok(image) = frame.to_rgb() else {
            stats.bad_frames += 1;
            continue;
        };
        let exposure = liveness::measure(&image);
        if liveness::is_dark(&exposure, dark_threshold) {
            stats.dark_frames += 1;
            continue;
        }
        let faces = match engine.analyse(&image) {
            Ok(faces) => faces,
            Err(AnalyseError::Model(e)) => return Identification::Unavailable(e.to_string()),
            Err(e) => return Identification::Unavailable(e.to_string()),
        };
        if faces.is_empty() {
            continue;
        }
        stats.faces += faces.len() as u32;
        // The largest face is the one in front of the camera; the liveness check follows it.
        let subject = faces
            .iter()
            .max_by(|a, b| {
                (a.face.bbox[2] * a.face.bbox[3]).total_cmp(&(b.face.bbox[2] * b.face.bbox[3]))
            })
            .cloned();
        let Some(subject) = subject else { continue };
        let counts = match liveness::face_crop(&image, &subject.face) {
            Some(crop) => {
                let m = motion_check.observe(crop);
                if matches!(m, Motion::Still(_)) {
                    stats.still_frames += 1;
                }
                motion_check.may_count(m)
            }
            None => config.camera.min_face_change <= 0.0,
        };
        if !counts {
            continue;
        }
        let mut scores = Vec::with_capacity(enrolments.len());
        for (u, enrolment) in enrolments.iter().enumerate() {
            let per_sample: Vec<f32> = enrolment
                .samples
                .iter()
                .map(|s| subject.embedding.distance(&s.embedding))
                .collect();
            history[u].push(per_sample);
            scores.push(rule::attempt_score(rule_kind, required, &history[u]));
        }
        for (u, &s) in scores.iter().enumerate() {
            if s.is_finite() && closest.is_none_or(|(_, c)| s < c) {
                closest = Some((u, s));
            }
        }
        if let Some(user) = choose(&scores, threshold) {
            let second = runner_up(&scores, user);
            stats.elapsed = started.elapsed();
            return Identification::Identified {
                user,
                score: scores[user],
                ahead_by: second - scores[user],
                threshold,
                stats,
            };
        }
    }
    stats.elapsed = started.elapsed();
    Identification::Nobody {
        closest,
        threshold,
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_tightens_with_the_number_of_users() {
        assert_eq!(threshold_for(0.42, 1), 0.42);
        assert!((threshold_for(0.42, 10) - 0.354).abs() < 1e-6);
        assert!((threshold_for(0.42, 39) - 0.3150).abs() < 1e-3);
        assert!(threshold_for(0.42, 100) < threshold_for(0.42, 10));
    }

    #[test]
    fn the_best_user_must_pass_and_be_clearly_ahead() {
        assert_eq!(choose(&[0.30, 0.45, 0.60], 0.42), Some(0));
        // Too close to the second best.
        assert_eq!(choose(&[0.30, 0.38, 0.60], 0.42), None);
        // Not under the threshold.
        assert_eq!(choose(&[0.43, 0.60], 0.42), None);
        // A single enrolled user needs no margin against anyone.
        assert_eq!(choose(&[0.30], 0.42), Some(0));
        assert_eq!(choose(&[f32::INFINITY, 0.2], 0.42), Some(1));
        assert_eq!(choose(&[], 0.42), None);
    }
}
