//! Claim 6 (LiPO, Liu et al., "LiPO: Listwise Preference Optimization through
//! Learning-to-Rank", arXiv:2402.01878, §5): on ranked lists, LiPO-λ — a lambda-weighted
//! listwise loss over every response of the list — aligns a policy at least as well as DPO on
//! the pairs taken from the same lists.
//!
//! Design: for `knobs.n_lists` train prompts the SFT policy samples `knobs.list_size`
//! responses; the simulated annotators judge every pair of a list (a round-robin tournament,
//! win 1, tie ½) and the wins are the list's graded labels; lists whose responses all tie are
//! dropped. LiPO-λ trains on the lists; DPO on each list's best versus worst response (the
//! usual reduction of a list to a pair). Both start from SFT with the SFT reference and run
//! the same optimizer steps (`dpo.max_steps`), learning rate and β on the same prompts per
//! step. The metric is the mean gold score on the test prompts; the rule reads LiPO − DPO.

use rand::Rng;
use reins_model::{LoadOptions, Model};
use reins_train::judges::tournament;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::run::Trainer as _;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::lipo::{collate_ranked, LipoConfig, LipoTrainer, RankedIds};

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, PreferenceRecord, Split};

pub fn experiment() -> Experiment {
    Experiment {
        id: "lipo_beats_dpo_on_lists",
        claim: "On lists of responses ranked by the annotators, LiPO-λ reaches a higher gold reward than DPO on each list's best-versus-worst pair, at the same prompts, steps and learning rate.",
        paper: Paper { title: "LiPO: Listwise Preference Optimization through Learning-to-Rank", arxiv: "2402.01878" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "LiPO-λ", baseline: "DPO (best vs worst)", direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced { Knobs { n_lists: 24, ..Knobs::default() } } else { Knobs::default() };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, knobs.n_lists);
    s.announce("sampling lists");
    let c = &cfg.pairs;
    let lists = s.sample(&base.sft, &prompts, knobs.list_size, c.temperature, c.max_new_tokens, 9)?;
    let mut rng = s.lab().world.rng("list labels");
    let mut ranked = Vec::new();
    let mut records = Vec::new();
    for (p, list) in prompts.iter().zip(&lists) {
        let standings = tournament::<str, _>(&s.lab().population, &p.text, list, &mut rng).map_err(stage("lists"))?;
        let (best, worst, wins) = (standings.best, standings.worst, standings.wins);
        if best == worst || wins[best] == wins[worst] {
            continue;
        }
        let items = list.iter().map(|r| s.pair_ids(&p.text, r)).collect::<Result<Vec<_>, _>>()?;
        ranked.push(RankedIds { items, labels: wins });
        records.push(PreferenceRecord {
            prompt: p.text.clone(),
            chosen: list[best].clone(),
            rejected: list[worst].clone(),
            annotator_id: "tournament".into(),
            margin: None,
        });
    }
    if ranked.len() < 4 {
        return Err(LabError::Stage {
            stage: "lists",
            message: format!("only {} lists with distinct labels; raise knobs.n_lists", ranked.len()),
        });
    }
    let dpo = s.train_dpo(&base.dir, &records)?;
    let lipo = train_lipo(s, base, &ranked)?;
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = vec![("lists kept".to_string(), ranked.len() as f64)];
    for (name, policy) in [("SFT", &base.sft), ("DPO (best vs worst)", &dpo), ("LiPO-λ", &lipo)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to SFT, {name}"), e.kl));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// LiPO-λ from the SFT model with DPO's budget: `dpo.max_steps` steps of
/// `dpo.per_device_train_batch_size` lists drawn with replacement, as `train_dpo` draws pairs.
fn train_lipo(s: &mut Session, base: &Base, lists: &[RankedIds]) -> Result<Model, LabError> {
    let d = s.cfg().dpo.clone();
    let policy = s.load(&base.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let opt =
        OptimConfig { learning_rate: d.learning_rate, lr_scheduler_type: SchedulerType::Linear, ..Default::default() };
    let optimizer = Optimizer::new(policy.params(), &opt, d.max_steps).map_err(stage("optimizer"))?;
    let reference = Reference::Model(Box::new(base.sft.clone()));
    let lipo = LipoConfig { beta: d.beta, max_list_size: 0 };
    let mut trainer = LipoTrainer::new(policy, reference, lipo, optimizer).map_err(stage("lipo"))?;
    let pad = s.tok.pad_id_or_eos().unwrap_or(0);
    let mut rng = s.lab().world.rng("lipo batches");
    s.progress.stage("LiPO-λ", d.max_steps);
    for _ in 0..d.max_steps {
        let batch: Vec<RankedIds> =
            (0..d.per_device_train_batch_size).map(|_| lists[rng.random_range(0..lists.len())].clone()).collect();
        let m = trainer.train_step(&[collate_ranked(&batch, pad, None)]).map_err(stage("lipo"))?;
        s.progress.tick(&format!("loss {:.3}", m.get("loss").copied().unwrap_or(f64::NAN)));
    }
    Ok(trainer.policy.detached())
}
