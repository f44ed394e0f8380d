//! `reins bench`: the benchmark shapes of the Python reference, f32, on the device
//! `REINS_DEVICE` selects (the CPU unless a `cuda` build finds a GPU).
//!
//! - `reference` (`shared/bench`): a 4-layer Llama, d_model 256, 4 heads, MLP 1024, vocab 4096
//!   (6.29 M parameters): training step, sampling, DPO (fixed lengths, and the lengths of the
//!   HH-RLHF pairs TRL's DPO bench trains on) and GRPO throughput.
//! - `qwen2-0.5b` (`bench/qwen2-0.5b-shape/config.json`, anchor `bench/torch_qwen2_shape.py`):
//!   the Qwen2-0.5B layout at vocab 32,000 (386 M parameters): training step and DPO, with
//!   peak resident memory.

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
    /// Timed repetitions of each measurement, after one warm-up [default: 5, 2 for qwen2-0.5b].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Run one measurement only (for profiling): train, generate, dpo, dpo-hh or grpo; or
    /// `gemm`, the f32 matrix products of the training step's shapes (not run otherwise).
    #[arg(long, value_parser = ["train", "generate", "dpo", "dpo-hh", "grpo", "gemm"])]
    pub only: Option<String>,
    /// The model shape: `reference` (6.29 M parameters) or `qwen2-0.5b` (386 M).
    #[arg(long, default_value = "reference", value_parser = ["reference", "qwen2-0.5b"])]
    pub shape: String,
}

/// The Qwen2-0.5B layout at vocab 32,000, as committed beside its PyTorch anchor.
const QWEN2_SHAPE: &str = include_str!("../../../../bench/qwen2-0.5b-shape/config.json");

/// One benchmark shape: the model and the sizes of each measurement.
struct Shape {
    name: &'static str,
    config: serde_json::Value,
    /// Training step: rows x tokens.
    train: (usize, usize),
    /// DPO: pairs per step, prompt tokens, answer tokens.
    dpo: (usize, usize, usize),
    /// Sampling, GRPO and DPO at HH lengths run on the reference shape only.
    online: bool,
    reps: usize,
}

impl Shape {
    fn named(name: &str) -> Result<Shape> {
        Ok(match name {
            "qwen2-0.5b" => Shape {
                name: "Qwen2-0.5B layout, vocab 32000",
                config: serde_json::from_str(QWEN2_SHAPE)?,
                train: (4, 512),
                dpo: (4, 256, 256),
                online: false,
                reps: 2,
            },
            _ => Shape {
                name: "Llama 4 x 256, 4 heads, MLP 1024, vocab 4096",
                config: llama_config(4096, 256, 4, 4, 4, 1024, 512),
                train: (8, 128),
                dpo: (8, 64, 64),
                online: true,
                reps: 5,
            },
        })
    }

    /// Seeded random weights (the same on every device) on `device`.
    fn model(&self, trainable: bool, device: &Device) -> Result<Model> {
        let cfg = ModelConfig::from_value(self.config.clone())?;
        let mut w = random_weights(&cfg, 0, device)?;
        Ok(Model::from_weights(cfg, &mut w, device, &LoadOptions { trainable, ..Default::default() })?)
    }

    fn vocab(&self) -> u32 {
        self.config["vocab_size"].as_u64().unwrap_or(4096) as u32
    }
}

fn random_rows(rng: &mut impl Rng, vocab: u32, rows: usize, len: usize) -> Vec<Vec<u32>> {
    (0..rows).map(|_| (0..len).map(|_| rng.random_range(4..vocab)).collect()).collect()
}

/// Median seconds of `reps` calls after one warm-up, and the peak resident memory (MiB) while
/// they ran (`None` where Linux' `/proc` is not there).
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, Option<f64>)> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok((t[t.len() / 2], peak_rss_mib()))
}

/// Starts a new peak-memory window: writing 5 to `clear_refs` resets the kernel's `VmHWM`.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last [`reset_peak_rss`], in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One measurement's result: median seconds and peak memory.
type Measured = Option<(f64, Option<f64>)>;

pub fn run(a: BenchArgs) -> Result<()> {
    let shape = Shape::named(&a.shape)?;
    let reps = a.reps.unwrap_or(shape.reps);
    if a.only.as_deref() == Some("gemm") {
        return gemm(&shape, reps, a.json);
    }
    let on = |name: &str| a.only.as_deref().is_none_or(|o| o == name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let dev = reins_model::default_device()?;
    let n_params: usize = shape.model(true, &dev)?.params().iter().map(|(_, v)| v.elem_count()).sum();
    let train = if on("train") { Some(train_step(&shape, &dev, reps, &mut rng)?) } else { None };
    let generate = if on("generate") && shape.online { Some(sampling(&shape, &dev, reps, &mut rng)?) } else { None };
    let dpo = if on("dpo") { Some(dpo_step(&shape, &dev, reps, &mut rng)?) } else { None };
    let dpo_hh = if on("dpo-hh") && shape.online { Some(dpo_hh_step(&shape, &dev, reps, &mut rng)?) } else { None };
    let grpo = if on("grpo") && shape.online { Some(grpo_step(&shape, &dev, reps, &mut rng)?) } else { None };
    let device = if dev.is_cuda() { "CUDA" } else { "CPU" };

    let (rows, len) = shape.train;
    let (pairs, prompt, answer) = shape.dpo;
    let rate = |m: &Measured, per_call: f64| m.map(|(s, _)| per_call / s);
    let generate_tok_s = rate(&generate, 8.0 * 64.0);
    let dpo_pairs_s = rate(&dpo, pairs as f64);
    let dpo_hh_pairs_s = rate(&dpo_hh, 8.0);
    let grpo_completions_s = rate(&grpo, 8.0);
    if a.json {
        let mem = |m: &Measured| m.and_then(|(_, p)| p);
        println!(
            "{}",
            json!({
                "shape": a.shape,
                "parameters": n_params,
                "device": device,
                "threads": rayon_threads(),
                "train_step_s": train.map(|(s, _)| s),
                "train_peak_rss_mib": mem(&train),
                "generate_tok_s": generate_tok_s,
                "dpo_pairs_s": dpo_pairs_s,
                "dpo_peak_rss_mib": mem(&dpo),
                "dpo_hh_pairs_s": dpo_hh_pairs_s,
                "grpo_completions_s": grpo_completions_s,
            })
        );
    } else {
        println!("benchmark shape: {} ({n_params} parameters), f32, {device}", shape.name);
        let row = |what: String, value: Option<f64>, digits: usize, m: &Measured| {
            if let Some(v) = value {
                let peak = m.and_then(|(_, p)| p).map(|p| format!("   peak {p:.0} MiB")).unwrap_or_default();
                // Small values (the large shape's rates) keep a few significant digits.
                let digits = if v < 1.0 { digits.max(4) } else { digits };
                println!("{what:<56} {:>10}{peak}", format!("{v:.digits$}"));
            }
        };
        row(format!("training step, batch {rows} x {len} (s)"), train.map(|(s, _)| s), 3, &train);
        row("sampling, batch 8, 16 + 64 tokens (tokens/s)".into(), generate_tok_s, 0, &None);
        row(format!("DPO, {pairs} pairs/step, length {} (pairs/s)", prompt + answer), dpo_pairs_s, 2, &dpo);
        row("DPO, 8 pairs/step, HH lengths <= 128 (pairs/s)".into(), dpo_hh_pairs_s, 2, &dpo_hh);
        row("GRPO, 2 x 4 x 64 tokens (completions/s)".into(), grpo_completions_s, 2, &None);
    }
    Ok(())
}

/// Training step: forward + token log-probs + backward + clip + AdamW.
fn train_step(shape: &Shape, dev: &Device, reps: usize, rng: &mut impl Rng) -> Result<(f64, Option<f64>)> {
    let (rows, len) = shape.train;
    let m = shape.model(true, dev)?;
    let opt = Optimizer::new(m.params(), &optim(), 1_000)?;
    let mut sft = SftTrainer::new(m, opt);
    let ids = random_rows(rng, shape.vocab(), rows, len);
    let batch = SftBatch {
        labels: ids.iter().map(|r| r.iter().map(|&x| x as i64).collect()).collect(),
        attention_mask: Some(vec![vec![1; len]; rows]),
        input_ids: ids,
        position_ids: None,
    };
    reset_peak_rss();
    time(reps, || {
        sft.train_step(std::slice::from_ref(&batch))?;
        Ok(())
    })
}

/// Sampling: batch 8, 16 prompt + 64 new tokens.
fn sampling(shape: &Shape, dev: &Device, reps: usize, rng: &mut impl Rng) -> Result<(f64, Option<f64>)> {
    let g = shape.model(false, dev)?;
    let prompts = random_rows(rng, shape.vocab(), 8, 16);
    let cfg = SamplingConfig { max_new_tokens: 64, stop_on_eos: false, ..Default::default() };
    reset_peak_rss();
    time(reps, || {
        generate(&g, &prompts, &cfg, Hooks::default())?;
        Ok(())
    })
}

/// DPO: pairs whose two answers follow one prompt (HH-like: half prompt, half answer), the
/// policy against a frozen reference, sigmoid loss.
fn dpo_step(shape: &Shape, dev: &Device, reps: usize, rng: &mut impl Rng) -> Result<(f64, Option<f64>)> {
    let (pairs, prompt, answer) = shape.dpo;
    let policy = shape.model(true, dev)?;
    let opt = Optimizer::new(policy.params(), &optim(), 1_000)?;
    let reference = Reference::Model(Box::new(shape.model(false, dev)?));
    let mut dpo = DpoTrainer::new(policy, reference, DpoConfig::default(), opt)?;
    let v = shape.vocab();
    let rows: Vec<_> = (0..pairs)
        .map(|_| {
            (
                random_rows(rng, v, 1, prompt).remove(0),
                random_rows(rng, v, 1, answer).remove(0),
                random_rows(rng, v, 1, answer).remove(0),
            )
        })
        .collect();
    let pref = preference_batch(&rows);
    reset_peak_rss();
    time(reps, || {
        dpo.train_step(std::slice::from_ref(&pref))?;
        Ok(())
    })
}

/// Token lengths `[prompt, chosen, rejected]` of the HH-RLHF pairs that
/// `shared/bench/trl_dpo_bench.py` trains on, as TRL sees them (its tokenizer, EOS after the
/// answer, prompts of 128 tokens or more dropped, rows cut to 128): `bench/hh_dpo_lengths.py`.
#[rustfmt::skip]
const HH_DPO_LENGTHS: [[usize; 3]; 68] = [
    [94, 34, 34], [20, 92, 78], [77, 42, 33], [73, 27, 13], [17, 14, 12], [22, 9, 106], [75, 42, 53], [25, 23, 55],
    [28, 100, 63], [70, 15, 38], [24, 104, 4], [55, 13, 16], [80, 26, 25], [105, 23, 23], [71, 38, 43], [109, 18, 19],
    [114, 14, 14], [76, 12, 38], [73, 2, 6], [27, 81, 36], [99, 29, 19], [81, 47, 47], [86, 14, 30], [48, 26, 20],
    [18, 36, 30], [81, 47, 47], [123, 5, 5], [64, 48, 10], [14, 15, 8], [40, 8, 44], [71, 57, 57], [53, 46, 46],
    [109, 19, 19], [22, 19, 106], [126, 2, 2], [47, 64, 59], [113, 9, 15], [70, 58, 54], [24, 13, 11], [18, 20, 11],
    [28, 98, 42], [81, 10, 28], [80, 48, 48], [16, 38, 14], [92, 36, 15], [100, 20, 6], [33, 11, 36], [110, 14, 13],
    [90, 38, 38], [76, 35, 10], [18, 32, 95], [47, 48, 40], [16, 18, 18], [15, 11, 16], [32, 8, 28], [103, 25, 25],
    [117, 11, 11], [109, 19, 19], [118, 10, 10], [17, 26, 23], [120, 8, 8], [36, 12, 49], [18, 31, 10], [20, 16, 25],
    [18, 10, 5], [29, 58, 36], [32, 54, 19], [27, 60, 12],
];

/// DPO at the lengths TRL's DPO bench trains on: each step the next 8 pairs of
/// [`HH_DPO_LENGTHS`] (random tokens), right-padded to the step's longest row as a data loader
/// pads them; the same trainer and loss as [`dpo_step`].
fn dpo_hh_step(shape: &Shape, dev: &Device, reps: usize, rng: &mut impl Rng) -> Result<(f64, Option<f64>)> {
    let policy = shape.model(true, dev)?;
    let opt = Optimizer::new(policy.params(), &optim(), 1_000)?;
    let reference = Reference::Model(Box::new(shape.model(false, dev)?));
    let mut dpo = DpoTrainer::new(policy, reference, DpoConfig::default(), opt)?;
    let v = shape.vocab();
    let mut row = |n: usize| random_rows(rng, v, 1, n).remove(0);
    let pairs: Vec<_> = HH_DPO_LENGTHS.iter().map(|&[p, c, r]| (row(p), row(c), row(r))).collect();
    let batches: Vec<_> = pairs.chunks(8).filter(|c| c.len() == 8).map(preference_batch).collect();
    let mut step = 0;
    reset_peak_rss();
    // A median over every batch at least, as the lengths differ from step to step.
    time(reps.max(batches.len()), || {
        dpo.train_step(std::slice::from_ref(&batches[step % batches.len()]))?;
        step += 1;
        Ok(())
    })
}

/// A preference batch of `(prompt, chosen, rejected)` token rows, right-padded to the longest:
/// rows `0..pairs` are the chosen answers, `pairs..2·pairs` the rejected ones.
fn preference_batch(pairs: &[(Vec<u32>, Vec<u32>, Vec<u32>)]) -> PreferenceBatch {
    let answers = pairs.iter().map(|(p, c, _)| (p, c)).chain(pairs.iter().map(|(p, _, r)| (p, r)));
    let len = pairs.iter().map(|(p, c, r)| p.len() + c.len().max(r.len())).max().unwrap_or(0);
    let (mut input_ids, mut attention_mask, mut completion_mask) = (vec![], vec![], vec![]);
    for (p, a) in answers {
        let fill = len - p.len() - a.len();
        input_ids.push([&p[..], a, &vec![0; fill]].concat());
        attention_mask.push([vec![1u8; p.len() + a.len()], vec![0; fill]].concat());
        completion_mask.push([vec![0u8; p.len()], vec![1; a.len()], vec![0; fill]].concat());
    }
    PreferenceBatch { input_ids, attention_mask, completion_mask, margin: None, strength: None, ref_logps: None }
}

/// GRPO: 2 prompts x 4 generations x 64 new tokens, a rule reward, k3 KL to a frozen
/// reference (beta 0.04), as `shared/bench/trl_grpo_bench.py`. Prompts have HH lengths (the
/// last 200 characters of an HH prompt: ~40-60 tokens).
fn grpo_step(shape: &Shape, dev: &Device, reps: usize, rng: &mut impl Rng) -> Result<(f64, Option<f64>)> {
    let policy = shape.model(true, dev)?;
    let opt = Optimizer::new(policy.params(), &optim(), 1_000)?;
    let reward = RuleReward::named("length", |_, c| -((c.len() as f32 - 20.0).abs()) / 20.0);
    let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
    let loss = GrpoLossConfig { beta: 0.04, max_completion_length: 64, ..Default::default() };
    let reference = Reference::Model(Box::new(shape.model(false, dev)?));
    let mut grpo = GrpoTrainer::new(policy, Some(reference), Box::new(reward), cfg, loss, opt)?;
    let prompts: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let len = rng.random_range(40..=60);
            random_rows(rng, shape.vocab(), 1, len).remove(0)
        })
        .collect();
    reset_peak_rss();
    time(reps, || {
        grpo.train_step(std::slice::from_ref(&prompts))?;
        Ok(())
    })
}

/// GFLOP/s of candle's f32 matrix product on the shapes of one training step, in the three
/// layouts a linear layer uses (forward `x·Wᵀ`, input gradient `dY·W`, weight gradient
/// `dYᵀ·x`), and a square 2048³ product for the machine's peak; `bench/torch_gemm_shapes.py`
/// times PyTorch's on the same.
fn gemm(shape: &Shape, reps: usize, as_json: bool) -> Result<()> {
    let c = &shape.config;
    let get = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
    let (d, ff, v) = (get("hidden_size"), get("intermediate_size"), get("vocab_size"));
    let rows = shape.train.0 * shape.train.1;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut randn = |r: usize, c: usize| -> Result<candle_core::Tensor> {
        let data: Vec<f32> = (0..r * c).map(|_| rng.random::<f32>() - 0.5).collect();
        Ok(candle_core::Tensor::from_vec(data, (r, c), &Device::Cpu)?)
    };
    let mut out = Vec::new();
    let mut cases = vec![(2048, 2048, 2048)];
    cases.extend([(d, d), (d, ff), (ff, d), (d, v)].map(|(i, o)| (rows, i, o)));
    for (m, k, n) in cases {
        // x [m, k], W [n, k], dY [m, n]
        let (x, w, dy) = (randn(m, k)?, randn(n, k)?, randn(m, n)?);
        let flops = 2.0 * (m * k * n) as f64;
        for name in ["x·Wᵀ", "dY·W", "dYᵀ·x"] {
            let (s, _) = time(reps.max(5), || {
                match name {
                    "x·Wᵀ" => x.matmul(&w.t()?)?,
                    "dY·W" => dy.matmul(&w)?,
                    _ => dy.t()?.matmul(&x)?,
                };
                Ok(())
            })?;
            out.push((format!("{name} {m}x{k}x{n}"), flops / s / 1e9));
        }
    }
    if as_json {
        println!("{}", serde_json::Value::Object(out.into_iter().map(|(k, g)| (k, json!(g))).collect()));
    } else {
        println!(
            "f32 matrix products, {} threads (GFLOP/s, median of {} after a warm-up)",
            rayon_threads(),
            reps.max(5)
        );
        for (name, g) in out {
            println!("{name:<28} {g:>8.1}");
        }
    }
    Ok(())
}

fn optim() -> OptimConfig {
    OptimConfig { learning_rate: 1e-4, ..Default::default() }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
