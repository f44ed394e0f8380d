//! Nash-MD in an intransitive world (Munos et al., "Nash Learning from Human Feedback",
//! arXiv:2312.00886; the research note's design, policy_optimization.md §8(e)): when the
//! population's preferences cycle, no reward represents them, and the policy that RLHF reaches on
//! a Bradley–Terry reward can be beaten; Nash-MD, which plays the preference game itself, should
//! be preferred over every other trained policy.
//!
//! Design: the cyclic population ([`crate::cyclic`]: three noiseless groups ranking responses
//! lexicographically by relevance, politeness and brevity, each in its own cyclic order; the
//! majority decides) labels the pairs of SFT samples on train prompts (pairs it ties on are
//! dropped). A Bradley–Terry reward model trains on those labels and RLHF (RLOO with two samples
//! per prompt, as `nash_md_beats_rlhf`) optimizes it. Nash-MD (mixture β = 0.125) takes its
//! `P(y ≻ y')` from the population itself — the research note's oracle preference model, an upper
//! bound on a learned pairwise model — with the same samples, steps, learning rate and KL
//! strength. Each policy (and SFT) answers the test prompts once; the win matrix
//! `W(i, j)` is the mean over prompts of the population's `P(answer_i ≻ answer_j)`, and the
//! metric is each policy's worst-case win rate `min_{j ≠ i} W(i, j)` over the other two. The rule
//! reads Nash-MD − RLHF.

use std::collections::HashMap;

use reins_data::HfTokenizer;

use super::token_text::{TextJudge, TextView};
use crate::cyclic::CyclicPopulation;
use crate::experiment::stages::Base;
use crate::experiment::{stage, OnlineMethod, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, PreferenceRecord, Split};

/// The paper's best mixture coefficient (MD1).
const MIXTURE: f64 = 0.125;

pub fn experiment() -> Experiment {
    Experiment {
        id: "nash_md_in_a_cyclic_world",
        claim: "When the population's preferences are intransitive, Nash-MD (β = 0.125, preferences from the population) has a higher worst-case win rate against the other trained policies than RLHF on a Bradley–Terry reward model of the same population's labels.",
        paper: Paper { title: "Nash Learning from Human Feedback", arxiv: "2312.00886" },
        metric: "worst-case win rate against the other policies (SFT, RLHF, Nash-MD), judged by the cyclic population on the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "Nash-MD", baseline: "RLHF", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let population = CyclicPopulation::new(s.lab().gold.clone());
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let pairs = s.labelled_pairs(&base.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?.pairs;
    let gold = &s.lab().gold;
    let records: Vec<PreferenceRecord> = pairs
        .iter()
        .filter_map(|(p, a, b)| {
            let q = population.p_prefers(&gold.factors(p, a), &gold.factors(p, b));
            let (chosen, rejected) = if q > 0.5 {
                (a, b)
            } else if q < 0.5 {
                (b, a)
            } else {
                return None;
            };
            Some(PreferenceRecord {
                prompt: p.clone(),
                chosen: chosen.clone(),
                rejected: rejected.clone(),
                annotator_id: "cyclic".into(),
                margin: None,
            })
        })
        .collect();
    let rm = s.reward_models(base, &records, 1)?;
    let (rlhf, _) = s.train_online(OnlineMethod::Rloo, &base.dir, &base.sft, "RLHF (RLOO on the BT RM)", &rm, None)?;
    let train =
        s.lab().world.prompts(Split::Train, cfg.online_dpo.max_steps * cfg.online_dpo.per_device_train_batch_size);
    let mut texts = HashMap::new();
    for p in &train {
        texts.insert(s.encode(&p.chat())?, p.text.clone());
    }
    let view = TextView { texts, tok: HfTokenizer::from_dir(&base.dir).map_err(stage("tokenizer"))? };
    let judge = Box::new(TextJudge { view, judge: population.clone() });
    let md = OnlineMethod::NashMd { mixture_coef: MIXTURE };
    let (nash, _) =
        s.train_online_with(md, &base.dir, &base.sft, "Nash-MD (population preferences)", &rm, None, Some(judge))?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let names = ["SFT", "RLHF", "Nash-MD"];
    let mut answers = Vec::new();
    let mut extras = vec![("train pairs the population decided".to_string(), records.len() as f64)];
    for (name, policy) in names.iter().zip([&base.sft, &rlhf, &nash]) {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        extras.push((format!("KL to SFT, {name}"), e.kl));
        extras.push((format!("gold, {name}"), e.mean_gold()));
        answers.push(e.outs);
    }
    let gold = &s.lab().gold;
    let win = |i: usize, j: usize| -> f64 {
        let total: f64 = test
            .iter()
            .enumerate()
            .map(|(k, p)| {
                population.p_prefers(&gold.factors(&p.text, &answers[i][k]), &gold.factors(&p.text, &answers[j][k]))
            })
            .sum();
        total / test.len().max(1) as f64
    };
    let mut arms = Vec::new();
    for i in 0..names.len() {
        let worst = (0..names.len()).filter(|&j| j != i).map(|j| win(i, j)).fold(f64::INFINITY, f64::min);
        arms.push((names[i].to_string(), worst));
        for j in (0..names.len()).filter(|&j| j != i) {
            extras.push((format!("W({}, {})", names[i], names[j]), win(i, j)));
        }
    }
    // How intransitive the world is where it matters: prompts whose three answers cycle.
    let cycles = test
        .iter()
        .enumerate()
        .filter(|(k, p)| {
            let f: Vec<_> = answers.iter().map(|a| gold.factors(&p.text, &a[*k])).collect();
            let q = |i: usize, j: usize| population.p_prefers(&f[i], &f[j]);
            cycle(q(0, 1), q(1, 2), q(2, 0))
        })
        .count();
    extras.push((
        "share of test prompts whose three answers cycle".to_string(),
        cycles as f64 / test.len().max(1) as f64,
    ));
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// Whether `a ≻ b ≻ c ≻ a` or the reverse holds strictly, given `P(a ≻ b)`, `P(b ≻ c)`, `P(c ≻ a)`.
fn cycle(ab: f64, bc: f64, ca: f64) -> bool {
    (ab > 0.5 && bc > 0.5 && ca > 0.5) || (ab < 0.5 && bc < 0.5 && ca < 0.5)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cycles_are_strict_in_either_direction() {
        assert!(super::cycle(0.7, 0.6, 0.9) && super::cycle(0.1, 0.3, 0.2));
        assert!(!super::cycle(0.7, 0.6, 0.4) && !super::cycle(0.5, 0.6, 0.9));
    }
}
