//! Three steps of TRL 1.16's online trainers, GRPO and RLOO, and of TRL 1.13's Nash-MD (removed
//! from TRL after 1.13), on the tiny Llama fixture, with the completions TRL trained on replayed
//! through a [`CompletionSource`] (the recording scripts fix them in place of sampling, see
//! `fixtures/hf/trl/record_steps.py` and `record_nash_md.py`), so both sides train on the same
//! rollouts. Every metric TRL logged is compared except wall-clock time, and the count of
//! compared values is checked.

#[path = "common/trl.rs"]
mod trl;

use std::collections::HashMap;

use reins_model::SamplingConfig;
use reins_train::losses::ppo::GrpoLossConfig;
use reins_train::rewards::RuleReward;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::grpo::{GrpoConfig, GrpoTrainer};
use reins_train::trainers::nash_md::{NashMdConfig, NashMdTrainer, Preferences};
use reins_train::trainers::online_dpo::OnlineDpoConfig;
use reins_train::trainers::rloo::{RlooConfig, RlooTrainer};
use reins_train::trainers::rollout::{rollout_from, CompletionSource};
use reins_train::Result;
use serde_json::Value;
use trl::{assert_no_failures, compare, compare_with, json, load, log, optimizer, u32s};

/// Token-id rows.
type Rows = Vec<Vec<u32>>;

/// The recorded rollouts of one run: per step, the prompt rows and their completions.
struct Replay {
    steps: Vec<(Rows, Rows)>,
}

impl CompletionSource for Replay {
    fn complete(&mut self, prompts: &[Vec<u32>], generation: u64) -> Result<Vec<Vec<u32>>> {
        let (want, completions) = &self.steps[generation as usize];
        assert_eq!(prompts, want.as_slice(), "generation {generation}: prompts differ from TRL's");
        Ok(completions.clone())
    }
}

struct Recorded {
    replay: Replay,
    /// Per step, the distinct prompts in order (one micro-batch).
    prompts: Vec<Vec<Vec<u32>>>,
    /// (prompt, completion) → the reward TRL's reward function gave.
    rewards: HashMap<(Vec<u32>, Vec<u32>), f32>,
}

fn recorded(run: &Value, num_generations: usize) -> Recorded {
    let mut steps = vec![];
    let mut prompts = vec![];
    let mut rewards = HashMap::new();
    for s in run["rollouts"].as_array().unwrap() {
        let (p, c) = (u32s(&s["prompt_ids"]), u32s(&s["completion_ids"]));
        for ((p, c), r) in p.iter().zip(&c).zip(s["rewards"].as_array().unwrap()) {
            rewards.insert((p.clone(), c.clone()), r.as_f64().unwrap() as f32);
        }
        prompts.push(p.iter().step_by(num_generations).cloned().collect());
        steps.push((p, c));
    }
    Recorded { replay: Replay { steps }, prompts, rewards }
}

fn reward(rewards: HashMap<(Vec<u32>, Vec<u32>), f32>) -> Box<RuleReward> {
    Box::new(RuleReward::named("fixed", move |p, c| rewards[&(p.to_vec(), c.to_vec())]))
}

#[test]
fn grpo_matches_trl_for_three_steps_on_fixed_rollouts() {
    let spec = json("grpo.json");
    let runs = spec["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 2, "grpo.json: dapo (TRL's defaults) and grpo_beta");
    let mut worst = 0.0f64;
    for (case, run) in runs {
        let g = run["num_generations"].as_u64().unwrap() as usize;
        let rec = recorded(run, g);
        let cfg = GrpoConfig { num_generations: g, ..Default::default() };
        let mut loss = GrpoLossConfig {
            max_completion_length: run["max_completion_length"].as_u64().unwrap() as usize,
            beta: run.get("beta").and_then(Value::as_f64).unwrap_or(0.0),
            ..Default::default()
        };
        if let Some(lt) = run.get("loss_type") {
            loss.loss_type = serde_json::from_value(lt.clone()).unwrap();
        }
        let reference = (loss.beta != 0.0).then(|| Reference::Model(Box::new(load("llama", false))));
        let policy = load("llama", true);
        let opt = optimizer(&policy);
        let mut trainer = GrpoTrainer::new(policy, reference, reward(rec.rewards), cfg, loss, opt).unwrap();
        trainer.completions = Some(Box::new(rec.replay));
        for (step, row) in log(case, run).iter().enumerate() {
            let m = trainer.train_step(std::slice::from_ref(&rec.prompts[step])).unwrap();
            worst = worst.max(compare(case, step + 1, &m, row));
        }
    }
    // dapo: 22 metrics a step; grpo_beta: the same and `kl`.
    assert_no_failures(3 * (22 + 23));
    println!("GRPO: worst relative error {worst:.2e}");
}

#[test]
fn rloo_matches_trl_for_three_steps_on_fixed_rollouts() {
    let spec = json("rloo.json");
    let runs = spec["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 1, "rloo.json: TRL's defaults");
    let mut worst = 0.0f64;
    for (case, run) in runs {
        let g = run["num_generations"].as_u64().unwrap() as usize;
        let rec = recorded(run, g);
        let cfg = RlooConfig {
            num_generations: g,
            max_completion_length: run["max_completion_length"].as_u64().unwrap() as usize,
            ..Default::default()
        };
        let policy = load("llama", true);
        let opt = optimizer(&policy);
        let reference = Some(Reference::Model(Box::new(load("llama", false))));
        let mut trainer = RlooTrainer::new(policy, reference, reward(rec.rewards), cfg, opt).unwrap();
        trainer.completions = Some(Box::new(rec.replay));
        for (step, row) in log(case, run).iter().enumerate() {
            let m = trainer.train_step(std::slice::from_ref(&rec.prompts[step])).unwrap();
            worst = worst.max(compare(case, step + 1, &m, row));
        }
    }
    assert_no_failures(3 * 23);
    println!("RLOO: worst relative error {worst:.2e}");
}

/// Completions given as they are, whatever the prompts.
struct Given(Rows);

impl CompletionSource for Given {
    fn complete(&mut self, prompts: &[Vec<u32>], _generation: u64) -> Result<Vec<Vec<u32>>> {
        assert_eq!(prompts.len(), self.0.len());
        Ok(self.0.clone())
    }
}

#[test]
fn nash_md_matches_trl_for_three_steps_on_fixed_samples() {
    let spec = json("nash_md.json");
    assert_eq!(spec["versions"]["trl"], "1.13.0", "Nash-MD's fixture comes from TRL 1.13, its last release");
    let runs = spec["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 2, "nash_md.json: TRL's defaults and beta_eos_penalty");
    let mut worst = 0.0f64;
    for (case, run) in runs {
        let steps = run["rollouts"].as_array().unwrap();
        let mut rewards = HashMap::new();
        for s in steps {
            let p = u32s(&s["prompt_ids"]);
            for (ids, scores) in [("completion_ids", "scores"), ("mixture_completion_ids", "mixture_scores")] {
                for ((p, c), r) in p.iter().zip(u32s(&s[ids])).zip(s[scores].as_array().unwrap()) {
                    rewards.insert((p.clone(), c), r.as_f64().unwrap() as f32);
                }
            }
        }
        let cfg = NashMdConfig { beta: run.get("beta").and_then(Value::as_f64).unwrap_or(0.1), ..Default::default() };
        let sampling = OnlineDpoConfig {
            missing_eos_penalty: run.get("missing_eos_penalty").and_then(Value::as_f64).map(|x| x as f32),
            ..Default::default()
        };
        let policy = load("llama", true);
        let opt = optimizer(&policy);
        let reference = Reference::Model(Box::new(load("llama", false)));
        let mut t =
            NashMdTrainer::new(policy, reference, Preferences::Reward(reward(rewards)), cfg, sampling, opt).unwrap();
        for (step, row) in log(case, run).iter().enumerate() {
            let s = &steps[step];
            let prompts = u32s(&s["prompt_ids"]);
            let replay = |key: &str| {
                let mut given = Given(u32s(&s[key]));
                rollout_from(Some(&mut given), 0, &t.policy, &prompts, 1, &SamplingConfig::default(), false).unwrap()
            };
            let batch = t.judge(replay("completion_ids"), replay("mixture_completion_ids"), 0).unwrap();
            let m = t.step_on(vec![batch]).unwrap();
            // `rewards/margins` is Σ log π − Σ log π_ref of sums near −40 (float32 rounding), and HF
            // `Trainer` logs `loss` rounded to 4 decimals.
            let absolute = [("rewards/margins", 2e-5), ("loss", 5e-5)];
            worst = worst.max(compare_with(case, step + 1, &m, row, &absolute));
        }
    }
    // 17 metrics a step in both runs.
    assert_no_failures(2 * 3 * 17);
    println!("Nash-MD: worst relative error {worst:.2e}");
}
