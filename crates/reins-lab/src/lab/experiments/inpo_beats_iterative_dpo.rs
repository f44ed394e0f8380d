//! INPO (Zhang et al., "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences
//! via No-Regret Learning", arXiv:2407.00617, Table 1): with the same rounds, samples and
//! preference labels, online mirror descent toward the Nash policy (INPO's squared loss) reaches
//! a better policy than iterative DPO.
//!
//! Design: one reward model trained on the annotators' labels is the preference oracle (the
//! paper's BT-RM setting: best vs worst of `knobs.dpo_generations` samples). Both arms run the
//! same `knobs.dpo_rounds` rounds of `knobs.dpo_prompts_per_round` train prompts with two epochs
//! per round, the same learning rate and batches, from SFT (which is also `π_ref`): iterative
//! DPO with the lab's DPO β, INPO with `τ = η/3` and η chosen from `knobs.inpo_etas` by the mean
//! gold score on dev prompts (the paper grid-searched η the same way; test prompts choose
//! nothing). INPO without the KL term (τ = 0, the chosen η) is reported beside them. The metric
//! is the mean gold score on the test prompts; the rule reads the paired gap INPO − iterative DPO.
//!
//! Not built here: the paper's pairwise preference model and the intransitive (cyclic) world of
//! the research note's design; the oracle is the BT reward model.

use reins_train::losses::InpoConfig;
use reins_train::trainers::iterative_dpo::PairObjective;

use super::iterative_dpo_beats_offline::{dpo_objective, train_rounds};
use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "inpo_beats_iterative_dpo",
        claim: "With the same rounds, samples and preference oracle, INPO (online mirror descent toward the Nash policy by a squared loss on sampled pairs) reaches a higher gold reward than iterative DPO.",
        paper: Paper { title: "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via No-Regret Learning", arxiv: "2407.00617" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "INPO", baseline: "iterative DPO", direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs {
                    dpo_rounds: 2,
                    dpo_prompts_per_round: 8,
                    dpo_generations: 4,
                    inpo_etas: vec![0.05],
                    ..Knobs::default()
                }
            } else {
                Knobs::default()
            };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let rm = s.reward_models(base, &labelled.records, 1)?;
    let prompts = s.lab().world.prompts(Split::Train, knobs.dpo_rounds * knobs.dpo_prompts_per_round);
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| s.encode(&p.chat())).collect::<Result<_, _>>()?;
    let rounds: Vec<Vec<Vec<u32>>> = ids.chunks(knobs.dpo_prompts_per_round).map(<[Vec<u32>]>::to_vec).collect();
    let (dpo, dpo_pairs) = train_rounds(s, base, &rm, &rounds, knobs, dpo_objective(&cfg)?, "iterative DPO")?;

    // η by the dev prompts' mean gold.
    let dev = s.lab().world.prompts(Split::Dev, cfg.eval.n_prompts);
    let mut extras = vec![("pairs, iterative DPO".to_string(), dpo_pairs)];
    let mut best: Option<(f64, f64, reins_model::Model)> = None;
    for &eta in &knobs.inpo_etas {
        let inpo = PairObjective::Inpo(InpoConfig { eta, tau: None });
        let (policy, _) = train_rounds(s, base, &rm, &rounds, knobs, inpo, &format!("INPO, η = {eta}"))?;
        let dev_gold = s.evaluate(&format!("INPO, η = {eta}, dev"), &policy, base, &dev, 5)?.mean_gold();
        extras.push((format!("dev gold, INPO η = {eta}"), dev_gold));
        if best.as_ref().is_none_or(|(g, _, _)| dev_gold > *g) {
            best = Some((dev_gold, eta, policy));
        }
    }
    let (_, eta, inpo) = best.ok_or_else(|| LabError::config("knobs.inpo_etas", "needs at least one eta"))?;
    extras.push(("η chosen on dev".to_string(), eta));
    let no_kl = PairObjective::Inpo(InpoConfig { eta, tau: Some(0.0) });
    let (inpo_no_kl, _) = train_rounds(s, base, &rm, &rounds, knobs, no_kl, "INPO w/o KL")?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    for (name, policy) in [("SFT", &base.sft), ("iterative DPO", &dpo), ("INPO", &inpo)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
    }
    let e = s.evaluate("INPO w/o KL", &inpo_no_kl, base, &test, 4)?;
    extras.push(("gold, INPO w/o KL".to_string(), e.mean_gold()));
    extras.push(("KL to SFT, INPO w/o KL".to_string(), e.kl));
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
