//! Claim 4 (PPO-max, Zheng et al., "Secrets of RLHF in Large Language Models Part I: PPO",
//! arXiv:2307.04964, §5): at a learning rate where vanilla PPO's gold reward collapses or its
//! KL explodes, the PPO-max set of constraints — reward normalisation and clipping, a KL
//! penalty, value clipping, advantage whitening, gradient clipping — keeps it stable.
//!
//! Design: one reward model on the annotators' labels. Both arms run the lab's PPO for
//! `ppo.max_steps` steps at `knobs.lr_scale` × `ppo.learning_rate`. Vanilla: no KL penalty,
//! no value clipping, no gradient clipping, raw rewards (advantages are whitened in both, as
//! reins' PPO always does). PPO-max: rewards normalised by running moments and clipped to ±5,
//! `kl_coef` = max(`ppo.kl_coef`, 0.05), value clipping at 0.2, gradient norm clipped at 1.
//! The metric is the mean gold score on the test prompts; the rule reads PPO-max − vanilla.

use super::ppo_arms::{train_ppo, PpoArm};
use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "ppo_max_stays_stable",
        claim: "At a high learning rate, PPO with the PPO-max constraints (reward normalisation and clipping, KL penalty, value and gradient clipping) reaches a higher gold reward than vanilla PPO.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part I: PPO", arxiv: "2307.04964" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "PPO-max", baseline: "vanilla PPO", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let rm = s.reward_models(base, &labelled.records, 1)?;
    let vanilla = PpoArm {
        lr_scale: knobs.lr_scale,
        kl_coef: Some(0.0),
        cliprange_value: Some(1e6),
        max_grad_norm: 0.0,
        ..PpoArm::lab("vanilla PPO")
    };
    let ppo_max = PpoArm {
        lr_scale: knobs.lr_scale,
        kl_coef: Some(cfg.ppo.kl_coef.max(0.05)),
        cliprange_value: Some(0.2),
        max_grad_norm: 1.0,
        reward_clip: Some(5.0),
        ..PpoArm::lab("PPO-max")
    };
    let (v, _) = train_ppo(s, base, &rm, &vanilla, None)?;
    let (m, _) = train_ppo(s, base, &rm, &ppo_max, None)?;
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = Vec::new();
    for (name, policy) in [("SFT", &base.sft), ("vanilla PPO", &v), ("PPO-max", &m)] {
        let e = s.evaluate(name, policy, base, &test, 6)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
