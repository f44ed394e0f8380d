//! MetaRM's difference loss (Wang et al., "Secrets of RLHF in Large Language Models Part II",
//! arXiv:2401.06080, §3.2, Eq. 11): how well a reward model separates k responses the
//! *shifted* policy sampled for one prompt, unlabelled:
//!
//! `J(θ) = 2/k² · Σ_{i<j} σ(|r_θ(x, s_i) − r_θ(x, s_j)|)`
//!
//! MetaRM (Algorithm 1) first ascends J on a meta batch, `θ' = θ + η ∇J(θ)` (Eq. 12), then
//! descends the vanilla Bradley–Terry loss *at θ'* and applies that gradient to θ:
//! `θ ← θ − α ∇_{θ'} L(θ')` (Eqs. 13–14) — as printed, a first-order step (no second
//! derivative of J). J lives here; the step is [`crate::trainers::metarm::metarm_step`].

use candle_core::{Tensor, D};

use super::ops::log_sigmoid;
use crate::{Result, TrainError};

/// `J` of Eq. 11 per prompt, averaged over prompts. Shapes: `scores [P, k]` (the reward of
/// each of k samples of each of P prompts, k ≥ 2) → scalar. Lies in `[(k−1)/(2k), (k−1)/k)`:
/// σ(0) = ½ when the RM cannot tell the samples apart, → 1 as it separates them.
pub fn metarm_difference(scores: &Tensor) -> Result<Tensor> {
    let (p, k) = scores.dims2()?;
    if k < 2 || p == 0 {
        return Err(TrainError::Input(format!(
            "metarm_difference needs k >= 2 samples for each of >= 1 prompts (got scores {:?})",
            scores.dims()
        )));
    }
    // |r_i − r_j| for every ordered pair [P, k, k]; the i<j half is half the sum (the diagonal
    // holds σ(0) = ½ k times, removed below).
    let diff = scores.unsqueeze(2)?.broadcast_sub(&scores.unsqueeze(1)?)?.abs()?;
    let sig = log_sigmoid(&diff)?.exp()?;
    let upper = ((sig.sum(D::Minus1)?.sum(D::Minus1)? - 0.5 * k as f64)? / 2.0)?; // [P]
    Ok((upper * (2.0 / (k * k) as f64))?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use proptest::prelude::*;

    use super::*;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Two prompts worked by hand: k = 3 scores (0, 1, 3) → pairs |1|, |3|, |2|;
    /// scores (2, 2, 2) → three σ(0).
    #[test]
    fn difference_loss_by_hand() -> Result<()> {
        let s = Tensor::new(&[[0.0f64, 1.0, 3.0], [2.0, 2.0, 2.0]], &Device::Cpu)?;
        let got = metarm_difference(&s)?.to_scalar::<f64>()?;
        let first = 2.0 / 9.0 * (sigmoid(1.0) + sigmoid(3.0) + sigmoid(2.0));
        let second = 2.0 / 9.0 * 1.5;
        assert!((got - (first + second) / 2.0).abs() < 1e-12, "{got}");
        assert!(metarm_difference(&Tensor::new(&[[1.0f64]], &Device::Cpu)?).is_err());
        Ok(())
    }

    /// The gradient of J pushes the samples apart: d J / d r_i = 2/k² Σ_j σ'(|Δ|)·sign(r_i − r_j).
    #[test]
    fn gradient_separates_the_samples() -> Result<()> {
        let v = Var::new(&[[0.0f64, 1.0]], &Device::Cpu)?;
        let g: Vec<Vec<f64>> = metarm_difference(v.as_tensor())?.backward()?.get(v.as_tensor()).unwrap().to_vec2()?;
        let d = 2.0 / 4.0 * sigmoid(1.0) * (1.0 - sigmoid(1.0));
        assert!((g[0][0] + d).abs() < 1e-12 && (g[0][1] - d).abs() < 1e-12, "{g:?}");
        Ok(())
    }

    proptest! {
        /// The bounds, and invariance to shifting a prompt's scores or permuting its samples.
        #[test]
        fn bounds_and_invariances(rows in proptest::collection::vec(proptest::collection::vec(-5.0f64..5.0, 4), 1..5), shift in -3.0f64..3.0) {
            let k = 4.0;
            let flat: Vec<f64> = rows.concat();
            let t = Tensor::from_vec(flat.clone(), (rows.len(), 4), &Device::Cpu).unwrap();
            let j = metarm_difference(&t).unwrap().to_scalar::<f64>().unwrap();
            prop_assert!(j >= (k - 1.0) / (2.0 * k) - 1e-12 && j < (k - 1.0) / k);
            let moved = Tensor::from_vec(flat.iter().map(|x| x + shift).collect::<Vec<_>>(), (rows.len(), 4), &Device::Cpu).unwrap();
            prop_assert!((metarm_difference(&moved).unwrap().to_scalar::<f64>().unwrap() - j).abs() < 1e-12);
            let rev: Vec<f64> = rows.iter().flat_map(|r| r.iter().rev().copied()).collect();
            let rev = Tensor::from_vec(rev, (rows.len(), 4), &Device::Cpu).unwrap();
            prop_assert!((metarm_difference(&rev).unwrap().to_scalar::<f64>().unwrap() - j).abs() < 1e-12);
        }
    }
}
