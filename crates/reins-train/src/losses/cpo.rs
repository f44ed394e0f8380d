//! CPO: Contrastive Preference Optimization (Xu et al., arXiv:2401.08417), as TRL 1.16
//! `CPOTrainer.cpo_loss` (trl/experimental/cpo), including its SimPO and AlphaPO options.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::ops::log_sigmoid;
use crate::Result;

/// TRL's CPO `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CpoLossType {
    /// `−(1−ε) log σ(β d) − ε log σ(−β d)`, arXiv:2401.08417 Eq. 3. Default.
    #[default]
    Sigmoid,
    /// `relu(1 − β d)`.
    Hinge,
    /// `(d − 1/(2β))²` on average log-probs.
    Ipo,
    /// SimPO: sigmoid with margin γ/β on average log-probs (arXiv:2405.14734 Eq. 6).
    Simpo,
}

impl CpoLossType {
    /// Whether TRL feeds this loss average (per-token) instead of summed log-probs.
    pub fn uses_average_logps(self) -> bool {
        matches!(self, Self::Ipo | Self::Simpo)
    }
}

fn d_beta() -> f64 {
    0.1
}
fn d_one() -> f64 {
    1.0
}
fn d_gamma() -> f64 {
    0.5
}

/// The loss part of TRL's `CPOConfig` (same names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpoConfig {
    /// β. Default 0.1.
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// Label smoothing ε (sigmoid/simpo). Default 0.0.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Loss type. Default `sigmoid`.
    #[serde(default)]
    pub loss_type: CpoLossType,
    /// Weight of the behaviour-cloning NLL term on chosen completions. Default 1.0.
    #[serde(default = "d_one")]
    pub cpo_alpha: f64,
    /// SimPO target margin γ. Default 0.5.
    #[serde(default = "d_gamma")]
    pub simpo_gamma: f64,
    /// AlphaPO α (arXiv:2501.03884): reward `(1 − p^{−α})/α`; 0 disables. Default 0.0.
    #[serde(default)]
    pub alpha: f64,
}

impl Default for CpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            label_smoothing: 0.0,
            loss_type: CpoLossType::Sigmoid,
            cpo_alpha: 1.0,
            simpo_gamma: 0.5,
            alpha: 0.0,
        }
    }
}

/// Output of [`cpo_loss`].
#[derive(Debug, Clone)]
pub struct CpoOutput {
    /// Scalar `mean(losses) + cpo_alpha · nll` (TRL's `loss`).
    pub loss: Tensor,
    /// Per-pair preference loss `[B]`.
    pub losses: Tensor,
    /// `β · r(y_w)` (log-prob or AlphaPO reward), detached `[B]`.
    pub chosen_rewards: Tensor,
    /// `β · r(y_l)`, detached `[B]`.
    pub rejected_rewards: Tensor,
}

/// CPO loss family (TRL `CPOTrainer.cpo_loss` + `get_batch_loss_metrics`): with
/// `r = log π(y)` (or AlphaPO's `(1 − π(y)^{−α})/α`) and `d = r_w − r_l`:
/// sigmoid `−(1−ε) log σ(βd) − ε log σ(−βd)`, hinge `relu(1 − βd)`, ipo `(d − 1/(2β))²`,
/// simpo as sigmoid on `d − γ/β`; plus `cpo_alpha · nll` (arXiv:2401.08417 Eq. 6).
///
/// Shapes: `chosen_logps`, `rejected_logps` `[B]` (summed for sigmoid/hinge, averaged for
/// ipo/simpo: see [`CpoLossType::uses_average_logps`]), `chosen_nll` scalar (ignored when
/// `cpo_alpha == 0`).
pub fn cpo_loss(
    chosen_logps: &Tensor,
    rejected_logps: &Tensor,
    chosen_nll: Option<&Tensor>,
    cfg: &CpoConfig,
) -> Result<CpoOutput> {
    let beta = cfg.beta;
    let ls = cfg.label_smoothing;
    let (rc, rr) = if cfg.alpha != 0.0 {
        let tr = |lp: &Tensor| -> Result<Tensor> { Ok(((1.0 - (lp * (-cfg.alpha))?.exp()?)? / cfg.alpha)?) };
        (tr(chosen_logps)?, tr(rejected_logps)?)
    } else {
        (chosen_logps.clone(), rejected_logps.clone())
    };
    let mut logits = (&rc - &rr)?;
    let smoothed = |logits: &Tensor| -> Result<Tensor> {
        let bd = (logits * beta)?;
        Ok(((log_sigmoid(&bd)? * (-(1.0 - ls)))? - (log_sigmoid(&bd.neg()?)? * ls)?)?)
    };
    let losses = match cfg.loss_type {
        CpoLossType::Simpo => {
            logits = (logits - cfg.simpo_gamma / beta)?;
            smoothed(&logits)?
        }
        CpoLossType::Sigmoid => smoothed(&logits)?,
        CpoLossType::Hinge => (1.0 - (&logits * beta)?)?.relu()?,
        CpoLossType::Ipo => (&logits - 1.0 / (2.0 * beta))?.sqr()?,
    };
    let mut loss = losses.mean_all()?;
    if cfg.cpo_alpha != 0.0 {
        let nll = chosen_nll.ok_or_else(|| {
            crate::TrainError::Input("cpo_alpha != 0 needs the chosen NLL; pass it or set cpo_alpha = 0".into())
        })?;
        loss = (loss + (nll.reshape(())? * cfg.cpo_alpha)?)?;
    }
    Ok(CpoOutput { loss, losses, chosen_rewards: (rc.detach() * beta)?, rejected_rewards: (rr.detach() * beta)? })
}
