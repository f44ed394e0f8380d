//! Contrastive Preference Learning (Hejna et al., "Contrastive Preference Learning: Learning
//! from Human Feedback without RL", ICLR 2024, arXiv:2310.13639).
//!
//! Preferences are modelled as following the *regret* of a segment — the sum of its optimal
//! advantages — and under maximum-entropy RL the optimal advantage is `α·log π*(a|s)`. So a
//! policy can be fit to preferences directly with a contrastive loss on its own log-probs:
//! no reward model, no RL, no reference model.
//!
//! Segment score (the paper's discounted regret; the official code uses γ = 1):
//! `S(σ) = α · Σ_k γ^k · log π(a_k|s_k)` over the segment's steps `k = 0..L−1`.
//!
//! Loss of a pair with σ⁺ preferred, with the conservative bias `λ ∈ (0, 1]` on the negative
//! segment (the official code's `contrastive_bias`; λ < 1 favours raising σ⁺'s likelihood
//! over pushing σ⁻'s down):
//! `L = −log( exp S(σ⁺) / (exp S(σ⁺) + exp λ·S(σ⁻)) ) = softplus(−(S(σ⁺) − λ·S(σ⁻)))`.
//! With a soft label `p = P(σ⁺ ≻ σ⁻)` it is `p·L(σ⁺, σ⁻) + (1 − p)·L(σ⁻, σ⁺)`, as the official
//! `biased_bce_with_logits` (jhejna/cpl `research/algs/cpl.py`). CPL-BC adds `c_bc · BC`, the
//! mean negative log-prob of every step of both segments (`bc_data = "all"`). The dense
//! ("rank") mode, [`cpl_rank_loss`], applies the same biased loss to every ordered pair of a
//! batch of segments with label scores.
//!
//! Nothing here knows about text: a segment is `[B, T]` per-step log-probs and a 0/1 mask, so
//! the same loss serves language pairs (the segment is the completion) and control segments.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::ops::{masked_sum, softplus, to_vec_f64};
use crate::{Result, TrainError};

fn default_alpha() -> f64 {
    0.1
}
fn default_contrastive_bias() -> f64 {
    0.5
}
fn default_gamma() -> f64 {
    1.0
}

/// CPL's settings, under the official code's names (TRL has no CPL trainer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CplConfig {
    /// Temperature α of the max-entropy advantage `α·log π` (the paper's α). Default 0.1,
    /// the official MetaWorld configs' value.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Conservative bias λ ∈ (0, 1] on the dispreferred segment's score (official
    /// `contrastive_bias`). Default 0.5, the official CPL configs' value; 1 is unbiased CPL.
    #[serde(default = "default_contrastive_bias")]
    pub contrastive_bias: f64,
    /// Discount γ ∈ (0, 1] of the segment score, counted from each segment's first step.
    /// Default 1.0 (the official code has no discount).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Weight of the BC term (CPL-BC; official `bc_coeff`). Default 0.0.
    #[serde(default)]
    pub bc_coeff: f64,
}

impl Default for CplConfig {
    fn default() -> Self {
        CplConfig { alpha: default_alpha(), contrastive_bias: default_contrastive_bias(), gamma: 1.0, bc_coeff: 0.0 }
    }
}

impl CplConfig {
    /// Checks the ranges, saying how to fix a bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("`alpha` must be > 0 (got {}); the paper's default is 0.1", self.alpha));
        }
        if !(self.contrastive_bias > 0.0 && self.contrastive_bias <= 1.0) {
            return bad(format!(
                "`contrastive_bias` (CPL's conservative bias lambda) must lie in (0, 1] (got {}); use 0.5 or 1.0",
                self.contrastive_bias
            ));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return bad(format!("`gamma` (the segment discount) must lie in (0, 1] (got {}); use 1.0", self.gamma));
        }
        if !(self.bc_coeff.is_finite() && self.bc_coeff >= 0.0) {
            return bad(format!("`bc_coeff` must be >= 0 (got {}); 0 turns the BC term off", self.bc_coeff));
        }
        Ok(())
    }
}

/// One side of the comparison: per-step log-probs `[B, T]` (any values where `mask` is 0) and
/// the 0/1 `mask` `[B, T]` of the segment's steps.
pub struct Segments<'a> {
    pub logps: &'a Tensor,
    pub mask: &'a Tensor,
}

/// What [`cpl_loss`] returns.
#[derive(Debug)]
pub struct CplOutput {
    /// Scalar `mean_b L_b + bc_coeff · BC`, with graph.
    pub loss: Tensor,
    /// Per-pair contrastive losses `[B]`.
    pub losses: Tensor,
    /// Scalar BC term (mean negative log-prob over all masked steps of both sides).
    pub bc_loss: Tensor,
    /// Segment scores `S(σ⁺)` `[B]` (the implicit reward: α times the discounted log-prob sum).
    pub chosen_scores: Tensor,
    /// Segment scores `S(σ⁻)` `[B]`.
    pub rejected_scores: Tensor,
    /// Soft labels used, `[B]` (all 1 for hard labels).
    pub labels: Tensor,
}

/// `γ^k` at each masked step, `k` counting the row's masked steps from 0; 0 elsewhere. The
/// mask is data, so the weights carry no gradient.
fn discount_weights(mask: &Tensor, gamma: f64) -> Result<Tensor> {
    let m: Vec<Vec<f64>> = mask.to_dtype(DType::F64)?.to_vec2()?;
    let (b, t) = mask.dims2()?;
    let mut w = Vec::with_capacity(b * t);
    for row in m {
        let mut k = 0i32;
        for v in row {
            if v > 0.0 {
                w.push(gamma.powi(k));
                k += 1;
            } else {
                w.push(0.0);
            }
        }
    }
    Ok(Tensor::from_vec(w, (b, t), mask.device())?)
}

/// `S(σ) = α · Σ_k γ^k log π(a_k|s_k)` per row: `[B, T] → [B]`.
pub fn segment_scores(seg: &Segments, alpha: f64, gamma: f64) -> Result<Tensor> {
    let mask = seg.mask.to_dtype(seg.logps.dtype())?;
    let sums = if gamma == 1.0 {
        masked_sum(seg.logps, &mask, 1)?
    } else {
        masked_sum(seg.logps, &discount_weights(&mask, gamma)?.to_dtype(seg.logps.dtype())?, 1)?
    };
    Ok((sums * alpha)?)
}

fn check_shapes(chosen: &Segments, rejected: &Segments, labels: Option<&Tensor>) -> Result<usize> {
    let bad = |m: String| Err(TrainError::Config(m));
    let dims = |s: &Segments| -> Result<((usize, usize), (usize, usize))> {
        let l = s.logps.dims2().map_err(|_| {
            TrainError::Config(format!("CPL needs [B, T] per-step log-probs, got shape {:?}", s.logps.dims()))
        })?;
        let m = s
            .mask
            .dims2()
            .map_err(|_| TrainError::Config(format!("CPL needs a [B, T] step mask, got shape {:?}", s.mask.dims())))?;
        Ok((l, m))
    };
    let (cl, cm) = dims(chosen)?;
    let (rl, rm) = dims(rejected)?;
    if cl != cm || rl != rm {
        return bad(format!(
            "each segment's log-probs and mask must have the same shape (chosen {cl:?} vs {cm:?}, rejected {rl:?} vs {rm:?})"
        ));
    }
    if cl.0 != rl.0 {
        return bad(format!("chosen and rejected must hold the same number of segments ({} vs {})", cl.0, rl.0));
    }
    if let Some(p) = labels {
        if p.dims() != [cl.0] {
            return bad(format!("CPL's soft labels must be one per pair, shape [{}], got {:?}", cl.0, p.dims()));
        }
    }
    Ok(cl.0)
}

/// The CPL loss (arXiv:2310.13639, the biased form of jhejna/cpl `biased_bce_with_logits`) of
/// `B` segment pairs, σ⁺ = `chosen`: `mean_b [p·softplus(−(S⁺ − λS⁻)) + (1−p)·softplus(−(S⁻ − λS⁺))]
/// + bc_coeff · BC`, `p` = `labels` (soft `P(chosen ≻ rejected)`, `[B]`; `None` = all 1).
///
/// Shapes: `chosen`/`rejected` `[B, T⁺]` / `[B, T⁻]` log-probs and masks, `labels` `[B]`.
pub fn cpl_loss(chosen: &Segments, rejected: &Segments, labels: Option<&Tensor>, cfg: &CplConfig) -> Result<CplOutput> {
    cfg.validate()?;
    check_shapes(chosen, rejected, labels)?;
    let dt = chosen.logps.dtype();
    let s_c = segment_scores(chosen, cfg.alpha, cfg.gamma)?;
    let s_r = segment_scores(rejected, cfg.alpha, cfg.gamma)?;
    let lam = cfg.contrastive_bias;
    // −log σ(S_w − λ S_l) for each ordering.
    let nll_cr = softplus(&(&s_r * lam)?.sub(&s_c)?)?;
    let nll_rc = softplus(&(&s_c * lam)?.sub(&s_r)?)?;
    let labels = match labels {
        Some(p) => p.to_dtype(dt)?,
        None => s_c.ones_like()?,
    };
    let losses = ((&labels * &nll_cr)? + ((1.0 - &labels)? * &nll_rc)?)?;
    let (mc, mr) = (chosen.mask.to_dtype(dt)?, rejected.mask.to_dtype(dt)?);
    let steps = (mc.sum_all()? + mr.sum_all()?)?.clamp(1f64, f64::INFINITY)?;
    let total = (masked_sum(chosen.logps, &mc, 1)?.sum_all()? + masked_sum(rejected.logps, &mr, 1)?.sum_all()?)?;
    let bc_loss = (total / steps)?.neg()?;
    let mut loss = losses.mean_all()?;
    if cfg.bc_coeff != 0.0 {
        loss = (loss + (&bc_loss * cfg.bc_coeff)?)?;
    }
    Ok(CplOutput { loss, losses, bc_loss, chosen_scores: s_c, rejected_scores: s_r, labels })
}

/// CPL's dense ("rank") mode (jhejna/cpl `biased_bce_with_scores`): with `N` segments and a
/// label score each (higher = preferred; the official labels are summed oracle advantages),
/// the biased loss `softplus(−(S_a − λ·S_b))` of every ordered pair `a` above `b`, averaged
/// over the pairs — `O(N²)` comparisons from `N` segments. Returns the loss (scalar, with
/// graph) and the share of pairs whose unbiased score order agrees with the labels.
///
/// Tied label scores form no pair (the official code orders ties arbitrarily by its sort).
/// Shapes: `segments` `[N, T]`, `label_scores` `N`.
pub fn cpl_rank_loss(segments: &Segments, label_scores: &[f64], cfg: &CplConfig) -> Result<(Tensor, f64)> {
    cfg.validate()?;
    let n = check_shapes(segments, segments, None)?;
    if label_scores.len() != n {
        return Err(TrainError::Config(format!(
            "CPL's rank mode needs one label score per segment ({n} segments, {} scores)",
            label_scores.len()
        )));
    }
    let (mut above, mut below) = (Vec::new(), Vec::new());
    for a in 0..n {
        for b in 0..n {
            if label_scores[a] > label_scores[b] {
                above.push(a as u32);
                below.push(b as u32);
            }
        }
    }
    if above.is_empty() {
        return Err(TrainError::Config(
            "CPL's rank mode needs at least two segments with different label scores in a batch".into(),
        ));
    }
    let s = segment_scores(segments, cfg.alpha, cfg.gamma)?;
    let dev = s.device();
    let sa = s.index_select(&Tensor::new(above.as_slice(), dev)?, 0)?;
    let sb = s.index_select(&Tensor::new(below.as_slice(), dev)?, 0)?;
    let loss = softplus(&(&sb * cfg.contrastive_bias)?.sub(&sa)?)?.mean_all()?;
    let (va, vb) = (to_vec_f64(&sa.detach())?, to_vec_f64(&sb.detach())?);
    let agree = va.iter().zip(&vb).filter(|(a, b)| a > b).count() as f64;
    Ok((loss, agree / va.len() as f64))
}

/// The step's metrics under TRL's DPO keys where they mean the same: `loss`, `rewards/chosen`
/// and `rewards/rejected` (mean segment scores, CPL's implicit reward), `rewards/margins`,
/// `rewards/accuracies` (the official accuracy: the unbiased score order agrees with the
/// rounded label), `logps/chosen`, `logps/rejected` (mean summed log-probs of the given
/// segments); and CPL's own `cpl_loss` and `bc_loss` (the official code's names).
pub fn cpl_metrics(out: &CplOutput, chosen_logps: &Tensor, rejected_logps: &Tensor) -> Result<BTreeMap<String, f64>> {
    let v = |t: &Tensor| to_vec_f64(&t.detach());
    let (c, r, p) = (v(&out.chosen_scores)?, v(&out.rejected_scores)?, v(&out.labels)?);
    let n = c.len().max(1) as f64;
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n;
    // torch.round(0.5) is 0: a tie label counts the rejected side as preferred, as officially.
    let agree = c.iter().zip(&r).zip(&p).filter(|((c, r), p)| (c > r) == (**p > 0.5)).count() as f64;
    let scalar = |t: &Tensor| -> Result<f64> { Ok(t.detach().to_dtype(DType::F64)?.to_scalar::<f64>()?) };
    let mut m = BTreeMap::new();
    m.insert("loss".into(), scalar(&out.loss)?);
    m.insert("cpl_loss".into(), scalar(&out.losses.mean_all()?)?);
    m.insert("bc_loss".into(), scalar(&out.bc_loss)?);
    m.insert("rewards/chosen".into(), mean(&c));
    m.insert("rewards/rejected".into(), mean(&r));
    m.insert("rewards/margins".into(), mean(&c) - mean(&r));
    m.insert("rewards/accuracies".into(), agree / n);
    m.insert("logps/chosen".into(), mean(&v(chosen_logps)?));
    m.insert("logps/rejected".into(), mean(&v(rejected_logps)?));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use serde_json::Value;

    use super::*;

    fn t2(rows: &[&[f64]]) -> Tensor {
        let (b, t) = (rows.len(), rows[0].len());
        Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
    }

    fn cfg(alpha: f64, contrastive_bias: f64, gamma: f64) -> CplConfig {
        CplConfig { alpha, contrastive_bias, gamma, bc_coeff: 0.0 }
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 1e-9, "{what}: {a} vs {b}");
    }

    /// σ⁺ steps −1, −2 (S⁺ = −3 at α = 1); σ⁻ one step −4 and a masked −9 (S⁻ = −4).
    fn hand_pair() -> (Tensor, Tensor, Tensor, Tensor) {
        (t2(&[&[-1.0, -2.0]]), t2(&[&[1.0, 1.0]]), t2(&[&[-4.0, -9.0]]), t2(&[&[1.0, 0.0]]))
    }

    #[test]
    fn hand_worked_biased_and_unbiased_losses() -> Result<()> {
        let (lc, mc, lr, mr) = hand_pair();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        // λ = 0.5: softplus(−(−3 − 0.5·(−4))) = softplus(1) = ln(1 + e).
        let out = cpl_loss(&c, &r, None, &cfg(1.0, 0.5, 1.0))?;
        close(scalar(&out.loss), (1.0 + 1f64.exp()).ln(), "lambda 0.5");
        close(scalar(&out.chosen_scores.sum_all()?), -3.0, "S+");
        close(scalar(&out.rejected_scores.sum_all()?), -4.0, "S-");
        // λ = 1: softplus(−(−3 + 4)) = ln(1 + e^−1).
        let out = cpl_loss(&c, &r, None, &cfg(1.0, 1.0, 1.0))?;
        close(scalar(&out.loss), (1.0 + (-1f64).exp()).ln(), "lambda 1");
        // α scales the scores: α = 0.1 gives softplus(−0.1).
        let out = cpl_loss(&c, &r, None, &cfg(0.1, 1.0, 1.0))?;
        close(scalar(&out.loss), (1.0 + (-0.1f64).exp()).ln(), "alpha 0.1");
        Ok(())
    }

    #[test]
    fn hand_worked_soft_label_and_bc_term() -> Result<()> {
        let (lc, mc, lr, mr) = hand_pair();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        let p = Tensor::new(&[0.25f64], &Device::Cpu)?;
        // 0.25·softplus(1) + 0.75·softplus(−(−4 − 0.5·(−3))) = 0.25·softplus(1) + 0.75·softplus(2.5).
        let mut c_bc = cfg(1.0, 0.5, 1.0);
        let out = cpl_loss(&c, &r, Some(&p), &c_bc)?;
        close(scalar(&out.loss), 2.262482722598968, "soft label");
        // BC: mean of −(−1, −2, −4) over the three masked steps = 7/3.
        close(scalar(&out.bc_loss), 7.0 / 3.0, "bc");
        c_bc.bc_coeff = 0.5;
        close(scalar(&cpl_loss(&c, &r, Some(&p), &c_bc)?.loss), 2.262482722598968 + 0.5 * 7.0 / 3.0, "cpl-bc");
        Ok(())
    }

    #[test]
    fn discount_counts_from_each_segments_first_step() -> Result<()> {
        // σ⁺ starts at step 1: S⁺ = −2 + 0.5·(−4) = −4; σ⁻: S⁻ = −1. λ = 1 → softplus(3).
        let (lc, mc) = (t2(&[&[-9.0, -2.0, -4.0]]), t2(&[&[0.0, 1.0, 1.0]]));
        let (lr, mr) = (t2(&[&[-1.0, -7.0, -7.0]]), t2(&[&[1.0, 0.0, 0.0]]));
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        let out = cpl_loss(&c, &r, None, &cfg(1.0, 1.0, 0.5))?;
        close(scalar(&out.loss), (1.0 + 3f64.exp()).ln(), "discounted");
        Ok(())
    }

    #[test]
    fn equal_scores_give_ln2() -> Result<()> {
        let z = t2(&[&[0.0, 0.0], &[0.0, 0.0]]);
        let m = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let s = Segments { logps: &z, mask: &m };
        let out = cpl_loss(&s, &s, None, &cfg(0.1, 0.5, 1.0))?;
        close(scalar(&out.loss), std::f64::consts::LN_2, "zero scores");
        Ok(())
    }

    fn random_pairs() -> (Tensor, Tensor, Tensor, Tensor) {
        let lc = t2(&[&[-0.3, -1.2, -0.7, -2.0], &[-1.5, -0.1, -0.9, -0.4], &[-0.2, -0.8, -3.1, -1.0]]);
        let mc = t2(&[&[1.0, 1.0, 1.0, 0.0], &[0.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]]);
        let lr = t2(&[&[-2.2, -0.5, -1.1], &[-0.6, -0.6, -2.5], &[-1.9, -0.3, -0.2]]);
        let mr = t2(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0], &[0.0, 1.0, 1.0]]);
        (lc, mc, lr, mr)
    }

    #[test]
    fn swapping_sides_with_lambda_one_mirrors_the_loss() -> Result<()> {
        let (lc, mc, lr, mr) = random_pairs();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        let k = cfg(0.3, 1.0, 1.0);
        let fwd = cpl_loss(&c, &r, None, &k)?;
        let back = cpl_loss(&r, &c, None, &k)?;
        // softplus(x) − softplus(−x) = x: the swapped loss is the original mirrored about its margin.
        let diff = to_vec_f64(&(&back.losses - &fwd.losses)?)?;
        let margin = to_vec_f64(&(&fwd.chosen_scores - &fwd.rejected_scores)?)?;
        for (d, m) in diff.iter().zip(&margin) {
            close(*d, *m, "mirror");
        }
        // A hard label on the swapped pair equals label 0 on the original.
        let zeros = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
        let flipped = cpl_loss(&c, &r, Some(&zeros), &k)?;
        close(scalar(&flipped.loss), scalar(&back.loss), "label 0 = swapped");
        // With λ < 1 the swap is no longer a mirror: the bias is asymmetric.
        let k = cfg(0.3, 0.5, 1.0);
        let fwd = cpl_loss(&c, &r, None, &k)?;
        let back = cpl_loss(&r, &c, None, &k)?;
        let diff = scalar(&(&back.losses - &fwd.losses)?.sum_all()?);
        let margin = scalar(&(&fwd.chosen_scores - &fwd.rejected_scores)?.sum_all()?);
        assert!((diff - margin).abs() > 1e-3, "lambda 0.5 should not mirror");
        Ok(())
    }

    #[test]
    fn without_discount_only_the_log_prob_sums_matter() -> Result<()> {
        let (lc, mc, lr, mr) = random_pairs();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        // The same row sums spread differently over different lengths.
        let sums = to_vec_f64(&masked_sum(&lc, &mc, 1)?)?;
        let lc2 =
            Tensor::from_vec(sums.iter().flat_map(|s| [s / 2.0, s / 2.0]).collect::<Vec<_>>(), (3, 2), &Device::Cpu)?;
        let mc2 = t2(&[&[1.0, 1.0], &[1.0, 1.0], &[1.0, 1.0]]);
        let c2 = Segments { logps: &lc2, mask: &mc2 };
        let k = cfg(0.1, 0.5, 1.0);
        close(scalar(&cpl_loss(&c, &r, None, &k)?.loss), scalar(&cpl_loss(&c2, &r, None, &k)?.loss), "sums only");
        // A discount makes the order of the steps matter.
        let k = cfg(1.0, 0.5, 0.8);
        let (a, b) = (scalar(&cpl_loss(&c, &r, None, &k)?.loss), scalar(&cpl_loss(&c2, &r, None, &k)?.loss));
        assert!((a - b).abs() > 1e-3, "gamma < 1 should see the steps: {a} vs {b}");
        Ok(())
    }

    fn tensor(v: &Value) -> Tensor {
        let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
        let (b, t) = (rows.len(), rows[0].len());
        Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
    }

    fn floats(v: &Value) -> Vec<f64> {
        serde_json::from_value(v.clone()).unwrap()
    }

    /// The official `biased_bce_with_logits` re-computed in torch (fixtures/cpl/make_cpl_loss.py):
    /// loss, BC term, accuracy, scores and the gradients with respect to every log-prob.
    #[test]
    fn matches_the_official_code_recomputed_in_torch() -> Result<()> {
        let fx: Value = serde_json::from_str(include_str!("../../../../fixtures/cpl/cpl_loss.json")).unwrap();
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let k = CplConfig {
                alpha: case["alpha"].as_f64().unwrap(),
                contrastive_bias: case["contrastive_bias"].as_f64().unwrap(),
                gamma: case["gamma"].as_f64().unwrap(),
                bc_coeff: case["bc_coeff"].as_f64().unwrap(),
            };
            let lc = Var::from_tensor(&tensor(&case["chosen_logps"]))?;
            let lr = Var::from_tensor(&tensor(&case["rejected_logps"]))?;
            let (mc, mr) = (tensor(&case["chosen_mask"]), tensor(&case["rejected_mask"]));
            let labels = match &case["labels"] {
                Value::Null => None,
                v => Some(Tensor::new(floats(v), &Device::Cpu)?),
            };
            let c = Segments { logps: lc.as_tensor(), mask: &mc };
            let r = Segments { logps: lr.as_tensor(), mask: &mr };
            let out = cpl_loss(&c, &r, labels.as_ref(), &k)?;
            close(scalar(&out.loss), case["loss"].as_f64().unwrap(), name);
            close(scalar(&out.losses.mean_all()?), case["cpl_loss"].as_f64().unwrap(), name);
            close(scalar(&out.bc_loss), case["bc_loss"].as_f64().unwrap(), name);
            for (got, want) in to_vec_f64(&out.chosen_scores)?.iter().zip(floats(&case["chosen_scores"])) {
                close(*got, want, name);
            }
            for (got, want) in to_vec_f64(&out.rejected_scores)?.iter().zip(floats(&case["rejected_scores"])) {
                close(*got, want, name);
            }
            let m = cpl_metrics(&out, &masked_sum(lc.as_tensor(), &mc, 1)?, &masked_sum(lr.as_tensor(), &mr, 1)?)?;
            close(m["rewards/accuracies"], case["accuracy"].as_f64().unwrap(), name);
            let grads = out.loss.backward()?;
            for (var, key) in [(&lc, "grad_chosen_logps"), (&lr, "grad_rejected_logps")] {
                let got = grads.get(var).map(|g| g.flatten_all().and_then(|g| g.to_vec1::<f64>()));
                let want = tensor(&case[key]).flatten_all()?.to_vec1::<f64>()?;
                for (g, w) in got.expect("a gradient")?.iter().zip(&want) {
                    close(*g, *w, &format!("{name} {key}"));
                }
            }
        }
        Ok(())
    }

    /// The official dense mode re-computed in torch: loss, accuracy and log-prob gradients.
    #[test]
    fn rank_mode_matches_the_official_code_recomputed_in_torch() -> Result<()> {
        let fx: Value = serde_json::from_str(include_str!("../../../../fixtures/cpl/cpl_loss.json")).unwrap();
        for case in fx["rank_cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let k = cfg(case["alpha"].as_f64().unwrap(), case["contrastive_bias"].as_f64().unwrap(), 1.0);
            let lp = Var::from_tensor(&tensor(&case["logps"]))?;
            let mask = tensor(&case["mask"]);
            let (loss, accuracy) =
                cpl_rank_loss(&Segments { logps: lp.as_tensor(), mask: &mask }, &floats(&case["label_scores"]), &k)?;
            close(scalar(&loss), case["loss"].as_f64().unwrap(), name);
            // The official accuracy is a float32 ratio.
            assert!((accuracy - case["accuracy"].as_f64().unwrap()).abs() < 1e-6, "{name}: accuracy {accuracy}");
            let grads = loss.backward()?;
            let got = grads.get(&lp).expect("a gradient").flatten_all()?.to_vec1::<f64>()?;
            let want = tensor(&case["grad_logps"]).flatten_all()?.to_vec1::<f64>()?;
            for (g, w) in got.iter().zip(&want) {
                close(*g, *w, &format!("{name} gradient"));
            }
        }
        Ok(())
    }

    /// Two segments in rank mode are one pair: the pairwise loss; ties form no pair.
    #[test]
    fn rank_mode_of_two_segments_is_the_pair_loss_and_ties_are_left_out() -> Result<()> {
        let lp = t2(&[&[-4.0, -9.0], &[-1.0, -2.0]]);
        let m = t2(&[&[1.0, 0.0], &[1.0, 1.0]]);
        let (loss, acc) = cpl_rank_loss(&Segments { logps: &lp, mask: &m }, &[0.0, 1.0], &cfg(1.0, 0.5, 1.0))?;
        // Segment 1 preferred: softplus(−(−3 − 0.5·(−4))) = ln(1 + e), as the hand-worked pair.
        close(scalar(&loss), (1.0 + 1f64.exp()).ln(), "two segments");
        assert_eq!(acc, 1.0, "S = −3 above −4 agrees with the labels");
        let e = cpl_rank_loss(&Segments { logps: &lp, mask: &m }, &[1.0, 1.0], &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("different label scores"), "{e}");
        let e = cpl_rank_loss(&Segments { logps: &lp, mask: &m }, &[1.0], &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("one label score per segment"), "{e}");
        Ok(())
    }

    #[test]
    fn metrics_use_trls_dpo_keys() -> Result<()> {
        let (lc, mc, lr, mr) = hand_pair();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        let out = cpl_loss(&c, &r, None, &cfg(0.5, 0.5, 1.0))?;
        let m = cpl_metrics(&out, &masked_sum(&lc, &mc, 1)?, &masked_sum(&lr, &mr, 1)?)?;
        close(m["rewards/chosen"], -1.5, "rewards/chosen");
        close(m["rewards/rejected"], -2.0, "rewards/rejected");
        close(m["rewards/margins"], 0.5, "rewards/margins");
        close(m["rewards/accuracies"], 1.0, "rewards/accuracies");
        close(m["logps/chosen"], -3.0, "logps/chosen");
        close(m["logps/rejected"], -4.0, "logps/rejected");
        close(m["loss"], m["cpl_loss"], "no bc term");
        Ok(())
    }

    #[test]
    fn bad_settings_and_shapes_are_errors_that_say_what_to_do() {
        let (lc, mc, lr, mr) = hand_pair();
        let (c, r) = (Segments { logps: &lc, mask: &mc }, Segments { logps: &lr, mask: &mr });
        for (k, key) in [
            (cfg(0.0, 0.5, 1.0), "alpha"),
            (cfg(0.1, 0.0, 1.0), "contrastive_bias"),
            (cfg(0.1, 1.5, 1.0), "contrastive_bias"),
            (cfg(0.1, 0.5, 0.0), "gamma"),
            (CplConfig { bc_coeff: -1.0, ..CplConfig::default() }, "bc_coeff"),
        ] {
            let e = cpl_loss(&c, &r, None, &k).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let short = t2(&[&[1.0]]);
        let e = cpl_loss(&Segments { logps: &lc, mask: &short }, &r, None, &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("same shape"), "{e}");
        let two = t2(&[&[-1.0], &[-1.0]]);
        let two_m = t2(&[&[1.0], &[1.0]]);
        let e = cpl_loss(&c, &Segments { logps: &two, mask: &two_m }, None, &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("same number of segments"), "{e}");
        let flat = lc.flatten_all().unwrap();
        let e = cpl_loss(&Segments { logps: &flat, mask: &mc }, &r, None, &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("[B, T]"), "{e}");
        let p = Tensor::new(&[1.0f64, 1.0], &Device::Cpu).unwrap();
        let e = cpl_loss(&c, &r, Some(&p), &CplConfig::default()).unwrap_err();
        assert!(e.to_string().contains("one per pair"), "{e}");
    }
}
