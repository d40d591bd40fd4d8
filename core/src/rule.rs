//! The matching rule: when the frames of one attempt are enough to let the person in.
//!
//! A frame brings, for each enrolled sample, the distance of the frame's closest face to it. The rule
//! (`[matching] rule`, `required_matches` = k, `threshold` = t) says when the frames seen so far suffice:
//!
//! - `frames`: k frames whose best distance is under t, anywhere in the attempt;
//! - `consecutive`: k such frames in a row (a face that does not match starts the count again);
//! - `same-sample`: k frames under t to one and the same enrolled sample;
//! - `mean-of-best`: the mean of the k best frames' distances under t.
//!
//! [`Matcher`] applies the rule frame by frame for [`crate::decision::decide`]; [`attempt_score`] gives, for a
//! whole attempt, the smallest threshold the rule would have needed, which is how evaluation tools sweep
//! thresholds without deciding again. Both are written here, side by side, and a test holds them to each other.

use facekey_config::{MatchRule, Matching};

/// Why the rule accepted: the frame's closest sample and its distance, and the figure the rule compared
/// with the threshold (the k-th best distance, or the mean of the k best).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    pub sample: usize,
    pub distance: f32,
    pub score: f32,
}

/// The rule's state over the frames of one attempt.
#[derive(Debug, Clone)]
pub struct Matcher {
    rule: MatchRule,
    k: usize,
    threshold: f32,
    /// Frames counted so far (`frames`, `consecutive`), or per sample (`same-sample`).
    counts: Vec<u32>,
    /// The k best frame distances so far (`mean-of-best`), ascending.
    best: Vec<f32>,
}

/// The threshold a decision uses: `[matching] threshold` when set, else the active embedder's calibrated one.
pub fn threshold(matching: &Matching, calibrated: f32) -> f32 {
    matching.threshold.unwrap_or(calibrated)
}

impl Matcher {
    /// The rule of `matching`, with the embedder's calibrated threshold unless the configuration sets one.
    pub fn new(matching: &Matching, calibrated: f32) -> Matcher {
        Matcher {
            rule: matching.rule,
            k: matching.required_matches.max(1) as usize,
            threshold: threshold(matching, calibrated),
            counts: Vec::new(),
            best: Vec::new(),
        }
    }

    /// Whether a frame whose best distance is `distance` matches by itself (under the threshold).
    pub fn matches(&self, distance: f32) -> bool {
        distance < self.threshold
    }

    /// Frames counted towards the rule so far (for the rule `same-sample`, for the best sample; for
    /// `mean-of-best`, the frames among the best k).
    pub fn progress(&self) -> u32 {
        match self.rule {
            MatchRule::MeanOfBest => self.best.len() as u32,
            _ => self.counts.iter().copied().max().unwrap_or(0),
        }
    }

    /// How many frames the rule needs.
    pub fn required(&self) -> u32 {
        self.k as u32
    }

    /// A frame with a face that may count (it passed the liveness checks): `per_sample[i]` is the distance of
    /// its closest face to enrolled sample `i`. Returns what accepted when the rule is now met.
    pub fn observe(&mut self, per_sample: &[f32]) -> Option<Accepted> {
        let (sample, distance) = closest(per_sample)?;
        let t = self.threshold;
        match self.rule {
            MatchRule::Frames | MatchRule::Consecutive => {
                self.counts.resize(1, 0);
                if distance < t {
                    self.counts[0] += 1;
                } else if self.rule == MatchRule::Consecutive {
                    self.counts[0] = 0;
                }
                (self.counts[0] as usize >= self.k).then_some(Accepted {
                    sample,
                    distance,
                    score: distance,
                })
            }
            MatchRule::SameSample => {
                self.counts.resize(per_sample.len(), 0);
                let mut met = None;
                for (i, &d) in per_sample.iter().enumerate() {
                    if d < t {
                        self.counts[i] += 1;
                        if self.counts[i] as usize >= self.k
                            && met.is_none_or(|(_, m): (usize, f32)| d < m)
                        {
                            met = Some((i, d));
                        }
                    }
                }
                met.map(|(i, d)| Accepted {
                    sample: i,
                    distance: d,
                    score: d,
                })
            }
            MatchRule::MeanOfBest => {
                let at = self.best.partition_point(|&b| b <= distance);
                self.best.insert(at, distance);
                self.best.truncate(self.k);
                let mean = self.best.iter().sum::<f32>() / self.best.len() as f32;
                (self.best.len() >= self.k && mean < t).then_some(Accepted {
                    sample,
                    distance,
                    score: mean,
                })
            }
        }
    }

    /// A frame that cannot count (a face refused by the liveness checks, or no face at all): only the
    /// `consecutive` rule starts again.
    pub fn interrupt(&mut self) {
        if self.rule == MatchRule::Consecutive {
            self.counts.clear();
        }
    }
}

/// The closest sample and its distance; `None` when there is no sample or no finite distance.
fn closest(per_sample: &[f32]) -> Option<(usize, f32)> {
    per_sample
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| d.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The attempt's score under `rule` with k = `required`: the rule accepts the attempt at threshold t exactly when
/// the score is under t (`f32::INFINITY`: never). `frames[f][i]` is frame f's distance to sample i; a frame that
/// cannot count (no face, refused by liveness) is an empty slice or all infinite.
pub fn attempt_score(rule: MatchRule, required: u32, frames: &[Vec<f32>]) -> f32 {
    let k = required.max(1) as usize;
    let best: Vec<f32> = frames
        .iter()
        .map(|f| closest(f).map_or(f32::INFINITY, |(_, d)| d))
        .collect();
    match rule {
        MatchRule::Frames => kth_smallest(&best, k),
        MatchRule::Consecutive => best
            .windows(k)
            .map(|w| w.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .fold(f32::INFINITY, f32::min),
        MatchRule::SameSample => {
            let samples = frames.iter().map(Vec::len).max().unwrap_or(0);
            (0..samples)
                .map(|i| {
                    let column: Vec<f32> = frames
                        .iter()
                        .map(|f| f.get(i).copied().unwrap_or(f32::INFINITY))
                        .collect();
                    kth_smallest(&column, k)
                })
                .fold(f32::INFINITY, f32::min)
        }
        MatchRule::MeanOfBest => {
            let mut sorted: Vec<f32> = best.into_iter().filter(|d| d.is_finite()).collect();
            if sorted.len() < k {
                return f32::INFINITY;
            }
            sorted.sort_by(f32::total_cmp);
            sorted[..k].iter().sum::<f32>() / k as f32
        }
    }
}

/// The k-th smallest value (k from 1), `f32::INFINITY` when there are fewer than k finite values.
fn kth_smallest(values: &[f32], k: usize) -> f32 {
    let mut finite: Vec<f32> = values.iter().copied().filter(|d| d.is_finite()).collect();
    if finite.len() < k {
        return f32::INFINITY;
    }
    finite.sort_by(f32::total_cmp);
    finite[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(rule: MatchRule, k: u32, t: f32) -> Matching {
        Matching {
            threshold: Some(t),
            required_matches: k,
            rule,
        }
    }

    /// Whether the frame-by-frame matcher accepts the attempt (frames with no face interrupt it).
    fn sequential(rule: MatchRule, k: u32, t: f32, frames: &[Vec<f32>]) -> bool {
        let mut m = Matcher::new(&matching(rule, k, t), f32::NAN);
        frames.iter().any(|f| {
            if f.iter().all(|d| !d.is_finite()) {
                m.interrupt();
                false
            } else {
                m.observe(f).is_some()
            }
        })
    }

    const RULES: [MatchRule; 4] = [
        MatchRule::Frames,
        MatchRule::Consecutive,
        MatchRule::SameSample,
        MatchRule::MeanOfBest,
    ];

    #[test]
    fn the_matcher_and_the_attempt_score_agree_at_every_threshold() {
        // Pseudo-random attempts of 0-8 frames against 1-3 samples, some frames without a face.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 1000) as f32 / 1000.0
        };
        for _ in 0..400 {
            let samples = 1 + (next() * 3.0) as usize;
            let frames: Vec<Vec<f32>> = (0..(next() * 9.0) as usize)
                .map(|_| {
                    if next() < 0.15 {
                        vec![]
                    } else {
                        (0..samples).map(|_| 0.2 + next() * 0.6).collect()
                    }
                })
                .collect();
            for rule in RULES {
                for k in 1..=3 {
                    let score = attempt_score(rule, k, &frames);
                    for t in [0.3, 0.4, 0.45, 0.5, 0.6, 0.7] {
                        assert_eq!(
                            sequential(rule, k, t, &frames),
                            score < t,
                            "{rule:?} k={k} t={t} score={score} frames={frames:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rules_differ_as_documented() {
        // Two frames under 0.5, not in a row, matching different samples.
        let frames = vec![vec![0.40, 0.70], vec![0.90, 0.90], vec![0.70, 0.45]];
        assert!(attempt_score(MatchRule::Frames, 2, &frames) < 0.5);
        assert!(attempt_score(MatchRule::Consecutive, 2, &frames) >= 0.5);
        assert!(attempt_score(MatchRule::SameSample, 2, &frames) >= 0.5);
        assert!((attempt_score(MatchRule::MeanOfBest, 2, &frames) - 0.425).abs() < 1e-6);
        // One frame is never enough for k = 2, however close.
        assert_eq!(
            attempt_score(MatchRule::Frames, 2, &[vec![0.1]]),
            f32::INFINITY
        );
    }
}
