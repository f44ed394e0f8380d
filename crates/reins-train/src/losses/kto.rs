//! KTO: Kahneman–Tversky Optimization (Ethayarajh et al., arXiv:2402.01306), as TRL 1.16
//! `KTOTrainer._compute_loss`.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::ops::sigmoid;
use crate::{Result, TrainError};

/// TRL's KTO `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KtoLossType {
    /// KTO, Eq. 7 of arXiv:2402.01306. Default.
    #[default]
    Kto,
    /// Unpaired APO-zero (arXiv:2408.06266 Eq. 7 without pairing); no KL term.
    ApoZeroUnpaired,
}

fn d_beta() -> f64 {
    0.1
}
fn d_one() -> f64 {
    1.0
}

/// The loss part of TRL's `KTOConfig` (same names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoConfig {
    /// β. Default 0.1.
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// Weight λ_D of desirable examples. Default 1.0.
    #[serde(default = "d_one")]
    pub desirable_weight: f64,
    /// Weight λ_U of undesirable examples. Default 1.0.
    #[serde(default = "d_one")]
    pub undesirable_weight: f64,
    /// Loss variant. Default `kto`.
    #[serde(default)]
    pub loss_type: KtoLossType,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self { beta: 0.1, desirable_weight: 1.0, undesirable_weight: 1.0, loss_type: KtoLossType::Kto }
    }
}

/// Output of [`kto_loss`].
#[derive(Debug, Clone)]
pub struct KtoOutput {
    /// Scalar loss: mean over all desirable and undesirable examples of their weighted losses.
    pub loss: Tensor,
    /// `λ_D (1 − σ(β(ρ − z₀)))` per desirable example `[N_D]`, `None` if there are none.
    pub chosen_losses: Option<Tensor>,
    /// `λ_U (1 − σ(β(z₀ − ρ)))` per undesirable example `[N_U]`.
    pub rejected_losses: Option<Tensor>,
    /// `β ρ` of desirable examples, detached.
    pub chosen_rewards: Option<Tensor>,
    /// `β ρ` of undesirable examples, detached.
    pub rejected_rewards: Option<Tensor>,
}

/// KTO's reference point `z₀`: `max(0, mean(log π(y'|x) − log π_ref(y'|x)))` over mismatched
/// (prompt, completion) pairs, detached (arXiv:2402.01306 §4.1; TRL's `kl`). Shapes `[N]` →
/// scalar.
pub fn kto_kl_estimate(kl_logps: &Tensor, ref_kl_logps: &Tensor) -> Result<Tensor> {
    Ok((kl_logps - ref_kl_logps)?.mean_all()?.detach().clamp(0f64, f64::INFINITY)?)
}

/// KTO loss (arXiv:2402.01306 Eq. 7; TRL `KTOTrainer`):
/// desirable `λ_D (1 − σ(β(ρ − z₀)))`, undesirable `λ_U (1 − σ(β(z₀ − ρ)))`, with
/// `ρ = log π(y|x) − log π_ref(y|x)`; the loss is the mean over the concatenation.
/// `apo_zero_unpaired`: `1 − σ(βρ)` / `σ(βρ)` and no `z₀`.
///
/// Shapes: desirable `[N_D]` pairs of policy/reference log-probs (either side may be absent),
/// `kl` a scalar from [`kto_kl_estimate`] (ignored for `apo_zero_unpaired`).
pub fn kto_loss(
    chosen: Option<(&Tensor, &Tensor)>,
    rejected: Option<(&Tensor, &Tensor)>,
    kl: &Tensor,
    cfg: &KtoConfig,
) -> Result<KtoOutput> {
    let beta = cfg.beta;
    let kl = kl.detach();
    let side = |pair: Option<(&Tensor, &Tensor)>, desirable: bool| -> Result<Option<(Tensor, Tensor)>> {
        let Some((logps, ref_logps)) = pair else {
            return Ok(None);
        };
        if logps.elem_count() == 0 {
            return Ok(None);
        }
        let rho = (logps - ref_logps)?;
        let l = match (cfg.loss_type, desirable) {
            (KtoLossType::Kto, true) => (1.0 - sigmoid(&(rho.broadcast_sub(&kl)? * beta)?)?)?,
            (KtoLossType::Kto, false) => (1.0 - sigmoid(&(rho.neg()?.broadcast_add(&kl)? * beta)?)?)?,
            (KtoLossType::ApoZeroUnpaired, true) => (1.0 - sigmoid(&(&rho * beta)?)?)?,
            (KtoLossType::ApoZeroUnpaired, false) => sigmoid(&(&rho * beta)?)?,
        };
        let w = if desirable { cfg.desirable_weight } else { cfg.undesirable_weight };
        Ok(Some(((l * w)?, (rho.detach() * beta)?)))
    };
    let c = side(chosen, true)?;
    let r = side(rejected, false)?;
    let parts: Vec<&Tensor> = [c.as_ref().map(|x| &x.0), r.as_ref().map(|x| &x.0)].into_iter().flatten().collect();
    if parts.is_empty() {
        return Err(TrainError::Input("kto_loss needs at least one desirable or undesirable example".into()));
    }
    let loss = Tensor::cat(&parts, 0)?.mean_all()?;
    let (chosen_losses, chosen_rewards) = c.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let (rejected_losses, rejected_rewards) = r.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    Ok(KtoOutput { loss, chosen_losses, rejected_losses, chosen_rewards, rejected_rewards })
}
