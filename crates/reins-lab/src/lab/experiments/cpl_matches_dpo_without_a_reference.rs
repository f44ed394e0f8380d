//! Claim 8 (CPL, Hejna et al., "Contrastive Preference Learning: Learning from Human Feedback
//! without RL", ICLR 2024, arXiv:2310.13639): fitting preferences with a contrastive loss on
//! the policy's own log-probs — no reward model, no RL, no reference — aligns a policy at least
//! as well as the baseline. The paper's baseline is preference-IQL on MetaWorld; on a language
//! model the natural baseline is DPO (CPL-KL with λ = 1 *is* DPO), so this is the research
//! note's LM variant (policy_optimization.md §7(e)): CPL with the official conservative bias
//! λ = 0.5 against DPO.
//!
//! Design: the annotators label two SFT samples per train prompt (`pairs.n_prompts`), as in
//! the quickstart. DPO (`s.train_dpo`, SFT reference) and CPL (no reference) both start from
//! SFT and run the same optimizer steps (`dpo.max_steps`), learning rate and batch size on the
//! same pairs at each step (the shared pair stream); CPL's temperature α is DPO's β. The
//! metric is the mean gold score on the test prompts; the rule reads CPL − DPO, expecting CPL
//! higher. The note expects similar gold and possibly longer answers without a reference, so
//! "not shown" is a likely outcome; answer length and KL to SFT are reported beside it.

use rand::Rng;
use reins_model::LoadOptions;
use reins_train::losses::CplConfig;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::run::Trainer as _;
use reins_train::trainers::cpl::CplTrainer;

use crate::experiment::stages::Base;
use crate::experiment::{pair_batch, stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, PreferenceRecord, Split};

/// The official CPL configs' conservative bias λ (jhejna/cpl `contrastive_bias`).
const CONTRASTIVE_BIAS: f64 = 0.5;

pub fn experiment() -> Experiment {
    Experiment {
        id: "cpl_matches_dpo_without_a_reference",
        claim: "On the annotators' labelled pairs, CPL (reference-free, conservative bias λ = 0.5) reaches a higher gold reward than DPO at the same pairs, steps and learning rate.",
        paper: Paper {
            title: "Contrastive Preference Learning: Learning from Human Feedback without RL",
            arxiv: "2310.13639",
        },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "CPL (λ = 0.5)", baseline: "DPO", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let train = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &train, 1, cfg.seed ^ 0x1abe1)?;
    let dpo = s.train_dpo(&base.dir, &labelled.records)?;
    let cpl = train_cpl(s, base, &labelled.records)?;
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = vec![("labelled pairs".to_string(), labelled.records.len() as f64)];
    for (name, policy) in [("SFT", &base.sft), ("DPO", &dpo), ("CPL (λ = 0.5)", &cpl)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
        let words: usize = e.outs.iter().map(|o| o.split_whitespace().count()).sum();
        extras.push((format!("mean answer length (words), {name}"), words as f64 / e.outs.len().max(1) as f64));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// CPL from the SFT model with DPO's budget and pair draws: `dpo.max_steps` steps of
/// `dpo.per_device_train_batch_size` pairs, α = `dpo.beta`, no reference model.
fn train_cpl(s: &mut Session, base: &Base, records: &[PreferenceRecord]) -> Result<reins_model::Model, LabError> {
    let d = s.cfg().dpo.clone();
    let policy = s.load(&base.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let opt =
        OptimConfig { learning_rate: d.learning_rate, lr_scheduler_type: SchedulerType::Linear, ..Default::default() };
    let optimizer = Optimizer::new(policy.params(), &opt, d.max_steps).map_err(stage("optimizer"))?;
    let loss = CplConfig { alpha: d.beta, contrastive_bias: CONTRASTIVE_BIAS, ..CplConfig::default() };
    let mut trainer = CplTrainer::new(policy, loss, optimizer).map_err(stage("cpl"))?;
    let rows = s.pair_rows(records)?;
    let pad = s.tok.pad_id_or_eos().unwrap_or(0);
    let mut rng = s.pair_draws();
    s.progress.stage("CPL", d.max_steps);
    for _ in 0..d.max_steps {
        let idx: Vec<usize> = (0..d.per_device_train_batch_size).map(|_| rng.random_range(0..rows.len())).collect();
        let m = trainer.train_step(&[pair_batch(&rows, &idx, pad)]).map_err(stage("cpl"))?;
        s.progress.tick(&format!(
            "loss {:.3} margin {:.2}",
            m.get("loss").copied().unwrap_or(f64::NAN),
            m.get("rewards/margins").copied().unwrap_or(0.0)
        ));
    }
    Ok(trainer.policy.detached())
}
