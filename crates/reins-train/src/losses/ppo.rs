//! PPO-clip losses for RLHF (Schulman et al., arXiv:1707.06347; TRL `PPOTrainer`), entropy,
//! and GRPO's loss (Shao et al., arXiv:2402.03300; TRL 1.16 `GRPOTrainer._compute_loss`).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use super::kl::{kl_estimate, KlEstimator};
use super::ops::masked_mean_all;
use crate::{Result, TrainError};

/// Output of [`ppo_policy_loss`].
#[derive(Debug, Clone)]
pub struct PolicyLossOutput {
    /// Scalar `masked_mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)))`.
    pub loss: Tensor,
    /// Fraction of tokens where the clipped term is active (`policy/clipfrac`), detached.
    pub clipfrac: Tensor,
    /// `½ masked_mean((log ρ)²)` (`policy/approxkl`), detached.
    pub approx_kl: Tensor,
    /// Per-token unreduced loss `[B, T]` (before masking).
    pub per_token_loss: Tensor,
}

/// PPO clipped surrogate (arXiv:1707.06347 Eq. 7, as a loss to minimise):
/// `ρ = exp(log π − log π_old)`, `ℓ_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε))`, mean over
/// the mask. Shapes: `logps`, `old_logps`, `advantages`, `mask` `[B, T]` → scalar.
pub fn ppo_policy_loss(
    logps: &Tensor,
    old_logps: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    cliprange: f64,
) -> Result<PolicyLossOutput> {
    let diff = (logps - old_logps.detach())?;
    let ratio = diff.exp()?;
    let adv = advantages.detach();
    let l1 = (adv.neg()? * &ratio)?;
    let l2 = (adv.neg()? * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)?)?;
    let per_token_loss = l1.maximum(&l2)?;
    let loss = masked_mean_all(&per_token_loss, mask)?;
    let clipfrac = masked_mean_all(&l2.gt(&l1)?.to_dtype(l1.dtype())?, mask)?.detach();
    let approx_kl = (masked_mean_all(&diff.sqr()?, mask)? * 0.5)?.detach();
    Ok(PolicyLossOutput { loss, clipfrac, approx_kl, per_token_loss })
}

/// Output of [`ppo_value_loss`].
#[derive(Debug, Clone)]
pub struct ValueLossOutput {
    /// Scalar `½ masked_mean(max((V − R)², (clip(V, V_old ± ε_v) − R)²))`.
    pub loss: Tensor,
    /// Fraction of tokens where the clipped error is larger (`val/clipfrac`), detached.
    pub clipfrac: Tensor,
}

/// Clipped value loss (TRL `PPOTrainer`, `cliprange_value`; Andrychowicz et al.,
/// arXiv:2006.05990 §3.2). Shapes: `values`, `old_values`, `returns`, `mask` `[B, T]`.
pub fn ppo_value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    cliprange_value: f64,
) -> Result<ValueLossOutput> {
    let old = old_values.detach();
    let ret = returns.detach();
    let clipped = values.clamp(&(&old - cliprange_value)?, &(&old + cliprange_value)?)?;
    let l1 = (values - &ret)?.sqr()?;
    let l2 = (clipped - &ret)?.sqr()?;
    let loss = (masked_mean_all(&l1.maximum(&l2)?, mask)? * 0.5)?;
    let clipfrac = masked_mean_all(&l2.gt(&l1)?.to_dtype(l1.dtype())?, mask)?.detach();
    Ok(ValueLossOutput { loss, clipfrac })
}

/// Entropy of the categorical distribution of each position: `H = −Σ_v p_v log p_v`.
/// Shapes: `logits [.., V]` → `[..]`. Differentiable.
pub fn entropy_from_logits(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let sh = logits.broadcast_sub(&max)?;
    let lse = sh.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = sh.broadcast_sub(&lse)?;
    Ok((logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?)
}

/// TRL `GRPOConfig.loss_type` values implemented here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GrpoLossType {
    /// Per-sequence token mean, then batch mean (arXiv:2402.03300 Eq. 3).
    Grpo,
    /// Token mean over the whole batch.
    Bnpo,
    /// Dr. GRPO (arXiv:2503.20783): sum over tokens / (B · max_completion_length).
    DrGrpo,
    /// DAPO (arXiv:2503.14476 Eq. 8): sum over tokens / tokens in the generation batch.
    /// TRL 1.16 default.
    #[default]
    Dapo,
}

/// Importance ratio level (TRL `importance_sampling_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceSamplingLevel {
    /// Per-token ratios (GRPO). Default.
    #[default]
    Token,
    /// One ratio per sequence from the mean token log-ratio (GSPO, arXiv:2507.18071).
    Sequence,
}

/// GRPO loss options (TRL `GRPOConfig` names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoLossConfig {
    /// KL coefficient β (k3 estimator). Default 0.0 (TRL ≥ 0.19).
    #[serde(default)]
    pub beta: f64,
    /// Lower clip ε. Default 0.2.
    pub epsilon: f64,
    /// Upper clip ε_high; `None` means `epsilon`. Default `None`.
    #[serde(default)]
    pub epsilon_high: Option<f64>,
    /// TRL `delta`: upper bound on the unclipped ratio (two-sided clipping); `None` off.
    #[serde(default)]
    pub delta: Option<f64>,
    /// Normalisation. Default `dapo`.
    #[serde(default)]
    pub loss_type: GrpoLossType,
    /// Token or sequence ratios. Default `token`.
    #[serde(default)]
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// `max_completion_length`, needed by `dr_grpo`. Default 512 (TRL).
    pub max_completion_length: usize,
    /// Multiply the k3 KL by the importance ratio ρ (TRL `use_bias_correction_kl`, default
    /// true): unbiased under off-policy samples. On-policy ρ ≡ 1 leaves the value unchanged but
    /// adds `k3 · ∇ log π` to the gradient, as TRL does.
    #[serde(default = "yes")]
    pub use_bias_correction_kl: bool,
}

fn yes() -> bool {
    true
}

impl Default for GrpoLossConfig {
    fn default() -> Self {
        Self {
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: None,
            delta: None,
            loss_type: GrpoLossType::Dapo,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            max_completion_length: 512,
            use_bias_correction_kl: true,
        }
    }
}

/// Output of [`grpo_loss`].
#[derive(Debug, Clone)]
pub struct GrpoOutput {
    /// Scalar loss.
    pub loss: Tensor,
    /// Masked mean k3 KL (`kl`), when β ≠ 0; detached.
    pub kl: Option<Tensor>,
    /// `clip_ratio/low_mean`: ρ < 1 − ε with A < 0; detached.
    pub clip_ratio_low: Tensor,
    /// `clip_ratio/high_mean`: ρ > 1 + ε_high with A > 0; detached.
    pub clip_ratio_high: Tensor,
    /// `clip_ratio/region_mean`: either; detached.
    pub clip_ratio_region: Tensor,
}

/// GRPO/BNPO/Dr.GRPO/DAPO loss (TRL 1.16 `GRPOTrainer._compute_loss`):
/// `ρ = exp(log π − log π_old)` (per token, or per sequence),
/// `ℓ_t = −min(ρ A, clip(ρ, 1 − ε, 1 + ε_high) A) + β k3_t` (`β ρ k3_t` with
/// `use_bias_correction_kl`), reduced per `loss_type`.
///
/// Shapes: `logps`, `mask` `[B, T]`; `old_logps` `[B, T]` or `None` (on-policy: the detached
/// `logps`); `ref_logps` `[B, T]` (needed when β ≠ 0); `advantages [B]`;
/// `num_items_in_batch`: DAPO's normaliser (TRL: completion tokens of the generation batch
/// / processes × accumulation steps / `steps_per_generation`); `None` uses this batch's token
/// count. The `grpo`/`bnpo`/`dr_grpo` division by accumulation steps stays with the trainer.
pub fn grpo_loss(
    logps: &Tensor,
    old_logps: Option<&Tensor>,
    ref_logps: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    cfg: &GrpoLossConfig,
    num_items_in_batch: Option<f64>,
) -> Result<GrpoOutput> {
    grpo_loss_weighted(logps, old_logps, ref_logps, advantages, mask, cfg, num_items_in_batch, None)
}

/// [`grpo_loss`] with each token's clipped surrogate multiplied by `sampler_weights` `[B, T]`
/// before the KL is added (TRL's importance-sampling correction for completions from another
/// sampler: [`super::sampler_correction`]).
#[allow(clippy::too_many_arguments)]
pub fn grpo_loss_weighted(
    logps: &Tensor,
    old_logps: Option<&Tensor>,
    ref_logps: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    cfg: &GrpoLossConfig,
    num_items_in_batch: Option<f64>,
    sampler_weights: Option<&Tensor>,
) -> Result<GrpoOutput> {
    let mask = mask.to_dtype(logps.dtype())?;
    let old = old_logps.map_or_else(|| logps.detach(), |o| o.detach());
    let log_ratio = (logps - &old)?;
    let log_w = match cfg.importance_sampling_level {
        ImportanceSamplingLevel::Token => log_ratio.clone(),
        ImportanceSamplingLevel::Sequence => {
            let len = mask.sum_keepdim(1)?.clamp(1f64, f64::INFINITY)?;
            (&log_ratio * &mask)?.sum_keepdim(1)?.broadcast_div(&len)?
        }
    };
    let coef_1 = log_w.exp()?;
    let eps_lo = cfg.epsilon;
    let eps_hi = cfg.epsilon_high.unwrap_or(cfg.epsilon);
    let coef_2 = coef_1.clamp(1.0 - eps_lo, 1.0 + eps_hi)?;
    let coef_1c = match cfg.delta {
        Some(d) => coef_1.clamp(f64::NEG_INFINITY, d)?,
        None => coef_1.clone(),
    };
    let adv = advantages.detach().to_dtype(logps.dtype())?.unsqueeze(1)?;
    let l1 = coef_1c.broadcast_mul(&adv)?;
    let l2 = coef_2.broadcast_mul(&adv)?;
    let mut per_token = l1.minimum(&l2)?.neg()?;
    if per_token.dims() != logps.dims() {
        per_token = per_token.broadcast_as(logps.shape())?.contiguous()?;
    }
    if let Some(w) = sampler_weights {
        per_token = (per_token * w.detach().to_dtype(logps.dtype())?)?;
    }
    let mut kl = None;
    if cfg.beta != 0.0 {
        let r = ref_logps.ok_or_else(|| TrainError::Input("grpo_loss: beta != 0 needs ref_logps".into()))?;
        let mut k = kl_estimate(logps, &r.detach(), KlEstimator::K3)?;
        if cfg.use_bias_correction_kl {
            k = k.broadcast_mul(&coef_1)?;
        }
        per_token = (per_token + (&k * cfg.beta)?)?;
        kl = Some(masked_mean_all(&k, &mask)?.detach());
    }
    let masked = (&per_token * &mask)?;
    let b = logps.dims2()?.0 as f64;
    let loss = match cfg.loss_type {
        GrpoLossType::Grpo => {
            let len = mask.sum(1)?.clamp(1f64, f64::INFINITY)?;
            (masked.sum(1)? / len)?.mean_all()?
        }
        GrpoLossType::Bnpo => masked_mean_all(&per_token, &mask)?,
        GrpoLossType::DrGrpo => (masked.sum_all()? / (b * cfg.max_completion_length as f64))?,
        GrpoLossType::Dapo => {
            let n = match num_items_in_batch {
                Some(n) => n,
                None => mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            };
            (masked.sum_all()? / n.max(1.0))?
        }
    };
    let c1 = coef_1.broadcast_as(logps.shape())?;
    let advb = adv.broadcast_as(logps.shape())?;
    let zero = advb.zeros_like()?;
    let low =
        (c1.lt(1.0 - eps_lo)?.to_dtype(DType::U8)? * advb.lt(&zero)?.to_dtype(DType::U8)?)?.to_dtype(mask.dtype())?;
    let high =
        (c1.gt(1.0 + eps_hi)?.to_dtype(DType::U8)? * advb.gt(&zero)?.to_dtype(DType::U8)?)?.to_dtype(mask.dtype())?;
    let region = (&low + &high)?;
    Ok(GrpoOutput {
        loss,
        kl,
        clip_ratio_low: masked_mean_all(&low, &mask)?.detach(),
        clip_ratio_high: masked_mean_all(&high, &mask)?.detach(),
        clip_ratio_region: masked_mean_all(&region, &mask)?.detach(),
    })
}

/// RLOO's clipped surrogate on whole sequences (TRL 1.16 `RLOOTrainer._compute_loss`): the
/// ratio of summed completion log-probs `ρ = exp(Σ_t log π − Σ_t log π_old)`, then
/// `mean_b −min(ρ A, clip(ρ, 1 − ε, 1 + ε_high) A)` (Ahmadian et al., arXiv:2402.14740 §3.2
/// treat the whole completion as one action). On-policy (ρ ≡ 1) the gradient is
/// `−mean_b A_b ∇ Σ_t log π`: summed over tokens, not averaged per sequence as `grpo` does.
///
/// Shapes: `logps`, `old_logps`, `mask` `[B, T]`; `advantages [B]`. Clip ratios count sequences.
pub fn rloo_sequence_loss(
    logps: &Tensor,
    old_logps: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    epsilon: f64,
    epsilon_high: f64,
) -> Result<GrpoOutput> {
    let mask = mask.to_dtype(logps.dtype())?;
    let seq = (logps * &mask)?.sum(1)?;
    let old = (old_logps.detach() * &mask)?.sum(1)?;
    let coef_1 = (seq - old)?.exp()?;
    let coef_2 = coef_1.clamp(1.0 - epsilon, 1.0 + epsilon_high)?;
    let adv = advantages.detach().to_dtype(logps.dtype())?;
    let loss = (&coef_1 * &adv)?.minimum(&(&coef_2 * &adv)?)?.neg()?.mean_all()?;
    let zero = adv.zeros_like()?;
    let low = (coef_1.lt(1.0 - epsilon)?.to_dtype(DType::U8)? * adv.lt(&zero)?.to_dtype(DType::U8)?)?;
    let high = (coef_1.gt(1.0 + epsilon_high)?.to_dtype(DType::U8)? * adv.gt(&zero)?.to_dtype(DType::U8)?)?;
    let frac = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F32)?.mean_all()?.detach()) };
    Ok(GrpoOutput {
        loss,
        kl: None,
        clip_ratio_low: frac(&low)?,
        clip_ratio_high: frac(&high)?,
        clip_ratio_region: frac(&(&low + &high)?)?,
    })
}
