//! Nash-MD-PG (Munos et al., "Nash Learning from Human Feedback", ICML 2024, arXiv:2312.00886,
//! §7), as TRL's `NashMDTrainer._compute_losses` (TRL ≤ 1.13, `trl.experimental.nash_md`).
//!
//! The policy `π_θ` plays against the geometric mixture `π^β ∝ π_θ^{1−β}·π_ref^β` of itself and
//! the reference: `y ~ π_θ`, `y' ~ π^β`, and a preference model gives `P(y ≻ y')`. The
//! policy-gradient estimate of the KL-regularised preference game is
//!
//! `∇ log π_θ(y)·(P(y ≻ y') − ½) − τ·∇ KL(π_θ ‖ π_ref)`
//!
//! with ½ a constant baseline (no critic). As a loss over a batch (`β` below is TRL's `beta`,
//! the paper's τ; the mixture coefficient is a sampling setting, not part of the loss):
//!
//! `L = mean_b[ β·Σ_t k_t·log π_θ(y_t) − (P_b − ½)·Σ_t log π_θ(y_t) ]`
//!
//! where the KL weight `k_t` is stop-gradient and is, by [`KlEstimator`]:
//! - `per_token` (TRL): `k_t = log π_θ(y_t) − log π_ref(y_t)`, the token's own log-ratio;
//! - `reward_to_go` (the paper's sequence version): `k_t = Σ_{s ≥ t} (log π_θ(y_s) − log π_ref(y_s))`,
//!   the log-ratio of the rest of the response, the unbiased score-function gradient of the
//!   sequence KL with the earlier tokens' terms (zero in expectation) dropped.
//!
//! Log-probs are of the completion tokens under plain logits (TRL computes them without the
//! sampling temperature); padding after the end of a response is masked out.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::Result;

/// How the KL term weighs each token's score function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// Each token's own log-ratio (TRL's `_compute_losses`). Default.
    #[default]
    PerToken,
    /// The log-ratio from the token to the end of the response (the paper).
    RewardToGo,
}

/// The loss and TRL's per-row statistics.
pub struct NashMdOutput {
    /// Scalar loss with graph through the policy log-probs.
    pub loss: Tensor,
    /// `(P − ½)·Σ_t log π_θ(y_t)` per row (TRL's `loss/score`), detached.
    pub score: Tensor,
    /// `Σ_t log π_θ(y_t) − log π_ref(y_t)` per row (TRL's `loss/kl`), detached.
    pub kl: Tensor,
}

/// Nash-MD's loss on `B` responses sampled from the policy. `policy_logps` `[B, T]` (with
/// graph) and `ref_logps` `[B, T]` are per-token log-probs of the completion tokens, `mask`
/// `[B, T]` 1 on tokens of the response, `probability` `[B]` the preference `P(y ≻ y')` of each
/// response over its mixture opponent, `beta` the KL strength τ.
pub fn nash_md_loss(
    policy_logps: &Tensor,
    ref_logps: &Tensor,
    mask: &Tensor,
    probability: &Tensor,
    beta: f64,
    kl: KlEstimator,
) -> Result<NashMdOutput> {
    let mask = mask.to_dtype(policy_logps.dtype())?;
    let logps = (policy_logps * &mask)?;
    let log_ratio = ((policy_logps.detach() - ref_logps)? * &mask)?;
    let weight = match kl {
        KlEstimator::PerToken => log_ratio.clone(),
        KlEstimator::RewardToGo => reverse_cumsum(&log_ratio)?,
    };
    let kl_loss = (weight * &logps)?.sum(D::Minus1)?;
    let seq_logps = logps.sum(D::Minus1)?;
    let advantage = probability.to_dtype(policy_logps.dtype())?.affine(1.0, -0.5)?;
    let score = (&advantage * &seq_logps)?;
    let loss = ((kl_loss * beta)? - &score)?.mean_all()?;
    Ok(NashMdOutput { loss, score: score.detach(), kl: log_ratio.sum(D::Minus1)? })
}

/// `out[t] = Σ_{s ≥ t} x[s]` along the last dimension.
fn reverse_cumsum(x: &Tensor) -> Result<Tensor> {
    let total = x.sum_keepdim(D::Minus1)?;
    let before = (x.cumsum(D::Minus1)? - x)?; // Σ_{s < t}
    Ok(total.broadcast_sub(&before)?)
}

/// The Bradley–Terry preference of `a` over `b` from their scores, `σ(r_a − r_b)` (TRL's
/// `probability = sigmoid(model_scores − mixture_scores)`).
pub fn bt_probability(a: &[f32], b: &[f32]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| 1.0 / (1.0 + (-(f64::from(*x) - f64::from(*y))).exp())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t2(v: &[[f64; 3]; 2]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    /// The loss and its gradient against a hand computation on two rows, one with padding.
    #[test]
    fn loss_and_gradient_match_a_hand_computation() {
        let lp = [[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0]];
        let rf = [[-1.5, -1.0, -0.5], [-0.2, -2.0, -9.0]];
        let mask = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]];
        let p = [0.8, 0.3];
        let beta = 0.1;
        for kl in [KlEstimator::PerToken, KlEstimator::RewardToGo] {
            let v = Var::from_tensor(&t2(&lp)).unwrap();
            let out =
                nash_md_loss(v.as_tensor(), &t2(&rf), &t2(&mask), &Tensor::new(&p, &Device::Cpu).unwrap(), beta, kl)
                    .unwrap();
            // hand: ratios row 0 = [0.5, −1, 0], row 1 = [−0.1, 0.8, (masked)].
            let ratio = [[0.5, -1.0, 0.0], [-0.1, 0.8, 0.0]];
            let weight = |b: usize, t: usize| match kl {
                KlEstimator::PerToken => ratio[b][t],
                KlEstimator::RewardToGo => (t..3).map(|s| ratio[b][s]).sum(),
            };
            let mut loss = 0.0;
            let mut grad = [[0.0; 3]; 2];
            for b in 0..2 {
                let seq: f64 = (0..3).map(|t| lp[b][t] * mask[b][t]).sum();
                let kl_term: f64 = (0..3).map(|t| weight(b, t) * lp[b][t] * mask[b][t]).sum();
                loss += (beta * kl_term - (p[b] - 0.5) * seq) / 2.0;
                for t in 0..3 {
                    grad[b][t] = mask[b][t] * (beta * weight(b, t) - (p[b] - 0.5)) / 2.0;
                }
            }
            let got = out.loss.to_scalar::<f64>().unwrap();
            assert!((got - loss).abs() < 1e-12, "{kl:?}: {got} vs {loss}");
            let g: Vec<Vec<f64>> = out.loss.backward().unwrap().get(&v).unwrap().to_vec2().unwrap();
            for b in 0..2 {
                for t in 0..3 {
                    assert!(
                        (g[b][t] - grad[b][t]).abs() < 1e-12,
                        "{kl:?} grad[{b}][{t}]: {} vs {}",
                        g[b][t],
                        grad[b][t]
                    );
                }
            }
            let kl_rows: Vec<f64> = out.kl.to_vec1().unwrap();
            assert!((kl_rows[0] + 0.5).abs() < 1e-12 && (kl_rows[1] - 0.7).abs() < 1e-12, "{kl_rows:?}");
        }
    }

    #[test]
    fn bradley_terry_probability() {
        let p = bt_probability(&[1.0, 0.0], &[0.0, 0.0]);
        assert!((p[0] - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-12 && p[1] == 0.5);
    }
}
