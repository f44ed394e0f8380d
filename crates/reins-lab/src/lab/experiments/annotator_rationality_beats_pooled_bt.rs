//! E11d, heterogeneous rationality (Liu, Shi & Sun, arXiv:2604.02507; the same authors'
//! "Uncertainty quantification for LLM reward learning under heterogeneous human feedback",
//! arXiv:2512.03208; research note E11d): when careful and noisy annotators are mixed, a reward
//! model that learns each annotator's rationality `β_a` (`P = σ(β_a (r_w − r_l))`) ranks
//! held-out pairs by gold more accurately than pooled Bradley–Terry on the same labels.
//!
//! Design, fixed before the full run:
//! - **Annotators**: eight, labelling with the gold weights and Bradley–Terry noise only (no
//!   ties, skips, mistakes or myopia): `sim-00`…`sim-03` careful, β = 5, and `sim-04`…`sim-07`
//!   noisy, β = 0.5 — the lab's [`AnnotatorConfig::beta`] is this β exactly
//!   (`P(A) = σ(β (U_A − U_B))`, gold utilities). Each pair goes to one annotator drawn
//!   uniformly, so the mix is half and half.
//! - **Reward models**, the linear-head form (no neural model; cheap): `r = wᵀφ` with `φ` a
//!   response's six gold factor scores ([`super::factor_differences`]), on the same labels:
//!   *pooled BT* ([`fit_map`], prior precision 1e-3) and *per-annotator β*
//!   ([`fit_map_rationality`], alternating; mean log β fixed at 0; prior precisions 1e-3 on `w`,
//!   0.1 on ln β). Beside them, not judged, *known β* (BT with each label's true β).
//! - **Data**: per seed a pool of 4,000 pairs of world-written responses to train prompts; each
//!   of 100 replicates draws `n` pairs from it and labels them afresh, for n = 100, 200, 400, 800.
//! - **Metric**: gold accuracy on 2,000 held-out pairs of responses to test prompts, ordered by
//!   gold (ties left out), averaged over the replicates. **Rule**: the paired gap per-annotator β
//!   − pooled BT at 200 labels.
//!
//! A reduced run (the lab's reduced settings) takes 10 replicates at 100 and 200 labels from a
//! pool of 1,000 pairs: seconds in CI.

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use reins_train::statistics::laplace::fit_map;
use reins_train::statistics::{fit_map_rationality, Link, PairFeatures};

use super::{factor_differences, restrict, varying_factors};
use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{AnnotatorConfig, LabConfig, LabError, Outcome, Population, SimulatedAnnotator, Split};

const POOLED: &str = "pooled BT";
const PER_ANNOTATOR: &str = "per-annotator β";
const KNOWN: &str = "known β";
const CAREFUL_BETA: f64 = 5.0;
const NOISY_BETA: f64 = 0.5;
const N_ANNOTATORS: usize = 8;
const BUDGETS: [usize; 4] = [100, 200, 400, 800];
const RULE_BUDGET: usize = 200;
const REPLICATES: usize = 100;
const POOL: usize = 4000;
const HELD_OUT: usize = 2000;
const PRIOR_PRECISION: f64 = 1e-3;
const BETA_PRIOR_PRECISION: f64 = 0.1;

pub fn experiment() -> Experiment {
    Experiment {
        id: "annotator_rationality_beats_pooled_bt",
        claim: "With half the annotators careful (β = 5) and half noisy (β = 0.5), a linear-in-factors reward model that learns each annotator's rationality jointly with the reward ranks held-out pairs by gold more accurately than pooled Bradley–Terry on the same 200 labels.",
        paper: Paper {
            title: "Reinforcement Learning from Human Feedback: A Statistical Perspective (heterogeneous rationality, after arXiv:2512.03208)",
            arxiv: "2604.02507",
        },
        metric: "gold accuracy on held-out gold-ordered pairs at 200 labels (mean over 100 label draws)",
        split: "test",
        rule: Rule::PairedGap { better: PER_ANNOTATOR, baseline: POOLED, direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn stats(e: reins_train::TrainError) -> LabError {
    LabError::Stage { stage: "rationality", message: e.to_string() }
}

/// The careful-and-noisy population, gold's weights, Bradley–Terry noise only.
fn population(gold: &crate::GoldReward) -> Population {
    let annotators = (0..N_ANNOTATORS)
        .map(|i| {
            let beta = if i < N_ANNOTATORS / 2 { CAREFUL_BETA } else { NOISY_BETA };
            let cfg = AnnotatorConfig { beta, ..AnnotatorConfig::oracle() };
            SimulatedAnnotator::new(format!("sim-{i:02}"), gold.weights.clone(), &cfg)
        })
        .collect();
    Population { annotators }
}

fn accuracy(w: &[f64], test: &[Vec<f64>]) -> f64 {
    test.iter().filter(|g| w.iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>() > 0.0).count() as f64
        / test.len().max(1) as f64
}

/// One replicate's three heads' accuracies and whether the fitted β's order the groups.
struct Replicate {
    pooled: f64,
    per_annotator: f64,
    known: f64,
    log_beta_gap: f64,
}

fn run(s: &mut Session, _base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let (world, gold) = (&s.lab().world, &s.lab().gold);
    let reduced = cfg.pairs.n_prompts < LabConfig::default().pairs.n_prompts / 10;
    let (replicates, pool_size, budgets) =
        if reduced { (10, 1000, &BUDGETS[..2]) } else { (REPLICATES, POOL, &BUDGETS[..]) };
    let pool_pairs = world.sample_pairs(Split::Train, pool_size, &cfg.world.corpus_mix);
    let pool_all = factor_differences(gold, &pool_pairs);
    let keep = varying_factors(&pool_all);
    let pool: Vec<Vec<f64>> = pool_all.iter().map(|z| restrict(z, &keep)).collect();
    let held = world.sample_pairs(Split::Test, HELD_OUT, &cfg.world.corpus_mix);
    // Better − worse by gold; gold ties left out.
    let ordered: Vec<(String, String, String)> = held
        .into_iter()
        .filter_map(|(p, a, b)| match crate::gold::compare_scores(gold.score(&p, &a), gold.score(&p, &b)) {
            std::cmp::Ordering::Greater => Some((p, a, b)),
            std::cmp::Ordering::Less => Some((p, b, a)),
            std::cmp::Ordering::Equal => None,
        })
        .collect();
    let test: Vec<Vec<f64>> = factor_differences(gold, &ordered).iter().map(|z| restrict(z, &keep)).collect();
    let dim = keep.len();
    let people = population(gold);
    let betas: Vec<f64> = people.annotators.iter().map(|a| a.beta).collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xe11d);
    let index: Vec<usize> = (0..pool.len()).collect();
    let mut curves: Vec<(String, Vec<(f64, f64)>)> =
        [POOLED, PER_ANNOTATOR, KNOWN].iter().map(|n| (n.to_string(), Vec::new())).collect();
    let mut at_rule = None;
    for &n in budgets {
        let n = n.min(pool.len());
        s.announce(&format!("{n} labels"));
        let mut reps = Vec::with_capacity(replicates);
        for _ in 0..replicates {
            let picked: Vec<usize> = index.choose_multiple(&mut rng, n).copied().collect();
            let (mut diffs, mut who) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for &i in &picked {
                let (p, a, b) = &pool_pairs[i];
                let label = people.label(p, a, b, &mut rng);
                let sign = match label.outcome {
                    Outcome::A => 1.0,
                    Outcome::B => -1.0,
                    Outcome::Tie | Outcome::Skip => continue,
                };
                diffs.push(pool[i].iter().map(|x| sign * x).collect::<Vec<f64>>());
                who.push(people.annotators.iter().position(|x| x.id == label.annotator_id).unwrap_or(0));
            }
            let pairs = PairFeatures { diffs, ..Default::default() };
            let pooled = fit_map(Link::BradleyTerry, &pairs, dim, PRIOR_PRECISION).map_err(stats)?;
            let fit = fit_map_rationality(
                Link::BradleyTerry,
                &pairs,
                &who,
                N_ANNOTATORS,
                dim,
                PRIOR_PRECISION,
                BETA_PRIOR_PRECISION,
            )
            .map_err(stats)?;
            let scaled = PairFeatures {
                diffs: pairs.diffs.iter().zip(&who).map(|(z, &a)| z.iter().map(|x| x * betas[a]).collect()).collect(),
                ..Default::default()
            };
            let known = fit_map(Link::BradleyTerry, &scaled, dim, PRIOR_PRECISION).map_err(stats)?;
            let u = &fit.rationality.log_beta;
            let half = N_ANNOTATORS / 2;
            reps.push(Replicate {
                pooled: accuracy(&pooled, &test),
                per_annotator: accuracy(&fit.weight, &test),
                known: accuracy(&known, &test),
                log_beta_gap: u[..half].iter().sum::<f64>() / half as f64
                    - u[half..].iter().sum::<f64>() / (N_ANNOTATORS - half) as f64,
            });
        }
        let mean = |f: &dyn Fn(&Replicate) -> f64| reps.iter().map(f).sum::<f64>() / reps.len().max(1) as f64;
        let row = [mean(&|r| r.pooled), mean(&|r| r.per_annotator), mean(&|r| r.known)];
        for (c, v) in curves.iter_mut().zip(row) {
            c.1.push((n as f64, v));
        }
        let ordered = mean(&|r| f64::from(u8::from(r.log_beta_gap > 0.0)));
        let ratio = mean(&|r| r.log_beta_gap).exp();
        if n == RULE_BUDGET.min(pool.len()) || at_rule.is_none() && n >= RULE_BUDGET {
            at_rule = Some((row, ordered, ratio));
        }
    }
    let (row, ordered, ratio) = at_rule.unwrap_or(([f64::NAN; 3], f64::NAN, f64::NAN));
    let mut extras = vec![
        (format!("{KNOWN} at {RULE_BUDGET} labels (not judged)"), row[2]),
        ("share of replicates whose careful group gets the larger mean log β".into(), ordered),
        ("fitted β ratio careful/noisy (geometric means; true 10)".into(), ratio),
        ("held-out pairs".into(), test.len() as f64),
        ("factors in the model".into(), dim as f64),
    ];
    for (name, c) in &curves {
        for (n, v) in c {
            extras.push((format!("accuracy at {n} labels, {name}"), *v));
        }
    }
    Ok(SeedOutcome {
        arms: vec![(POOLED.into(), row[0]), (PER_ANNOTATOR.into(), row[1])],
        statistic: row[1] - row[0],
        extras,
        curves: vec![Curve {
            title: "gold accuracy against labels (careful and noisy annotators mixed)".into(),
            x_label: "labels".into(),
            y_label: "gold accuracy on held-out pairs".into(),
            series: curves,
        }],
    })
}
