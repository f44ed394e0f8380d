//! Three optimizer steps of TRL 1.16's DPO (every loss type), reward and SFT trainers on the
//! tiny Llama fixtures, reproduced step for step: each logged row's loss and metrics within
//! 1e-4 relative (1e-3 absolute below 1e-2 in magnitude), from TRL's own collated batches.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use reins_data::collate::{PreferenceBatch, RewardBatch, SftBatch};
use reins_model::{LoadOptions, Model};
use reins_train::losses::{DpoConfig, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::reward::RewardTrainer;
use reins_train::trainers::sft::SftTrainer;
use reins_train::trainers::Metrics;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("trl").join(name)).unwrap()).unwrap()
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("trl").join(name), &Device::Cpu).unwrap()
}

fn rows<T: TryFrom<i64>>(t: &Tensor) -> Vec<Vec<T>> {
    let v: Vec<Vec<i64>> = t.to_vec2().unwrap();
    v.into_iter().map(|r| r.into_iter().map(|x| T::try_from(x).ok().unwrap()).collect()).collect()
}

/// The fixtures' optimizer: AdamW(0.9, 0.999, 1e-8), lr 1e-3 constant, clip 1.0.
fn optimizer(model: &Model) -> Optimizer {
    let cfg = OptimConfig { learning_rate: 1e-3, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
    Optimizer::new(model.params(), &cfg, 3).unwrap()
}

fn load(name: &str, trainable: bool) -> Model {
    let opts = LoadOptions { trainable, ..Default::default() };
    Model::load(&fixtures().join("models").join(name), &Device::Cpu, &opts).unwrap()
}

/// Compares our metrics with a TRL log row; returns the worst relative error seen.
fn compare(case: &str, step: usize, ours: &Metrics, theirs: &Value, keys: &[&str]) -> f64 {
    let mut worst = 0.0f64;
    for k in keys {
        let want = theirs[k].as_f64().unwrap_or_else(|| panic!("{case}: TRL row has no {k}"));
        let got = *ours.get(*k).unwrap_or_else(|| panic!("{case}: we do not log {k}"));
        let err = (got - want).abs();
        let ok = if want.abs() < 1e-2 { err <= 1e-3 } else { err / want.abs() <= 1e-4 };
        if !ok {
            FAILS.with(|f| f.borrow_mut().push(format!("{case} step {step} `{k}`: ours {got} vs TRL {want}")));
        }
        if want.abs() >= 1e-2 {
            worst = worst.max(err / want.abs());
        }
    }
    worst
}

thread_local! {
    static FAILS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn assert_no_failures() {
    FAILS.with(|f| {
        let f = f.borrow();
        assert!(f.is_empty(), "{} values off TRL:\n{}", f.len(), f.join("\n"));
    });
}

const DPO_KEYS: &[&str] = &[
    "loss",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
];

#[test]
fn dpo_every_loss_type_matches_trl_for_three_steps() {
    let spec = json("dpo.json");
    let mut worst = 0.0f64;
    for (case, run) in spec["runs"].as_object().unwrap() {
        let conversational = run["conversational"].as_bool().unwrap_or(false);
        let batch_t =
            tensors(if conversational { "dpo_batch_conversational.safetensors" } else { "dpo_batch.safetensors" });
        let batch = PreferenceBatch {
            input_ids: rows(&batch_t["input_ids"]),
            attention_mask: rows(&batch_t["attention_mask"]),
            completion_mask: rows(&batch_t["completion_mask"]),
            margin: None,
            strength: None,
            ref_logps: None,
        };
        let mut cfg: DpoConfig = serde_json::from_value(serde_json::json!({
            "loss_type": run["loss_type"],
            "beta": run["beta"],
        }))
        .unwrap();
        if let Some(ls) = run.get("label_smoothing").and_then(Value::as_f64) {
            cfg.label_smoothing = ls;
        }
        let policy = load("llama", true);
        let opt = optimizer(&policy);
        let mut trainer = DpoTrainer::new(policy, Reference::Model(Box::new(load("llama", false))), cfg, opt).unwrap();
        for (step, row) in run["log"].as_array().unwrap().iter().enumerate() {
            let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
            worst = worst.max(compare(case, step + 1, &m, row, DPO_KEYS));
        }
    }
    assert_no_failures();
    println!("DPO: worst relative error over all cases and steps {worst:.2e}");
}

#[test]
fn reward_trainer_matches_trl_for_three_steps() {
    let spec = json("reward.json");
    let t = tensors("reward_batch.safetensors");
    let batch = RewardBatch {
        input_ids: rows(&t["input_ids"]),
        attention_mask: rows(&t["attention_mask"]),
        margin: None,
        strength: None,
    };
    let model = load("llama-rm", true);
    let opt = optimizer(&model);
    let mut trainer = RewardTrainer::new(model, opt, RewardLossConfig::default());
    let mut worst = 0.0f64;
    for (step, row) in spec["log"].as_array().unwrap().iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare(
            "reward",
            step + 1,
            &m,
            row,
            &["loss", "grad_norm", "accuracy", "margin", "min_reward", "mean_reward", "max_reward", "num_tokens"],
        ));
    }
    assert_no_failures();
    println!("reward: worst relative error {worst:.2e}");
}

#[test]
fn sft_trainer_matches_trl_for_three_steps() {
    let spec = json("sft.json");
    let t = tensors("sft_batch.safetensors");
    let batch = SftBatch {
        input_ids: rows(&t["input_ids"]),
        attention_mask: Some(rows(&t["attention_mask"])),
        labels: rows(&t["labels"]),
        position_ids: None,
    };
    let model = load("llama", true);
    let opt = optimizer(&model);
    let mut trainer = SftTrainer::new(model, opt);
    let mut worst = 0.0f64;
    for (step, row) in spec["log"].as_array().unwrap().iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare("sft", step + 1, &m, row, &["loss", "grad_norm", "num_tokens"]));
    }
    assert_no_failures();
    println!("sft: worst relative error {worst:.2e}");
}
