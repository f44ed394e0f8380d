//! Claim 1, best-of-n half (Gao et al., "Scaling Laws for Reward Model Overoptimization",
//! arXiv:2210.10760, §3.1, eq. 1): as best-of-n pushes KL against a single proxy reward
//! model, gold reward first rises and then falls, following `R(d) = d(α − β·d)` with
//! `d = √KL` and `β > 0`; against a worst-case ensemble the fall is smaller (Coste et al.,
//! arXiv:2310.02743).
//!
//! Design: a pool of `knobs.pool_size` SFT samples per test prompt (`knobs.pool_prompts`
//! prompts); the expected gold of best-of-n for every n = 1, 2, 4, … up to the pool size comes
//! from the unbiased estimator over the pool (no resampling noise, KL up to ln N − (N−1)/N:
//! 6.09 at the default N = 1200). Gao's form is fitted to each curve; the rule reads the single
//! RM's β.
//!
//! The RL half (reported beside the rule, not read by it): GRPO without a KL penalty against
//! three proxies — the single RM, a single RM trained on `knobs.proxy_label_fraction` of the
//! labels (a weaker proxy), and the ensemble's mean − λ·var — probed
//! `eval.overoptimization_points` times on the pool's prompts for gold and exact KL, with Gao's
//! RL form `d(α − β·ln d)` fitted to each curve. The full run's GRPO budget (below) is the
//! quickstart's with β = 0 and a larger learning rate and step count, so that KL passes 10 (the
//! quickstart's GRPO stops near KL 1.8).

use crate::experiment::stages::Base;
use crate::experiment::{OnlineMethod, Probe, Session};
use crate::lab::stats::{best_of_n_unbiased, fit_gao, GaoForm};
use crate::lab::{Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{metrics, LabError, Split};

/// The full run's GRPO budget (see the module docs).
const GRPO_STEPS: usize = 60;
const GRPO_LR: f64 = 5e-4;

pub fn experiment() -> Experiment {
    Experiment {
        id: "reward_overoptimization",
        claim: "Best-of-n against a single proxy reward model raises gold reward and then lowers it as KL grows (Gao's d(α − βd) with β > 0); a worst-case ensemble falls less.",
        paper: Paper { title: "Scaling Laws for Reward Model Overoptimization", arxiv: "2210.10760" },
        metric: "expected gold score of best-of-n (unbiased estimator over the sample pool) on the test prompts",
        split: "test",
        rule: Rule::Downturn { curve: "best-of-n gold against the single RM, fitted as d(α − β·d)" },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { pool_size: 32, pool_prompts: 8, ..Knobs::default() }
            } else {
                Knobs::default()
            };
            let mut cfg = super::quickstart_settings(reduced, knobs);
            // A probe after every reduced GRPO step: enough points for the two-parameter fit.
            cfg.lab.eval.overoptimization_points = cfg.lab.eval.overoptimization_points.max(4);
            if !reduced {
                // Past KL 10: no KL penalty (Gao et al.'s main RL runs), GRPO_STEPS steps at
                // GRPO_LR, a probe every GRPO_STEPS / 12 steps.
                cfg.lab.grpo.beta = 0.0;
                cfg.lab.grpo.max_steps = GRPO_STEPS;
                cfg.lab.grpo.learning_rate = GRPO_LR;
                cfg.lab.eval.overoptimization_points = 12;
            }
            cfg
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let train = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &train, 1, cfg.seed ^ 0x1abe1)?;
    let members = s.reward_models(base, &labelled.records, cfg.reward_model.ensemble_size.max(2))?;
    let prompts = s.lab().world.prompts(Split::Test, knobs.pool_prompts);
    let big_n = knobs.pool_size;
    s.announce("best-of-n pool");
    let pool = s.sample_eval(&base.sft, &prompts, big_n, 8)?;
    let flat: Vec<(String, String)> =
        prompts.iter().zip(&pool).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
    let gold: Vec<f64> = flat.iter().map(|(p, r)| s.lab().gold.score(p, r)).collect();
    let per_member = s.member_scores(&members, &flat)?;
    let mut ns: Vec<usize> = std::iter::successors(Some(1usize), |k| Some(k * 2)).take_while(|&k| k < big_n).collect();
    ns.push(big_n);
    let aggs = super::aggregations(&per_member, cfg.reward_model.uncertainty_penalty);
    let mut series = Vec::new();
    let mut extras = vec![("KL reached (ln N − (N−1)/N)".to_string(), metrics::best_of_n_kl(big_n))];
    let mut arms = Vec::new();
    let mut statistic = f64::NAN;
    let mut rl_series = Vec::new();
    for (name, scores) in aggs.iter().filter(|(n, _)| *n == "single RM" || *n == "ensemble worst case (min)") {
        let pts: Vec<(f64, f64)> = ns
            .iter()
            .map(|&n| {
                let per_prompt: Vec<f64> = (0..prompts.len())
                    .map(|i| {
                        let r = i * big_n..(i + 1) * big_n;
                        best_of_n_unbiased(&scores[r.clone()], &gold[r], n)
                    })
                    .collect();
                (metrics::best_of_n_kl(n), metrics::mean(&per_prompt))
            })
            .collect();
        let fit = fit_gao(GaoForm::BestOfN, &pts);
        let peak = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let last = pts.last().map(|p| p.1).unwrap_or(f64::NAN);
        if arms.is_empty() {
            arms.push(("gold at n = 1 (SFT)".to_string(), pts[0].1));
        }
        arms.push((format!("gold at n = {big_n}, {name}"), last));
        arms.push((format!("peak gold, {name}"), peak));
        extras.push((format!("fall from peak to n = {big_n}, {name}"), peak - last));
        extras.push((format!("α, {name}"), fit.alpha));
        extras.push((format!("β, {name}"), fit.beta));
        extras.push((format!("R², {name}"), fit.r2));
        if *name == "single RM" {
            statistic = fit.beta;
        }
        series.push((name.to_string(), pts));
    }
    // The RL half: GRPO curves, anchored on the pool's first sample of each prompt.
    let ref_out: Vec<String> = pool.iter().map(|c| c[0].clone()).collect();
    let ref_gold: Vec<f64> = (0..prompts.len()).map(|i| gold[i * big_n]).collect();
    let few = ((labelled.records.len() as f64 * knobs.proxy_label_fraction).round() as usize).max(2);
    s.announce(&format!("small-budget proxy RM ({few} labels)"));
    let weak = s.reward_models(base, &labelled.records[..few.min(labelled.records.len())], 1)?;
    let label = format!("ensemble of {} (mean − λ·var)", members.len());
    // Named by the fraction, not the count, so every seed reports under one name.
    let weak_label = format!("single RM on {:.0} % of the labels", knobs.proxy_label_fraction * 100.0);
    extras.push((format!("labels of the {weak_label}"), few as f64));
    let proxies = [("single RM", &members[..1]), (weak_label.as_str(), &weak[..]), (label.as_str(), &members[..])];
    for (name, used) in proxies {
        let ref_proxy = s.score_aggregated(used, &prompts, &ref_out)?;
        let probe = Probe { prompts: &prompts, ref_proxy: &ref_proxy, ref_gold: &ref_gold, members: used };
        let run_name = format!("GRPO, {name}");
        let (_, points) = s.train_online(OnlineMethod::Grpo, &base.dir, &base.sft, &run_name, used, Some(&probe))?;
        let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.kl, p.gold)).collect();
        let fit = fit_gao(GaoForm::Rl, &pts);
        let peak = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let last = pts.last().map(|p| p.1).unwrap_or(f64::NAN);
        extras.push((format!("KL reached, {run_name}"), pts.iter().map(|p| p.0).fold(0.0, f64::max)));
        extras.push((format!("fall from peak to the last step, {run_name}"), peak - last));
        extras.push((format!("α, {run_name}"), fit.alpha));
        extras.push((format!("β, {run_name}"), fit.beta));
        extras.push((format!("R², {run_name}"), fit.r2));
        rl_series.push((run_name, pts));
    }
    Ok(SeedOutcome {
        arms,
        statistic,
        extras,
        curves: vec![
            Curve {
                title: "best-of-n gold against KL (unbiased estimator over the pool)".into(),
                x_label: "KL = ln n − (n−1)/n".into(),
                y_label: "expected gold of the pick".into(),
                series,
            },
            Curve {
                title: "GRPO gold against KL (probed on the pool's prompts)".into(),
                x_label: "KL to SFT".into(),
                y_label: "mean gold".into(),
                series: rl_series,
            },
        ],
    })
}
