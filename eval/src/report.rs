//! The figures: detection, pair distances, "enrol k, probe the rest", and per-attempt rates under each rule.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use facekey_config::MatchRule;

use crate::protocol::{self, Analysed, Attempt, Gallery, Protocol};
use crate::records::ImageRecord;
use crate::stats::{percent, Rate, Scores};

/// Where each synthesised frame's crop went: identity/name -> (left, top, width, height).
pub type Rects = HashMap<(String, String), [f32; 4]>;

/// Read the rects.csv `facekey-eval frames` writes.
pub fn read_rects(path: &Path) -> Result<Rects> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Rects::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            continue;
        }
        let n = |i: usize| f[i].parse::<f32>().unwrap_or(f32::NAN);
        out.insert((f[0].into(), f[1].into()), [n(2), n(3), n(4), n(5)]);
    }
    Ok(out)
}

/// Detection over a set: how many images had their face found, and how many faces were found where there is none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Detection {
    pub found: Rate,
    /// Faces whose centre lies outside the pasted crop (only with rects).
    pub false_faces: u64,
    /// Images with a face outside the pasted crop (only with rects).
    pub images_with_false: u64,
}

pub fn detection(records: &[ImageRecord], rects: Option<&Rects>) -> Detection {
    let (mut found, mut false_faces, mut images_with_false) = (0u64, 0u64, 0u64);
    for r in records {
        let rect = rects.and_then(|m| m.get(&(r.identity(), r.name())));
        let inside = |b: &[f32; 4]| match rect {
            None => true,
            Some([x, y, w, h]) => {
                let (cx, cy) = (b[0] + b[2] / 2.0, b[1] + b[3] / 2.0);
                cx >= *x && cx <= x + w && cy >= *y && cy <= y + h
            }
        };
        let hits = r.faces.iter().filter(|f| inside(&f.bbox)).count();
        let misses = r.faces.len() - hits;
        found += u64::from(hits > 0);
        false_faces += misses as u64;
        images_with_false += u64::from(misses > 0);
    }
    Detection {
        found: Rate::new(found, records.len() as u64),
        false_faces,
        images_with_false,
    }
}

/// Every pair of images with a face: genuine when both show the same identity.
pub fn pair_scores(gallery: &Gallery) -> Scores {
    let all: Vec<(usize, &[f32])> = gallery
        .identities
        .iter()
        .enumerate()
        .flat_map(|(i, (_, images))| {
            images
                .iter()
                .filter_map(move |a| a.best.as_deref().map(|e| (i, e)))
        })
        .collect();
    let mut s = Scores::default();
    for (a, (ia, ea)) in all.iter().enumerate() {
        for (ib, eb) in &all[a + 1..] {
            let d = protocol::distance(ea, eb);
            if ia == ib {
                s.genuine.push(d);
            } else {
                s.impostor.push(d);
            }
        }
    }
    s
}

/// Quantiles of a score list: min, 1%, median, 99%, max (finite values only).
pub fn quantiles(v: &[f32]) -> [f32; 5] {
    let mut f: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return [f32::NAN; 5];
    }
    f.sort_by(f32::total_cmp);
    let q = |p: f64| f[((f.len() - 1) as f64 * p).round() as usize];
    [f[0], q(0.01), q(0.5), q(0.99), f[f.len() - 1]]
}

/// One rule at one k, over the protocol's attempts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleFigures {
    pub rule: String,
    pub required: u32,
    pub far: Rate,
    pub frr: Rate,
    pub eer: f64,
    /// The largest threshold that accepts no impostor attempt, and the genuine refusals there.
    pub zero_far_threshold: f32,
    pub frr_at_zero_far: Rate,
}

pub const RULES: [MatchRule; 4] = [
    MatchRule::Frames,
    MatchRule::Consecutive,
    MatchRule::SameSample,
    MatchRule::MeanOfBest,
];

pub fn rule_figures(
    scores: &Scores,
    rule: MatchRule,
    required: u32,
    threshold: f32,
) -> RuleFigures {
    let lowest_impostor = scores
        .impostor
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    RuleFigures {
        rule: rule.name().into(),
        required,
        far: scores.far(threshold),
        frr: scores.frr(threshold),
        eer: scores.eer().0,
        zero_far_threshold: lowest_impostor,
        frr_at_zero_far: scores.frr(lowest_impostor),
    }
}

/// The whole report of one set under one embedder, as text.
pub struct Report {
    pub text: String,
    pub pairs: Scores,
    pub attempts: Vec<((MatchRule, u32), Scores)>,
}

pub struct Inputs<'a> {
    pub name: &'a str,
    pub records: &'a [ImageRecord],
    /// Frames to probe with, when not the enrolment's own (a grey copy).
    pub probe: Option<&'a [ImageRecord]>,
    pub rects: Option<&'a Rects>,
    pub negatives: Option<&'a [ImageRecord]>,
    pub protocol: Protocol,
    pub threshold: f32,
    pub rule: MatchRule,
    pub required: u32,
}

pub fn report(inp: &Inputs<'_>) -> Report {
    let mut t = String::new();
    let gallery = Gallery::new(inp.records.iter().map(Analysed::from_record).collect());
    let probe = inp
        .probe
        .map(|p| Gallery::new(p.iter().map(Analysed::from_record).collect()));
    let probe_ref = probe.as_ref().unwrap_or(&gallery);
    let _ = writeln!(
        t,
        "== {}: {} identities, {} images",
        inp.name,
        gallery.identities.len(),
        inp.records.len()
    );
    let det = detection(inp.records, inp.rects);
    let _ = writeln!(
        t,
        "detection: face found in {}; {} face(s) outside the face crop, in {} image(s)",
        det.found, det.false_faces, det.images_with_false
    );
    if let Some(p) = inp.probe {
        let dp = detection(p, inp.rects);
        let _ = writeln!(t, "detection (probe frames): face found in {}", dp.found);
    }
    if let Some(neg) = inp.negatives {
        let with = neg.iter().filter(|r| !r.faces.is_empty()).count();
        let faces: usize = neg.iter().map(|r| r.faces.len()).sum();
        let _ = writeln!(
            t,
            "face-free frames: a face found in {} ({faces} face(s) in all)",
            Rate::new(with as u64, neg.len() as u64)
        );
    }

    let pairs = pair_scores(&gallery);
    let [gmin, g1, gmed, g99, gmax] = quantiles(&pairs.genuine);
    let [imin, i1, imed, i99, imax] = quantiles(&pairs.impostor);
    let _ = writeln!(t, "pairs (best face of each image):");
    let _ = writeln!(
        t,
        "  genuine  {:>7} pairs  min {gmin:.3}  1% {g1:.3}  median {gmed:.3}  99% {g99:.3}  max {gmax:.3}",
        pairs.genuine.len()
    );
    let _ = writeln!(
        t,
        "  impostor {:>7} pairs  min {imin:.3}  1% {i1:.3}  median {imed:.3}  99% {i99:.3}  max {imax:.3}",
        pairs.impostor.len()
    );
    let (eer, eer_t) = pairs.eer();
    let (tar3, t3) = pairs.tar_at_far(1e-3);
    let (tar4, t4) = pairs.tar_at_far(1e-4);
    let _ = writeln!(
        t,
        "  at {:.3}: FAR {}  FRR {}",
        inp.threshold,
        pairs.far(inp.threshold),
        pairs.frr(inp.threshold)
    );
    let _ = writeln!(
        t,
        "  EER {} at {eer_t:.3}; TAR {} at FAR 1e-3 ({t3:.3}); TAR {} at FAR 1e-4 ({t4:.3})",
        percent(eer),
        percent(tar3),
        percent(tar4)
    );

    let _ = writeln!(
        t,
        "enrol k, probe the rest (one frame per comparison), at {:.3}:",
        inp.threshold
    );
    for k in [1usize, 3, 5] {
        let p = Protocol {
            enrol: k,
            frames: 1,
            ..inp.protocol
        };
        // Every single probe image against the enrolment: attempts of one frame, each frame in turn.
        let mut s = Scores::default();
        for a in protocol::attempts(
            &gallery,
            &Protocol {
                frames: usize::MAX,
                ..p
            },
        ) {
            for &f in &a.frames {
                let one = Attempt {
                    frames: vec![f],
                    ..a.clone()
                };
                let sc =
                    protocol::attempt_scores(&gallery, probe_ref, &[one], MatchRule::Frames, 1);
                s.genuine.extend(sc.genuine);
                s.impostor.extend(sc.impostor);
            }
        }
        let _ = writeln!(
            t,
            "  k={k}: FAR {}  FRR {}  EER {}",
            s.far(inp.threshold),
            s.frr(inp.threshold),
            percent(s.eer().0)
        );
    }

    let attempts = protocol::attempts(&gallery, &inp.protocol);
    let genuine = attempts.iter().filter(|a| a.genuine()).count();
    let _ = writeln!(
        t,
        "per attempt: enrol {}, {} draw(s), up to {} frames; {} genuine and {} impostor attempts",
        inp.protocol.enrol,
        inp.protocol.draws,
        inp.protocol.frames,
        genuine,
        attempts.len() - genuine
    );
    let _ = writeln!(
        t,
        "  {:<13} {:>2}  {:<34} {:<30} {:>6}  {:>8}  FRR there",
        "rule",
        "k",
        format!("FAR at {:.3}", inp.threshold),
        format!("FRR at {:.3}", inp.threshold),
        "EER",
        "0-FAR t",
    );
    let mut all = Vec::new();
    for rule in RULES {
        for k in 1..=3u32 {
            let s = protocol::attempt_scores(&gallery, probe_ref, &attempts, rule, k);
            let f = rule_figures(&s, rule, k, inp.threshold);
            let mark = if rule == inp.rule && k == inp.required {
                "*"
            } else {
                " "
            };
            let _ = writeln!(
                t,
                " {mark}{:<13} {:>2}  {:<34} {:<30} {:>6}  {:>8.3}  {}",
                f.rule,
                k,
                f.far.to_string(),
                f.frr.to_string(),
                percent(f.eer),
                f.zero_far_threshold,
                f.frr_at_zero_far
            );
            all.push(((rule, k), s));
        }
    }
    let id = identify_figures(
        &gallery,
        &inp.protocol,
        inp.rule,
        inp.required,
        inp.threshold,
    );
    let _ = writeln!(
        t,
        "identification (facekey identify's rule, margin {}): {} enrolled, threshold {:.3}: named right {}, wrong {}; \
         second-best user behind the right one by {:.3} at least (median {:.3}); {} not enrolled, threshold {:.3}: \
         someone named {}",
        facekey_core::identify::MARGIN,
        id.users_closed,
        id.threshold_closed,
        id.correct,
        id.wrong,
        id.gap_min,
        id.gap_median,
        id.users_closed.saturating_sub(1),
        id.threshold_open,
        id.false_identified
    );
    Report {
        text: t,
        pairs,
        attempts: all,
    }
}

/// A DET/ROC curve as CSV: threshold, FAR, FRR.
pub fn curve_csv(scores: &Scores) -> String {
    let mut out = String::from("threshold,far,frr\n");
    for (t, fa, fr) in scores.curve() {
        let _ = writeln!(out, "{t},{fa},{fr}");
    }
    out
}

/// Identification over the protocol's draws, with `core::identify`'s rule: closed set (every identity enrolled,
/// the presented one's other images as frames) and open set (the presented identity not enrolled, all its images
/// as frames).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdentifyFigures {
    pub users_closed: usize,
    pub threshold_closed: f32,
    pub correct: Rate,
    pub wrong: u64,
    pub threshold_open: f32,
    pub false_identified: Rate,
    /// Genuine closed-set attempts: how far the second-best user's score was behind the right one's.
    pub gap_min: f32,
    pub gap_median: f32,
}

pub fn identify_figures(
    gallery: &Gallery,
    p: &Protocol,
    rule: MatchRule,
    required: u32,
    threshold: f32,
) -> IdentifyFigures {
    use facekey_core::identify::{choose, threshold_for};
    let n = gallery.identities.len();
    let t_closed = threshold_for(threshold, n);
    let t_open = threshold_for(threshold, n.saturating_sub(1));
    let (mut correct, mut wrong, mut closed, mut false_id, mut open) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut gaps = Vec::new();
    let draws = p.draws.max(1);
    for draw in 0..draws {
        // Everyone's enrolment for this draw.
        let enrolled: Vec<Vec<&[f32]>> = gallery
            .identities
            .iter()
            .map(|(_, images)| {
                let m = images.len().max(1);
                (0..p.enrol.min(images.len()))
                    .filter_map(|j| images[(draw + j) % m].best.as_deref())
                    .collect()
            })
            .collect();
        for (q, (_, images)) in gallery.identities.iter().enumerate() {
            let m = images.len();
            if m == 0 || draw >= m {
                continue;
            }
            let own: Vec<usize> = (0..p.enrol.min(m)).map(|j| (draw + j) % m).collect();
            let scores_for = |frames: &[usize], users: &[usize]| -> Vec<f32> {
                users
                    .iter()
                    .map(|&u| {
                        let per: Vec<Vec<f32>> = frames
                            .iter()
                            .take(p.frames)
                            .map(|&i| protocol::frame_distances(&enrolled[u], &images[i]))
                            .collect();
                        facekey_core::rule::attempt_score(rule, required, &per)
                    })
                    .collect()
            };
            // Closed set.
            let rest: Vec<usize> = (0..m).filter(|i| !own.contains(i)).collect();
            if !rest.is_empty() {
                let users: Vec<usize> = (0..n).collect();
                let s = scores_for(&rest, &users);
                closed += 1;
                match choose(&s, t_closed) {
                    Some(u) if u == q => correct += 1,
                    Some(_) => wrong += 1,
                    None => {}
                }
                gaps.push(facekey_core::identify::runner_up(&s, q) - s[q]);
            }
            // Open set: q not enrolled.
            let users: Vec<usize> = (0..n).filter(|&u| u != q).collect();
            let all: Vec<usize> = (0..m).collect();
            open += 1;
            if choose(&scores_for(&all, &users), t_open).is_some() {
                false_id += 1;
            }
        }
    }
    gaps.sort_by(f32::total_cmp);
    IdentifyFigures {
        users_closed: n,
        threshold_closed: t_closed,
        correct: Rate::new(correct, closed),
        wrong,
        threshold_open: t_open,
        false_identified: Rate::new(false_id, open),
        gap_min: gaps.first().copied().unwrap_or(f32::NAN),
        gap_median: gaps.get(gaps.len() / 2).copied().unwrap_or(f32::NAN),
    }
}
