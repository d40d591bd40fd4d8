//! Who enrols which images and which frames make one attempt: the comparisons every figure is counted over.
//!
//! Each identity with n images enrols k of them (k consecutive images starting at a rotation r, wrapping), and
//! every rotation r < `draws` is one enrolment draw. A genuine attempt presents the identity's other images, a
//! seeded shuffle of them, as the frames of one login; an impostor attempt presents every image of another
//! identity (up to `frames`) against the enrolment. Draws reuse the same images, so attempts of different draws
//! are correlated: the count of independent attempts is that of one draw.

use std::collections::HashMap;

use facekey_config::MatchRule;
use facekey_core::rule;

use crate::records::ImageRecord;

/// One image's analysis: every face's embedding (empty: no face found).
#[derive(Debug, Clone)]
pub struct Analysed {
    pub identity: String,
    pub name: String,
    pub embeddings: Vec<Vec<f32>>,
    /// The embedding of the best-scoring face, the one an enrolment keeps.
    pub best: Option<Vec<f32>>,
}

impl Analysed {
    pub fn from_record(r: &ImageRecord) -> Analysed {
        let best = r
            .faces
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map(|f| f.embedding.clone());
        Analysed {
            identity: r.identity(),
            name: r.name(),
            embeddings: r.faces.iter().map(|f| f.embedding.clone()).collect(),
            best,
        }
    }
}

/// Images grouped by identity, in name order.
pub struct Gallery {
    pub identities: Vec<(String, Vec<Analysed>)>,
}

impl Gallery {
    pub fn new(images: Vec<Analysed>) -> Gallery {
        let mut by: HashMap<String, Vec<Analysed>> = HashMap::new();
        for a in images {
            by.entry(a.identity.clone()).or_default().push(a);
        }
        let mut identities: Vec<(String, Vec<Analysed>)> = by.into_iter().collect();
        identities.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, images) in &mut identities {
            images.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Gallery { identities }
    }

    /// The same identity and image in `other` (a grey copy of this gallery, say).
    pub fn find(&self, identity: &str, name: &str) -> Option<&Analysed> {
        self.identities
            .iter()
            .find(|(i, _)| i == identity)
            .and_then(|(_, images)| images.iter().find(|a| a.name == name))
    }
}

/// How attempts are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// Images each identity enrols.
    pub enrol: usize,
    /// Enrolment draws per identity (rotations of the enrolled images), at most the identity's image count.
    pub draws: usize,
    /// Frames per attempt, at most.
    pub frames: usize,
    pub seed: u64,
}

/// One attempt: whose enrolment, whose frames, which images.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub claimed: usize,
    pub presented: usize,
    pub draw: usize,
    /// Indices of the claimed identity's enrolled images.
    pub enrolled: Vec<usize>,
    /// Indices of the presented identity's images, in the order they are shown.
    pub frames: Vec<usize>,
}

impl Attempt {
    pub fn genuine(&self) -> bool {
        self.claimed == self.presented
    }
}

/// Every attempt of the protocol: for each identity and draw, one genuine attempt (when images are left over)
/// and one impostor attempt per other identity.
pub fn attempts(gallery: &Gallery, p: &Protocol) -> Vec<Attempt> {
    let mut out = Vec::new();
    for (c, (claimed, images)) in gallery.identities.iter().enumerate() {
        let n = images.len();
        if n == 0 {
            continue;
        }
        let k = p.enrol.min(n);
        for draw in 0..p.draws.min(n) {
            let enrolled: Vec<usize> = (0..k).map(|j| (draw + j) % n).collect();
            let rest: Vec<usize> = (0..n).filter(|i| !enrolled.contains(i)).collect();
            if !rest.is_empty() {
                out.push(Attempt {
                    claimed: c,
                    presented: c,
                    draw,
                    enrolled: enrolled.clone(),
                    frames: shuffled(rest, p.frames, seed(p.seed, claimed, claimed, draw)),
                });
            }
            for (q, (presented, theirs)) in gallery.identities.iter().enumerate() {
                if q == c || theirs.is_empty() {
                    continue;
                }
                out.push(Attempt {
                    claimed: c,
                    presented: q,
                    draw,
                    enrolled: enrolled.clone(),
                    frames: shuffled(
                        (0..theirs.len()).collect(),
                        p.frames,
                        seed(p.seed, claimed, presented, draw),
                    ),
                });
            }
        }
    }
    out
}

fn shuffled(mut v: Vec<usize>, at_most: usize, seed: u64) -> Vec<usize> {
    fastrand::Rng::with_seed(seed).shuffle(&mut v);
    v.truncate(at_most.max(1));
    v
}

fn seed(base: u64, a: &str, b: &str, draw: usize) -> u64 {
    crate::paste::seed_for(a, &format!("{b}/{draw}"), base)
}

/// The enrolled embeddings of an attempt (images where no face was found enrol nothing), from `enrol_gallery`.
pub fn enrolment<'g>(gallery: &'g Gallery, a: &Attempt) -> Vec<&'g [f32]> {
    let images = &gallery.identities[a.claimed].1;
    a.enrolled
        .iter()
        .filter_map(|&i| images[i].best.as_deref())
        .collect()
}

/// Frame f's distance to each enrolled sample: over every face of the frame, the closest.
pub fn frame_distances(samples: &[&[f32]], frame: &Analysed) -> Vec<f32> {
    samples
        .iter()
        .map(|s| {
            frame
                .embeddings
                .iter()
                .map(|e| distance(e, s))
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

pub use facekey_core::embed::distance;

/// Per-attempt scores under a rule: enrolments from `enrol`, frames from `probe` (the same gallery, or a copy
/// of it under another light).
pub fn attempt_scores(
    enrol: &Gallery,
    probe: &Gallery,
    attempts: &[Attempt],
    rule_kind: MatchRule,
    required: u32,
) -> crate::stats::Scores {
    let mut scores = crate::stats::Scores::default();
    for a in attempts {
        let samples = enrolment(enrol, a);
        let (presented, images) = &enrol.identities[a.presented];
        let frames: Vec<Vec<f32>> = a
            .frames
            .iter()
            .map(|&i| match probe.find(presented, &images[i].name) {
                Some(frame) => frame_distances(&samples, frame),
                // Not in the probe set: a frame with no face.
                None => Vec::new(),
            })
            .collect();
        let s = rule::attempt_score(rule_kind, required, &frames);
        if a.genuine() {
            scores.genuine.push(s);
        } else {
            scores.impostor.push(s);
        }
    }
    scores
}
