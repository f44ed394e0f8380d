//! MetaRM (Secrets of RLHF II, Wang et al., arXiv:2401.06080, §3.2; research note E1d): a reward
//! model trained with meta steps on samples of the RL-shifted policy ranks that policy's answers
//! by gold better than the plain Bradley–Terry reward model of the same labels.
//!
//! Design, fixed before the full run:
//! - **Labels**: two SFT samples per train prompt labelled by the annotators (`pairs.n_prompts`).
//! - **The shift**: RLHF — RLOO at online DPO's budget, as in `nash_md_beats_rlhf` — from SFT
//!   against the plain BT reward model. Its answers are the shifted distribution.
//! - **Arms**, one reward model each, the reward models' steps, learning rate and label draws:
//!   *BT RM* (the plain one, which also drove RL); *MetaRM*: every step first ascends the
//!   difference loss on a meta batch of the shifted policy's unlabelled answers (4 prompts × 4
//!   answers), then takes the BT gradient there (first-order, [`metarm_step`]); η, which the
//!   paper does not give, chosen from {0.01, 0.1} by the accuracy on dev prompts' shifted pairs.
//!   At η = 0 the MetaRM run is the BT run, draw for draw.
//! - **Metric**: gold accuracy on pairs of two shifted-policy answers to each test prompt (pairs
//!   gold ties are left out). **Rule**: the paired gap MetaRM − BT RM.
//! - Reported beside: both models' accuracy on pairs of SFT answers to the test prompts (the
//!   in-distribution accuracy MetaRM should keep) and the shifted policy's gold and KL to SFT.
//!
//! Not run here: the note's three rounds of iterative RLHF (one round: one shift), the spread of
//! the scores among policy samples, the gold win rate of policies trained on each model.
//!
//! [`metarm_step`]: reins_train::trainers::metarm::metarm_step

use reins_model::{Batch, Model};
use reins_train::rewards::{ModelReward, RewardSource};
use reins_train::trainers::metarm::MetaBatch;

use crate::experiment::stages::Base;
use crate::experiment::{stage, OnlineMethod, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Prompt, Split};

/// Answers per prompt in a meta batch, and prompts per meta batch.
const META_K: usize = 4;
const META_PROMPTS_PER_BATCH: usize = 4;
/// Train prompts whose shifted answers make the meta batches (at most).
const META_PROMPTS: usize = 256;
/// η values tried on dev.
const ETAS: [f64; 2] = [0.01, 0.1];

pub fn experiment() -> Experiment {
    Experiment {
        id: "metarm_tracks_the_shifted_policy",
        claim: "A reward model trained with MetaRM's meta steps on the RL-shifted policy's answers ranks pairs of that policy's answers by gold more accurately than the plain Bradley–Terry reward model of the same labels.",
        paper: Paper { title: "Secrets of RLHF in Large Language Models Part II: Reward Modeling", arxiv: "2401.06080" },
        metric: "gold accuracy of the reward model on pairs of the shifted policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "MetaRM", baseline: "BT RM", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

/// Token ids of `(prompt, answer)` rows.
type Ids = (Vec<Vec<u32>>, Vec<Vec<u32>>);

/// Pairs of two answers per prompt that gold does not tie: their ids and which is better.
fn gold_pairs(s: &Session, prompts: &[Prompt], answers: &[Vec<String>]) -> Result<(Ids, Ids), LabError> {
    let (mut a, mut b) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for (p, better, worse) in super::gold_ordered_pairs(&s.lab().gold, prompts, answers) {
        let (pi, better) = s.pair_ids(&p, &better)?;
        let (_, worse) = s.pair_ids(&p, &worse)?;
        a.0.push(pi.clone());
        a.1.push(better);
        b.0.push(pi);
        b.1.push(worse);
    }
    Ok((a, b))
}

/// The share of gold-ordered pairs `(better, worse)` that `rm` scores in gold's order.
fn accuracy(rm: &Model, (better, worse): &(Ids, Ids)) -> Result<f64, LabError> {
    let r = ModelReward::new(rm.clone()).map_err(stage("reward"))?;
    let hi = r.score(&better.0, &better.1).map_err(stage("reward"))?;
    let lo = r.score(&worse.0, &worse.1).map_err(stage("reward"))?;
    Ok(hi.iter().zip(&lo).filter(|(h, l)| h > l).count() as f64 / hi.len().max(1) as f64)
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x3e7a)?;
    let rows: Vec<(Vec<u32>, Vec<u32>)> = s
        .pair_rows(&labelled.records)?
        .into_iter()
        .map(|(p, c, x)| ([p.clone(), c].concat(), [p, x].concat()))
        .collect();
    let none = Default::default();

    // The plain reward model, and the policy RLHF shifts with it.
    let bt = s.train_reward_model_rows(&base.dir, &rows, 0, None, &none, None)?;
    let (policy, _) = s.train_online(
        OnlineMethod::Rloo,
        &base.dir,
        &base.sft,
        "RLHF (RLOO) on the BT RM",
        std::slice::from_ref(&bt),
        None,
    )?;

    // Meta batches of the shifted policy's answers.
    let meta_prompts = &prompts[..prompts.len().min(META_PROMPTS)];
    let samples = s.sample(&policy, meta_prompts, META_K, cfg.pairs.temperature, cfg.pairs.max_new_tokens, 0x3e7a)?;
    let pad = s.pad_id();
    let mut meta = Vec::new();
    for chunk in meta_prompts.iter().zip(&samples).collect::<Vec<_>>().chunks(META_PROMPTS_PER_BATCH) {
        let mut seqs = Vec::new();
        for (p, ys) in chunk {
            for y in ys.iter() {
                let (pi, ci) = s.pair_ids(&p.text, y)?;
                seqs.push([pi, ci].concat());
            }
        }
        let b = Batch::right_padded(&seqs, pad);
        meta.push(MetaBatch { input_ids: b.ids, attention_mask: b.mask, k: META_K });
    }

    // Shifted pairs on dev (to choose η) and test; SFT pairs on test.
    let (dev, test) =
        (s.lab().world.prompts(Split::Dev, cfg.eval.n_prompts), s.lab().world.prompts(Split::Test, cfg.eval.n_prompts));
    let (temp, max_new) = (cfg.eval.temperature, cfg.eval.max_new_tokens);
    let shifted_dev = s.sample(&policy, &dev, 2, temp, max_new, 0xde7)?;
    let shifted_test = s.sample(&policy, &test, 2, temp, max_new, 0x7e57)?;
    let sft_test = s.sample(&base.sft, &test, 2, temp, max_new, 0x7e57)?;
    let dev_pairs = gold_pairs(s, &dev, &shifted_dev)?;
    let test_pairs = gold_pairs(s, &test, &shifted_test)?;
    let sft_pairs = gold_pairs(s, &test, &sft_test)?;

    let mut extras = vec![
        ("labelled pairs".to_string(), labelled.records.len() as f64),
        ("shifted test pairs gold does not tie".to_string(), test_pairs.0 .0.len() as f64),
        ("meta batches".to_string(), meta.len() as f64),
    ];
    let mut best: Option<(f64, f64, Model)> = None;
    for eta in ETAS {
        let m = s.train_reward_model_rows(&base.dir, &rows, 0, None, &none, Some((&meta, eta)))?;
        let a = accuracy(&m, &dev_pairs)?;
        extras.push((format!("dev shifted accuracy, MetaRM η = {eta}"), a));
        if best.as_ref().is_none_or(|(b, _, _)| a > *b) {
            best = Some((a, eta, m));
        }
    }
    let (_, eta, metarm) = best.ok_or_else(|| LabError::config("ETAS", "needs a value"))?;
    extras.push(("η chosen on dev".to_string(), eta));
    extras.push(("dev shifted accuracy, BT RM".to_string(), accuracy(&bt, &dev_pairs)?));
    extras.push(("in-distribution accuracy (SFT pairs), BT RM".to_string(), accuracy(&bt, &sft_pairs)?));
    extras.push(("in-distribution accuracy (SFT pairs), MetaRM".to_string(), accuracy(&metarm, &sft_pairs)?));
    let e = s.evaluate("RLHF policy", &policy, base, &test, 4)?;
    extras.push(("gold of the shifted policy".to_string(), e.mean_gold()));
    extras.push(("KL to SFT of the shifted policy".to_string(), e.kl));

    let arms = vec![
        ("BT RM".to_string(), accuracy(&bt, &test_pairs)?),
        ("MetaRM".to_string(), accuracy(&metarm, &test_pairs)?),
    ];
    let statistic = arms[1].1 - arms[0].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
