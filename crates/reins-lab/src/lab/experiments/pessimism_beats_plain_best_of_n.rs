//! E11c (Liu, Shi & Sun, "Reinforcement Learning from Human Feedback: A Statistical
//! Perspective", arXiv:2604.02507, pessimistic reward estimation; the LCB best-of-N of the same
//! authors' arXiv:2512.03208, as a summary of it describes): at a large n, best-of-n against the reward model's lower
//! confidence bound `r − λ·σ` picks responses with higher gold reward than best-of-n against
//! the plain reward `r`, because it discounts responses the reward model merely extrapolates to.
//!
//! Design: one reward model (the quickstart's label budget); the Laplace posterior of its score
//! head on frozen features (`reins_train::statistics`, prior precision 1, fitted on the same
//! labelled pairs); a pool of `knobs.pool_size` SFT samples per test prompt
//! (`knobs.pool_prompts` prompts); the expected gold of best-of-n for n = 1, 2, 4, … up to the
//! pool size from the unbiased estimator over the pool, for the plain scores and for the
//! LCB scores with `λ = knobs.lcb_lambda`. The rule reads the paired gap LCB − plain at
//! n = N (the largest n, where over-optimization is strongest), registered before any full run;
//! the peaks, the falls from peak and both curves are reported beside it.

use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::stats::best_of_n_unbiased;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{metrics, LabError, Split};
use reins_train::statistics::features::score_head_weights;
use reins_train::statistics::pessimism::lower_confidence_bounds;
use reins_train::statistics::{Curvature, HeadPosterior, Link, PairFeatures};

const PLAIN: &str = "plain best-of-n at n = N";
const LCB: &str = "LCB best-of-n (r − λ·σ) at n = N";

pub fn experiment() -> Experiment {
    Experiment {
        id: "pessimism_beats_plain_best_of_n",
        claim: "At a large n, best-of-n against the reward model's lower confidence bound r − λ·σ (Laplace posterior of the score head) picks responses with higher gold reward than best-of-n against the plain reward.",
        paper: Paper { title: "Reinforcement Learning from Human Feedback: A Statistical Perspective", arxiv: "2604.02507" },
        metric: "expected gold score of best-of-n at n = N (unbiased estimator over the sample pool) on the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: LCB, baseline: PLAIN, direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { pool_size: 32, pool_prompts: 8, ..Knobs::default() }
            } else {
                Knobs { pool_size: 256, pool_prompts: 32, ..Knobs::default() }
            };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let train = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &train, 1, cfg.seed ^ 0x1abe1)?;
    let rm = s.reward_models(base, &labelled.records, 1)?.remove(0);
    s.announce("head posterior");
    let mut items = Vec::with_capacity(2 * labelled.records.len());
    for r in &labelled.records {
        items.push((r.prompt.clone(), r.chosen.clone()));
        items.push((r.prompt.clone(), r.rejected.clone()));
    }
    let phi = s.rm_features(&rm, &items)?;
    let diffs: Vec<Vec<f64>> = phi.chunks(2).map(|ab| ab[0].iter().zip(&ab[1]).map(|(a, b)| a - b).collect()).collect();
    let stats = |e: reins_train::TrainError| LabError::Stage { stage: "head posterior", message: e.to_string() };
    let w = score_head_weights(&rm).map_err(stats)?;
    let pairs = PairFeatures { diffs, ..Default::default() };
    let post = HeadPosterior::fit(Link::BradleyTerry, Curvature::Hessian, &w, &pairs, 1.0).map_err(stats)?;

    let prompts = s.lab().world.prompts(Split::Test, knobs.pool_prompts);
    let big_n = knobs.pool_size;
    s.announce("best-of-n pool");
    let pool = s.sample_eval(&base.sft, &prompts, big_n, 8)?;
    let flat: Vec<(String, String)> =
        prompts.iter().zip(&pool).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
    let gold: Vec<f64> = flat.iter().map(|(p, r)| s.lab().gold.score(p, r)).collect();
    let plain = s.member_scores(std::slice::from_ref(&rm), &flat)?.remove(0);
    let sigma: Vec<f64> =
        s.rm_features(&rm, &flat)?.iter().map(|f| post.reward_std(f)).collect::<Result<_, _>>().map_err(stats)?;
    let lcb = lower_confidence_bounds(&plain, &sigma, knobs.lcb_lambda);

    let mut ns: Vec<usize> = std::iter::successors(Some(1usize), |k| Some(k * 2)).take_while(|&k| k < big_n).collect();
    ns.push(big_n);
    let curve = |scores: &[f64]| -> Vec<(f64, f64)> {
        ns.iter()
            .map(|&n| {
                let per_prompt: Vec<f64> = (0..prompts.len())
                    .map(|i| {
                        let r = i * big_n..(i + 1) * big_n;
                        best_of_n_unbiased(&scores[r.clone()], &gold[r], n)
                    })
                    .collect();
                (metrics::best_of_n_kl(n), metrics::mean(&per_prompt))
            })
            .collect()
    };
    let (plain_pts, lcb_pts) = (curve(&plain), curve(&lcb));
    let last = |pts: &[(f64, f64)]| pts.last().map(|p| p.1).unwrap_or(f64::NAN);
    let peak = |pts: &[(f64, f64)]| pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let arms = vec![
        ("gold at n = 1 (SFT)".to_string(), plain_pts[0].1),
        (PLAIN.to_string(), last(&plain_pts)),
        (LCB.to_string(), last(&lcb_pts)),
        ("peak gold, plain".to_string(), peak(&plain_pts)),
        ("peak gold, LCB".to_string(), peak(&lcb_pts)),
    ];
    let statistic = last(&lcb_pts) - last(&plain_pts);
    let extras = vec![
        ("labelled pairs".to_string(), labelled.records.len() as f64),
        ("N (pool size)".to_string(), big_n as f64),
        ("KL reached (ln N − (N−1)/N)".to_string(), metrics::best_of_n_kl(big_n)),
        ("λ".to_string(), knobs.lcb_lambda),
        ("mean σ of a pool reward".to_string(), metrics::mean(&sigma)),
        ("std of the plain pool rewards".to_string(), metrics::std(&plain)),
        ("fall from peak to n = N, plain".to_string(), peak(&plain_pts) - last(&plain_pts)),
        ("fall from peak to n = N, LCB".to_string(), peak(&lcb_pts) - last(&lcb_pts)),
    ];
    Ok(SeedOutcome {
        arms,
        statistic,
        extras,
        curves: vec![Curve {
            title: "best-of-n gold against KL, plain vs LCB (unbiased estimator over the pool)".into(),
            x_label: "KL = ln n − (n−1)/n".into(),
            y_label: "expected gold of the pick".into(),
            series: vec![("plain r".into(), plain_pts), ("LCB r − λ·σ".into(), lcb_pts)],
        }],
    })
}
