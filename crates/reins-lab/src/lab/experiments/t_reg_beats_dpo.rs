//! T-REG (Zhou et al., "T-REG: Preference Optimization with Token-Level Reward Regularization",
//! arXiv:2412.02685; research note §4(e)): DPO regularized by the model's own token rewards —
//! obtained by prompting it two opposite ways — reaches a better policy than DPO on the same
//! pairs.
//!
//! Design, fixed before the full run:
//! - **A model that can be prompted better or worse.** The SFT model is fine-tuned on prompts
//!   behind "Answer well:" / "Answer badly:" with responses of a good / bad quality mix, mixed one
//!   to one with plain SFT examples ([`crate::control_tags`], stage `control_sft`). That model is
//!   every arm's start and reference, and the frozen scorer of the token rewards
//!   `r_t = log π_0(y_t | well, x, y_<t) − log π_0(y_t | badly, x, y_<t)`.
//! - **Pairs**: two samples of the start model per train prompt, labelled by the annotators
//!   (`pairs.n_prompts` prompts), as the lab's other DPO experiments.
//! - **Arms**, all the lab's DPO budget (`dpo.max_steps` steps of `dpo.per_device_train_batch_size`
//!   pairs, the same draws): DPO; DPO + T-REG with contrastive rewards, α chosen from
//!   `knobs.t_reg_alphas` by the dev prompts' mean gold (the claim's arm); DPO + T-REG with each
//!   response's rewards shuffled, at the chosen α (a placebo).
//! - **Metric**: mean gold score on the test prompts. **Rule**: the paired gap T-REG − DPO.
//!   Reported beside it: whether the self-rewards carry signal at all — the share of labelled
//!   pairs where the chosen response's summed token reward exceeds the rejected one's, against the
//!   annotators' label and against gold.
//!
//! - **The token rewards against gold** (research note step 1; added with the next bullet after
//!   the first full run, outside the rule): the gold token error mask
//!   ([`crate::span_labels::token_error_mask`]: every token of a rude, filler, repeated or wrong
//!   sentence) of each labelled response, and the AUROC of `−r_t` for it over all their tokens
//!   (0.5: the self-rewards do not find the erroneous tokens).
//! - **An upper bound**: DPO + T-REG at the chosen α with gold token rewards (−2 on each token of
//!   the mask, 0 elsewhere) in place of the self-rewards. Reported, not part of the rule.
//!
//! The gold mask is sentence-level: the parser's evidence is per sentence, so every token of an
//! erroneous sentence counts as erroneous.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_model::{LoadOptions, Model};
use reins_train::losses::{DpoConfig, TRegConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::run::Trainer as _;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::t_reg::{contrastive_token_rewards, TRegBatch, TRegTrainer};

use reins_data::HfTokenizer;

use crate::control_tags::{BETTER, WORSE};
use crate::experiment::offline::{pair_batch, PairRow};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::stats::auroc;
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::span_labels::{completion_decoder, token_error_mask};
use crate::{chat, LabError, Split};

const T_REG: &str = "DPO + T-REG";
/// The gold token reward of a token in an erroneous sentence (0 elsewhere).
const GOLD_ERROR_REWARD: f32 = -2.0;

pub fn experiment() -> Experiment {
    Experiment {
        id: "t_reg_beats_dpo",
        claim: "DPO regularized by token-level rewards the model gives itself by contrastive prompting (T-REG) reaches a higher gold reward than DPO on the same pairs.",
        paper: Paper { title: "T-REG: Preference Optimization with Token-Level Reward Regularization", arxiv: "2412.02685" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: T_REG, baseline: "DPO", direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { control_sft_steps: 20, t_reg_alphas: vec![1.0], ..Knobs::default() }
            } else {
                Knobs::default()
            };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    // 1. The start model, which knows "well" from "badly".
    let start = s.control_sft(base, knobs.control_sft_steps)?;

    // 2. Labelled pairs of its samples, and their token rewards from it.
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&start.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let rows = s.pair_rows(&labelled.records)?;
    let mut scored = Vec::with_capacity(2 * rows.len());
    for (r, (_, chosen, rejected)) in labelled.records.iter().zip(&rows) {
        let better = s.encode(&chat::prompt(&format!("{BETTER}{}", r.prompt)))?;
        let worse = s.encode(&chat::prompt(&format!("{WORSE}{}", r.prompt)))?;
        scored.push((better.clone(), worse.clone(), chosen.clone()));
        scored.push((better, worse, rejected.clone()));
    }
    s.announce("token rewards (better vs worse prompt)");
    let rewards = contrastive_token_rewards(&start.sft, &scored, 64).map_err(stage("token rewards"))?;
    let mut shuffled = rewards.clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5348_5546);
    for r in &mut shuffled {
        r.shuffle(&mut rng);
    }
    let (vs_labels, vs_gold) = self_reward_accuracy(s, &labelled.records, &rewards);
    // The gold token error masks, the self-rewards' AUROC for them, and gold token rewards.
    let decode = completion_decoder(HfTokenizer::from_dir(&start.dir).map_err(stage("tokenizer"))?);
    let masks: Vec<Option<Vec<bool>>> = labelled
        .records
        .iter()
        .zip(&rows)
        .flat_map(|(r, (_, c, x))| [c, x].map(|ids| token_error_mask(&s.lab().gold, &r.prompt, ids, &decode)))
        .collect();
    let (mut scores, mut positive) = (Vec::new(), Vec::new());
    for (r, m) in rewards.iter().zip(&masks) {
        if let Some(m) = m {
            scores.extend(r.iter().map(|&x| -f64::from(x)));
            positive.extend(m.iter().take(r.len()));
        }
    }
    let gold_rewards: Vec<Vec<f32>> = rewards
        .iter()
        .zip(&masks)
        .map(|(r, m)| match m {
            Some(m) => m.iter().take(r.len()).map(|&e| if e { GOLD_ERROR_REWARD } else { 0.0 }).collect(),
            None => vec![0.0; r.len()],
        })
        .collect();
    let mut extras = vec![
        ("self-reward pair accuracy vs labels".to_string(), vs_labels),
        ("self-reward pair accuracy vs gold".to_string(), vs_gold),
        ("labelled pairs".to_string(), labelled.records.len() as f64),
        ("token-reward AUROC for the gold error tokens".to_string(), auroc(&scores, &positive)),
        (
            "gold error tokens among labelled responses' tokens".to_string(),
            positive.iter().filter(|&&p| p).count() as f64 / positive.len().max(1) as f64,
        ),
    ];

    // 3. The arms: DPO, T-REG with α by dev gold, the placebo.
    let dpo = s.train_dpo(&start.dir, &labelled.records)?;
    let dev = s.lab().world.prompts(Split::Dev, cfg.eval.n_prompts);
    let mut best: Option<(f64, f64, Model)> = None;
    for &alpha in &knobs.t_reg_alphas {
        let policy = train_t_reg(s, &start, &rows, &rewards, alpha, &format!("T-REG, α = {alpha}"))?;
        let g = s.evaluate(&format!("T-REG, α = {alpha}, dev"), &policy, &start, &dev, 5)?.mean_gold();
        extras.push((format!("dev gold, T-REG α = {alpha}"), g));
        if best.as_ref().is_none_or(|(b, _, _)| g > *b) {
            best = Some((g, alpha, policy));
        }
    }
    let (_, alpha, t_reg) = best.ok_or_else(|| LabError::config("knobs.t_reg_alphas", "needs at least one alpha"))?;
    extras.push(("α chosen on dev".to_string(), alpha));
    let placebo = train_t_reg(s, &start, &rows, &shuffled, alpha, "T-REG, shuffled rewards")?;
    let gold_arm = train_t_reg(s, &start, &rows, &gold_rewards, alpha, "T-REG, gold token rewards")?;

    // 4. Test.
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let names =
        ["start (control-tag SFT)", "DPO", T_REG, "DPO + T-REG, shuffled rewards", "DPO + T-REG, gold token rewards"];
    for (name, policy) in names.iter().zip([&start.sft, &dpo, &t_reg, &placebo, &gold_arm]) {
        let e = s.evaluate(name, policy, &start, &test, 4)?;
        arms.push((name.to_string(), e.mean_gold()));
        extras.push((format!("KL to start, {name}"), e.kl));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

/// The share of labelled pairs whose chosen response has the larger summed token reward, and
/// the same share among the pairs gold does not tie, against gold's order.
fn self_reward_accuracy(s: &Session, records: &[crate::PreferenceRecord], rewards: &[Vec<f32>]) -> (f64, f64) {
    let sum = |r: &Vec<f32>| r.iter().map(|&x| f64::from(x)).sum::<f64>();
    let (mut vs_labels, mut vs_gold, mut decided) = (0usize, 0usize, 0usize);
    for (i, r) in records.iter().enumerate() {
        let chosen_ahead = sum(&rewards[2 * i]) > sum(&rewards[2 * i + 1]);
        vs_labels += usize::from(chosen_ahead);
        let gold = &s.lab().gold;
        let (gc, gr) = (gold.score(&r.prompt, &r.chosen), gold.score(&r.prompt, &r.rejected));
        if crate::gold::compare_scores(gc, gr) != std::cmp::Ordering::Equal {
            decided += 1;
            vs_gold += usize::from(chosen_ahead == (gc > gr));
        }
    }
    (vs_labels as f64 / records.len().max(1) as f64, vs_gold as f64 / decided.max(1) as f64)
}

/// DPO + α·L_REG from the start model on the lab's DPO budget and pair draws (the DPO arm's
/// batches, step for step); `rewards[2i]` / `rewards[2i + 1]` are pair i's chosen / rejected
/// token rewards.
fn train_t_reg(
    s: &mut Session,
    start: &Base,
    rows: &[PairRow],
    rewards: &[Vec<f32>],
    alpha: f64,
    name: &str,
) -> Result<Model, LabError> {
    let d = s.cfg().dpo.clone();
    let policy = s.load(&start.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let reference = s.load(&start.dir, LoadOptions::default())?;
    let opt =
        OptimConfig { learning_rate: d.learning_rate, lr_scheduler_type: SchedulerType::Linear, ..Default::default() };
    let optimizer = Optimizer::new(policy.params(), &opt, d.max_steps).map_err(stage("optimizer"))?;
    let loss: DpoConfig = serde_json::from_value(serde_json::json!({"beta": d.beta, "loss_type": d.loss_type}))
        .map_err(stage("dpo config"))?;
    let cfg = TRegConfig { alpha, ..Default::default() };
    let mut trainer = TRegTrainer::new(policy, Reference::Model(Box::new(reference)), loss, cfg, optimizer)
        .map_err(stage("t-reg"))?;
    let pad = s.pad_id();
    let mut draws = s.pair_draws();
    s.progress.stage(name, d.max_steps);
    for _ in 0..d.max_steps {
        let idx: Vec<usize> =
            (0..d.per_device_train_batch_size).map(|_| rand::Rng::random_range(&mut draws, 0..rows.len())).collect();
        let token_rewards = idx
            .iter()
            .map(|&i| rewards[2 * i].clone())
            .chain(idx.iter().map(|&i| rewards[2 * i + 1].clone()))
            .collect();
        let batch = TRegBatch { pairs: pair_batch(rows, &idx, pad), token_rewards };
        let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("t-reg"))?;
        s.progress.tick(&format!(
            "loss {:.3} reg {:.3}",
            m["loss"],
            m.get("t_reg/reg_loss").copied().unwrap_or(f64::NAN)
        ));
    }
    Ok(trainer.policy.detached())
}
