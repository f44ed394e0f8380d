//! Explicit running statistics that some losses carry between steps (no hidden state: the
//! caller owns the value and passes it back in).

use serde::{Deserialize, Serialize};

/// Running mean/variance with TRL's `RunningMoments.update` semantics (Chan et al. parallel
/// update; count starts at 1e-24 so the first batch sets the mean).
///
/// Used for BCO's reward shift δ (Jung et al., "Binary Classifier Optimization",
/// arXiv:2404.04656 §3.2; the `bco_pair` of TRL ≤ 0.12 and TRL's `BCOTrainer`): each step
/// `state = state.update(&[mean(β ρ_w ∪ β ρ_l)])`, then `δ = state.mean`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunningMoments {
    /// Running mean.
    pub mean: f64,
    /// Running (population) variance.
    pub var: f64,
    /// Running unbiased standard deviation.
    pub std: f64,
    /// Number of values seen (starts at 1e-24).
    pub count: f64,
}

impl Default for RunningMoments {
    fn default() -> Self {
        Self { mean: 0.0, var: 1.0, std: 1.0, count: 1e-24 }
    }
}

impl RunningMoments {
    /// The state after seeing `xs` (TRL `RunningMoments.update`).
    pub fn update(self, xs: &[f64]) -> Self {
        if xs.is_empty() {
            return self;
        }
        let n = xs.len() as f64;
        let xs_mean = xs.iter().sum::<f64>() / n;
        let xs_var = xs.iter().map(|x| (x - xs_mean).powi(2)).sum::<f64>() / n;
        let delta = xs_mean - self.mean;
        let tot = self.count + n;
        let new_sum = xs_var * n;
        let old_sum = self.var * self.count + delta * delta * self.count * n / tot;
        let new_var = (old_sum + new_sum) / tot;
        Self { mean: self.mean + delta * n / tot, var: new_var, std: (new_var * tot / (tot - 1.0)).sqrt(), count: tot }
    }
}
