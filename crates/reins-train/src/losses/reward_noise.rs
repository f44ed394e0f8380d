//! Noise-aware reward training from preference strength (Wang et al., "Secrets of RLHF in
//! Large Language Models Part II: Reward Modeling", arXiv:2401.06080, §2.4–2.5).
//!
//! An ensemble of M reward models gives each labelled pair its preference strength: the mean
//! `μ̂` and spread `σ̂` over members of `r(x, y_c) − r(x, y_r)` (Eq. 4; `reins reward` with
//! `ensemble_size = M` writes them to `preference_strength.jsonl`). The paper reads a negative
//! `μ̂` as a likely wrong label and `μ̂ ≈ 0` as an ambiguous one, and treats each pair by its
//! strength before training a new reward model:
//!
//! - **label flipping** (§2.4.1): the bottom 20 % of pairs by `μ̂` (where the paper found
//!   `μ̂ < 0`) swap chosen and rejected;
//! - **label smoothing** (§2.4.1, Eq. 5): `−(1 − α) log σ(Δ) − α log σ(−Δ)` on the pairs whose
//!   strength is below 0 (§2.5's "Soft Label + Margin");
//! - **adaptive margin** (§2.4.2, Eq. 6): `−log σ(Δ − μ̂)` on every pair: a larger margin for
//!   pairs the ensemble separates clearly, a smaller (negative) one for doubtful pairs.
//!
//! This file is the pure per-pair rule: strengths in, one [`PairTreatment`] per pair out. The
//! Bradley–Terry loss ([`super::reward::bradley_terry_loss`]) takes the result as its per-pair
//! `margin` and soft label; flipping swaps the pair's responses in the data. The paper gives
//! no value for α; 0.1 (TRL's conservative-DPO habit) is a default to tune, not a claim.

use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Which pairs get label smoothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmoothPairs {
    /// Pairs whose strength (after any flip) is below 0: §2.5's "Soft Label + Margin".
    #[default]
    Negative,
    /// Pairs the ensemble cannot tell apart, `|μ̂| ≤ σ̂` (the report's `ambiguous` verdict).
    Ambiguous,
}

/// The per-pair treatment settings (flat keys of `reins reward`, beside `strength_report`).
/// Each treatment is off at 0; the defaults are the paper's combination of all three.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseAwareConfig {
    /// Flip at most this fraction of the pairs, the weakest by mean strength (paper §2.4.1:
    /// the bottom 20 %). Default 0.2; 0 flips nothing.
    pub strength_flip_fraction: f64,
    /// ...and only those whose mean strength is below this value (default 0: the ensemble
    /// prefers the rejected response; `inf` flips the whole bottom fraction, as the paper's
    /// HH-RLHF cut, where every such pair had `μ̂ < 0`).
    pub strength_flip_below: f64,
    /// Label smoothing α of the selected pairs (Eq. 5): their target becomes `1 − α`.
    /// Default 0.1 (no value in the paper); 0 smooths nothing.
    pub strength_label_smoothing: f64,
    /// Which pairs are smoothed: `"negative"` (strength below 0 after flipping, the paper's
    /// choice) or `"ambiguous"` (`|μ̂| ≤ σ̂`). Default `"negative"`.
    pub strength_smooth: SmoothPairs,
    /// Adaptive margin scale λ: the margin is `λ · μ̂` (Eq. 6 has λ = 1), `μ̂` taken after
    /// any flip. Default 1.0; 0 adds no margin.
    pub strength_margin_scale: f64,
}

impl Default for NoiseAwareConfig {
    fn default() -> Self {
        NoiseAwareConfig {
            strength_flip_fraction: 0.2,
            strength_flip_below: 0.0,
            strength_label_smoothing: 0.1,
            strength_smooth: SmoothPairs::Negative,
            strength_margin_scale: 1.0,
        }
    }
}

impl NoiseAwareConfig {
    /// No treatment at all: training is plain Bradley–Terry.
    pub fn off() -> Self {
        NoiseAwareConfig {
            strength_flip_fraction: 0.0,
            strength_label_smoothing: 0.0,
            strength_margin_scale: 0.0,
            ..Default::default()
        }
    }

    /// Checks ranges; the error names the key and its range.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, range: &str, v: f64| Err(TrainError::Config(format!("`{key}` must be {range} (got {v})")));
        if !(0.0..=1.0).contains(&self.strength_flip_fraction) {
            return bad("strength_flip_fraction", "a fraction in [0, 1]", self.strength_flip_fraction);
        }
        if self.strength_flip_below.is_nan() {
            return bad("strength_flip_below", "a number (or inf)", self.strength_flip_below);
        }
        if !(0.0..0.5).contains(&self.strength_label_smoothing) {
            return bad("strength_label_smoothing", "in [0, 0.5)", self.strength_label_smoothing);
        }
        if !(self.strength_margin_scale.is_finite() && self.strength_margin_scale >= 0.0) {
            return bad("strength_margin_scale", "a finite λ >= 0", self.strength_margin_scale);
        }
        Ok(())
    }
}

/// What the rule does to one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairTreatment {
    /// Swap chosen and rejected.
    pub flipped: bool,
    /// The pair's strength in its (possibly flipped) orientation: `−μ̂` when flipped.
    pub mean: f64,
    /// Label smoothing α of this pair (0 = its label is kept).
    pub smoothing: f64,
    /// The Bradley–Terry margin `λ · mean`.
    pub margin: f64,
}

impl PairTreatment {
    /// The soft label (probability that the new chosen is preferred) the loss should use,
    /// given the data's own label `p` (`None` = a hard label, 1): `(1 − α) p + α (1 − p)`.
    /// `None` when neither the data nor the rule softens the label.
    pub fn soft_label(&self, p: Option<f64>) -> Option<f64> {
        if self.smoothing == 0.0 {
            return p;
        }
        let p = p.unwrap_or(1.0);
        Some((1.0 - self.smoothing) * p + self.smoothing * (1.0 - p))
    }
}

/// The per-pair rule: `strengths[i] = (μ̂_i, σ̂_i)` of pair i in its labelled orientation →
/// its treatment. Flips the weakest `⌊q·N⌋` pairs by `μ̂` (ties by position) among those with
/// `μ̂ < strength_flip_below`, then smooths and sets margins on the flipped orientation.
pub fn treat_pairs(strengths: &[(f64, f64)], cfg: &NoiseAwareConfig) -> Result<Vec<PairTreatment>> {
    cfg.validate()?;
    if let Some((i, (m, s))) =
        strengths.iter().enumerate().find(|(_, (m, s))| !(m.is_finite() && s.is_finite() && *s >= 0.0))
    {
        return Err(TrainError::Input(format!(
            "preference strength of pair {i} is mean {m}, std {s}: need a finite mean and a finite std >= 0"
        )));
    }
    let n = strengths.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| strengths[a].0.total_cmp(&strengths[b].0).then(a.cmp(&b)));
    let budget = (cfg.strength_flip_fraction * n as f64 + 1e-9).floor() as usize;
    let mut flip = vec![false; n];
    for &i in order.iter().take(budget) {
        flip[i] = strengths[i].0 < cfg.strength_flip_below;
    }
    Ok(strengths
        .iter()
        .zip(flip)
        .map(|(&(mu, sigma), flipped)| {
            let mean = if flipped { -mu } else { mu };
            let smooth = match cfg.strength_smooth {
                SmoothPairs::Negative => mean < 0.0,
                SmoothPairs::Ambiguous => mean.abs() <= sigma,
            };
            PairTreatment {
                flipped,
                mean,
                smoothing: if smooth { cfg.strength_label_smoothing } else { 0.0 },
                margin: cfg.strength_margin_scale * mean,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;

    use super::*;
    use crate::losses::{bradley_terry_loss, RewardLossConfig};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Five pairs worked by hand with the paper's defaults (q = 0.2, below 0, α = 0.1 on
    /// negative strength, λ = 1).
    #[test]
    fn paper_defaults_on_five_pairs() -> Result<()> {
        let s = [(-3.0, 0.5), (-1.0, 2.0), (0.5, 1.0), (2.0, 0.5), (4.0, 1.0)];
        let t = treat_pairs(&s, &NoiseAwareConfig::default())?;
        // ⌊0.2·5⌋ = 1 flip: the weakest pair, whose mean −3 is below 0.
        assert_eq!(t.iter().map(|p| p.flipped).collect::<Vec<_>>(), [true, false, false, false, false]);
        assert_eq!(t.iter().map(|p| p.mean).collect::<Vec<_>>(), [3.0, -1.0, 0.5, 2.0, 4.0]);
        // Pair 1 stays negative after the flip: smoothed.
        assert_eq!(t.iter().map(|p| p.smoothing).collect::<Vec<_>>(), [0.0, 0.1, 0.0, 0.0, 0.0]);
        assert_eq!(t.iter().map(|p| p.margin).collect::<Vec<_>>(), [3.0, -1.0, 0.5, 2.0, 4.0]);
        Ok(())
    }

    #[test]
    fn flip_rule_respects_both_the_fraction_and_the_threshold() -> Result<()> {
        let s = [(0.3, 1.0), (-2.0, 1.0), (-0.1, 1.0), (1.0, 1.0), (-0.5, 1.0), (2.0, 1.0), (0.1, 1.0), (3.0, 1.0)];
        let flips = |q: f64, below: f64| -> Result<Vec<usize>> {
            let cfg = NoiseAwareConfig { strength_flip_fraction: q, strength_flip_below: below, ..Default::default() };
            Ok(treat_pairs(&s, &cfg)?.iter().enumerate().filter(|(_, p)| p.flipped).map(|(i, _)| i).collect())
        };
        // ⌊0.25·8⌋ = 2: the two weakest (−2 at 1, −0.5 at 4).
        assert_eq!(flips(0.25, 0.0)?, [1, 4]);
        // ⌊0.5·8⌋ = 4 candidates (−2, −0.5, −0.1, 0.1) but 0.1 is not below 0.
        assert_eq!(flips(0.5, 0.0)?, [1, 2, 4]);
        // The paper's literal cut: the bottom fraction whatever its sign.
        assert_eq!(flips(0.5, f64::INFINITY)?, [1, 2, 4, 6]);
        // A threshold alone (every pair a candidate).
        assert_eq!(flips(1.0, -0.3)?, [1, 4]);
        assert!(flips(0.0, 0.0)?.is_empty());
        Ok(())
    }

    #[test]
    fn ambiguous_selection_uses_the_spread() -> Result<()> {
        let s = [(0.5, 1.0), (-0.5, 0.2), (3.0, 1.0), (-1.0, 1.0)];
        let cfg = NoiseAwareConfig {
            strength_flip_fraction: 0.0,
            strength_smooth: SmoothPairs::Ambiguous,
            ..Default::default()
        };
        let t = treat_pairs(&s, &cfg)?;
        assert_eq!(t.iter().map(|p| p.smoothing).collect::<Vec<_>>(), [0.1, 0.0, 0.0, 0.1]);
        Ok(())
    }

    #[test]
    fn soft_label_composes_with_the_datas_own_label() {
        let t = PairTreatment { flipped: false, mean: -1.0, smoothing: 0.1, margin: 0.0 };
        assert!(close(t.soft_label(None).unwrap(), 0.9));
        // p = 0.8 → 0.9·0.8 + 0.1·0.2 = 0.74.
        assert!(close(t.soft_label(Some(0.8)).unwrap(), 0.74));
        let keep = PairTreatment { smoothing: 0.0, ..t };
        assert_eq!(keep.soft_label(None), None);
        assert_eq!(keep.soft_label(Some(0.8)), Some(0.8));
    }

    /// The denoised Bradley–Terry loss on the five hand pairs against numbers computed apart:
    /// per pair `−[p log σ(d) + (1−p) log σ(−d)]`, `d = r_c − r_r − margin`, after the flip.
    /// Python (math only): `import math; ls=lambda x: -math.log1p(math.exp(-x));`
    /// `d=[(0.2-1.0)-3.0, (0.4+1.0)+1.0, (1.1-0.5)-0.5, (2.5-2.0)-2.0, (0.0-0.0)-4.0];`
    /// `p=[1,.9,1,1,1]; print(sum(-(pi*ls(x)+(1-pi)*ls(-x)) for pi,x in zip(p,d))/5)` → 2.102584046916592.
    #[test]
    fn denoised_bradley_terry_matches_hand_values() -> Result<()> {
        let s = [(-3.0, 0.5), (-1.0, 2.0), (0.5, 1.0), (2.0, 0.5), (4.0, 1.0)];
        let t = treat_pairs(&s, &NoiseAwareConfig::default())?;
        // Scores as labelled; pair 0 is flipped, so its chosen is the labelled rejected.
        let (chosen, rejected) = ([1.0, 0.4, 1.1, 2.5, 0.0], [0.2, -1.0, 0.5, 2.0, 0.0]);
        let (mut c, mut r) = (Vec::new(), Vec::new());
        for i in 0..5 {
            let (a, b) = if t[i].flipped { (rejected[i], chosen[i]) } else { (chosen[i], rejected[i]) };
            c.push(a);
            r.push(b);
        }
        let dev = Device::Cpu;
        let margin: Vec<f64> = t.iter().map(|p| p.margin).collect();
        let p: Vec<f64> = t.iter().map(|p| p.soft_label(None).unwrap_or(1.0)).collect();
        let loss = bradley_terry_loss(
            &Tensor::new(c, &dev)?,
            &Tensor::new(r, &dev)?,
            Some(&Tensor::new(margin, &dev)?),
            Some(&Tensor::new(p, &dev)?),
            &RewardLossConfig::default(),
        )?
        .to_scalar::<f64>()?;
        assert!((loss - 2.102584046916592).abs() < 1e-12, "{loss}");
        Ok(())
    }

    #[test]
    fn bad_settings_and_strengths_are_named() {
        let cfg = |f: fn(&mut NoiseAwareConfig)| {
            let mut c = NoiseAwareConfig::default();
            f(&mut c);
            treat_pairs(&[(1.0, 1.0)], &c).unwrap_err().to_string()
        };
        assert!(cfg(|c| c.strength_flip_fraction = 1.5).contains("strength_flip_fraction"));
        assert!(cfg(|c| c.strength_label_smoothing = 0.5).contains("strength_label_smoothing"));
        assert!(cfg(|c| c.strength_margin_scale = -1.0).contains("strength_margin_scale"));
        assert!(cfg(|c| c.strength_flip_below = f64::NAN).contains("strength_flip_below"));
        let e = treat_pairs(&[(1.0, 1.0), (f64::NAN, 1.0)], &NoiseAwareConfig::default()).unwrap_err().to_string();
        assert!(e.contains("pair 1"), "{e}");
    }

    proptest! {
        /// Invariants of the rule on any strengths: the flip budget holds, only pairs below
        /// the threshold flip, flips take the weakest first, flipping negates the strength,
        /// margins are λ times the oriented strength, and everything off is the identity.
        #[test]
        fn rule_invariants(
            s in proptest::collection::vec((-5.0f64..5.0, 0.0f64..3.0), 0..40),
            q in 0.0f64..1.0,
            below in -2.0f64..2.0,
            lambda in 0.0f64..3.0,
        ) {
            let cfg = NoiseAwareConfig { strength_flip_fraction: q, strength_flip_below: below, strength_margin_scale: lambda, ..Default::default() };
            let t = treat_pairs(&s, &cfg).unwrap();
            prop_assert_eq!(t.len(), s.len());
            let flipped: Vec<usize> = (0..s.len()).filter(|&i| t[i].flipped).collect();
            prop_assert!(flipped.len() as f64 <= q * s.len() as f64 + 1e-9);
            for i in 0..s.len() {
                let (mu, _) = s[i];
                prop_assert!(!t[i].flipped || mu < below);
                prop_assert_eq!(t[i].mean, if t[i].flipped { -mu } else { mu });
                prop_assert!((t[i].margin - lambda * t[i].mean).abs() < 1e-12);
                prop_assert!(t[i].smoothing == 0.0 || t[i].mean < 0.0);
                // A strictly weaker pair below the threshold is flipped whenever i is.
                for j in 0..s.len() {
                    if t[i].flipped && s[j].0 < mu {
                        prop_assert!(t[j].flipped, "pair {} ({}) flipped but weaker {} ({}) not", i, mu, j, s[j].0);
                    }
                }
            }
            let off = treat_pairs(&s, &NoiseAwareConfig::off()).unwrap();
            prop_assert!(off.iter().all(|p| !p.flipped && p.smoothing == 0.0 && p.margin == 0.0));
        }
    }
}
