//! Three optimizer steps of TRL 1.16's offline trainers on the tiny Llama fixtures, reproduced
//! step for step from TRL's own collated batches: DPO (every loss type, `sft` too), reward,
//! SFT (one batch, and two accumulated micro-batches of unequal token counts), KTO, ORPO and
//! CPO/SimPO. Every metric TRL logged is compared (1e-4 relative, 1e-3 absolute below 1e-2 in
//! magnitude), and each test checks how many values it compared, so a missing run, step or
//! key fails. The fixtures and how they were made: `fixtures/hf/README.md`.

#[path = "common/trl.rs"]
mod trl;

use reins_data::collate::{PreferenceBatch, RewardBatch, SftBatch, UnpairedBatch};
use reins_train::losses::{CpoConfig, DpoConfig, KtoConfig, RewardLossConfig};
use reins_train::run::Trainer as _;
use reins_train::trainers::cpo::CpoTrainer;
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::kto::KtoTrainer;
use reins_train::trainers::orpo::{OrpoConfig, OrpoTrainer};
use reins_train::trainers::reward::RewardTrainer;
use reins_train::trainers::sft::SftTrainer;
use serde_json::Value;
use trl::{assert_no_failures, compare, json, load, log, optimizer, rows, tensors};

fn preference_batch(name: &str) -> PreferenceBatch {
    let t = tensors(name);
    PreferenceBatch {
        input_ids: rows(&t["input_ids"]),
        attention_mask: rows(&t["attention_mask"]),
        completion_mask: rows(&t["completion_mask"]),
        margin: None,
        strength: None,
        ref_logps: None,
    }
}

fn sft_batch(t: &std::collections::HashMap<String, candle_core::Tensor>, prefix: &str) -> SftBatch {
    SftBatch {
        input_ids: rows(&t[&format!("{prefix}input_ids")]),
        attention_mask: Some(rows(&t[&format!("{prefix}attention_mask")])),
        labels: rows(&t[&format!("{prefix}labels")]),
        position_ids: None,
    }
}

#[test]
fn dpo_every_loss_type_matches_trl_for_three_steps() {
    let (main, sft) = (json("dpo.json"), json("dpo_sft.json"));
    let runs: Vec<(&String, &Value)> =
        main["runs"].as_object().unwrap().iter().chain(sft["runs"].as_object().unwrap()).collect();
    assert_eq!(runs.len(), 17, "16 runs in dpo.json and `sft` in dpo_sft.json");
    let mut worst = 0.0f64;
    for (case, run) in runs {
        let conversational = run["conversational"].as_bool().unwrap_or(false);
        let batch = preference_batch(if conversational {
            "dpo_batch_conversational.safetensors"
        } else {
            "dpo_batch.safetensors"
        });
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
        for (step, row) in log(case, run).iter().enumerate() {
            let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
            worst = worst.max(compare(case, step + 1, &m, row));
        }
    }
    // 17 runs × 3 steps × 14 metrics (loss, grad_norm, learning_rate, entropy, num_tokens,
    // logits/{chosen,rejected}, mean_token_accuracy, rewards/{chosen,rejected,accuracies,margins},
    // logps/{chosen,rejected}).
    assert_no_failures(17 * 3 * 14);
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
    for (step, row) in log("reward", &spec).iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare("reward", step + 1, &m, row));
    }
    assert_no_failures(3 * 9);
    println!("reward: worst relative error {worst:.2e}");
}

#[test]
fn sft_trainer_matches_trl_for_three_steps() {
    let spec = json("sft.json");
    let batch = sft_batch(&tensors("sft_batch.safetensors"), "");
    let model = load("llama", true);
    let opt = optimizer(&model);
    let mut trainer = SftTrainer::new(model, opt);
    let mut worst = 0.0f64;
    for (step, row) in log("sft", &spec).iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare("sft", step + 1, &m, row));
    }
    assert_no_failures(3 * 6);
    println!("sft: worst relative error {worst:.2e}");
}

/// Two micro-batches of 2 (53 and 37 columns, unequal completion-token counts) accumulated
/// into each step: transformers normalises the summed token losses by the step's total
/// `num_items_in_batch`, so the loss and gradient equal the full batch's.
#[test]
fn sft_gradient_accumulation_matches_trl_for_three_steps() {
    let spec = json("sft_accum.json");
    assert_eq!(spec["gradient_accumulation_steps"], 2);
    let t = tensors("sft_accum_batch.safetensors");
    let micro = [sft_batch(&t, "micro0_"), sft_batch(&t, "micro1_")];
    let model = load("llama", true);
    let opt = optimizer(&model);
    let mut trainer = SftTrainer::new(model, opt);
    let mut worst = 0.0f64;
    for (step, row) in log("sft_accum", &spec).iter().enumerate() {
        let m = trainer.train_step(&micro).unwrap();
        worst = worst.max(compare("sft_accum", step + 1, &m, row));
    }
    assert_no_failures(3 * 6);
    println!("sft with accumulation: worst relative error {worst:.2e}");
}

#[test]
fn kto_trainer_matches_trl_for_three_steps() {
    let spec = json("kto.json");
    let t = tensors("kto_batch.safetensors");
    let batch = UnpairedBatch {
        input_ids: rows(&t["input_ids"]),
        attention_mask: rows(&t["attention_mask"]),
        completion_mask: rows(&t["completion_mask"]),
        kl_input_ids: Some(rows(&t["KL_input_ids"])),
        kl_attention_mask: Some(rows(&t["KL_attention_mask"])),
        kl_completion_mask: Some(rows(&t["KL_completion_mask"])),
        label: t["label"].to_vec1::<i64>().unwrap().into_iter().map(|l| l == 1).collect(),
    };
    let cfg: KtoConfig = serde_json::from_value(spec["config"].clone()).unwrap();
    let policy = load("llama", true);
    let opt = optimizer(&policy);
    let mut trainer = KtoTrainer::new(policy, Reference::Model(Box::new(load("llama", false))), cfg, opt).unwrap();
    let mut worst = 0.0f64;
    for (step, row) in log("kto", &spec).iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare("kto", step + 1, &m, row));
    }
    assert_no_failures(3 * 13);
    println!("kto: worst relative error {worst:.2e}");
}

#[test]
fn orpo_trainer_matches_trl_for_three_steps() {
    let spec = json("orpo.json");
    let batch = preference_batch("orpo_batch.safetensors");
    let cfg: OrpoConfig = serde_json::from_value(spec["config"].clone()).unwrap();
    let policy = load("llama", true);
    let opt = optimizer(&policy);
    let mut trainer = OrpoTrainer::new(policy, cfg, opt).unwrap();
    let mut worst = 0.0f64;
    for (step, row) in log("orpo", &spec).iter().enumerate() {
        let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
        worst = worst.max(compare("orpo", step + 1, &m, row));
    }
    assert_no_failures(3 * 14);
    println!("orpo: worst relative error {worst:.2e}");
}

#[test]
fn cpo_and_simpo_match_trl_for_three_steps() {
    let spec = json("cpo.json");
    let runs = spec["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 3, "cpo.json: sigmoid, simpo, cpo_simpo");
    let batch = preference_batch("cpo_batch.safetensors");
    let mut worst = 0.0f64;
    for (case, run) in runs {
        let mut cfg = run.as_object().unwrap().clone();
        cfg.remove("log");
        let cfg: CpoConfig = serde_json::from_value(Value::Object(cfg)).unwrap();
        let policy = load("llama", true);
        let opt = optimizer(&policy);
        let mut trainer = CpoTrainer::new(policy, cfg, opt).unwrap();
        for (step, row) in log(case, run).iter().enumerate() {
            let m = trainer.train_step(std::slice::from_ref(&batch)).unwrap();
            worst = worst.max(compare(case, step + 1, &m, row));
        }
    }
    assert_no_failures(3 * 3 * 12);
    println!("cpo/simpo: worst relative error {worst:.2e}");
}
