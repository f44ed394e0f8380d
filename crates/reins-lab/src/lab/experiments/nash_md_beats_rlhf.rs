//! Nash-MD (Munos et al., "Nash Learning from Human Feedback", ICML 2024, arXiv:2312.00886,
//! §7–8): a policy trained by Nash-MD-PG against a geometric mixture of itself and the
//! reference (mixture β = 0.125, the paper's MD1) beats RLHF — a policy gradient on the reward
//! model with the same KL penalty — on the preference judge (paper: win rate 0.598 against
//! RLHF).
//!
//! Design: one reward model trained on the annotators' labels gives both arms their signal —
//! Nash-MD's preference `P(y ≻ y') = σ(r(y) − r(y'))` (TRL's construction) and RLHF's reward.
//! RLHF is RLOO with two samples per prompt (REINFORCE with a leave-one-out baseline), so both
//! arms sample two responses per prompt. Both start from SFT (also the reference) and run the
//! lab's online-DPO budget: `online_dpo.max_steps` steps of `online_dpo.per_device_train_batch_size`
//! prompts, its learning rate, temperature, answer length and `beta` as the KL strength τ of
//! both. Nash-MD at TRL's default mixture 0.5 is reported beside them. The metric is the mean
//! gold score on the test prompts; the rule reads Nash-MD (β = 0.125) − RLHF; the gold win rate
//! of Nash-MD's answers over RLHF's (the paper's measure) is reported too.
//!
//! Not built here: a pairwise preference model and the intransitive annotator population of
//! the research note's design (§8(e)). With a Bradley–Terry preference from one reward model the
//! world is transitive, where the note expects RLHF ≈ Nash-MD.

use crate::experiment::stages::Base;
use crate::experiment::{OnlineMethod, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

/// The paper's best mixture coefficient (MD1).
const MIXTURE: f64 = 0.125;
/// TRL's default mixture coefficient.
const TRL_MIXTURE: f64 = 0.5;

pub fn experiment() -> Experiment {
    Experiment {
        id: "nash_md_beats_rlhf",
        claim: "Nash-MD-PG (opponent: the geometric mixture of policy and reference with β = 0.125) reaches a higher gold reward than RLHF (a policy gradient on the same reward model with the same KL penalty) at the same samples, steps and learning rate.",
        paper: Paper { title: "Nash Learning from Human Feedback", arxiv: "2312.00886" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "Nash-MD", baseline: "RLHF", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let rm = s.reward_models(base, &labelled.records, 1)?;
    let (rlhf, _) = s.train_online(OnlineMethod::Rloo, &base.dir, &base.sft, "RLHF (RLOO)", &rm, None)?;
    let md = OnlineMethod::NashMd { mixture_coef: MIXTURE };
    let (nash, _) = s.train_online(md, &base.dir, &base.sft, "Nash-MD, β = 0.125", &rm, None)?;
    let md_trl = OnlineMethod::NashMd { mixture_coef: TRL_MIXTURE };
    let (nash_trl, _) = s.train_online(md_trl, &base.dir, &base.sft, "Nash-MD, β = 0.5", &rm, None)?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = Vec::new();
    let mut golds = Vec::new();
    for (name, policy) in [("SFT", &base.sft), ("RLHF", &rlhf), ("Nash-MD", &nash)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
        golds.push(e.gold);
    }
    let e = s.evaluate("Nash-MD, β = 0.5", &nash_trl, base, &test, 4)?;
    extras.push(("gold, Nash-MD β = 0.5 (TRL's default)".to_string(), e.mean_gold()));
    extras.push(("KL to SFT, Nash-MD β = 0.5".to_string(), e.kl));
    extras.push(("gold win rate, Nash-MD over RLHF".to_string(), win_rate(&golds[2], &golds[1])));
    extras.push(("gold win rate, Nash-MD β = 0.5 over RLHF".to_string(), win_rate(&e.gold, &golds[1])));
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// Share of prompts where `a`'s answer has the higher gold score (ties count ½).
fn win_rate(a: &[f64], b: &[f64]) -> f64 {
    let wins: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| match x.partial_cmp(y) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .sum();
    wins / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn win_rate_counts_ties_as_half() {
        assert_eq!(super::win_rate(&[1.0, 2.0, 3.0, 0.0], &[0.0, 2.0, 4.0, -1.0]), 2.5 / 4.0);
    }
}
