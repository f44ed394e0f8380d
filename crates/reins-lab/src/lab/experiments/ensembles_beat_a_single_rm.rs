//! Claim 2 (Coste et al., "Reward Model Ensembles Help Mitigate Overoptimization",
//! arXiv:2310.02743, §4.1): at the same label budget, best-of-n against a conservative
//! ensemble objective — worst case (min) or uncertainty-weighted (mean − λ·var) — reaches a
//! higher gold reward than best-of-n against a single reward model.
//!
//! Design: one set of labelled pairs (the quickstart's label budget); member 0 trains on all of
//! it and is "the single RM", the other members on bootstrap resamples of the same labels, so
//! no arm sees more labels. `n = best_of_n.n` candidates are sampled from the SFT policy for
//! each test prompt; each aggregation picks one; the metric is the pick's mean gold score.
//! The rule reads the paired gap worst case − single, registered before any full run; the mean
//! and mean − λ·var arms and the gold-versus-n curves are reported beside it.

use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{metrics, LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "ensembles_beat_a_single_rm",
        claim: "At the same label budget, best-of-n against a worst-case (min) reward-model ensemble picks responses with higher gold reward than best-of-n against a single reward model.",
        paper: Paper { title: "Reward Model Ensembles Help Mitigate Overoptimization", arxiv: "2310.02743" },
        metric: "mean gold score of the best-of-n pick on the test prompts",
        split: "test",
        rule: Rule::PairedGap {
            better: "ensemble worst case (min)",
            baseline: "single RM",
            direction: Direction::Higher,
        },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let train = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &train, 1, cfg.seed ^ 0x1abe1)?;
    let members = s.reward_models(base, &labelled.records, cfg.reward_model.ensemble_size.max(2))?;
    let prompts = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let n = cfg.best_of_n.n.max(1);
    s.announce("best-of-n candidates");
    let cands = s.sample_eval(&base.sft, &prompts, n, 5)?;
    let flat: Vec<(String, String)> =
        prompts.iter().zip(&cands).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
    let gold: Vec<f64> = flat.iter().map(|(p, r)| s.lab().gold.score(p, r)).collect();
    let per_member = s.member_scores(&members, &flat)?;
    // Mean gold of each prompt's best of its first k candidates under `scores`.
    let best_of = |scores: &[f64], k: usize| -> f64 {
        let picks: Vec<f64> = (0..prompts.len())
            .map(|i| {
                let j = (i * n..i * n + k).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(i * n);
                gold[j]
            })
            .collect();
        metrics::mean(&picks)
    };
    let mut arms = vec![("SFT (one sample)".to_string(), best_of(&gold.iter().map(|_| 0.0).collect::<Vec<_>>(), 1))];
    let mut series = Vec::new();
    for (name, scores) in super::aggregations(&per_member, cfg.reward_model.uncertainty_penalty) {
        arms.push((name.to_string(), best_of(&scores, n)));
        let mut pts = Vec::new();
        let mut k = 1;
        while k <= n {
            pts.push((metrics::best_of_n_kl(k), best_of(&scores, k)));
            k *= 2;
        }
        series.push((name.to_string(), pts));
    }
    let value = |name: &str| arms.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let statistic = value("ensemble worst case (min)") - value("single RM");
    Ok(SeedOutcome {
        arms,
        statistic,
        extras: vec![("labelled pairs".into(), labelled.records.len() as f64), ("n".into(), n as f64)],
        curves: vec![Curve {
            title: "best-of-n gold under each reward aggregation".into(),
            x_label: "KL = ln n − (n−1)/n".into(),
            y_label: "mean gold of the pick".into(),
            series,
        }],
    })
}
