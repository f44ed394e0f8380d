//! INPO, Iterative Nash Policy Optimization (Zhang et al., ICLR 2025, arXiv:2407.00617,
//! Algorithm 1 and Proposition 6).
//!
//! The game: two policies, each paid the probability that its response is preferred, minus
//! `τ·KL(π ‖ π_ref)`. Online mirror descent with inverse step `η` on it has the closed form
//! `π_{t+1}(y) ∝ exp(P(y ≻ π_t)/η) · π_ref(y)^{τ/η} · π_t(y)^{1−τ/η}`. With
//!
//! `h_t(π, y, y') = log π(y)/π(y') − (τ/η)·log π_ref(y)/π_ref(y') − (1 − τ/η)·log π_t(y)/π_t(y')`
//!
//! that update satisfies `h_t(π_{t+1}, y, y') = (P(y ≻ π_t) − P(y' ≻ π_t))/η`, and the paper's
//! Proposition 6 turns it into a loss that needs no win rates: with both responses sampled from
//! `π_t` and ordered by the preference oracle into `(y_w, y_l)`,
//!
//! `L_t(π) = E[ (h_t(π, y_w, y_l) − 1/(2η))² ]`
//!
//! whose minimizer is the mirror-descent step (a test below checks this on a tabular game).
//! Requirement `0 ≤ τ < η`; `τ = 0` is the paper's "INPO w/o KL" ablation. Log-probs are
//! sequence sums of the completion tokens.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::ops::to_vec_f64;
use crate::trainers::Metrics;
use crate::{Result, TrainError};

fn default_eta() -> f64 {
    0.005
}

/// INPO's settings, under the paper's names (TRL has no INPO trainer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpoConfig {
    /// Inverse learning rate η of the mirror-descent step; the regression target is `1/(2η)`.
    /// Default 0.005, the paper's choice from {0.1, 0.01, 0.0075, 0.005, 0.002}.
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// KL strength τ toward the reference, `0 ≤ τ < η`; unset means the paper's `η/3`.
    /// `tau = 0` is INPO without the KL term.
    #[serde(default)]
    pub tau: Option<f64>,
}

impl Default for InpoConfig {
    fn default() -> Self {
        InpoConfig { eta: default_eta(), tau: None }
    }
}

impl InpoConfig {
    /// τ as used: the set value, or `η/3`.
    pub fn tau(&self) -> f64 {
        self.tau.unwrap_or(self.eta / 3.0)
    }

    /// The regression target `1/(2η)`.
    pub fn target(&self) -> f64 {
        1.0 / (2.0 * self.eta)
    }

    /// Checks `η > 0` and `0 ≤ τ < η`, saying how to fix a bad value.
    pub fn validate(&self) -> Result<()> {
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(TrainError::Config(format!(
                "`eta` (INPO's inverse learning rate) must be > 0 (got {}); the paper uses 0.005",
                self.eta
            )));
        }
        let tau = self.tau();
        if !(tau.is_finite() && (0.0..self.eta).contains(&tau)) {
            return Err(TrainError::Config(format!(
                "`tau` must satisfy 0 <= tau < eta (got tau {tau}, eta {}); leave it unset for eta/3, or 0 for \
                 INPO without the KL term",
                self.eta
            )));
        }
        Ok(())
    }
}

/// The loss and what it regressed.
pub struct InpoOutput {
    /// `mean (h − 1/(2η))²`, with graph through the policy log-probs.
    pub loss: Tensor,
    /// `h_t(π, y_w, y_l)` per pair, detached.
    pub h: Tensor,
}

/// `h_t(π, y_w, y_l)` on `n` pairs, with graph through the policy log-probs. Each argument is
/// `[n]` sequence log-probs: the policy being trained (`policy_*`), the fixed reference `π_ref`
/// (`ref_*`) and the policy at the start of the round `π_t` (`start_*`), for the preferred
/// (`*_w`) and the other (`*_l`) response.
pub fn inpo_h(
    policy_w: &Tensor,
    policy_l: &Tensor,
    ref_w: &Tensor,
    ref_l: &Tensor,
    start_w: &Tensor,
    start_l: &Tensor,
    cfg: &InpoConfig,
) -> Result<Tensor> {
    let w_ref = cfg.tau() / cfg.eta;
    let policy = (policy_w - policy_l)?;
    let reference = ((ref_w - ref_l)? * w_ref)?;
    let start = ((start_w - start_l)? * (1.0 - w_ref))?;
    Ok(((policy - reference)? - start)?)
}

/// INPO's loss on `n` pairs, `mean (h − 1/(2η))²` (arguments as [`inpo_h`]).
pub fn inpo_loss(
    policy_w: &Tensor,
    policy_l: &Tensor,
    ref_w: &Tensor,
    ref_l: &Tensor,
    start_w: &Tensor,
    start_l: &Tensor,
    cfg: &InpoConfig,
) -> Result<InpoOutput> {
    let h = inpo_h(policy_w, policy_l, ref_w, ref_l, start_w, start_l, cfg)?;
    let loss = h.affine(1.0, -cfg.target())?.sqr()?.mean_all()?;
    Ok(InpoOutput { loss, h: h.detach() })
}

/// `inpo/h` (mean `h`), `inpo/target` and `inpo/h_gap` (mean `h − 1/(2η)`): how far the round's
/// regression still is from its target.
pub fn inpo_metrics(out: &InpoOutput, cfg: &InpoConfig) -> Result<Metrics> {
    let h = to_vec_f64(&out.h)?;
    let mean = h.iter().sum::<f64>() / h.len().max(1) as f64;
    let mut m = Metrics::new();
    m.insert("loss".into(), to_vec_f64(&out.loss.reshape(1)?)?[0]);
    m.insert("inpo/h".into(), mean);
    m.insert("inpo/target".into(), cfg.target());
    m.insert("inpo/h_gap".into(), mean - cfg.target());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn scalar(x: &Tensor) -> f64 {
        x.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn loss_matches_a_hand_computation() {
        // η = 0.25, τ = 0.05: w_ref = 0.2, w_start = 0.8, target 2.
        let cfg = InpoConfig { eta: 0.25, tau: Some(0.05) };
        let (pw, pl, rw, rl, sw, sl) =
            ([-3.0, -1.0], [-4.0, -2.5], [-3.5, -1.0], [-3.0, -2.0], [-3.2, -1.5], [-3.9, -2.0]);
        let out = inpo_loss(&t(&pw), &t(&pl), &t(&rw), &t(&rl), &t(&sw), &t(&sl), &cfg).unwrap();
        // pair 0: h = 1 − 0.2·(−0.5) − 0.8·0.7 = 0.54; pair 1: h = 1.5 − 0.2·1 − 0.8·0.5 = 0.9.
        let want = ((0.54f64 - 2.0).powi(2) + (0.9f64 - 2.0).powi(2)) / 2.0;
        assert!((scalar(&out.loss) - want).abs() < 1e-12, "{} vs {want}", scalar(&out.loss));
        assert_eq!(to_vec_f64(&out.h).unwrap().iter().map(|x| (x * 100.0).round()).collect::<Vec<_>>(), [54.0, 90.0]);
        let m = inpo_metrics(&out, &cfg).unwrap();
        assert!((m["inpo/h_gap"] - (0.72 - 2.0)).abs() < 1e-12);
    }

    #[test]
    fn default_tau_is_a_third_of_eta_and_bad_values_are_refused() {
        let c = InpoConfig::default();
        assert!((c.tau() - 0.005 / 3.0).abs() < 1e-15 && (c.target() - 100.0).abs() < 1e-9);
        assert!(c.validate().is_ok());
        assert!(InpoConfig { eta: 0.1, tau: Some(0.0) }.validate().is_ok());
        for bad in [
            InpoConfig { eta: 0.0, tau: None },
            InpoConfig { eta: 0.1, tau: Some(0.1) },
            InpoConfig { eta: 0.1, tau: Some(-0.01) },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    /// Proposition 6 on a tabular game: over responses `y, y' ~ π_t` ordered by a Bernoulli draw
    /// on `P(y ≻ y')`, the expected INPO loss of `π = softmax(θ)` is stationary exactly at the
    /// closed-form mirror-descent step `π_{t+1} ∝ exp(P(y ≻ π_t)/η)·π_ref^{τ/η}·π_t^{1−τ/η}`,
    /// and not elsewhere. `P` is intransitive (rock-paper-scissors plus a fourth response).
    #[test]
    fn the_expected_loss_is_minimized_by_the_mirror_descent_step() {
        let p = [[0.5, 0.8, 0.2, 0.6], [0.2, 0.5, 0.9, 0.4], [0.8, 0.1, 0.5, 0.7], [0.4, 0.6, 0.3, 0.5]];
        let pi_ref: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
        let pi_t: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
        let cfg = InpoConfig { eta: 2.0, tau: Some(0.5) };
        let (eta, tau) = (cfg.eta, cfg.tau());
        let win: Vec<f64> = (0..4).map(|y| (0..4).map(|z| pi_t[z] * p[y][z]).sum()).collect();
        let unnorm: Vec<f64> =
            (0..4).map(|y| (win[y] / eta).exp() * pi_ref[y].powf(tau / eta) * pi_t[y].powf(1.0 - tau / eta)).collect();
        let z: f64 = unnorm.iter().sum();
        let next: Vec<f64> = unnorm.iter().map(|u| u / z).collect();

        // Expected loss as one weighted batch: every ordered pair (w, l), weight π_t(w)π_t(l)P(w ≻ l).
        let (mut w_idx, mut l_idx, mut weight) = (vec![], vec![], vec![]);
        for a in 0..4 {
            for b in 0..4 {
                if a != b {
                    w_idx.push(a as u32);
                    l_idx.push(b as u32);
                    weight.push(pi_t[a] * pi_t[b] * p[a][b]);
                }
            }
        }
        let dev = Device::Cpu;
        let gather = |v: &Tensor, idx: &[u32]| v.index_select(&Tensor::new(idx, &dev).unwrap(), 0).unwrap();
        let ln = |v: &[f64]| t(&v.iter().map(|x| x.ln()).collect::<Vec<_>>());
        let expected_loss_grad = |theta: &[f64]| -> Vec<f64> {
            let th = Var::from_tensor(&t(theta)).unwrap();
            let logp = candle_nn::ops::log_softmax(th.as_tensor(), 0).unwrap();
            let (rf, st) = (ln(&pi_ref), ln(&pi_t));
            let h = inpo_h(
                &gather(&logp, &w_idx),
                &gather(&logp, &l_idx),
                &gather(&rf, &w_idx),
                &gather(&rf, &l_idx),
                &gather(&st, &w_idx),
                &gather(&st, &l_idx),
                &cfg,
            )
            .unwrap();
            let sq = h.affine(1.0, -cfg.target()).unwrap().sqr().unwrap();
            let loss = (sq * t(&weight)).unwrap().sum_all().unwrap();
            to_vec_f64(loss.backward().unwrap().get(&th).unwrap()).unwrap()
        };
        let at_next = expected_loss_grad(&next.iter().map(|x| x.ln()).collect::<Vec<_>>());
        assert!(at_next.iter().all(|g| g.abs() < 1e-10), "gradient at the mirror-descent step: {at_next:?}");
        let at_start = expected_loss_grad(&pi_t.iter().map(|x| x.ln()).collect::<Vec<_>>());
        assert!(at_start.iter().any(|g| g.abs() > 1e-3), "gradient at π_t: {at_start:?}");
    }
}
