//! Active learning for reward models (Liu, Shi & Sun, "Reinforcement Learning from Human
//! Feedback: A Statistical Perspective", arXiv:2604.02507; research note E11a): choosing which
//! pairs to label by the head posterior (greedy D-optimal design) gives a more accurate reward
//! model than labelling random pairs at the same label budget, most of all early.
//!
//! Design, fixed before the full run:
//! - **Pool**: the annotators' labelled pairs of two SFT samples per train prompt
//!   (`pairs.n_prompts`); a label is revealed only when a strategy asks for it.
//! - **Model**: a Bradley–Terry head on frozen last-layer features (the SFT model's pooled final
//!   hidden state, [`Session::rm_features`]), fitted by MAP with prior precision 1
//!   ([`fit_map`]); its Laplace posterior ([`HeadPosterior`]) drives the active choices.
//! - **Strategies**, each from the same 200 random labels, in rounds of 100 up to 2,000 labels:
//!   *random* (the next pairs of one shuffled order), *D-optimal* (greedy, the posterior updated
//!   after each pick, [`select_pairs`]) and *variance* (largest predictive variance of the
//!   reward difference).
//! - **Metric**: gold accuracy of the head on gold-ordered pairs of SFT answers to the test
//!   prompts (two pairs per prompt, gold ties left out), at 500 labels. **Rule**: the paired gap
//!   D-optimal − random. The whole curves are reported beside it.
//!
//! Not run here: ensemble disagreement as the acquisition (the note's third strategy), heads
//! on features of a trained reward model.
//!
//! [`Session::rm_features`]: crate::experiment::Session::rm_features

use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_model::LoadOptions;
use reins_train::statistics::active::{select_pairs, Acquisition};
use reins_train::statistics::laplace::fit_map;
use reins_train::statistics::{Curvature, HeadPosterior, Link, PairFeatures};

use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{LabError, Split};

const FIRST: usize = 200;
const ROUND: usize = 100;
const LAST: usize = 2000;
/// The budget the rule reads.
const AT: usize = 500;
const PRIOR_PRECISION: f64 = 1.0;

pub fn experiment() -> Experiment {
    Experiment {
        id: "active_labels_beat_random_labels",
        claim: "At 500 labels, a Bradley–Terry head on frozen features whose pairs were chosen by greedy D-optimal design (after 200 random ones) ranks held-out pairs by gold more accurately than the same head on 500 random labels.",
        paper: Paper { title: "Reinforcement Learning from Human Feedback: A Statistical Perspective", arxiv: "2604.02507" },
        metric: "gold accuracy of the reward head on held-out pairs of SFT answers at 500 labels",
        split: "test",
        rule: Rule::PairedGap { better: "D-optimal", baseline: "random", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn stats(e: reins_train::TrainError) -> LabError {
    LabError::Stage { stage: "head statistics", message: e.to_string() }
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// The MAP head on the labelled pairs `z` (chosen − rejected feature differences).
fn head(z: &[Vec<f64>], dim: usize) -> Result<Vec<f64>, LabError> {
    fit_map(Link::BradleyTerry, &PairFeatures { diffs: z.to_vec(), ..Default::default() }, dim, PRIOR_PRECISION)
        .map_err(stats)
}

/// The share of gold-ordered test differences (better − worse) the head scores positive.
fn accuracy(w: &[f64], test: &[Vec<f64>]) -> f64 {
    test.iter().filter(|g| w.iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>() > 0.0).count() as f64
        / test.len().max(1) as f64
}

/// Accuracy after each round, `(labels, accuracy)`, labelling `pool` in the order `next` picks.
fn curve(
    pool: &[Vec<f64>],
    test: &[Vec<f64>],
    first: &[usize],
    (round, last): (usize, usize),
    mut next: impl FnMut(&[usize], &[Vec<f64>], usize) -> Result<Vec<usize>, LabError>,
) -> Result<Vec<(f64, f64)>, LabError> {
    let dim = pool.first().map_or(0, Vec::len);
    let mut labelled: Vec<usize> = first.to_vec();
    let mut points = Vec::new();
    loop {
        let z: Vec<Vec<f64>> = labelled.iter().map(|&i| pool[i].clone()).collect();
        let w = head(&z, dim)?;
        points.push((labelled.len() as f64, accuracy(&w, test)));
        if labelled.len() >= last {
            return Ok(points);
        }
        let k = round.min(last - labelled.len());
        let picked = next(&labelled, &z, k)?;
        if picked.is_empty() {
            return Ok(points);
        }
        labelled.extend(picked);
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0xac71)?;
    let features = s.load(&base.dir, LoadOptions { score_head: Some(1), seed: cfg.seed, ..Default::default() })?;

    // The pool's feature differences, chosen − rejected as the annotators labelled them.
    let items: Vec<(String, String)> = labelled
        .records
        .iter()
        .flat_map(|r| [(r.prompt.clone(), r.chosen.clone()), (r.prompt.clone(), r.rejected.clone())])
        .collect();
    s.announce("pool features");
    let phi = s.rm_features(&features, &items)?;
    let pool: Vec<Vec<f64>> = phi.chunks(2).map(|ab| difference(&ab[0], &ab[1])).collect();

    // Held-out pairs of SFT answers, better − worse by gold.
    let test_prompts = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let answers = s.sample_eval(&base.sft, &test_prompts, 4, 0xac7)?;
    let flat: Vec<(String, String)> = super::gold_ordered_pairs(&s.lab().gold, &test_prompts, &answers)
        .into_iter()
        .flat_map(|(p, better, worse)| [(p.clone(), better), (p, worse)])
        .collect();
    let test_phi = s.rm_features(&features, &flat)?;
    let test: Vec<Vec<f64>> = test_phi.chunks(2).map(|ab| difference(&ab[0], &ab[1])).collect();

    // A pool smaller than the full budget (a reduced run) gets the same schedule in proportion.
    let (first_n, round, at_n, last) = if pool.len() >= LAST {
        (FIRST, ROUND, AT, LAST)
    } else {
        let n = pool.len();
        ((n / 10).max(2), (n / 20).max(1), n / 4, n)
    };
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5a4d));
    let first = &order[..first_n];

    s.announce("random labels");
    let random = curve(&pool, &test, first, (round, last), |labelled, _, k| {
        Ok(order[labelled.len()..(labelled.len() + k).min(order.len())].to_vec())
    })?;
    let pool_ref = &pool;
    let active = |how: Acquisition| {
        move |labelled: &[usize], z: &[Vec<f64>], k: usize| -> Result<Vec<usize>, LabError> {
            let pool = pool_ref;
            let dim = pool[0].len();
            let w = head(z, dim)?;
            let pairs = PairFeatures { diffs: z.to_vec(), ..Default::default() };
            let post = HeadPosterior::fit(Link::BradleyTerry, Curvature::Hessian, &w, &pairs, PRIOR_PRECISION)
                .map_err(stats)?;
            let mut taken = vec![false; pool.len()];
            labelled.iter().for_each(|&i| taken[i] = true);
            let rest: Vec<usize> = (0..pool.len()).filter(|&i| !taken[i]).collect();
            let candidates: Vec<Vec<f64>> = rest.iter().map(|&i| pool[i].clone()).collect();
            Ok(select_pairs(&post, &candidates, k, how).map_err(stats)?.iter().map(|p| rest[p.index]).collect())
        }
    };
    s.announce("D-optimal labels");
    let d_optimal = curve(&pool, &test, first, (round, last), active(Acquisition::DOptimal))?;
    s.announce("variance labels");
    let variance = curve(&pool, &test, first, (round, last), active(Acquisition::Variance))?;

    let at = |c: &[(f64, f64)], n: usize| c.iter().find(|p| p.0 as usize >= n.min(last)).map_or(f64::NAN, |p| p.1);
    let arms = vec![
        ("random".to_string(), at(&random, at_n)),
        ("D-optimal".to_string(), at(&d_optimal, at_n)),
        ("variance".to_string(), at(&variance, at_n)),
    ];
    let statistic = arms[1].1 - arms[0].1;
    let mut extras =
        vec![("pool pairs".to_string(), pool.len() as f64), ("held-out pairs".to_string(), test.len() as f64)];
    // Names every seed shares: the full schedule's label counts, or a reduced pool's fractions.
    let full = pool.len() >= LAST;
    let points = [
        (first_n, if full { format!("{FIRST} labels") } else { "1/10 of the pool".into() }),
        (
            (first_n + last) / 2,
            if full { format!("{} labels", (FIRST + LAST) / 2) } else { "11/20 of the pool".into() },
        ),
        (last, if full { format!("{LAST} labels") } else { "the whole pool".into() }),
    ];
    for (n, label) in &points {
        for (name, c) in [("random", &random), ("D-optimal", &d_optimal), ("variance", &variance)] {
            extras.push((format!("accuracy at {label}, {name}"), at(c, *n)));
        }
    }
    Ok(SeedOutcome {
        arms,
        statistic,
        extras,
        curves: vec![Curve {
            title: "gold accuracy of the head against labels".into(),
            x_label: "labels".into(),
            y_label: "gold accuracy on held-out pairs".into(),
            series: vec![("random".into(), random), ("D-optimal".into(), d_optimal), ("variance".into(), variance)],
        }],
    })
}
