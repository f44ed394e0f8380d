//! T-REG (Zhou et al., "T-REG: Preference Optimization with Token-Level Reward Regularization",
//! arXiv:2412.02685): DPO plus α times a token-level regularizer that steers DPO's implicit
//! token rewards `β·log π_θ(y_t)/π_ref(y_t)` by token rewards the model gives itself.
//!
//! What is verified (the abstract and summaries; research note §4): the total loss is a
//! sequence-level preference loss plus α times a token-level regularizer, and the token rewards
//! come from the same model prompted two opposite ways. What is reconstructed here — named, a knob
//! where it can be, and without a parity claim — is the regularizer's form:
//!
//! `L_REG = −log σ( β·Σ_t w^w_t·ρ^w_t − β·Σ_t w^l_t·ρ^l_t )`, `ρ_t = log π_θ(y_t) − log π_ref(y_t)`,
//!
//! a DPO term whose token log-ratios are weighted, each response's weights summing to its length:
//! `w^w = |y^w|·softmax(r^w/τ)` on the chosen response (its tokens the reward calls good weigh
//! more) and `w^l = |y^l|·softmax(−r^l/τ)` on the rejected one (its bad tokens weigh more). With
//! equal token rewards the weights are all 1 and `L_REG` is DPO's loss, so a reward carrying no
//! information leaves DPO unchanged up to the factor `1 + α`.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use super::ops::log_sigmoid;
use crate::{Result, TrainError};

/// T-REG's knobs beside DPO's ([`super::DpoConfig`], whose `beta` the regularizer shares).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TRegConfig {
    /// Weight of the token-level regularizer (default 1.0; the paper's range is recalled as
    /// 0.1–1, unverified).
    pub alpha: f64,
    /// Temperature τ of the token weights' softmax (default 1.0; larger is flatter).
    pub token_temperature: f64,
}

impl Default for TRegConfig {
    fn default() -> Self {
        TRegConfig { alpha: 1.0, token_temperature: 1.0 }
    }
}

impl TRegConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(TrainError::Config(format!("alpha must be a number >= 0 (got {})", self.alpha)));
        }
        if !(self.token_temperature.is_finite() && self.token_temperature > 0.0) {
            return Err(TrainError::Config(format!("token_temperature must be > 0 (got {})", self.token_temperature)));
        }
        Ok(())
    }
}

/// One response's token weights from its token rewards: `n·softmax(sign·r/τ)` (`sign` +1 for a
/// chosen response, −1 for a rejected one). They sum to the response's length `n`; equal rewards
/// give all ones.
pub fn token_weights(rewards: &[f32], sign: f64, temperature: f64) -> Vec<f32> {
    if rewards.is_empty() {
        return Vec::new();
    }
    let z: Vec<f64> = rewards.iter().map(|&r| sign * f64::from(r) / temperature).collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    let n = rewards.len() as f64;
    e.iter().map(|x| (n * x / sum) as f32).collect()
}

/// `L_REG` per pair, averaged: `policy` and `reference` are per-token log-probs `[2B, T]`
/// (chosen rows, then rejected), `weights` the token weights `[2B, T]` (zero off the completion).
pub fn t_reg_loss(policy: &Tensor, reference: &Tensor, weights: &Tensor, beta: f64) -> Result<Tensor> {
    let rows = policy.dim(0)?;
    if rows % 2 != 0 || reference.dims() != policy.dims() || weights.dims() != policy.dims() {
        return Err(TrainError::Input(format!(
            "t_reg_loss: policy {:?}, reference {:?} and weights {:?} must be equal [2B, T] shapes",
            policy.dims(),
            reference.dims(),
            weights.dims()
        )));
    }
    let n = rows / 2;
    let weighted = ((policy - reference)? * weights.to_dtype(policy.dtype())?)?.sum(D::Minus1)?; // [2B]
    let margin = ((weighted.narrow(0, 0, n)? - weighted.narrow(0, n, n)?)? * beta)?;
    Ok(log_sigmoid(&margin)?.neg()?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn weights_sum_to_the_length_and_favour_good_chosen_and_bad_rejected_tokens() {
        let r = [1.0f32, 0.0, -1.0];
        let w = token_weights(&r, 1.0, 1.0);
        assert!((w.iter().sum::<f32>() - 3.0).abs() < 1e-5);
        // n·e^r / Σ e^r by hand: Σ = e + 1 + 1/e.
        let s = 1f64.exp() + 1.0 + (-1f64).exp();
        assert!((f64::from(w[0]) - 3.0 * 1f64.exp() / s).abs() < 1e-5);
        let l = token_weights(&r, -1.0, 1.0);
        assert!(l[2] > l[1] && l[1] > l[0], "a rejected response's worst token weighs most: {l:?}");
        assert_eq!(token_weights(&[0.3; 4], 1.0, 2.0), vec![1.0; 4]);
        assert!(token_weights(&[], 1.0, 1.0).is_empty());
    }

    #[test]
    fn the_regularizer_by_hand_and_equal_to_dpo_under_unit_weights() -> Result<()> {
        let dev = Device::Cpu;
        // One pair, three token positions (the last off the rejected completion).
        let policy = Tensor::new(&[[-1.0f32, -2.0, -0.5], [-1.5, -0.5, 0.0]], &dev)?;
        let reference = Tensor::new(&[[-1.2f32, -1.0, -0.7], [-1.0, -1.0, 0.0]], &dev)?;
        let weights = Tensor::new(&[[0.5f32, 2.0, 0.5], [1.5, 0.5, 0.0]], &dev)?;
        let beta = 0.3;
        let got: f32 = t_reg_loss(&policy, &reference, &weights, beta)?.to_scalar()?;
        // chosen: 0.5·0.2 + 2·(−1) + 0.5·0.2 = −1.8; rejected: 1.5·(−0.5) + 0.5·0.5 = −0.5.
        let m = beta * (-1.8 - -0.5);
        let want = (1.0 + (-m).exp()).ln();
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
        // Unit weights on the completion: −log σ(β(Σρ_w − Σρ_l)), DPO's sigmoid loss.
        let ones = Tensor::new(&[[1.0f32, 1.0, 1.0], [1.0, 1.0, 0.0]], &dev)?;
        let unit: f32 = t_reg_loss(&policy, &reference, &ones, beta)?.to_scalar()?;
        let m = beta * ((0.2 - 1.0 + 0.2) - (-0.5 + 0.5));
        assert!((f64::from(unit) - (1.0 + (-m).exp()).ln()).abs() < 1e-6);
        assert!(t_reg_loss(&policy, &reference, &ones.narrow(1, 0, 2)?, beta).is_err());
        Ok(())
    }
}
