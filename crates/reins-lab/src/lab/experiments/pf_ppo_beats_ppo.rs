//! Claim 3 (PF-PPO, Shen et al., "Policy Filtration in RLHF to Fine-Tune LLM for Code
//! Generation", arXiv:2409.06957, §4): when the reward model is unreliable on part of the
//! response distribution, filtering PPO's samples by reward — with the filter chosen by the R²
//! between proxy and actual scores on held-out prompts — beats plain PPO on the actual reward.
//!
//! Design: the annotators' labels on one task kind (`List` prompts) are flipped with
//! probability ½, so the reward model learns noise there and is reliable elsewhere. Plain PPO
//! (one sample per prompt, every sample kept) and PF-PPO (four samples per prompt, the filter
//! chosen by `PpoTrainer::choose_filter` with the gold reward on dev prompts, which tuning may
//! read) train against that RM from SFT for `ppo.max_steps` steps each. The metric is the mean
//! gold score on the test prompts; the rule reads PF-PPO − PPO.

use std::collections::HashMap;

use rand::Rng;
use reins_data::HfTokenizer;

use super::ppo_arms::{train_ppo, PpoArm};
use super::token_text::{GoldSource, TextView};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::tasks::Task;
use crate::{LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "pf_ppo_beats_ppo",
        claim: "Against a reward model that is unreliable on one task kind, PPO with the R²-chosen policy filter (PF-PPO) reaches a higher gold reward than plain PPO at the same number of steps.",
        paper: Paper { title: "Policy Filtration in RLHF to Fine-Tune LLM for Code Generation", arxiv: "2409.06957" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "PF-PPO (R²-chosen filter)", baseline: "PPO", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

/// Samples PF-PPO draws per prompt before filtering.
const PF_SAMPLES: usize = 4;

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let mut rng = s.lab().world.rng("unreliable task flips");
    let mut n_noisy = 0usize;
    let records: Vec<crate::PreferenceRecord> = prompts
        .iter()
        .zip(labelled.pairs.iter().zip(&labelled.labels))
        .filter_map(|(p, ((text, a, b), l))| {
            let mut r = l.to_record(text, a, b, false)?;
            if matches!(p.task, Task::List { .. }) && rng.random::<f64>() < 0.5 {
                std::mem::swap(&mut r.chosen, &mut r.rejected);
                n_noisy += 1;
            }
            Some(r)
        })
        .collect();
    let rm = s.reward_models(base, &records, 1)?;
    let dev = s.lab().world.prompts(Split::Dev, 32);
    let mut dev_ids = Vec::new();
    let mut texts = HashMap::new();
    for p in &dev {
        let ids = s.encode(&p.chat())?;
        texts.insert(ids.clone(), p.text.clone());
        dev_ids.push(ids);
    }
    let (ppo, _) = train_ppo(s, base, &rm, &PpoArm::lab("PPO"), None)?;
    let view = TextView { texts, tok: HfTokenizer::from_dir(&base.dir).map_err(stage("tokenizer"))? };
    let gold_judge = GoldSource { view, gold: s.lab.gold.clone() };
    let pf_arm = PpoArm { pf_num_samples: PF_SAMPLES, ..PpoArm::lab("PF-PPO") };
    let (pf, r2) = train_ppo(s, base, &rm, &pf_arm, Some((&dev_ids, &gold_judge)))?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = vec![("labels flipped on List prompts".to_string(), n_noisy as f64)];
    for (name, policy) in [("SFT", &base.sft), ("PPO", &ppo), ("PF-PPO (R²-chosen filter)", &pf)] {
        let e = s.evaluate(name, policy, base, &test, 6)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
    }
    extras.extend(r2.into_iter().map(|(f, v)| (format!("R² on dev, filter {}", f.name()), v)));
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
