//! E1b (Secrets of RLHF II, arXiv:2401.06080, §2.4–2.5): a reward model trained with the
//! strength-driven treatments — flip the weakest labels, label-smooth the remaining doubtful
//! ones, an adaptive margin from the strength on every pair — is more accurate against gold
//! than plain Bradley–Terry on the same noisy labels.
//!
//! Design: the SFT policy's pairs on train prompts are labelled by the simulated annotators
//! and a known fraction (`knobs.flip_rate`, 25 % here: the refutation point of the research
//! note's E1b) of the decided labels is flipped on purpose. An ensemble is trained on them
//! (member 0 on all labels, the others on bootstrap resamples: the lab's ensemble stage) and
//! gives each pair its strength. Member 0 is the plain BT arm. Four more reward models, each
//! with member 0's seed (same initial head and batch order), train on the same labels under
//! [`reins_train::losses::treat_pairs`]: flip only, label smoothing only, margin only, and all
//! three at the paper's defaults. The metric is accuracy against noiseless gold on pairs of
//! SFT samples for test prompts; the rule reads the paired gap (all three) − (BT), fixed
//! before any full run. The reduced run trains each reward model for 12 steps instead of 30.

use reins_train::losses::{treat_pairs, NoiseAwareConfig, PairTreatment};
use reins_train::trainers::reward_ensemble::strengths;

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{metrics, LabError, PreferenceRecord, Split};

const COMBINED: &str = "BT + flip + smoothing + margin";
const BASELINE: &str = "BT";

pub fn experiment() -> Experiment {
    Experiment {
        id: "denoised_rm_beats_bt",
        claim: "On labels with 25 % flipped, a reward model trained with the ensemble's preference strength (flip the weakest pairs, label-smooth the remaining negative ones, adaptive margin on all) ranks held-out pairs by gold more accurately than plain Bradley-Terry on the same labels.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part II: Reward Modeling", arxiv: "2401.06080" },
        metric: "accuracy against noiseless gold on pairs of SFT samples for test prompts",
        split: "test",
        rule: Rule::PairedGap { better: COMBINED, baseline: BASELINE, direction: Direction::Higher },
        config: |reduced| {
            let mut c = super::quickstart_settings(reduced, Knobs { flip_rate: 0.25, ..Knobs::default() });
            if reduced {
                // Six reward models per seed: a shorter budget keeps the CI run near 30 s.
                c.lab.reward_model.max_steps = 12;
            }
            c
        },
        run,
    }
}

/// The records with the flipped pairs' responses swapped, and each pair's `(margin, label)`.
fn treated(records: &[PreferenceRecord], t: &[PairTreatment]) -> (Vec<PreferenceRecord>, Vec<(f64, f64)>) {
    let data = records
        .iter()
        .zip(t)
        .map(|(r, t)| {
            let mut r = r.clone();
            if t.flipped {
                std::mem::swap(&mut r.chosen, &mut r.rejected);
            }
            r
        })
        .collect();
    (data, t.iter().map(|t| (t.margin, t.soft_label(None).unwrap_or(1.0))).collect())
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
            let flip = rand::Rng::random::<f64>(&mut rng) < knobs.flip_rate;
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
    let strength: Vec<(f64, f64)> =
        strengths(&c, &r).map_err(stage("preference strength"))?.iter().map(|p| (p.mean, p.std)).collect();

    // The four treated arms, each one knob of the paper's defaults (or all of them).
    let all = NoiseAwareConfig::default();
    let off = NoiseAwareConfig::off();
    let arms_cfg = [
        ("BT + flip", NoiseAwareConfig { strength_flip_fraction: all.strength_flip_fraction, ..off }),
        ("BT + smoothing", NoiseAwareConfig { strength_label_smoothing: all.strength_label_smoothing, ..off }),
        ("BT + margin", NoiseAwareConfig { strength_margin_scale: all.strength_margin_scale, ..off }),
        (COMBINED, all),
    ];
    let mut models = vec![(BASELINE.to_string(), members[0].clone())];
    let mut combined = Vec::new();
    for (name, arm) in arms_cfg {
        let t = treat_pairs(&strength, &arm).map_err(stage("strength rule"))?;
        let (data, targets) = treated(&records, &t);
        s.announce(name);
        models.push((
            name.to_string(),
            s.train_reward_model_with(&base.dir, &data, 0, Some(&targets), &Default::default())?,
        ));
        if name == COMBINED {
            combined = t;
        }
    }

    // Held-out pairs of SFT samples for test prompts, judged by noiseless gold.
    let (pairs, a, b) = super::sft_test_pairs(s, base)?;
    let rms: Vec<_> = models.iter().map(|(_, m)| m.clone()).collect();
    let (sa, sb) = (s.member_scores(&rms, &a)?, s.member_scores(&rms, &b)?);
    let mut arms = Vec::new();
    let mut n_gold = 0;
    for (i, (name, _)) in models.iter().enumerate() {
        let (acc, n) = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &sa[i], &sb[i]);
        arms.push((name.clone(), acc));
        n_gold = n;
    }
    let mean = |rows: &[Vec<f64>]| -> Vec<f64> {
        (0..pairs.len()).map(|j| rows.iter().map(|m| m[j]).sum::<f64>() / rows.len() as f64).collect()
    };
    let (ea, eb) = (s.member_scores(&members, &a)?, s.member_scores(&members, &b)?);
    let ensemble = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &mean(&ea), &mean(&eb)).0;
    arms.push((format!("ensemble of {} (mean, reference)", members.len()), ensemble));

    let value = |name: &str| arms.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let statistic = value(COMBINED) - value(BASELINE);
    let flipped = combined.iter().filter(|t| t.flipped).count();
    let right_flips = combined.iter().zip(&mask).filter(|(t, m)| t.flipped && **m).count();
    Ok(SeedOutcome {
        arms,
        statistic,
        extras: vec![
            ("train pairs".into(), records.len() as f64),
            ("injected flips".into(), mask.iter().filter(|&&m| m).count() as f64),
            ("pairs flipped back by the rule".into(), flipped as f64),
            ("of which injected flips".into(), right_flips as f64),
            ("pairs label-smoothed".into(), combined.iter().filter(|t| t.smoothing > 0.0).count() as f64),
            ("test pairs judged by gold".into(), n_gold as f64),
        ],
        curves: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treated_swaps_flipped_pairs_and_carries_margin_and_label() {
        let rec = |c: &str, r: &str| PreferenceRecord {
            prompt: "p".into(),
            chosen: c.into(),
            rejected: r.into(),
            annotator_id: "a".into(),
            margin: None,
        };
        let t = [
            PairTreatment { flipped: true, mean: 2.0, smoothing: 0.0, margin: 2.0 },
            PairTreatment { flipped: false, mean: -0.5, smoothing: 0.1, margin: -0.5 },
        ];
        let (data, targets) = treated(&[rec("a", "b"), rec("c", "d")], &t);
        assert_eq!((data[0].chosen.as_str(), data[0].rejected.as_str()), ("b", "a"));
        assert_eq!((data[1].chosen.as_str(), data[1].rejected.as_str()), ("c", "d"));
        assert_eq!(targets, [(2.0, 1.0), (-0.5, 0.9)]);
    }
}
