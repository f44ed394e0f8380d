//! Fine-Grained RLHF with penalty-only segment rewards (a follow-up of
//! `fine_grained_beats_holistic`, registered after its full run was contradicted): the same
//! design — equal annotation budget, a sentence-level segment model from span labels plus a
//! holistic model on half the pairs, the lab's PPO — except that the segment model pays `−0.5`
//! at the end of each sentence it calls erroneous and nothing for a clean one, so splitting an
//! answer into more sentences earns nothing. The rule reads FG-PPO − PPO (holistic) on the mean
//! test gold, as before; the ×3 arm is reported beside it.
//!
//! Wu et al.'s reward pays `+w` for a clean segment; this variant is not the paper's reward
//! and tests the paper's idea (dense span-level rewards at an equal budget), not its numbers.

use super::fine_grained_beats_holistic::run_with;
use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::LabError;

pub fn experiment() -> Experiment {
    Experiment {
        id: "fine_grained_penalties_beat_holistic",
        claim: "At an equal annotation budget, PPO on penalty-only sentence-level rewards from span labels (−0.5 per sentence the segment model calls erroneous) plus a holistic reward model on half the pairs reaches a higher gold reward than PPO on one holistic reward model trained on all the pairs.",
        paper: Paper {
            title: "Fine-Grained Human Feedback Gives Better Rewards for Language Model Training",
            arxiv: "2306.01693",
        },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "FG-PPO", baseline: "PPO (holistic)", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    run_with(s, base, false)
}
