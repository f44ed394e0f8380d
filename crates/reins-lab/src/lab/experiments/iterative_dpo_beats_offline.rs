//! Claim 5 (RLHF Workflow, Dong et al., arXiv:2405.07863, §3 and Table 2; Xiong et al.,
//! arXiv:2312.11456): online iterative DPO — each round's pairs sampled from the current policy
//! and picked by the reward model — beats offline DPO at the same budget of reward-model calls
//! and optimizer steps.
//!
//! Design: one reward model trained on the annotators' labels. The iterative arm runs
//! `knobs.dpo_rounds` rounds of `knobs.dpo_prompts_per_round` train prompts,
//! `knobs.dpo_generations` samples each, best vs worst by the RM, two DPO epochs per round
//! (`IterativeDpoTrainer`, reference = SFT). The offline arm is the same trainer given all those
//! prompts in one round: every sample comes from the SFT policy, the RM is called as often, and
//! the DPO steps are the same up to prompts whose samples all tie. The metric is the mean gold
//! score on the test prompts; the rule reads the paired gap iterative − offline.

use reins_model::{LoadOptions, Model};
use reins_train::losses::DpoConfig;
use reins_train::optim::optimizer::OptimConfig;
use reins_train::optim::SchedulerType;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::iterative_dpo::{IterativeDpoConfig, IterativeDpoTrainer, PairObjective};

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "iterative_dpo_beats_offline",
        claim: "Online iterative DPO (pairs re-sampled from the current policy each round) reaches a higher gold reward than offline DPO on SFT samples at the same budget of reward-model calls and optimizer steps.",
        paper: Paper {
            title: "RLHF Workflow: From Reward Modeling to Online RLHF",
            arxiv: "2405.07863",
        },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "iterative DPO", baseline: "offline DPO", direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { dpo_rounds: 2, dpo_prompts_per_round: 8, dpo_generations: 4, ..Knobs::default() }
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
    let dpo = dpo_objective(&cfg)?;
    let (offline, offline_pairs) =
        train_rounds(s, base, &rm, std::slice::from_ref(&ids), knobs, dpo.clone(), "offline DPO")?;
    let (iterative, iterative_pairs) = train_rounds(s, base, &rm, &rounds, knobs, dpo, "iterative DPO")?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras =
        vec![("pairs, offline DPO".to_string(), offline_pairs), ("pairs, iterative DPO".to_string(), iterative_pairs)];
    for (name, policy) in [("SFT", &base.sft), ("offline DPO", &offline), ("iterative DPO", &iterative)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// The lab's DPO loss (its `dpo.beta`).
pub(crate) fn dpo_objective(cfg: &crate::LabConfig) -> Result<PairObjective, LabError> {
    let loss: DpoConfig =
        serde_json::from_value(serde_json::json!({"beta": cfg.dpo.beta})).map_err(stage("dpo config"))?;
    Ok(PairObjective::Dpo(loss))
}

/// The rounds every round-based arm runs: `num_generations` samples per prompt at online DPO's
/// sampling settings, two epochs per round in the lab's DPO batches.
pub(crate) fn round_config(cfg: &crate::LabConfig, num_generations: usize) -> IterativeDpoConfig {
    IterativeDpoConfig {
        num_generations,
        num_dpo_epochs: 2,
        dpo_batch_size: cfg.dpo.per_device_train_batch_size,
        max_new_tokens: cfg.online_dpo.max_new_tokens,
        temperature: cfg.online_dpo.temperature,
        seed: cfg.seed + 11,
        ..Default::default()
    }
}

/// Each round's fresh optimizer: the lab's DPO learning rate, decaying linearly over the round.
pub(crate) fn round_optim(cfg: &crate::LabConfig) -> OptimConfig {
    OptimConfig { learning_rate: cfg.dpo.learning_rate, lr_scheduler_type: SchedulerType::Linear, ..Default::default() }
}

/// Iterative DPO (or INPO, by `objective`) from the SFT model over `rounds` (one round = the
/// offline arm); returns the policy and the number of pairs it trained on.
pub(crate) fn train_rounds(
    s: &mut Session,
    base: &Base,
    rm: &[Model],
    rounds: &[Vec<Vec<u32>>],
    knobs: &Knobs,
    objective: PairObjective,
    name: &str,
) -> Result<(Model, f64), LabError> {
    let cfg = s.cfg().clone();
    let policy = s.load(&base.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let (c, optim) = (round_config(&cfg, knobs.dpo_generations), round_optim(&cfg));
    let reward = s.reward_source(rm)?;
    let reference = Reference::Model(Box::new(base.sft.clone()));
    let mut trainer =
        IterativeDpoTrainer::new(policy, reference, reward, c, objective, optim).map_err(stage("iterative dpo"))?;
    s.progress.stage(name, rounds.len());
    let mut pairs = 0.0;
    for r in rounds {
        let m = trainer.round(r).map_err(stage("iterative dpo"))?;
        pairs += m.get("pairs").copied().unwrap_or(0.0);
        s.progress.tick(&format!("pairs {:.0} loss {:.3}", pairs, m.get("loss").copied().unwrap_or(f64::NAN)));
    }
    Ok((trainer.policy.detached(), pairs))
}
