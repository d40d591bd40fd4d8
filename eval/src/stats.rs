//! Rates with their 95% confidence intervals, and the curves built from two score lists.

use statrs::distribution::{Beta, ContinuousCDF};

/// `events` out of `trials`, with its exact (Clopper-Pearson) two-sided 95% interval and the one-sided 95%
/// upper bound (with no event in n trials, about 3/n: the "rule of three").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    pub events: u64,
    pub trials: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    pub upper95: f64,
}

impl Rate {
    pub fn new(events: u64, trials: u64) -> Rate {
        assert!(events <= trials, "{events} events in {trials} trials");
        if trials == 0 {
            return Rate {
                events,
                trials,
                rate: f64::NAN,
                low: 0.0,
                high: 1.0,
                upper95: 1.0,
            };
        }
        let (k, n) = (events as f64, trials as f64);
        let quantile = |a: f64, b: f64, p: f64| {
            Beta::new(a, b)
                .map(|beta| beta.inverse_cdf(p))
                .unwrap_or(f64::NAN)
        };
        let low = if events == 0 {
            0.0
        } else {
            quantile(k, n - k + 1.0, 0.025)
        };
        let high = if events == trials {
            1.0
        } else {
            quantile(k + 1.0, n - k, 0.975)
        };
        let upper95 = if events == trials {
            1.0
        } else {
            quantile(k + 1.0, n - k, 0.95)
        };
        Rate {
            events,
            trials,
            rate: k / n,
            low,
            high,
            upper95,
        }
    }
}

impl std::fmt::Display for Rate {
    /// `3/1560 = 0.19% [0.04%, 0.56%]`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} = {} [{}, {}]",
            self.events,
            self.trials,
            percent(self.rate),
            percent(self.low),
            percent(self.high)
        )
    }
}

/// A proportion as a percentage with enough digits for rates down to 1e-5.
pub fn percent(p: f64) -> String {
    if p.is_nan() {
        return "-".into();
    }
    let v = p * 100.0;
    if v == 0.0 {
        "0%".into()
    } else if v >= 10.0 {
        format!("{v:.1}%")
    } else if v >= 0.1 {
        format!("{v:.2}%")
    } else {
        format!("{v:.4}%")
    }
}

/// Genuine and impostor scores of one comparison (a pair of images, or an attempt): lower means "more alike",
/// and a score below the threshold is accepted (facekey's rule is `distance < threshold`).
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
}

impl Scores {
    /// False accepts: impostor scores below `threshold`.
    pub fn far(&self, threshold: f32) -> Rate {
        let n = self.impostor.iter().filter(|&&s| s < threshold).count();
        Rate::new(n as u64, self.impostor.len() as u64)
    }

    /// False rejects: genuine scores not below `threshold` (a genuine comparison with no score, a face never
    /// found, is `f32::INFINITY` and always refused).
    pub fn frr(&self, threshold: f32) -> Rate {
        let n = self.genuine.iter().filter(|&&s| s >= threshold).count();
        Rate::new(n as u64, self.genuine.len() as u64)
    }

    /// Every threshold where a rate changes, with FAR and FRR there, ascending.
    pub fn curve(&self) -> Vec<(f32, f64, f64)> {
        let mut cuts: Vec<f32> = self
            .genuine
            .iter()
            .chain(&self.impostor)
            .copied()
            .filter(|s| s.is_finite())
            .collect();
        cuts.sort_by(f32::total_cmp);
        cuts.dedup();
        let mut g = self.genuine.clone();
        let mut i = self.impostor.clone();
        g.sort_by(f32::total_cmp);
        i.sort_by(f32::total_cmp);
        let (ng, ni) = (g.len().max(1) as f64, i.len().max(1) as f64);
        let mut out = Vec::with_capacity(cuts.len() + 1);
        out.push((0.0, 0.0, 1.0));
        for &c in &cuts {
            // Accepted at threshold just above c: scores <= c.
            let t = next_up(c);
            let fa = i.partition_point(|&s| s < t) as f64 / ni;
            let fr = 1.0 - g.partition_point(|&s| s < t) as f64 / ng;
            out.push((t, fa, fr));
        }
        out
    }

    /// The equal error rate: where FAR and FRR cross (their mean at the closest threshold), and that threshold.
    pub fn eer(&self) -> (f64, f32) {
        let curve = self.curve();
        let mut best = (f64::INFINITY, 0.0, 0.0f32);
        for &(t, fa, fr) in &curve {
            let gap = (fa - fr).abs();
            if gap < best.0 {
                best = (gap, (fa + fr) / 2.0, t);
            }
        }
        (best.1, best.2)
    }

    /// The true accept rate at the largest threshold whose FAR is at most `far`, and that threshold.
    pub fn tar_at_far(&self, far: f64) -> (f64, f32) {
        let curve = self.curve();
        let mut best = (0.0, 0.0f32);
        for &(t, fa, fr) in &curve {
            if fa <= far {
                best = (1.0 - fr, t);
            }
        }
        best
    }
}

/// The smallest f32 above `x` (for x finite and non-negative).
fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_events_bound_the_rate_by_the_rule_of_three() {
        let r = Rate::new(0, 1000);
        assert_eq!(r.rate, 0.0);
        assert_eq!(r.low, 0.0);
        // One-sided 95%: 1 - 0.05^(1/n), about 3/n.
        assert!((r.upper95 - (1.0 - 0.05f64.powf(1.0 / 1000.0))).abs() < 1e-9);
        assert!((r.upper95 * 1000.0 - 3.0).abs() < 0.01, "{r:?}");
        // Two-sided 97.5%: about 3.69/n.
        assert!((r.high * 1000.0 - 3.69).abs() < 0.01, "{r:?}");
    }

    #[test]
    fn clopper_pearson_matches_published_values() {
        // 5 of 20: exact 95% interval [0.0866, 0.4910] (Clopper-Pearson tables).
        let r = Rate::new(5, 20);
        assert!((r.low - 0.0866).abs() < 1e-3, "{r:?}");
        assert!((r.high - 0.4910).abs() < 1e-3, "{r:?}");
        let all = Rate::new(20, 20);
        assert_eq!(all.high, 1.0);
        assert!((all.low - 0.8316).abs() < 1e-3, "{all:?}");
    }

    #[test]
    fn curve_eer_and_tar() {
        let s = Scores {
            genuine: vec![0.1, 0.2, 0.3, 0.6],
            impostor: vec![0.4, 0.5, 0.7, 0.8],
        };
        assert_eq!(s.far(0.45).events, 1);
        assert_eq!(s.frr(0.45).events, 1);
        let (eer, t) = s.eer();
        assert!((eer - 0.25).abs() < 1e-9, "{eer} at {t}");
        let (tar, t) = s.tar_at_far(0.0);
        assert!((tar - 0.75).abs() < 1e-9 && t <= 0.4, "{tar} at {t}");
        let frr_none = Scores {
            genuine: vec![f32::INFINITY],
            impostor: vec![],
        };
        assert_eq!(frr_none.frr(2.0).events, 1);
    }
}
