//! PIT (Wang et al., "Enable Language Models to Implicitly Learn Self-Improvement From Data",
//! ICLR 2024, arXiv:2310.00898; research note §11(e)): a model trained to maximize the quality
//! gap over a reference answer keeps improving its own answers round after round.
//!
//! Design, fixed before the full run:
//! - **Data**: two SFT samples per train prompt labelled by the annotators (`pairs.n_prompts`).
//! - **PIT SFT**: the SFT model fine-tuned (`knobs.pit_sft_steps`) to rewrite the rejected answer
//!   into the chosen one, the rejected answer in the prompt ([`TEMPLATE`]), mixed one to one with
//!   plain SFT examples.
//! - **Gap reward model**: a reward model on conditional prompts trained on the four comparisons
//!   of every labelled pair ([`reins_train::pit::gap_comparisons`]).
//! - **RL, stage 1**: RLOO (two samples, online DPO's budget and β) from the PIT-SFT model on
//!   conditional prompts `x ⊕ y_l` of the labelled pairs, the gap reward model as the reward, the
//!   PIT-SFT model as the KL reference.
//! - **Arms** at inference, on the test prompts: `y_0` from the SFT policy, then
//!   `knobs.pit_rounds` improvements `y_k ~ π(·|x ⊕ y_{k−1})` by: PIT (stage 1 RL on the gap
//!   reward model); PIT with the reward `r(x, y) − r(x, y_ref)` of a plain BT reward model on the
//!   same labels (the note's "difference of ordinary RM scores"); PIT-SFT alone.
//! - **Metric**: mean gold of the answers of each round. **Rule**: the paired gap
//!   PIT round 2 − PIT round 1 (the note: refuted if gold does not rise past k = 1).
//!
//! Not built here: stage 2 of the curriculum (references sampled from the policy) and the
//! iterative version; the note's standard-PPO arm is the difference-of-scores arm's RM without
//! the reference, not run.

use std::collections::HashMap;

use reins_data::HfTokenizer;
use reins_model::{LoadOptions, Model, SamplingConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::pit::{gap_comparisons, improve, PitTemplate};
use reins_train::rewards::RewardSource;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::rloo::{RlooConfig, RlooTrainer};

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{chat, LabError, Prompt, Split};

/// The lab's conditional prompt: the question and the answer to improve, one user turn.
pub const TEMPLATE: &str = "{prompt} Improve this answer: {reference}";

pub fn experiment() -> Experiment {
    Experiment {
        id: "pit_keeps_improving",
        claim: "A model trained to maximize the quality gap over a reference answer (PIT: SFT on worse-to-better rewrites, a gap reward model from four relations, RL on conditional prompts) raises the gold reward of its own answers again in a second improvement round.",
        paper: Paper {
            title: "Enable Language Models to Implicitly Learn Self-Improvement From Data",
            arxiv: "2310.00898",
        },
        metric: "mean gold score of the answers to the test prompts after each improvement round",
        split: "test",
        rule: Rule::PairedGap { better: "PIT, round 2", baseline: "PIT, round 1", direction: Direction::Higher },
        config: |reduced| {
            let mut c = if reduced {
                super::quickstart_settings(reduced, Knobs { pit_sft_steps: 20, pit_rounds: 2, ..Knobs::default() })
            } else {
                super::quickstart_settings(reduced, Knobs::default())
            };
            if reduced {
                c.lab.reward_model.max_steps = 12;
            }
            c
        },
        run,
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let t = PitTemplate { pit_template: TEMPLATE.into() };
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let records = &labelled.records;

    // 1. PIT SFT: rewrite the rejected answer into the chosen one.
    let rewrites: Vec<(String, String)> =
        records.iter().map(|r| (chat::prompt(&t.fill(&r.prompt, &r.rejected)), chat::completion(&r.chosen))).collect();
    let pit_sft = s.fine_tune(base, "PIT SFT", "pit-sft", rewrites, knobs.pit_sft_steps)?;

    // 2. The gap reward model on the four comparisons of every pair, and a plain BT one.
    let mut rows = Vec::with_capacity(4 * records.len());
    for r in records {
        for (good, bad) in gap_comparisons(r.chosen.as_str(), r.rejected.as_str()) {
            let whole = |(reference, response): (&str, &str)| -> Result<Vec<u32>, LabError> {
                let (p, c) = s.pair_ids(&t.fill(&r.prompt, reference), response)?;
                Ok([p, c].concat())
            };
            rows.push((whole(good)?, whole(bad)?));
        }
    }
    s.announce("gap reward model");
    let gap_rm = s.train_reward_model_rows(&base.dir, &rows, 0, None, &Default::default(), None)?;
    let bt_rm = s.reward_models(base, records, 1)?.remove(0);

    // 3. RL on conditional prompts x ⊕ y_l, with each reward.
    let steps = cfg.online_dpo.max_steps * cfg.online_dpo.per_device_train_batch_size;
    let mut conditional = Vec::new();
    let mut refs = HashMap::new();
    for r in records.iter().cycle().take(steps) {
        let (cond, _) = s.pair_ids(&t.fill(&r.prompt, &r.rejected), "")?;
        let (x, y_ref) = s.pair_ids(&r.prompt, &r.rejected)?;
        refs.insert(cond.clone(), (x, y_ref));
        conditional.push(cond);
    }
    let gap_reward = s.reward_source(std::slice::from_ref(&gap_rm))?;
    let pit = train_rloo(s, &pit_sft, &conditional, gap_reward, "PIT RL (gap reward model)")?;
    let diff_reward = Box::new(DifferenceOfScores { inner: s.reward_source(std::slice::from_ref(&bt_rm))?, refs });
    let diff = train_rloo(s, &pit_sft, &conditional, diff_reward, "PIT RL (difference of scores)")?;

    // 4. Rounds of improvement on the test prompts.
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let tok = HfTokenizer::from_dir(&base.dir).map_err(stage("tokenizer"))?;
    let mut arms = Vec::new();
    let mut series = Vec::new();
    let mut extras = vec![("labelled pairs".to_string(), records.len() as f64)];
    for (name, model) in [("PIT", &pit), ("difference of scores", &diff), ("PIT-SFT only", &pit_sft.sft)] {
        let gold = rounds_gold(s, &tok, &t, &base.sft, model, &test, knobs.pit_rounds, name)?;
        if arms.is_empty() {
            arms.push(("SFT answer (round 0)".to_string(), gold[0]));
        }
        for (k, g) in gold.iter().enumerate().skip(1) {
            let row = (format!("{name}, round {k}"), *g);
            if name == "PIT" {
                arms.push(row);
            } else {
                extras.push(row);
            }
        }
        series.push((name.to_string(), gold.iter().enumerate().map(|(k, g)| (k as f64, *g)).collect()));
    }
    let value = |n: &str| arms.iter().find(|(k, _)| k == n).map_or(f64::NAN, |a| a.1);
    let statistic = value("PIT, round 2") - value("PIT, round 1");
    let curve = Curve {
        title: "Gold after each improvement round".into(),
        x_label: "round (0 = the SFT policy's answer)".into(),
        y_label: "mean gold (test prompts)".into(),
        series,
    };
    Ok(SeedOutcome { arms, statistic, extras, curves: vec![curve] })
}

/// `r(x, y) − r(x, y_ref)` of a plain reward model, for a conditional prompt whose `x` and `y_ref`
/// (token ids) `refs` knows.
struct DifferenceOfScores {
    inner: Box<dyn RewardSource>,
    refs: HashMap<Vec<u32>, (Vec<u32>, Vec<u32>)>,
}

impl RewardSource for DifferenceOfScores {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> reins_train::Result<Vec<f32>> {
        let mut xs = Vec::with_capacity(prompts.len());
        let mut ys_ref = Vec::with_capacity(prompts.len());
        for p in prompts {
            let (x, y) = self.refs.get(p).ok_or_else(|| {
                reins_train::TrainError::Input("a conditional prompt the experiment did not build".into())
            })?;
            xs.push(x.clone());
            ys_ref.push(y.clone());
        }
        let now = self.inner.score(&xs, completions)?;
        let before = self.inner.score(&xs, &ys_ref)?;
        Ok(now.iter().zip(&before).map(|(a, b)| a - b).collect())
    }

    fn name(&self) -> &str {
        "difference of scores"
    }
}

/// RLOO from the PIT-SFT model on `prompts` (one batch of online DPO's size per step), its KL
/// reference the PIT-SFT model.
fn train_rloo(
    s: &mut Session,
    start: &Base,
    prompts: &[Vec<u32>],
    reward: Box<dyn RewardSource>,
    name: &str,
) -> Result<Model, LabError> {
    let o = s.cfg().online_dpo.clone();
    let seed = s.cfg().seed + 11;
    let policy = s.load(&start.dir, LoadOptions { trainable: true, seed, ..Default::default() })?;
    let opt = OptimConfig {
        learning_rate: o.learning_rate,
        lr_scheduler_type: SchedulerType::Constant,
        ..Default::default()
    };
    let optimizer = Optimizer::new(policy.params(), &opt, o.max_steps).map_err(stage("optimizer"))?;
    let c = RlooConfig {
        num_generations: 2,
        beta: o.beta,
        max_completion_length: o.max_new_tokens,
        temperature: o.temperature,
        seed,
        ..Default::default()
    };
    let reference = Reference::Model(Box::new(start.sft.clone()));
    let mut trainer = RlooTrainer::new(policy, Some(reference), reward, c, optimizer).map_err(stage("rloo"))?;
    s.progress.stage(name, o.max_steps);
    for batch in prompts.chunks(o.per_device_train_batch_size).take(o.max_steps) {
        let m = trainer.train_step(&[batch.to_vec()]).map_err(stage("rloo"))?;
        s.progress.tick(&format!("reward {:.3}", m.get("reward").copied().unwrap_or(f64::NAN)));
    }
    Ok(trainer.policy.detached())
}

/// Mean gold of round 0 (`policy`'s answers) and of `rounds` improvements by `pit`.
#[allow(clippy::too_many_arguments)]
fn rounds_gold(
    s: &mut Session,
    tok: &HfTokenizer,
    t: &PitTemplate,
    policy: &Model,
    pit: &Model,
    prompts: &[Prompt],
    rounds: usize,
    name: &str,
) -> Result<Vec<f64>, LabError> {
    let e = s.cfg().eval.clone();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| s.encode(&p.chat())).collect::<Result<_, _>>()?;
    let answer = |y: &[u32]| -> reins_train::Result<String> { Ok(chat::extract_response(&tok.decode(y, false)?).0) };
    let mut condition = |i: usize, y: &[u32]| -> reins_train::Result<Vec<u32>> {
        Ok(tok.encode(&chat::prompt(&t.fill(&prompts[i].text, &answer(y)?)), false)?)
    };
    let sampling = SamplingConfig {
        max_new_tokens: e.max_new_tokens,
        do_sample: true,
        temperature: e.temperature,
        seed: s.cfg().seed ^ 0x5049_5431,
        ..Default::default()
    };
    s.announce(&format!("{name}: {rounds} rounds of improvement"));
    let out = improve(policy, pit, &ids, &mut condition, rounds, &sampling).map_err(stage("improve"))?;
    let gold = &s.lab().gold;
    out.iter()
        .map(|ys| {
            let scores: Vec<f64> = prompts
                .iter()
                .zip(ys)
                .map(|(p, y)| Ok(gold.score(&p.text, &answer(y).map_err(stage("decode"))?)))
                .collect::<Result<_, LabError>>()?;
            Ok(crate::metrics::mean(&scores))
        })
        .collect()
}
