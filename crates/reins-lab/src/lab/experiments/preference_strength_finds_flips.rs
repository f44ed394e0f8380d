//! Claim 7 (Secrets of RLHF II, arXiv:2401.06080, §2): the preference strength of an ensemble
//! of reward models — the mean over members of `r(chosen) − r(rejected)` — finds mislabeled
//! pairs.
//!
//! Design: the SFT policy's pairs on train prompts are labelled by the simulated annotators;
//! a known fraction (`knobs.flip_rate`) of the decided labels is then flipped on purpose and
//! the mask kept. An ensemble (member 0 on all labels, the others on bootstrap resamples) is
//! trained on the flipped data, as a practitioner would, and each pair's strength is computed.
//! The statistic is the AUROC of −strength against the flip mask: 0.5 is chance. The single
//! RM's margin is reported beside it as an arm. The labels scored are the training labels by
//! construction (that is the use: cleaning a training set); no test prompt is involved.

use rand::Rng;
use reins_train::trainers::reward_ensemble::strengths;

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::stats::auroc;
use crate::lab::{Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "preference_strength_finds_flips",
        claim: "The preference strength of a reward-model ensemble (mean member margin) ranks deliberately flipped labels below correct ones: its AUROC against the flip mask is above chance.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part II: Reward Modeling", arxiv: "2401.06080" },
        metric: "AUROC of −strength against the known flip mask (0.5 = chance)",
        split: "train labels",
        rule: Rule::AboveChance { what: "the AUROC of the ensemble's −strength against the flip mask", chance: 0.5 },
        config: |reduced| super::quickstart_settings(reduced, Knobs { flip_rate: 0.2, ..Knobs::default() }),
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let mut rng = s.lab().world.rng("label flips");
    let mut records = labelled.records;
    let mask: Vec<bool> = records
        .iter_mut()
        .map(|r| {
            let flip = rng.random::<f64>() < knobs.flip_rate;
            if flip {
                std::mem::swap(&mut r.chosen, &mut r.rejected);
            }
            flip
        })
        .collect();
    let members = s.reward_models(base, &records, cfg.reward_model.ensemble_size.max(2))?;
    let chosen: Vec<(String, String)> = records.iter().map(|r| (r.prompt.clone(), r.chosen.clone())).collect();
    let rejected: Vec<(String, String)> = records.iter().map(|r| (r.prompt.clone(), r.rejected.clone())).collect();
    let (c, r) = (s.member_scores(&members, &chosen)?, s.member_scores(&members, &rejected)?);
    let strength = strengths(&c, &r).map_err(stage("preference strength"))?;
    let neg_mean: Vec<f64> = strength.iter().map(|p| -p.mean).collect();
    let neg_single: Vec<f64> = (0..records.len()).map(|i| r[0][i] - c[0][i]).collect();
    let ensemble_auroc = auroc(&neg_mean, &mask);
    let flagged: Vec<bool> = strength
        .iter()
        .map(|p| matches!(p.verdict, reins_train::trainers::reward_ensemble::Verdict::LikelyMislabeled))
        .collect();
    let n_flagged = flagged.iter().filter(|&&f| f).count();
    let hits = flagged.iter().zip(&mask).filter(|(f, m)| **f && **m).count();
    let n_flipped = mask.iter().filter(|&&m| m).count();
    Ok(SeedOutcome {
        arms: vec![
            ("ensemble strength (mean margin)".into(), ensemble_auroc),
            ("single RM margin".into(), auroc(&neg_single, &mask)),
        ],
        statistic: ensemble_auroc,
        extras: vec![
            ("pairs".into(), records.len() as f64),
            ("flipped".into(), n_flipped as f64),
            ("flagged likely mislabeled (mean < −std)".into(), n_flagged as f64),
            ("flipped among the flagged".into(), hits as f64),
        ],
        curves: Vec::new(),
    })
}
