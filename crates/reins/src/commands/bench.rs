//! `reins bench`: the benchmark shape of the Python reference (`shared/bench`): a 4-layer
//! Llama, d_model 256, 4 heads, MLP 1024, vocab 4096 (6.29 M parameters), f32, on
//! the device `REINS_DEVICE` selects (the CPU unless a `cuda` build finds a GPU).

use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use rand::{Rng, SeedableRng};
use reins_data::collate::{PreferenceBatch, SftBatch};
use reins_model::generate::{generate, Hooks};
use reins_model::init::{llama_config, random_weights};
use reins_model::{LoadOptions, Model, ModelConfig, SamplingConfig};
use reins_train::losses::ppo::GrpoLossConfig;
use reins_train::losses::DpoConfig;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::rewards::RuleReward;
use reins_train::run::Trainer as _;
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::grpo::{GrpoConfig, GrpoTrainer};
use reins_train::trainers::sft::SftTrainer;
use serde_json::json;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed repetitions of each measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Run one measurement only (for profiling): train, generate, dpo or grpo.
    #[arg(long, value_parser = ["train", "generate", "dpo", "grpo"])]
    pub only: Option<String>,
}

const VOCAB: usize = 4096;

fn build_model(trainable: bool, device: &Device) -> Result<Model> {
    let cfg = ModelConfig::from_value(llama_config(VOCAB, 256, 4, 4, 4, 1024, 512))?;
    // The same weights on every device (drawn on the host, then copied).
    let mut w = random_weights(&cfg, 0, device)?;
    Ok(Model::from_weights(cfg, &mut w, device, &LoadOptions { trainable, ..Default::default() })?)
}

fn random_rows(rng: &mut impl Rng, rows: usize, len: usize) -> Vec<Vec<u32>> {
    (0..rows).map(|_| (0..len).map(|_| rng.random_range(4..VOCAB as u32)).collect()).collect()
}

/// Median seconds of `reps` calls after one warm-up (NaN when skipped).
fn time(reps: usize, skip: bool, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    if skip {
        return Ok(f64::NAN);
    }
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

pub fn run(a: BenchArgs) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let optim = OptimConfig { learning_rate: 1e-4, ..Default::default() };
    let device = reins_model::default_device()?;
    let model = |trainable| build_model(trainable, &device);

    // Training step: batch 8 x 128, forward + token log-probs + backward + clip + AdamW.
    let m = model(true)?;
    let n_params: usize = m.params().iter().map(|(_, v)| v.elem_count()).sum();
    let opt = Optimizer::new(m.params(), &optim, 1_000)?;
    let mut sft = SftTrainer::new(m, opt);
    let ids = random_rows(&mut rng, 8, 128);
    let batch = SftBatch {
        labels: ids.iter().map(|r| r.iter().map(|&x| x as i64).collect()).collect(),
        attention_mask: Some(vec![vec![1; 128]; 8]),
        input_ids: ids,
        position_ids: None,
    };
    let on = |name: &str| a.only.as_deref().is_none_or(|o| o == name);
    let reps = |name: &str| if on(name) { a.reps } else { 0 };
    let skip = |name: &str| !on(name);
    let train_step_s = time(reps("train"), skip("train"), || {
        sft.train_step(std::slice::from_ref(&batch))?;
        Ok(())
    })?;

    // Sampling: batch 8, 16 prompt + 64 new tokens.
    let g = model(false)?;
    let prompts = random_rows(&mut rng, 8, 16);
    let cfg = SamplingConfig { max_new_tokens: 64, stop_on_eos: false, ..Default::default() };
    let gen_s = time(reps("generate"), skip("generate"), || {
        generate(&g, &prompts, &cfg, Hooks::default())?;
        Ok(())
    })?;
    let generate_tok_s = 8.0 * 64.0 / gen_s;

    // DPO: 8 pairs per step at max_length 128 (prompt 64 + completion 64, HH-like lengths).
    let policy = model(true)?;
    let opt = Optimizer::new(policy.params(), &optim, 1_000)?;
    let mut dpo = DpoTrainer::new(policy, Reference::Model(Box::new(model(false)?)), DpoConfig::default(), opt)?;
    let pref = PreferenceBatch {
        input_ids: random_rows(&mut rng, 16, 128),
        attention_mask: vec![vec![1; 128]; 16],
        completion_mask: vec![[vec![0u8; 64], vec![1u8; 64]].concat(); 16],
        margin: None,
        strength: None,
        ref_logps: None,
    };
    let dpo_s = time(reps("dpo"), skip("dpo"), || {
        dpo.train_step(std::slice::from_ref(&pref))?;
        Ok(())
    })?;
    let dpo_pairs_s = 8.0 / dpo_s;

    // GRPO: 2 prompts x 4 generations x 64 new tokens, a rule reward, k3 KL to a frozen
    // reference (beta 0.04), as `shared/bench/trl_grpo_bench.py`. Prompts have HH lengths
    // (the last 200 characters of an HH prompt: ~40-60 tokens).
    let policy = model(true)?;
    let opt = Optimizer::new(policy.params(), &optim, 1_000)?;
    let reward = RuleReward::named("length", |_, c| -((c.len() as f32 - 20.0).abs()) / 20.0);
    let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
    let loss = GrpoLossConfig { beta: 0.04, max_completion_length: 64, ..Default::default() };
    let reference = Reference::Model(Box::new(model(false)?));
    let mut grpo = GrpoTrainer::new(policy, Some(reference), Box::new(reward), cfg, loss, opt)?;
    let grpo_prompts: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let len = rng.random_range(40..=60);
            random_rows(&mut rng, 1, len).remove(0)
        })
        .collect();
    let grpo_s = time(reps("grpo"), skip("grpo"), || {
        grpo.train_step(std::slice::from_ref(&grpo_prompts))?;
        Ok(())
    })?;
    let grpo_completions_s = 8.0 / grpo_s;

    if a.json {
        println!(
            "{}",
            json!({
                "parameters": n_params,
                "device": device_name(&device),
                "threads": rayon_threads(),
                "train_step_s": train_step_s,
                "generate_tok_s": generate_tok_s,
                "dpo_pairs_s": dpo_pairs_s,
                "grpo_completions_s": grpo_completions_s,
            })
        );
    } else {
        println!(
            "benchmark shape: Llama 4 x 256, 4 heads, MLP 1024, vocab 4096 ({n_params} parameters), f32, {}",
            device_name(&device)
        );
        println!("{:<52} {:>10}", "training step, batch 8 x 128 (s)", format!("{train_step_s:.3}"));
        println!("{:<52} {:>10}", "sampling, batch 8, 16 + 64 tokens (tokens/s)", format!("{generate_tok_s:.0}"));
        println!("{:<52} {:>10}", "DPO, 8 pairs/step, length 128 (pairs/s)", format!("{dpo_pairs_s:.2}"));
        println!("{:<52} {:>10}", "GRPO, 2 x 4 x 64 tokens (completions/s)", format!("{grpo_completions_s:.2}"));
    }
    Ok(())
}

fn device_name(d: &Device) -> &'static str {
    if d.is_cuda() {
        "CUDA"
    } else {
        "CPU"
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
