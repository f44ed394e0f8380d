//! E1c (Secrets of RLHF II, arXiv:2401.06080, §3; research note reward_modeling §1(e)): a
//! reward model trained with SimCSE's contrastive term on its preference differences generalises
//! better out of distribution than plain Bradley–Terry — a small gain on pairs from a task family
//! it never saw, about none in distribution.
//!
//! Design, fixed before the full run: one task family is held out (seed `s` holds out
//! `TaskKind::ALL[s mod 6]`, so three seeds hold out three families). The SFT policy's pairs on
//! train prompts of the other families are labelled by the annotators; two reward models train
//! on them with member 0's seed (same initial head, same batches): plain BT, and BT plus the
//! InfoNCE term on the chosen − rejected difference of two dropout views (`contrastive_coef` 1,
//! τ 0.05, dropout 0.05: SimCSE's defaults, the paper's β). The metric is accuracy against
//! noiseless gold on pairs of SFT samples for test prompts of the held-out family; the rule reads
//! the paired gap (BT + SimCSE) − BT there, on `reward_model.n_eval_pairs` pairs (a family with
//! fewer test prompts is sampled again). The same accuracy on test prompts of the trained
//! families is reported beside it (the paper expects no gain there).

use reins_train::losses::ContrastiveConfig;

use crate::experiment::stages::Base;
use crate::experiment::Session;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::tasks::TaskKind;
use crate::{metrics, LabError, Prompt, Split};

const CONTRASTIVE: &str = "BT + SimCSE";
const BASELINE: &str = "BT";

pub fn experiment() -> Experiment {
    Experiment {
        id: "contrastive_rm_generalises_ood",
        claim: "A reward model trained with a SimCSE contrastive term on its preference differences ranks pairs from a held-out task family by gold more accurately than plain Bradley-Terry on the same labels.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part II: Reward Modeling", arxiv: "2401.06080" },
        metric: "accuracy against noiseless gold on pairs of SFT samples for test prompts of the held-out task family",
        split: "test",
        rule: Rule::PairedGap { better: CONTRASTIVE, baseline: BASELINE, direction: Direction::Higher },
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
    let simcse = ContrastiveConfig { contrastive_coef: 1.0, ..ContrastiveConfig::default() };
    run_with(s, base, CONTRASTIVE, &simcse)
}

/// The design above with the contrastive term `term`, its arm called `name`
/// ([`super::swav_rm_generalises_ood`] runs it with SwAV).
pub(crate) fn run_with(
    s: &mut Session,
    base: &Base,
    name: &str,
    term: &ContrastiveConfig,
) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let held = TaskKind::ALL[(cfg.seed % TaskKind::ALL.len() as u64) as usize];
    let train: Vec<Prompt> = s
        .lab()
        .world
        .prompts(Split::Train, cfg.pairs.n_prompts)
        .into_iter()
        .filter(|p| p.task.kind() != held)
        .collect();
    let labelled = s.labelled_pairs(&base.sft, &train, 1, cfg.seed ^ 0x1abe1)?;
    s.announce(BASELINE);
    let bt = s.train_reward_model_with(&base.dir, &labelled.records, 0, None, &ContrastiveConfig::default())?;
    s.announce(name);
    let cl = s.train_reward_model_with(&base.dir, &labelled.records, 0, None, term)?;

    // Test pairs: SFT samples for test prompts of the held-out family, and of the others.
    let n = cfg.reward_model.n_eval_pairs;
    let test: Vec<Prompt> = s.lab().world.all(Split::Test).cloned().collect();
    // A family with few test prompts is sampled again (new samples) until it has `n` pairs.
    let ood: Vec<Prompt> = test.iter().filter(|p| p.task.kind() == held).cycle().take(n).cloned().collect();
    let id: Vec<Prompt> = test.iter().filter(|p| p.task.kind() != held).cycle().take(n).cloned().collect();
    let mut accuracy = |prompts: &[Prompt], salt: u64| -> Result<(f64, f64, usize), LabError> {
        s.announce("test pairs");
        let samples = s.sample_eval(&base.sft, prompts, 2, salt)?;
        let pairs: Vec<(String, String, String)> =
            prompts.iter().zip(&samples).map(|(p, x)| (p.text.clone(), x[0].clone(), x[1].clone())).collect();
        let a: Vec<(String, String)> = pairs.iter().map(|(p, x, _)| (p.clone(), x.clone())).collect();
        let b: Vec<(String, String)> = pairs.iter().map(|(p, _, y)| (p.clone(), y.clone())).collect();
        let rms = [bt.clone(), cl.clone()];
        let (sa, sb) = (s.member_scores(&rms, &a)?, s.member_scores(&rms, &b)?);
        let (acc_bt, n) = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &sa[0], &sb[0]);
        let (acc_cl, _) = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &sa[1], &sb[1]);
        Ok((acc_bt, acc_cl, n))
    };
    let (ood_bt, ood_cl, n_ood) = accuracy(&ood, 2)?;
    let (id_bt, id_cl, n_id) = accuracy(&id, 3)?;
    let arms = vec![(BASELINE.to_string(), ood_bt), (name.to_string(), ood_cl)];
    let extras = vec![
        (
            "held-out family (index in TaskKind::ALL)".to_string(),
            TaskKind::ALL.iter().position(|k| *k == held).unwrap_or(0) as f64,
        ),
        ("train pairs".to_string(), labelled.records.len() as f64),
        ("held-out test pairs judged by gold".to_string(), n_ood as f64),
        ("in-distribution accuracy, BT".to_string(), id_bt),
        (format!("in-distribution accuracy, {name}"), id_cl),
        ("in-distribution test pairs judged by gold".to_string(), n_id as f64),
    ];
    Ok(SeedOutcome { arms, statistic: ood_cl - ood_bt, extras, curves: Vec::new() })
}
