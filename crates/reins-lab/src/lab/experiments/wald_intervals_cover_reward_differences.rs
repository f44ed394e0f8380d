//! E11b, interval coverage (Liu, Shi & Sun, "Reinforcement Learning from Human Feedback: A
//! Statistical Perspective", arXiv:2604.02507, on Wald intervals of `θᵀ(φ1 − φ2)` for linear
//! rewards; research note E11b): when the annotators follow the model's link, the 95 % Wald
//! intervals of reward differences cover the true differences 95 % of the time.
//!
//! Design, fixed before the full run:
//! - **Reward model**: linear in factors, `r = θᵀφ` with `φ` a response's six gold factor scores
//!   ([`super::factor_differences`]; a factor the pool never varies is left out). The truth is
//!   the gold reward itself, `θ* =` the gold weights, so `θ*ᵀ(φ1 − φ2)` is the gold difference.
//! - **Design**: 1,000 pairs of world-written responses to train prompts (fixed per seed); per
//!   replicate the labels are redrawn and the model refitted (MAP with a negligible prior,
//!   precision 1e-6; Laplace posterior, [`HeadPosterior`]); the target is one held-out pair of
//!   responses to test prompts (replicate r reads held-out pair r mod 500), so the 1,000
//!   replicates of a condition are independent.
//! - **(a) correct link**: labels `~ Bernoulli(σ(θ*ᵀz))`, logit model. Covered when the interval
//!   holds `θ*ᵀg`. **Rule**: the coverage pooled over seeds lies inside the 99 % binomial band
//!   around 0.95 ([`Rule::NominalRate`]).
//! - **(b) misspecified link**: probit annotators, labels `~ Bernoulli(Φ(θ*ᵀz/√2))` (Thurstone
//!   with `s = 1`), logit model fitted. What the logit fit estimates is not `θ*` but the
//!   pseudo-true `θ† = argmin_θ Σ_i E[nll_logit(θᵀz_i)]` over the same design (White 1982), i.e.
//!   the logit MAP fitted on the exact probit probabilities as soft targets. The reported
//!   coverage of (b) is that of `θ†ᵀg`; the coverage of the unscaled `θ*ᵀg` and the scale
//!   `‖θ†‖/‖θ*‖` are reported beside it. (b) is reported, not judged.
//!
//! A reduced run (the lab's reduced settings) takes 100 replicates of 300 pairs: seconds in CI.

use rand::{Rng, SeedableRng};
use reins_train::statistics::laplace::fit_map;
use reins_train::statistics::{Curvature, HeadPosterior, Link, PairFeatures};

use super::{factor_differences, factor_weights, restrict, varying_factors};
use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabConfig, LabError, Split};

/// Replicates per condition and seed (the rule's band assumes this many).
const REPLICATES: usize = 1000;
/// Labelled pairs per replicate.
const POOL: usize = 1000;
/// Held-out pairs the targets cycle through.
const HELD_OUT: usize = 500;
const PRIOR_PRECISION: f64 = 1e-6;
const LEVEL: f64 = 0.95;

pub fn experiment() -> Experiment {
    Experiment {
        id: "wald_intervals_cover_reward_differences",
        claim: "When annotators follow the model's (logit) link, 95 % Wald intervals of reward differences under a linear-in-factors reward model cover the true differences at the nominal rate: coverage over 1,000 replicates per seed lies in the 99 % binomial band around 0.95.",
        paper: Paper { title: "Reinforcement Learning from Human Feedback: A Statistical Perspective", arxiv: "2604.02507" },
        metric: "coverage of the true reward difference of a held-out pair by the 95 % Wald interval",
        split: "test",
        rule: Rule::NominalRate { what: "coverage under the correct (logit) link", nominal: LEVEL, replicates: REPLICATES },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn stats(e: reins_train::TrainError) -> LabError {
    LabError::Stage { stage: "interval coverage", message: e.to_string() }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What a condition's interval is checked against: the truth of a target difference `g`.
type Truth<'a> = &'a dyn Fn(&[f64]) -> f64;

/// One condition's replicates: labels drawn from `truth_link` at `θ*ᵀz`, a logit model fitted,
/// and the 95 % interval of target `g_r` checked against each of `truths(g_r)`. Returns the
/// coverage of each truth and the mean interval width.
fn coverage(
    replicates: usize,
    pool: &[Vec<f64>],
    targets: &[Vec<f64>],
    theta: &[f64],
    truth_link: Link,
    truths: &[Truth],
    seed: u64,
) -> Result<(Vec<f64>, f64), LabError> {
    let dim = theta.len();
    let probs: Vec<f64> = pool.iter().map(|z| truth_link.prob(dot(theta, z))).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut covered, mut width) = (vec![0usize; truths.len()], 0.0);
    for r in 0..replicates {
        let labels: Vec<f64> = probs.iter().map(|&p| f64::from(u8::from(rng.random::<f64>() < p))).collect();
        let pairs = PairFeatures { diffs: pool.to_vec(), margins: None, targets: Some(labels) };
        let w = fit_map(Link::BradleyTerry, &pairs, dim, PRIOR_PRECISION).map_err(stats)?;
        let post =
            HeadPosterior::fit(Link::BradleyTerry, Curvature::Hessian, &w, &pairs, PRIOR_PRECISION).map_err(stats)?;
        let g = &targets[r % targets.len()];
        let (lo, hi) = post.difference(g, &vec![0.0; dim]).map_err(stats)?.interval(LEVEL);
        width += hi - lo;
        for (c, truth) in covered.iter_mut().zip(truths) {
            let t = truth(g);
            *c += usize::from(lo <= t && t <= hi);
        }
    }
    let n = replicates.max(1) as f64;
    Ok((covered.iter().map(|&c| c as f64 / n).collect(), width / n))
}

fn run(s: &mut Session, _base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let world = &s.lab().world;
    let gold = &s.lab().gold;
    let reduced = cfg.pairs.n_prompts < LabConfig::default().pairs.n_prompts / 10;
    let (replicates, pool_size) = if reduced { (100, 300) } else { (REPLICATES, POOL) };
    let train = factor_differences(gold, &world.sample_pairs(Split::Train, pool_size, &cfg.world.corpus_mix));
    let keep = varying_factors(&train);
    let pool: Vec<Vec<f64>> = train.iter().map(|z| restrict(z, &keep)).collect();
    // Held-out targets: pairs of responses to test prompts whose difference lies in the factors
    // the model has (a difference in a factor the pool never varies would be extrapolation).
    let targets: Vec<Vec<f64>> =
        factor_differences(gold, &world.sample_pairs(Split::Test, 4 * HELD_OUT, &cfg.world.corpus_mix))
            .into_iter()
            .filter(|g| g.iter().enumerate().all(|(j, x)| keep.contains(&j) || *x == 0.0))
            .map(|g| restrict(&g, &keep))
            .filter(|g| g.iter().any(|x| *x != 0.0))
            .take(HELD_OUT)
            .collect();
    if targets.is_empty() || pool.is_empty() {
        return Err(LabError::Stage { stage: "interval coverage", message: "no pairs with differing factors".into() });
    }
    let theta = restrict(&factor_weights(gold), &keep);
    let dim = theta.len();

    s.announce("(a) logistic annotators");
    let gold_diff = |g: &[f64]| dot(&theta, g);
    let (a, width_a) =
        coverage(replicates, &pool, &targets, &theta, Link::BradleyTerry, &[&gold_diff], cfg.seed ^ 0x00e1_1b0a)?;

    s.announce("(b) probit annotators");
    // The pseudo-true logit head: the MAP on the exact probit probabilities of the design.
    let soft = PairFeatures {
        diffs: pool.clone(),
        margins: None,
        targets: Some(pool.iter().map(|z| Link::Thurstone.prob(dot(&theta, z))).collect()),
    };
    let pseudo = fit_map(Link::BradleyTerry, &soft, dim, PRIOR_PRECISION).map_err(stats)?;
    let pseudo_diff = |g: &[f64]| dot(&pseudo, g);
    let (b, width_b) = coverage(
        replicates,
        &pool,
        &targets,
        &theta,
        Link::Thurstone,
        &[&pseudo_diff, &gold_diff],
        cfg.seed ^ 0x00e1_1b0b,
    )?;
    let norm = |v: &[f64]| dot(v, v).sqrt();

    Ok(SeedOutcome {
        arms: vec![
            ("(a) logit annotators, logit model: coverage of θ*ᵀg".into(), a[0]),
            ("(b) probit annotators, logit model: coverage of the pseudo-true θ†ᵀg".into(), b[0]),
        ],
        statistic: a[0],
        extras: vec![
            ("(b) coverage of the unscaled probit utility difference θ*ᵀg".into(), b[1]),
            ("(b) scale of the pseudo-true head, ‖θ†‖/‖θ*‖".into(), norm(&pseudo) / norm(&theta)),
            ("(a) mean interval width".into(), width_a),
            ("(b) mean interval width".into(), width_b),
            ("factors in the model".into(), dim as f64),
            ("labelled pairs per replicate".into(), pool.len() as f64),
            ("replicates per condition".into(), replicates as f64),
        ],
        curves: Vec::new(),
    })
}
