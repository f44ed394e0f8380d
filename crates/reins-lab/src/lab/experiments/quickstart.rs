//! The quickstart as one experiment among the others: the whole loop (labels, reward models,
//! DPO, best-of-n, GRPO, PPO, online DPO) with its report in `seed-N/`, and the claim that
//! the simplest method of the loop, offline DPO (Rafailov et al., arXiv:2305.18290), improves
//! on the SFT policy it starts from as judged by the gold reward.

use crate::experiment::stages::Base;
use crate::experiment::{self, Session};
use crate::lab::{Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::LabError;

pub fn experiment() -> Experiment {
    Experiment {
        id: "quickstart",
        claim: "Offline DPO on the simulated annotators' noisy labels beats the SFT policy it starts from: its gold win rate against SFT on test prompts is above one half.",
        paper: Paper {
            title: "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
            arxiv: "2305.18290",
        },
        metric: "gold win rate against the SFT policy on the test prompts (0.5 = no change)",
        split: "test",
        rule: Rule::AboveChance { what: "DPO's gold win rate against SFT", chance: 0.5 },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let out = experiment::quickstart(s, base, std::time::Instant::now())?;
    let arms: Vec<(String, f64)> = out.data.methods.iter().map(|m| (m.name.clone(), m.gold_win_rate_vs_sft)).collect();
    let statistic =
        out.data.methods.iter().find(|m| m.name.starts_with("DPO")).map(|m| m.gold_win_rate_vs_sft).unwrap_or(f64::NAN);
    let curves = out
        .data
        .overoptimization
        .iter()
        .map(|c| Curve {
            title: format!("gold against KL: {}", c.name),
            x_label: "KL to SFT".into(),
            y_label: "mean gold".into(),
            series: vec![("gold".into(), c.points.iter().map(|p| (p.kl, p.gold)).collect())],
        })
        .collect();
    Ok(SeedOutcome {
        arms,
        statistic,
        extras: out.data.methods.iter().map(|m| (format!("KL to SFT, {}", m.name), m.kl_to_ref)).collect(),
        curves,
    })
}
