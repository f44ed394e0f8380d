//! Importance-sampling correction for completions sampled by another engine or an older policy
//! (TRL 1.16 `GRPOTrainer`'s `vllm_importance_sampling_*`): an inference server samples with its
//! own numerics and, with `max_policy_lag > 0`, with weights some steps behind the learner, so
//! the completions come from `π_sampler`, not from the learner's `π_old`. Each token's policy
//! loss is weighted by the ratio `ρ = π_old / π_sampler`, bounded by `[clip_min, clip_max]`
//! (TRL's `vllm_importance_sampling_clip_min`, none, and `…_clip_max`, 3.0):
//!
//! - `token_truncate`: `ρ_t = exp(log π_old_t − log π_sampler_t)` clamped into the bounds;
//! - `token_mask`: `ρ_t` as it is, but 0 outside the bounds;
//! - `sequence_truncate`: one ratio per completion, `exp(Σ_t (log π_old_t − log π_sampler_t))`
//!   over its tokens, clamped, on every token;
//! - `sequence_mask` (TRL's default): the sequence ratio, the whole completion dropped (0)
//!   outside the bounds.
//!
//! The weights are constants (no gradient), like TRL's.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// How ratios are formed and bounded (TRL's `vllm_importance_sampling_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SamplerCorrectionMode {
    TokenTruncate,
    TokenMask,
    SequenceTruncate,
    #[default]
    SequenceMask,
}

/// The correction's settings: mode and bounds (either may be absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerCorrection {
    pub mode: SamplerCorrectionMode,
    pub clip_min: Option<f64>,
    pub clip_max: Option<f64>,
}

impl SamplerCorrection {
    pub fn new(mode: SamplerCorrectionMode, clip_min: Option<f64>, clip_max: Option<f64>) -> Result<Self> {
        let bad = |why: String| Err(TrainError::Config(why));
        if let Some(m) = clip_min {
            if !(m >= 0.0 && m.is_finite()) {
                return bad(format!(
                    "vllm_importance_sampling_clip_min = {m}: a ratio bound must be a finite number ≥ 0"
                ));
            }
        }
        if let Some(m) = clip_max {
            if !(m > 0.0 && m.is_finite()) {
                return bad(format!(
                    "vllm_importance_sampling_clip_max = {m}: a ratio bound must be a finite number > 0 (TRL's default is 3.0)"
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (clip_min, clip_max) {
            if lo > hi {
                return bad(format!(
                    "vllm_importance_sampling_clip_min = {lo} is above vllm_importance_sampling_clip_max = {hi}"
                ));
            }
        }
        Ok(SamplerCorrection { mode, clip_min, clip_max })
    }
}

/// Per-token weights `[B, T]` (detached) from the learner's log-probs `old` and the sampler's
/// `sampler` of the same tokens, `[B, T]` each, on completion tokens `mask` (0 elsewhere; the
/// weights there are irrelevant and set to 0).
pub fn sampler_correction_weights(
    old: &Tensor,
    sampler: &Tensor,
    mask: &Tensor,
    c: &SamplerCorrection,
) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    let diff = ((old.detach().to_dtype(DType::F32)? - sampler.detach().to_dtype(DType::F32)?)? * &mask)?;
    let log_ratio = match c.mode {
        SamplerCorrectionMode::TokenTruncate | SamplerCorrectionMode::TokenMask => diff,
        SamplerCorrectionMode::SequenceTruncate | SamplerCorrectionMode::SequenceMask => {
            diff.sum_keepdim(1)?.broadcast_as(mask.shape())?.contiguous()?
        }
    };
    let ratio = log_ratio.exp()?;
    let (lo, hi) = (c.clip_min.unwrap_or(f64::NEG_INFINITY), c.clip_max.unwrap_or(f64::INFINITY));
    let weights = match c.mode {
        SamplerCorrectionMode::TokenTruncate | SamplerCorrectionMode::SequenceTruncate => ratio.clamp(lo, hi)?,
        SamplerCorrectionMode::TokenMask | SamplerCorrectionMode::SequenceMask => {
            let keep = (ratio.ge(lo)?.to_dtype(DType::F32)? * ratio.le(hi)?.to_dtype(DType::F32)?)?;
            (ratio * keep)?
        }
    };
    Ok((weights * mask)?.to_dtype(old.dtype())?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn t<const N: usize>(rows: &[[f32; 3]; N]) -> Tensor {
        Tensor::new(rows, &Device::Cpu).unwrap()
    }

    /// Each mode against the ratios written out by hand.
    #[test]
    fn weights_follow_each_mode() {
        // Row 0: token log-ratios 0.5, −0.2, ln 4 (the last above the cap 3); row 1: 0.1, then padding.
        let old = t(&[[-1.0, -2.0, -0.5], [-3.0, 0.0, 0.0]]);
        let sampler = t(&[[-1.5, -1.8, -0.5 - 4f32.ln()], [-3.1, 5.0, 5.0]]);
        let mask = t(&[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]);
        let bounded = |mode, lo| {
            let c = SamplerCorrection::new(mode, lo, Some(3.0)).unwrap();
            sampler_correction_weights(&old, &sampler, &mask, &c).unwrap().to_vec2::<f32>().unwrap()
        };
        let get = |mode| bounded(mode, None);
        let close = |a: &[Vec<f32>], b: &[[f32; 3]]| {
            for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
            }
        };
        let (e1, e2, e3) = (0.5f32.exp(), (-0.2f32).exp(), 0.1f32.exp());
        close(&get(SamplerCorrectionMode::TokenTruncate), &[[e1, e2, 3.0], [e3, 0.0, 0.0]]);
        close(&get(SamplerCorrectionMode::TokenMask), &[[e1, e2, 0.0], [e3, 0.0, 0.0]]);
        // Row 0's sequence ratio: e^{0.5 − 0.2} · 4 = 5.40 > 3.
        close(&get(SamplerCorrectionMode::SequenceTruncate), &[[3.0, 3.0, 3.0], [e3, 0.0, 0.0]]);
        close(&get(SamplerCorrectionMode::SequenceMask), &[[0.0, 0.0, 0.0], [e3, 0.0, 0.0]]);
        // A lower bound 0.9: e^{−0.2} = 0.82 is raised to it (truncate) or dropped (mask).
        close(&bounded(SamplerCorrectionMode::TokenTruncate, Some(0.9)), &[[e1, 0.9, 3.0], [e3, 0.0, 0.0]]);
        close(&bounded(SamplerCorrectionMode::TokenMask, Some(0.9)), &[[e1, 0.0, 0.0], [e3, 0.0, 0.0]]);
        assert!(SamplerCorrection::new(SamplerCorrectionMode::TokenMask, None, Some(-1.0)).is_err());
        assert!(SamplerCorrection::new(SamplerCorrectionMode::TokenMask, Some(2.0), Some(1.5)).is_err());
    }

    /// On policy the clipped surrogate of a token is `−A`; weighted, DAPO's loss is
    /// `−Σ_t w_t m_t A / Σ_t m_t`, written out here, and its gradient is the weighted one.
    #[test]
    fn the_grpo_loss_weighs_each_token() {
        use crate::losses::ppo::{grpo_loss_weighted, GrpoLossConfig, GrpoLossType};
        let lp = candle_core::Var::from_tensor(&t(&[[-1.0, -2.0, -0.5], [-3.0, -1.0, -1.0]])).unwrap();
        let mask = t(&[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]);
        let w = t(&[[0.5, 1.0, 2.0], [3.0, 0.0, 1.0]]);
        let adv = Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let cfg = GrpoLossConfig { loss_type: GrpoLossType::Dapo, ..Default::default() };
        let out = grpo_loss_weighted(lp.as_tensor(), None, None, &adv, &mask, &cfg, None, Some(&w)).unwrap();
        // Row 0: −(0.5 + 1 + 2)·1; row 1: −(3 + 0)·(−2); over 5 tokens.
        let want = (-(3.5f32) + 6.0) / 5.0;
        let got = out.loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // d loss / d logp_t = −w_t m_t A / 5 (the ratio's derivative at ρ = 1 is 1).
        let g = out.loss.backward().unwrap();
        let g = g.get(lp.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let want = [[-0.1f32, -0.2, -0.4], [1.2, 0.0, 0.0]];
        for (a, b) in g.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{g:?} vs {want:?}");
        }
    }
}
