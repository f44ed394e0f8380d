//! E1c with SwAV (Secrets of RLHF II, arXiv:2401.06080, §3.1, Eqs. 7–8): the paper's second
//! contrastive objective — each dropout view of the preference difference predicts the other's
//! cluster among learned prototypes — in the same design as `contrastive_rm_generalises_ood`
//! ([`super::contrastive_rm_generalises_ood::run_with`]): one task family held out per seed,
//! plain BT and BT + SwAV with member 0's seed on the same labels, gold accuracy on pairs of the
//! held-out family. SwAV's settings, which the paper does not give: 16 prototypes, τ 0.05
//! (`contrastive_temperature`), dropout 0.05, β 1, Sinkhorn ε 0.05 with 3 iterations (the SwAV
//! paper's). Fixed before the full run; the rule reads the paired gap (BT + SwAV) − BT there.

use reins_train::losses::{ContrastiveConfig, ContrastiveLoss};

use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::LabError;

const SWAV: &str = "BT + SwAV";

pub fn experiment() -> Experiment {
    Experiment {
        id: "swav_rm_generalises_ood",
        claim: "A reward model trained with a SwAV contrastive term (swapped prediction of learned prototype clusters) on its preference differences ranks pairs from a held-out task family by gold more accurately than plain Bradley-Terry on the same labels.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part II: Reward Modeling", arxiv: "2401.06080" },
        metric: "accuracy against noiseless gold on pairs of SFT samples for test prompts of the held-out task family",
        split: "test",
        rule: Rule::PairedGap { better: SWAV, baseline: "BT", direction: Direction::Higher },
        config: |reduced| {
            let mut c = super::quickstart_settings(reduced, Knobs::default());
            if reduced {
                c.lab.reward_model.max_steps = 12;
            }
            c
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let swav = ContrastiveConfig {
        contrastive_coef: 1.0,
        contrastive_loss: ContrastiveLoss::Swav,
        swav_prototypes: 16,
        ..ContrastiveConfig::default()
    };
    super::contrastive_rm_generalises_ood::run_with(s, base, SWAV, &swav)
}
