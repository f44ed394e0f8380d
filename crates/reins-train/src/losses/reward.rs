//! Reward-model losses: Bradley–Terry (TRL `RewardTrainer`), Plackett–Luce listwise, and
//! ensemble aggregation.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use super::ops::{log_sigmoid, to_vec_f64};
use crate::{Result, TrainError};

/// Loss options of TRL's `RewardConfig` plus label-noise handling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RewardLossConfig {
    /// TRL `center_rewards_coefficient` (Eisenstein et al., arXiv:2312.09244): adds
    /// `coef · mean((r_w + r_l)²)`. Default `None`.
    #[serde(default)]
    pub center_rewards_coefficient: Option<f64>,
    /// Assumed label flip rate ε (conservative/soft targets, cf. rDPO arXiv:2403.00409): the
    /// target probability that `y_w ≻ y_l` becomes `1 − ε`. Default 0.0 (TRL).
    #[serde(default)]
    pub label_smoothing: f64,
}

/// Bradley–Terry reward loss (Bradley & Terry 1952; Ouyang et al., arXiv:2203.02155, Eq. 1;
/// TRL `RewardTrainer.compute_loss`):
///
/// `d = r_w − r_l − margin`, `ℓ = −[p log σ(d) + (1 − p) log σ(−d)]`, averaged over the batch,
/// with target `p = 1` (TRL), or a per-pair soft label / preference strength `p ∈ [0, 1]`,
/// then label smoothing `p ← (1 − ε) p + ε (1 − p)`. Plus the centring term when configured.
///
/// Shapes: `chosen`, `rejected`, `margin`, `soft_labels` `[B]` → scalar.
pub fn bradley_terry_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_labels: Option<&Tensor>,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    let eps = cfg.label_smoothing;
    if !(0.0..0.5).contains(&eps) {
        return Err(TrainError::Config(format!("`label_smoothing` must lie in [0, 0.5) (got {eps})")));
    }
    let mut d = (chosen - rejected)?;
    if let Some(m) = margin {
        let m = m.to_dtype(d.dtype())?;
        d = (d - m)?;
    }
    let pos = log_sigmoid(&d)?;
    let per_pair = match (soft_labels, eps) {
        (None, 0.0) => pos.neg()?,
        _ => {
            let p = match soft_labels {
                Some(p) => p.to_dtype(d.dtype())?,
                None => d.ones_like()?,
            };
            let p = ((&p * (1.0 - eps))? + ((1.0 - &p)? * eps)?)?;
            let neg = log_sigmoid(&d.neg()?)?;
            ((&p * pos)? + ((1.0 - &p)? * neg)?)?.neg()?
        }
    };
    let mut loss = per_pair.mean_all()?;
    if let Some(c) = cfg.center_rewards_coefficient {
        loss = (loss + ((chosen + rejected)?.sqr()?.mean_all()? * c)?)?;
    }
    Ok(loss)
}

/// Plackett–Luce listwise loss (Plackett 1975; Zhu et al., arXiv:2301.11270, Eq. 4.2 K-wise
/// MLE): for a list ranked best-first,
/// `ℓ = −Σ_i [s_i − log Σ_{j ≥ i} exp s_j]`, over the present items only; mean over lists.
/// At K = 2 it equals Bradley–Terry.
///
/// Shapes: `scores [B, K]` in ranked order (best first), `mask [B, K]` 1 for present items
/// (padding at any position) → scalar.
pub fn plackett_luce_loss(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, k) = scores.dims2()?;
    let dev = scores.device();
    let dt = scores.dtype();
    let mask = mask.to_dtype(dt)?;
    const NEG: f64 = -1e9;
    // masked[b, j] = s or NEG for padding.
    let masked = ((scores * &mask)? + ((1.0 - &mask)? * NEG)?)?;
    // tri[i, j] = 0 for j ≥ i else NEG: [K, K]
    let tri: Vec<f32> = (0..k * k).map(|x| if x % k >= x / k { 0.0 } else { NEG as f32 }).collect();
    let tri = Tensor::from_vec(tri, (k, k), dev)?.to_dtype(dt)?;
    let expanded = masked.unsqueeze(1)?.broadcast_add(&tri.unsqueeze(0)?)?; // [B, K(i), K(j)]
    let max = expanded.max_keepdim(D::Minus1)?.detach();
    let lse = (expanded.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?.squeeze(D::Minus1)?;
    let terms = ((scores - lse)? * &mask)?; // [B, K]
    Ok((terms.sum_all()?.neg()? / b as f64)?)
}

/// How an ensemble of reward models is reduced (Coste et al., arXiv:2310.02743, §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnsembleAggregation {
    /// Mean of the members.
    Mean,
    /// Worst-case optimisation (WCO): the minimum over members.
    Min,
    /// Uncertainty-weighted optimisation (UWO): `mean − λ · var` (population variance).
    MeanMinusVar {
        /// λ, the uncertainty penalty.
        lambda: f64,
    },
}

/// Reduces member rewards `[M, B]` to `[B]` (Coste et al., arXiv:2310.02743, Eqs. 3–5).
pub fn ensemble_aggregate(scores: &Tensor, how: EnsembleAggregation) -> Result<Tensor> {
    Ok(match how {
        EnsembleAggregation::Mean => scores.mean(0)?,
        EnsembleAggregation::Min => scores.min(0)?,
        EnsembleAggregation::MeanMinusVar { lambda } => {
            let mean = scores.mean_keepdim(0)?;
            let var = scores.broadcast_sub(&mean)?.sqr()?.mean(0)?;
            (mean.squeeze(0)? - (var * lambda)?)?
        }
    })
}

/// Preference strength per pair across an ensemble (Wang et al., "Secrets of RLHF II",
/// arXiv:2401.06080, Eq. 3): `d_m = r_m(y_w) − r_m(y_l)`, returns `(mean_m d, std_m d)` with the
/// unbiased std (torch default; 0 when M = 1). Shapes: `[M, B]`, `[M, B]` → `[B]`, `[B]`.
pub fn preference_strength(chosen: &Tensor, rejected: &Tensor) -> Result<(Tensor, Tensor)> {
    let m = chosen.dims2()?.0;
    let d = (chosen - rejected)?;
    let mean = d.mean_keepdim(0)?;
    let ss = d.broadcast_sub(&mean)?.sqr()?.sum(0)?;
    let std = if m > 1 { (ss / (m - 1) as f64)?.sqrt()? } else { ss.zeros_like()? };
    Ok((mean.squeeze(0)?, std))
}

/// TRL `RewardTrainer` logged metrics: `accuracy` (`r_w > r_l`; ties count as wrong),
/// `margin` (mean `r_w − r_l`), `min_reward`, `mean_reward`, `max_reward` (over chosen and
/// rejected together). Shapes `[B]`, `[B]`.
pub fn reward_metrics(chosen: &Tensor, rejected: &Tensor) -> Result<BTreeMap<String, f64>> {
    let c = to_vec_f64(&chosen.to_dtype(DType::F64)?)?;
    let r = to_vec_f64(&rejected.to_dtype(DType::F64)?)?;
    let n = c.len().max(1) as f64;
    let all: Vec<f64> = c.iter().chain(&r).copied().collect();
    let mut m = BTreeMap::new();
    m.insert("accuracy".into(), c.iter().zip(&r).filter(|(a, b)| a > b).count() as f64 / n);
    m.insert("margin".into(), c.iter().zip(&r).map(|(a, b)| a - b).sum::<f64>() / n);
    m.insert("min_reward".into(), all.iter().copied().fold(f64::INFINITY, f64::min));
    m.insert("max_reward".into(), all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    m.insert("mean_reward".into(), all.iter().sum::<f64>() / all.len().max(1) as f64);
    Ok(m)
}
