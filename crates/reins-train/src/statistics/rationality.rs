//! Heterogeneous annotator rationality (Liu, Shi & Sun, arXiv:2604.02507; "Uncertainty
//! quantification for LLM reward learning under heterogeneous human feedback",
//! arXiv:2512.03208): annotator `a` prefers `y_w` with probability `P(β_a (r_w − r_l))`, where
//! `P` is the link ([`Link`]) and `β_a ≥ 0` is the annotator's rationality (large: careful,
//! near 0: a coin flip). Rewards and rationalities are estimated jointly by alternating steps
//! on `r` and on `β`, as in arXiv:2512.03208.
//!
//! Identifiability: `β_a r` is unchanged when every `β` is multiplied by `c` and `r` divided by
//! it, so reins parameterises `β_a = exp(u_a)` and fixes the mean of `u` (the log-rationality)
//! at 0 after every step: the geometric mean of the β's is 1 and the reward keeps the scale of a
//! typical annotator. A Gaussian prior of precision `λ` on each `u_a` keeps the β of an
//! annotator whose few labels the reward separates perfectly finite.
//!
//! Two estimators share these pieces: [`fit_map_rationality`], exact alternating maximisation
//! for a linear head on fixed features, and [`rationality_step`], one gradient step on `u` from a
//! batch's reward gaps, which a neural trainer alternates with its optimizer step on `r`.

use serde::{Deserialize, Serialize};

use super::laplace::{fit_map, PairFeatures};
use super::link::Link;
use crate::{Result, TrainError};

/// The annotators' log-rationalities `u_a = ln β_a` (mean 0), in the order of their ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rationality {
    pub log_beta: Vec<f64>,
}

impl Rationality {
    /// `n` annotators, all at β = 1.
    pub fn new(n: usize) -> Self {
        Rationality { log_beta: vec![0.0; n] }
    }

    /// `β_a = exp(u_a)`.
    pub fn beta(&self, a: usize) -> f64 {
        self.log_beta[a].exp()
    }

    /// All β's.
    pub fn betas(&self) -> Vec<f64> {
        self.log_beta.iter().map(|u| u.exp()).collect()
    }

    /// Shifts `u` to mean 0 and returns the shift `c` (the old mean): `β_a r = (β_a/e^c)(e^c r)`,
    /// so a reward scaled by `e^c` keeps every likelihood.
    pub fn centre(&mut self) -> f64 {
        let n = self.log_beta.len().max(1) as f64;
        let c = self.log_beta.iter().sum::<f64>() / n;
        self.log_beta.iter_mut().for_each(|u| *u -= c);
        c
    }
}

/// The penalised negative log-likelihood of one annotator's labels in `u = ln β`, with
/// `obs = (d_i, p_i)` (reward gap and target): `Σ_i nll(e^u d_i, p_i) + λ/2 u²`, its first and
/// second derivatives in `u`.
fn annotator_objective(link: Link, obs: &[(f64, f64)], u: f64, lambda: f64) -> (f64, f64, f64) {
    let s = u.exp();
    let (mut f, mut g, mut h) = (0.5 * lambda * u * u, lambda * u, lambda);
    for &(d, p) in obs {
        let x = s * d;
        let (d1, d2) = (link.dnll(x, p), link.d2nll(x, p));
        f += link.nll(x, p);
        g += d1 * x;
        h += d2 * x * x + d1 * x;
    }
    (f, g, h)
}

/// The MAP `u = ln β` of one annotator given the reward gaps of its labels: damped Newton with
/// backtracking (the objective need not be convex in `u`; a non-positive curvature falls back
/// to a gradient step).
fn fit_log_beta(link: Link, obs: &[(f64, f64)], start: f64, lambda: f64) -> f64 {
    let mut u = start;
    let (mut f, _, _) = annotator_objective(link, obs, u, lambda);
    for _ in 0..100 {
        let (_, g, h) = annotator_objective(link, obs, u, lambda);
        if g.abs() < 1e-10 {
            break;
        }
        let mut step = if h > 1e-12 { g / h } else { g.signum() };
        step = step.clamp(-2.0, 2.0);
        let mut moved = false;
        for _ in 0..50 {
            let cand = u - step;
            let (fc, _, _) = annotator_objective(link, obs, cand, lambda);
            if fc <= f - 1e-4 * step * g {
                (u, f, moved) = (cand, fc, true);
                break;
            }
            step *= 0.5;
        }
        if !moved {
            break;
        }
    }
    u
}

/// A linear head fitted jointly with per-annotator rationalities.
#[derive(Debug, Clone, PartialEq)]
pub struct RationalityFit {
    /// The head `w` (reward `wᵀφ`), on the scale of an annotator with β = 1.
    pub weight: Vec<f64>,
    pub rationality: Rationality,
    /// Alternating rounds run.
    pub rounds: usize,
}

/// The MAP head and annotator rationalities of `P(y_w ≻ y_l) = P(β_a (wᵀz − m))` by alternating
/// maximisation (arXiv:2512.03208): `w` given `β` is [`fit_map`] on the pairs scaled by their
/// annotator's `β` (prior precision `prior_precision` on `w`); each `u_a = ln β_a` given `w` is
/// a one-dimensional Newton fit with prior precision `beta_prior_precision`; then `u` is
/// centred (mean 0) and `w` rescaled so the likelihood is unchanged. The prior on `w` thus
/// regularises its direction within each step while the β's set its scale; keep it weak.
/// Stops when neither moves
/// by more than 1e-8 or after 200 rounds. `annotators[i] < n_annotators` is pair i's annotator.
pub fn fit_map_rationality(
    link: Link,
    pairs: &PairFeatures,
    annotators: &[usize],
    n_annotators: usize,
    dim: usize,
    prior_precision: f64,
    beta_prior_precision: f64,
) -> Result<RationalityFit> {
    if annotators.len() != pairs.diffs.len() {
        return Err(TrainError::Input(format!(
            "{} annotator indices for {} pairs: every pair needs the annotator who labelled it",
            annotators.len(),
            pairs.diffs.len()
        )));
    }
    if let Some(a) = annotators.iter().find(|&&a| a >= n_annotators) {
        return Err(TrainError::Input(format!("annotator index {a} is out of range (there are {n_annotators})")));
    }
    if !(beta_prior_precision >= 0.0 && beta_prior_precision.is_finite()) {
        return Err(TrainError::Config(format!(
            "the prior precision of ln β must be a finite number >= 0 (got {beta_prior_precision})"
        )));
    }
    let mut rat = Rationality::new(n_annotators);
    let mut w = vec![0.0; dim];
    let mut rounds = 0;
    for round in 0..200 {
        rounds = round + 1;
        // w given β: every pair scaled by its annotator's β, margins included.
        let scaled = PairFeatures {
            diffs: pairs
                .diffs
                .iter()
                .zip(annotators)
                .map(|(z, &a)| z.iter().map(|x| x * rat.beta(a)).collect())
                .collect(),
            margins: pairs.margins.as_ref().map(|m| m.iter().zip(annotators).map(|(m, &a)| m * rat.beta(a)).collect()),
            targets: pairs.targets.clone(),
        };
        let new_w = fit_map(link, &scaled, dim, prior_precision)?;
        // β given w: one Newton fit per annotator on its pairs' gaps.
        let mut obs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n_annotators];
        for (i, (z, &a)) in pairs.diffs.iter().zip(annotators).enumerate() {
            let d = dot(&new_w, z) - pairs.margins.as_ref().map_or(0.0, |m| m[i]);
            obs[a].push((d, pairs.targets.as_ref().map_or(1.0, |p| p[i])));
        }
        let old = rat.log_beta.clone();
        for (a, o) in obs.iter().enumerate() {
            rat.log_beta[a] = fit_log_beta(link, o, rat.log_beta[a], beta_prior_precision);
        }
        let scale = rat.centre().exp();
        let new_w: Vec<f64> = new_w.iter().map(|x| x * scale).collect();
        let moved =
            new_w.iter().zip(&w).chain(rat.log_beta.iter().zip(&old)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        w = new_w;
        if moved < 1e-8 {
            break;
        }
    }
    Ok(RationalityFit { weight: w, rationality: rat, rounds })
}

/// One labelled pair of a training batch as the β step reads it: the annotator, the reward gap
/// `d = r_w − r_l − margin` (detached) and the target `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapObservation {
    pub annotator: usize,
    pub gap: f64,
    pub target: f64,
}

/// One gradient step on the log-rationalities from a batch (the β half of the alternating
/// scheme of arXiv:2512.03208; the trainer's optimizer step on `r` is the other half): for each
/// annotator with pairs in the batch, `u_a ← u_a − lr · (mean_i ∂nll(e^{u_a} d_i, p_i)/∂u_a +
/// λ u_a)`, where `∂nll/∂u = nll′(x) x` at `x = e^u d`; then `u` is centred. The mean over the
/// annotator's pairs (not the batch) keeps the step's size independent of how many annotators
/// share a batch. Returns the annotators whose β moved.
pub fn rationality_step(rat: &mut Rationality, link: Link, batch: &[GapObservation], lr: f64, lambda: f64) -> usize {
    let n = rat.log_beta.len();
    let (mut grad, mut count) = (vec![0.0; n], vec![0usize; n]);
    for o in batch.iter().filter(|o| o.annotator < n && o.gap.is_finite()) {
        let x = rat.beta(o.annotator) * o.gap;
        grad[o.annotator] += link.dnll(x, o.target) * x;
        count[o.annotator] += 1;
    }
    let mut moved = 0;
    for a in 0..n {
        if count[a] > 0 {
            rat.log_beta[a] -= lr * (grad[a] / count[a] as f64 + lambda * rat.log_beta[a]);
            moved += 1;
        }
    }
    rat.centre();
    moved
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Synthetic Bradley–Terry labels from θ* = (1, −0.5, 0.5): annotators 0–3 at β = 5, 4–7 at
    /// β = 0.5, `n` pairs each.
    fn two_groups(rng: &mut ChaCha8Rng, n: usize) -> (PairFeatures, Vec<usize>) {
        let theta = [1.0, -0.5, 0.5];
        let (mut diffs, mut targets, mut who) = (Vec::new(), Vec::new(), Vec::new());
        for a in 0..8 {
            let beta = if a < 4 { 5.0 } else { 0.5 };
            for _ in 0..n {
                let z: Vec<f64> = (0..3).map(|_| normal(rng)).collect();
                let p = Link::BradleyTerry.prob(beta * dot(&theta, &z));
                targets.push(f64::from(u8::from(rng.random::<f64>() < p)));
                diffs.push(z);
                who.push(a);
            }
        }
        (PairFeatures { diffs, margins: None, targets: Some(targets) }, who)
    }

    /// The fitted β's order the groups: every careful annotator's β exceeds every noisy one's,
    /// and the ratio of the groups' geometric means is near the true 10 (within a factor 2);
    /// mean log β is 0.
    #[test]
    fn fitted_rationalities_order_careful_and_noisy_annotators() -> Result<()> {
        for seed in 0..5 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (pairs, who) = two_groups(&mut rng, 150);
            let fit = fit_map_rationality(Link::BradleyTerry, &pairs, &who, 8, 3, 1e-3, 0.01)?;
            let u = &fit.rationality.log_beta;
            let careful = u[..4].iter().copied().fold(f64::INFINITY, f64::min);
            let noisy = u[4..].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(careful > noisy, "seed {seed}: log β = {u:?}");
            let ratio = (u[..4].iter().sum::<f64>() / 4.0 - u[4..].iter().sum::<f64>() / 4.0).exp();
            assert!((5.0..20.0).contains(&ratio), "seed {seed}: ratio {ratio}");
            assert!(u.iter().sum::<f64>().abs() < 1e-9);
            // β_a w recovers β_a θ*: the careful group's geometric β (√10 with mean log β = 0)
            // times w is 5 θ*, so w ≈ θ* · 5/√10.
            let w0 = fit.weight[0];
            assert!((w0 / (5.0 / 10f64.sqrt()) - 1.0).abs() < 0.35, "seed {seed}: w = {:?}", fit.weight);
        }
        Ok(())
    }

    /// With one annotator (β pinned at 1 by the centring) the fit is plain [`fit_map`] (here
    /// with a negligible prior: the centring moves the β-step's scale into `w`, so a strong prior
    /// on `w` acts on its direction only).
    #[test]
    fn one_annotator_is_plain_bradley_terry() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (pairs, _) = two_groups(&mut rng, 40);
        let fit = fit_map_rationality(Link::BradleyTerry, &pairs, &vec![0; pairs.diffs.len()], 1, 3, 1e-9, 0.0)?;
        let plain = fit_map(Link::BradleyTerry, &pairs, 3, 1e-9)?;
        assert_eq!(fit.rationality.log_beta, vec![0.0]);
        for (a, b) in fit.weight.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let err = fit_map_rationality(Link::BradleyTerry, &pairs, &[0], 1, 3, 0.5, 0.0).unwrap_err();
        assert!(err.to_string().contains("annotator"), "{err}");
        assert!(fit_map_rationality(Link::BradleyTerry, &pairs, &vec![2; pairs.diffs.len()], 2, 3, 0.5, 0.0).is_err());
        Ok(())
    }

    /// The β step by hand: annotators 0 and 1 at β = 1 (u = 0), one pair each, gaps 2 and −1,
    /// hard labels. `∂nll(x)/∂u = −σ(−x)·x` at `x = d`: −2σ(−2) for 0 and +σ(1) for 1; with
    /// lr 0.5 and no prior `u = (σ(−2), −σ(1)/2)` before centring, then both minus their mean.
    #[test]
    fn rationality_step_by_hand() {
        let mut rat = Rationality::new(2);
        let batch = [
            GapObservation { annotator: 0, gap: 2.0, target: 1.0 },
            GapObservation { annotator: 1, gap: -1.0, target: 1.0 },
        ];
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert_eq!(rationality_step(&mut rat, Link::BradleyTerry, &batch, 0.5, 0.0), 2);
        let (u0, u1) = (sig(-2.0), -0.5 * sig(1.0));
        let m = (u0 + u1) / 2.0;
        assert!((rat.log_beta[0] - (u0 - m)).abs() < 1e-15 && (rat.log_beta[1] - (u1 - m)).abs() < 1e-15);
        // A careful annotator (right on a wide gap) gains β; one who contradicts the reward loses it.
        assert!(rat.beta(0) > 1.0 && rat.beta(1) < 1.0);
    }

    proptest::proptest! {
        /// Centring keeps every product `β_a · (e^c r)` and leaves mean log β at 0.
        #[test]
        fn centring_keeps_the_likelihood(u in proptest::collection::vec(-3.0f64..3.0, 1..6), r in -2.0f64..2.0) {
            let mut rat = Rationality { log_beta: u.clone() };
            let before: Vec<f64> = rat.betas().iter().map(|b| b * r).collect();
            let c = rat.centre();
            let after: Vec<f64> = rat.betas().iter().map(|b| b * r * c.exp()).collect();
            for (a, b) in before.iter().zip(&after) {
                proptest::prop_assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()));
            }
            proptest::prop_assert!(rat.log_beta.iter().sum::<f64>().abs() < 1e-9);
        }
    }
}
