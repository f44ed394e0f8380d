//! Per-token KL estimators and the KL-penalised per-token reward of RLHF PPO.
//!
//! Schulman, "Approximating KL Divergence" (2020, joschu.net/blog/kl-approx.html): with
//! samples from the policy π and `log r = log π_ref − log π`,
//! `k1 = −log r`, `k2 = ½ (log r)²`, `k3 = (r − 1) − log r` (unbiased and ≥ 0).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Which per-token KL estimator (TRL `kl_estimator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// `log π − log π_ref` (unbiased, can be negative). TRL PPO default.
    #[default]
    K1,
    /// `½ (log π − log π_ref)²` (biased, low variance, ≥ 0).
    K2,
    /// `exp(log π_ref − log π) − (log π_ref − log π) − 1` (unbiased, ≥ 0). GRPO's KL.
    K3,
}

/// Per-token KL estimate of `KL(π ‖ π_ref)` from log-probs of sampled tokens (Schulman 2020).
/// Shapes: `logps`, `ref_logps` `[B, T]` (any shape) → same shape. Differentiable in `logps`.
pub fn kl_estimate(logps: &Tensor, ref_logps: &Tensor, kind: KlEstimator) -> Result<Tensor> {
    let log_r = (ref_logps - logps)?;
    Ok(match kind {
        KlEstimator::K1 => log_r.neg()?,
        KlEstimator::K2 => (log_r.sqr()? * 0.5)?,
        KlEstimator::K3 => ((log_r.exp()? - &log_r)? - 1.0)?,
    })
}

/// Index of the last real token of each row: `[B, T]` mask → `Vec` of `Option<usize>` (None
/// for an empty row).
pub fn last_token_index(mask: &Tensor) -> Result<Vec<Option<usize>>> {
    let m = mask.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    Ok(m.iter().map(|row| row.iter().rposition(|&x| x > 0.5)).collect())
}

/// Per-token PPO reward (Ziegler et al., arXiv:1909.08593 Eq. 2; Ouyang et al.,
/// arXiv:2203.02155 Eq. 2; TRL `PPOTrainer`): `r_t = −kl_coef · KL_t + token_rewards_t`, plus the
/// sequence score at the last real token; zero where `mask` is 0.
///
/// Shapes: `kl [B, T]` (from [`kl_estimate`], detached by the caller), `mask [B, T]`,
/// `scores [B]` (sequence-level reward, e.g. a reward model at EOS), `token_rewards`
/// optional `[B, T]` (fine-grained/segment rewards) → `[B, T]`.
pub fn kl_penalized_rewards(
    kl: &Tensor,
    mask: &Tensor,
    scores: Option<&Tensor>,
    token_rewards: Option<&Tensor>,
    kl_coef: f64,
) -> Result<Tensor> {
    let (b, t) = kl.dims2()?;
    let mask = mask.to_dtype(kl.dtype())?;
    let mut r = (kl * (-kl_coef))?;
    if let Some(tr) = token_rewards {
        r = (r + tr.to_dtype(kl.dtype())?)?;
    }
    if let Some(s) = scores {
        let last = last_token_index(&mask)?;
        let s = s.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let mut onehot = vec![0f32; b * t];
        for (i, l) in last.iter().enumerate() {
            if let Some(j) = l {
                onehot[i * t + j] = s[i];
            }
        }
        let add = Tensor::from_vec(onehot, (b, t), kl.device())?.to_dtype(kl.dtype())?;
        r = (r + add)?;
    }
    Ok((r * mask)?)
}

/// KL coefficient controllers (Ziegler et al., arXiv:1909.08593 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum KlController {
    /// Constant coefficient.
    Fixed {
        /// β.
        value: f64,
    },
    /// `β ← β (1 + clip(KL/target − 1, −0.2, 0.2) · n_steps / horizon)`.
    Adaptive {
        /// Current β.
        value: f64,
        /// Target KL.
        target: f64,
        /// Horizon (in samples).
        horizon: f64,
    },
}

impl KlController {
    /// Current coefficient.
    pub fn value(&self) -> f64 {
        match *self {
            Self::Fixed { value } | Self::Adaptive { value, .. } => value,
        }
    }

    /// Updates with the observed KL after `n_steps` samples (no-op for `Fixed`).
    pub fn update(&mut self, current_kl: f64, n_steps: usize) {
        if let Self::Adaptive { value, target, horizon } = self {
            let err = (current_kl / *target - 1.0).clamp(-0.2, 0.2);
            *value *= 1.0 + err * n_steps as f64 / *horizon;
        }
    }
}
