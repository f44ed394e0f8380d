//! SimPO: Simple Preference Optimization with a Reference-Free Reward (Meng et al.,
//! arXiv:2405.14734). TRL runs it as `CPOTrainer` with `loss_type="simpo"`, `cpo_alpha=0`.

use candle_core::Tensor;

use super::cpo::{cpo_loss, CpoConfig, CpoLossType, CpoOutput};
use crate::Result;

/// SimPO loss (arXiv:2405.14734 Eq. 6):
/// `−(1−ε) log σ(β(ℓ̄_w − ℓ̄_l) − γ) − ε log σ(−β(ℓ̄_w − ℓ̄_l) + γ)`, mean over the batch, with
/// `ℓ̄ = log π(y|x)/|y|` the average per-token log-prob.
///
/// Shapes: `chosen_avg_logps`, `rejected_avg_logps` `[B]` → per-pair `[B]` and scalar loss.
/// Paper defaults: β ∈ [2, 10], γ/β ≈ 0.5 (TRL's `CPOConfig`: β = 0.1, γ = 0.5).
pub fn simpo_loss(
    chosen_avg_logps: &Tensor,
    rejected_avg_logps: &Tensor,
    beta: f64,
    gamma: f64,
    label_smoothing: f64,
) -> Result<CpoOutput> {
    let cfg = CpoConfig {
        beta,
        label_smoothing,
        loss_type: CpoLossType::Simpo,
        cpo_alpha: 0.0,
        simpo_gamma: gamma,
        alpha: 0.0,
    };
    cpo_loss(chosen_avg_logps, rejected_avg_logps, None, &cfg)
}
