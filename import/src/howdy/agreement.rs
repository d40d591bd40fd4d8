//! When Howdy's face models can be used by facekey.
//!
//! Howdy stores dlib's face descriptors; facekey compares its own embedder's embedding of a live face with what is
//! enrolled. Both are dlib's ResNet compared by Euclidean distance, so a dlib descriptor can stand in for a facekey
//! sample exactly when facekey's embedder gives, for the same face chip, nearly what dlib gives. The rule:
//!
//! 1. the active embedder is measured on face chips whose dlib descriptors are known (the caller embeds them and
//!    gives the pairs): its largest distance to dlib's must be at most [`AGREES_WITH_DLIB`];
//! 2. the threshold is then held to the calibrated one less that largest distance ([`threshold_limit`]): by the
//!    triangle inequality a face within that of an imported descriptor is within the calibrated threshold of
//!    facekey's own embedding of the enrolled face, so an import never lets in a face a facekey enrolment of the
//!    same face would refuse;
//! 3. each user's descriptors must each look like one ([`NORM_RANGE`]) and all be of one person
//!    ([`SAME_PERSON`]).
//!
//! Must never: accept descriptors when the embedder was not measured, or without saying which rule refused them.

use std::fmt;

use super::config::ThresholdLimit;
use super::models::Model;

/// The largest distance allowed between the active embedder's embedding of a chip and dlib's descriptor of it.
/// Measured on the 55 johns chips against dlib 20.0.1's descriptors (tests/data/dlib): the shipped int8 embedder
/// at most 0.049, the fp32 conversion 0.043, dlib's own network converted by `facekey model import-dlib` 0.0008
/// (docs/howdy.md, `cargo test --release -p facekey-import --test howdy -- --nocapture agreement`).
pub const AGREES_WITH_DLIB: f32 = 0.06;

/// The Euclidean length a dlib descriptor has: dlib's own descriptors of the 55 johns chips are 1.365 to 1.534
/// long; an encoding outside this range (zeros, random numbers, another network's output) is not one.
pub const NORM_RANGE: (f32, f32) = (1.0, 2.0);

/// dlib's own same-person distance (what face_recognition and Howdy's documentation use): every two descriptors
/// of one user must be closer. dlib's descriptors of the johns chips: same person at most 0.557, two people at
/// least 0.666.
pub const SAME_PERSON: f32 = 0.6;

/// How far the active embedder's embeddings are from dlib's on chips of known descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// The largest Euclidean distance between the two embeddings of one chip.
    pub largest: f32,
    pub chips: usize,
}

impl Agreement {
    /// Measure from pairs (facekey's embedding, dlib's descriptor) of the same chips; `None` without a pair, or
    /// when a pair's lengths differ or a distance is not a number.
    pub fn measure<'a>(
        pairs: impl IntoIterator<Item = (&'a [f32], &'a [f32])>,
    ) -> Option<Agreement> {
        let mut agreement = Agreement {
            largest: 0.0,
            chips: 0,
        };
        for (ours, dlib) in pairs {
            if ours.len() != dlib.len() {
                return None;
            }
            let d = distance(ours, dlib);
            if !d.is_finite() {
                return None;
            }
            agreement.largest = agreement.largest.max(d);
            agreement.chips += 1;
        }
        (agreement.chips > 0).then_some(agreement)
    }

    /// Whether the embedder reproduces dlib's descriptors closely enough (rule 1).
    pub fn reproduces_dlib(&self) -> bool {
        self.largest <= AGREES_WITH_DLIB
    }
}

/// The largest threshold the import may write: the calibrated one, less the measured agreement distance when
/// Howdy's descriptors are imported (rule 2).
pub fn threshold_limit(calibrated: f32, imported_with: Option<&Agreement>) -> ThresholdLimit {
    match imported_with {
        None => ThresholdLimit {
            calibrated,
            largest: calibrated,
            why: None,
        },
        Some(a) => ThresholdLimit {
            calibrated,
            largest: calibrated - a.largest,
            why: Some(format!(
                "the embedder's calibrated {calibrated} less {:.4}, its largest distance to dlib's descriptors, \
                 since Howdy's descriptors are imported",
                a.largest
            )),
        },
    }
}

/// Why a user's descriptors were refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The active embedder does not reproduce dlib's descriptors (rule 1), or could not be measured.
    Embedder { largest: Option<f32> },
    /// An encoding whose length is not a dlib descriptor's.
    NotADescriptor { model: i64, index: usize, norm: f32 },
    /// Two encodings too far apart to be one person.
    NotOnePerson {
        first: (i64, usize),
        second: (i64, usize),
        distance: f32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Embedder { largest: Some(d) } => write!(
                f,
                "the active embedder's embeddings are up to {d:.4} from dlib's, more than the {AGREES_WITH_DLIB} \
                 within which dlib's descriptors can stand in for them"
            ),
            Refusal::Embedder { largest: None } => {
                write!(f, "the active embedder could not be compared with dlib's descriptors")
            }
            Refusal::NotADescriptor { model, index, norm } => write!(
                f,
                "model id {model}, encoding {index}: length {norm:.3}, where dlib's face descriptors are {} to {} \
                 long: not a dlib face descriptor",
                NORM_RANGE.0, NORM_RANGE.1
            ),
            Refusal::NotOnePerson {
                first,
                second,
                distance,
            } => write!(
                f,
                "model id {} encoding {} and model id {} encoding {} are {distance:.3} apart, more than dlib's \
                 same-person {SAME_PERSON}: not one person's face",
                first.0, first.1, second.0, second.1
            ),
        }
    }
}

/// Rule 3 for one user's models (the file reader has already checked lengths and numbers).
pub fn check_user(models: &[Model]) -> Result<(), Refusal> {
    let all: Vec<((i64, usize), &[f32])> = models
        .iter()
        .flat_map(|m| {
            m.encodings
                .iter()
                .enumerate()
                .map(move |(i, e)| ((m.id, i), e.as_slice()))
        })
        .collect();
    for ((model, index), e) in &all {
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !(NORM_RANGE.0..=NORM_RANGE.1).contains(&norm) {
            return Err(Refusal::NotADescriptor {
                model: *model,
                index: *index,
                norm,
            });
        }
    }
    for (i, (first, a)) in all.iter().enumerate() {
        for (second, b) in &all[i + 1..] {
            let d = distance(a, b);
            if d > SAME_PERSON {
                return Err(Refusal::NotOnePerson {
                    first: *first,
                    second: *second,
                    distance: d,
                });
            }
        }
    }
    Ok(())
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
