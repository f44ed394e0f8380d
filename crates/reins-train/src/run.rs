//! The training loop every trainer shares, and its run folder:
//!
//! ```text
//! output_dir/
//!   config.toml            resolved config (every key, defaults filled in)
//!   metrics.jsonl          one line per logging step, TRL's keys, plus `step` and `epoch`
//!   samples.jsonl          online runs: sampled completions and their rewards, every
//!                          `log_completions_steps` steps
//!   checkpoint-N/          HF folder transformers loads (config.json, model.safetensors,
//!                          tokenizer files), plus trainable.safetensors, optimizer.safetensors
//!                          and trainer_state.json for an exact resume
//! ```
//!
//! Data order is a seeded permutation per epoch, so a resumed run sees exactly the batches the
//! uninterrupted run would have seen; online trainers add their sampler counter and KL
//! controller to `trainer_state.json` ([`Trainer::state`]), so their resumed runs sample the
//! same completions too.
//!
//! The learning-rate schedule's position is saved beside the step (`schedule_step`): a trainer
//! may take several optimizer steps per step (GRPO's and RLOO's `num_iterations`), and the
//! schedule's length is sized for them by the caller.
//!
//! Under data parallelism ([`crate::parallel`]) every rank runs this loop on its share of each
//! batch; rank 0 alone writes the run folder.
//!
//! A run stops with an error, keeping the checkpoints written so far, when the loss is not
//! finite or the logged KL to the reference exceeds `max_kl`; with `max_kl` set, a step that
//! logs no KL is an error too (the limit would silently do nothing).

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_model::Model;
use serde_json::{json, Map, Value};

use crate::config::TrainingArgs;
use crate::optim::optimizer::Optimizer;
use crate::trainers::Metrics;
use crate::{Result, TrainError};

/// What the loop needs from a trainer. Trainers on fixed batches get it from
/// [`BatchTrainer`](crate::trainers::BatchTrainer) (their loss on one batch); online trainers,
/// whose step samples first, implement it themselves.
pub trait Trainer {
    type Batch;
    /// One optimizer step over micro-batches.
    fn train_step(&mut self, micro_batches: &[Self::Batch]) -> Result<Metrics>;
    /// Loss and metrics of a batch, no update.
    fn evaluate(&mut self, batch: &Self::Batch) -> Result<Metrics>;
    fn model(&self) -> &Model;
    fn optimizer(&mut self) -> &mut Optimizer;
    fn num_tokens(&mut self) -> &mut f64;
    /// Files that describe the model beside its weights, `(name, contents)`, written into every
    /// checkpoint (a segment reward model's `segment_reward.json`).
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    /// Tensors besides the trainable weights and the optimizer that an exact resume needs
    /// (e.g. a reference that TR-DPO keeps moving); saved as `trainer_extra.safetensors`.
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    fn load_extra_state(&mut self, _saved: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
    /// State besides weights and optimizer that an exact resume needs (an online trainer's
    /// sampler counter, KL controller); saved in `trainer_state.json` under `"trainer"`.
    fn state(&self) -> Value {
        Value::Null
    }
    /// Restores what [`Trainer::state`] saved.
    fn load_state(&mut self, _state: &Value) -> Result<()> {
        Ok(())
    }
    /// Completions sampled by the last step, with their rewards (online trainers).
    fn samples(&self) -> Vec<Sample> {
        Vec::new()
    }
    /// Whether the trainer wants the next step's micro-batches ahead of time
    /// ([`Trainer::upcoming`]): GRPO sampling the next batch while it learns from this one.
    fn wants_upcoming(&self) -> bool {
        false
    }
    /// The next step's micro-batches, given before each step but the last when
    /// [`Trainer::wants_upcoming`].
    fn upcoming(&mut self, _next: &[Self::Batch]) {}
}

/// One sampled completion, for `samples.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    pub reward: f32,
}

impl Sample {
    /// Samples from parallel rows.
    pub fn rows(prompts: &[Vec<u32>], completions: &[Vec<u32>], rewards: &[f32]) -> Vec<Sample> {
        prompts
            .iter()
            .zip(completions)
            .zip(rewards)
            .map(|((p, c), &r)| Sample { prompt: p.clone(), completion: c.clone(), reward: r })
            .collect()
    }
}

/// Events the caller (the CLI) shows: progress bars on a terminal, plain lines elsewhere.
pub trait Progress {
    fn start(&mut self, total_steps: usize, first_step: usize);
    fn step(&mut self, step: usize, metrics: &Metrics);
    fn log(&mut self, line: &str);
}

/// Prints nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: &Metrics) {}
    fn log(&mut self, _: &str) {}
}

/// Optimizer steps for `n` examples under `args` (and the data-parallel world's size).
pub fn total_steps(args: &TrainingArgs, n: usize) -> usize {
    if args.max_steps > 0 {
        return args.max_steps;
    }
    let per_step = global_batch(args) * args.gradient_accumulation_steps;
    (n.div_ceil(per_step) * args.num_train_epochs).max(1)
}

/// Examples in one micro-batch over all data-parallel ranks.
fn global_batch(args: &TrainingArgs) -> usize {
    args.per_device_train_batch_size * crate::parallel::world().world_size()
}

/// Example indices of micro-batch `m` (counted from the start of training) on rank `rank` of
/// `world` ranks: the `rank`-th slice of the global micro-batch, whose short last batch of an
/// epoch is filled from the epoch's start when there are several ranks (so their shares are equal).
fn micro_batch(args: &TrainingArgs, n: usize, m: usize, rank: usize, world: usize) -> (usize, Vec<usize>) {
    let bs = args.per_device_train_batch_size;
    let gbs = bs * world;
    let per_epoch = n.div_ceil(gbs).max(1);
    let epoch = m / per_epoch;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed.wrapping_add(epoch as u64)));
    let k = m % per_epoch;
    let mut global = order[k * gbs..((k + 1) * gbs).min(n)].to_vec();
    if world == 1 {
        return (epoch, global);
    }
    let fill: Vec<usize> = order.iter().cycle().take(gbs - global.len()).copied().collect();
    global.extend(fill);
    (epoch, global[rank * bs..(rank + 1) * bs].to_vec())
}

/// Trains to the end (or resumes), writing the run folder. `collate` turns example indices
/// into a batch; `eval_batches` are scored every `eval_steps` and at the end.
pub fn train<T: Trainer>(
    trainer: &mut T,
    args: &TrainingArgs,
    resolved_config: &Map<String, Value>,
    n_examples: usize,
    collate: &dyn Fn(&[usize]) -> Result<T::Batch>,
    eval_batches: &[T::Batch],
    progress: &mut dyn Progress,
) -> Result<RunSummary> {
    if n_examples == 0 {
        return Err(TrainError::Input(
            "the training set is empty after tokenization; check the dataset and max_length".into(),
        ));
    }
    let world = crate::parallel::world();
    let (rank, ranks) = (world.rank(), world.world_size());
    let lead = rank == 0;
    let mut quiet = Quiet;
    let progress: &mut dyn Progress = if lead { progress } else { &mut quiet };
    let out = &args.output_dir;
    if lead {
        std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
        write_config(out, resolved_config)?;
    }
    world.barrier()?;
    let total = total_steps(args, n_examples);
    let mut step = 0usize;
    if args.resume {
        if let Some(ck) = last_checkpoint(out) {
            step = load_checkpoint(trainer, args, &ck)?;
            progress.log(&format!("resuming from {} (step {step})", ck.display()));
        }
    }
    if ranks > 1 {
        progress.log(&format!(
            "data parallel: {ranks} ranks × {} examples = {} per micro-batch",
            args.per_device_train_batch_size,
            global_batch(args)
        ));
    }
    progress.start(total, step);
    let tokenizer = if args.log_completions_steps > 0 {
        reins_data::HfTokenizer::from_dir(&args.model_name_or_path).ok()
    } else {
        None
    };
    let mut last_metrics = Metrics::new();
    let mut window: Vec<Metrics> = Vec::new();
    // The epoch and this rank's micro-batches of step `s`.
    let step_batches = |s: usize| -> Result<(usize, Vec<T::Batch>)> {
        let mut epoch = 0;
        let mut micro = Vec::with_capacity(args.gradient_accumulation_steps);
        for i in 0..args.gradient_accumulation_steps {
            let (e, idx) = micro_batch(args, n_examples, s * args.gradient_accumulation_steps + i, rank, ranks);
            epoch = e;
            micro.push(collate(&idx)?);
        }
        Ok((epoch, micro))
    };
    // The next step's batches when the trainer asked for them a step early.
    let mut ahead: Option<(usize, Vec<T::Batch>)> = None;
    while step < total {
        let (epoch, micro) = match ahead.take() {
            Some(b) => b,
            None => step_batches(step)?,
        };
        if trainer.wants_upcoming() && step + 1 < total {
            let next = step_batches(step + 1)?;
            trainer.upcoming(&next.1);
            ahead = Some(next);
        }
        let m = crate::parallel::reduce_metrics(&trainer.train_step(&micro)?)?;
        let loss = m.get("loss").copied().unwrap_or(0.0);
        if !loss.is_finite() {
            return Err(TrainError::Diverged(format!(
                "loss became {loss} at step {}; stopped. The last good checkpoint is kept in {}; lower learning_rate or check the data",
                step + 1,
                out.display()
            )));
        }
        let kl = m.get("objective/kl").or_else(|| m.get("kl")).copied();
        if let Some(max) = args.max_kl {
            let kl = kl.ok_or_else(|| {
                TrainError::Config(format!(
                    "max_kl = {max} is set, but this trainer logged no KL to the reference (`objective/kl` or `kl`) \
                     at step {}; give it a reference model (the online commands do when max_kl is set) or remove max_kl",
                    step + 1
                ))
            })?;
            if kl.is_nan() || kl > max {
                let kept = last_checkpoint(out)
                    .map(|p| format!("the last good checkpoint is {}", p.display()))
                    .unwrap_or_else(|| "no checkpoint was written yet".into());
                return Err(TrainError::Diverged(format!(
                    "KL to the reference reached {kl:.4} at step {}, above max_kl = {max}; stopped ({kept}). \
                     Raise beta/kl_coef, lower learning_rate, or raise max_kl",
                    step + 1
                )));
            }
        }
        step += 1;
        if lead && args.log_completions_steps > 0 && step.is_multiple_of(args.log_completions_steps) {
            append_samples(out, step, &trainer.samples(), tokenizer.as_ref())?;
        }
        progress.step(step, &m);
        window.push(m);
        if step.is_multiple_of(args.logging_steps) || step == total {
            let mut avg = average(&window);
            window.clear();
            avg.insert("epoch".into(), (epoch + 1) as f64);
            append_metrics(out, step, &avg)?;
            last_metrics = avg;
        }
        if args.eval_steps > 0 && step.is_multiple_of(args.eval_steps) && !eval_batches.is_empty() && step != total {
            let e = evaluate(trainer, eval_batches)?;
            append_metrics(out, step, &e)?;
        }
        if (args.save_steps > 0 && step.is_multiple_of(args.save_steps)) || step == total {
            save_checkpoint(trainer, args, out, step)?;
        }
    }
    let eval = if eval_batches.is_empty() { Metrics::new() } else { evaluate(trainer, eval_batches)? };
    if !eval.is_empty() {
        append_metrics(out, step, &eval)?;
    }
    Ok(RunSummary { steps: step, last_metrics, eval, final_checkpoint: out.join(format!("checkpoint-{step}")) })
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: usize,
    pub last_metrics: Metrics,
    pub eval: Metrics,
    pub final_checkpoint: PathBuf,
}

fn evaluate<T: Trainer>(trainer: &mut T, batches: &[T::Batch]) -> Result<Metrics> {
    let all: Vec<Metrics> =
        batches.iter().map(|b| crate::parallel::reduce_metrics(&trainer.evaluate(b)?)).collect::<Result<_>>()?;
    Ok(average(&all).into_iter().filter(|(k, _)| k != "num_tokens").map(|(k, v)| (format!("eval_{k}"), v)).collect())
}

fn average(ms: &[Metrics]) -> Metrics {
    let mut out = Metrics::new();
    for m in ms {
        for (k, v) in m {
            *out.entry(k.clone()).or_insert(0.0) += v / ms.len() as f64;
        }
    }
    // Counters are cumulative: report the latest, not the mean.
    if let Some(last) = ms.last() {
        for k in ["num_tokens", "learning_rate"] {
            if let Some(v) = last.get(k) {
                out.insert(k.into(), *v);
            }
        }
    }
    out
}

fn io_err(p: &Path, e: std::io::Error) -> TrainError {
    TrainError::State(format!("{}: {e}", p.display()))
}

fn write_config(out: &Path, cfg: &Map<String, Value>) -> Result<()> {
    let clean: Map<String, Value> =
        cfg.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let text = toml::to_string(&Value::Object(clean)).map_err(|e| TrainError::State(e.to_string()))?;
    let p = out.join("config.toml");
    std::fs::write(&p, text).map_err(|e| io_err(&p, e))
}

fn append_samples(out: &Path, step: usize, samples: &[Sample], tok: Option<&reins_data::HfTokenizer>) -> Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let p = out.join("samples.jsonl");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| io_err(&p, e))?;
    for s in samples {
        let mut line =
            json!({"step": step, "reward": s.reward, "prompt_ids": s.prompt, "completion_ids": s.completion});
        if let Some(t) = tok {
            line["prompt"] = json!(t.decode(&s.prompt, false).unwrap_or_default());
            line["completion"] = json!(t.decode(&s.completion, false).unwrap_or_default());
        }
        writeln!(f, "{line}").map_err(|e| io_err(&p, e))?;
    }
    Ok(())
}

/// Appends one line `{"step": step, ...metrics}` to `out/metrics.jsonl` (on data-parallel rank
/// 0; the other ranks write nothing).
pub fn append_metrics(out: &Path, step: usize, m: &Metrics) -> Result<()> {
    if crate::parallel::world().rank() != 0 {
        return Ok(());
    }
    let p = out.join("metrics.jsonl");
    let mut line = Map::new();
    line.insert("step".into(), json!(step));
    for (k, v) in m {
        line.insert(k.clone(), json!(v));
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| io_err(&p, e))?;
    writeln!(f, "{}", Value::Object(line)).map_err(|e| io_err(&p, e))
}

/// The highest-numbered `checkpoint-N` folder with a complete trainer state.
pub fn last_checkpoint(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("trainer_state.json").exists().then_some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// Copies the tokenizer and generation files of model folder `from` that exist into `to`, so a
/// folder of saved weights loads on its own.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        let src = from.join(f);
        if src.exists() {
            std::fs::copy(&src, to.join(f)).map_err(|e| io_err(&src, e))?;
        }
    }
    Ok(())
}

/// Writes `checkpoint-{step}`: every rank calls it, rank 0 writes, and the others return once
/// the folder is complete.
fn save_checkpoint<T: Trainer>(trainer: &mut T, args: &TrainingArgs, out: &Path, step: usize) -> Result<()> {
    let world = crate::parallel::world();
    // The token count over all ranks (each counts its own share).
    let tokens = crate::parallel::sum_over_ranks(*trainer.num_tokens())?;
    if world.rank() == 0 {
        write_checkpoint(trainer, args, out, step, tokens)?;
    }
    world.barrier()
}

fn write_checkpoint<T: Trainer>(
    trainer: &mut T,
    args: &TrainingArgs,
    out: &Path,
    step: usize,
    tokens: f64,
) -> Result<()> {
    let dir = out.join(format!("checkpoint-{step}"));
    let tmp = out.join(format!(".checkpoint-{step}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let model = trainer.model();
    model.save_pretrained(&tmp)?;
    // Tokenizer and generation files travel with the weights so the folder is self-contained.
    copy_tokenizer_files(&args.model_name_or_path, &tmp)?;
    for (name, contents) in trainer.model_files()? {
        let p = tmp.join(&name);
        std::fs::write(&p, contents).map_err(|e| io_err(&p, e))?;
    }
    if model.lora.is_some() {
        model.save_adapter(&tmp.join("adapter"), &args.model_name_or_path.to_string_lossy())?;
    }
    let params: Vec<(String, Tensor)> =
        model.params().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    reins_model::weights::save_safetensors(&tmp.join("trainable.safetensors"), &params)?;
    trainer.optimizer().adamw.save_state(&tmp.join("optimizer.safetensors"))?;
    let extra = trainer.extra_state()?;
    if !extra.is_empty() {
        reins_model::weights::save_safetensors(&tmp.join("trainer_extra.safetensors"), &extra)?;
    }
    // The schedule's position is not always the step: PPO's and GRPO's several optimizer steps.
    let schedule_step = trainer.optimizer().step;
    let state = json!({
        "global_step": step,
        "schedule_step": schedule_step,
        "num_tokens": tokens,
        "global_batch": global_batch(args),
        "seed": args.seed,
        "trainer": trainer.state()
    });
    let p = tmp.join("trainer_state.json");
    std::fs::write(&p, state.to_string()).map_err(|e| io_err(&p, e))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| io_err(&dir, e))
}

fn load_checkpoint<T: Trainer>(trainer: &mut T, args: &TrainingArgs, dir: &Path) -> Result<usize> {
    let p = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
    let state: Value = serde_json::from_str(&text).map_err(|e| TrainError::State(format!("{}: {e}", p.display())))?;
    let step = state["global_step"].as_u64().unwrap_or(0) as usize;
    // The data order is counted in global micro-batches: a resume at another world size is
    // exact when the global batch is the same.
    let ranks = crate::parallel::world().world_size();
    if let Some(saved) = state["global_batch"].as_u64().map(|g| g as usize) {
        if saved != global_batch(args) {
            return Err(TrainError::Config(format!(
                "{} was written with {saved} examples per micro-batch over all ranks, this run has {}                  (per_device_train_batch_size {} × {ranks} ranks); set per_device_train_batch_size so that                  the product is {saved} to resume exactly",
                dir.display(),
                global_batch(args),
                args.per_device_train_batch_size
            )));
        }
    }
    let file = dir.join("trainable.safetensors");
    let saved = candle_core::safetensors::load(&file, trainer.model().device())
        .map_err(|e| TrainError::State(format!("{}: {e}", file.display())))?;
    for (name, var) in trainer.model().params() {
        let t = saved.get(name).ok_or_else(|| {
            TrainError::State(format!("{} has no `{name}`; was it written by this configuration?", file.display()))
        })?;
        var.set(t)?;
    }
    trainer.optimizer().adamw.load_state(&dir.join("optimizer.safetensors"))?;
    let extra = dir.join("trainer_extra.safetensors");
    if extra.exists() {
        let saved = candle_core::safetensors::load(&extra, trainer.model().device())
            .map_err(|e| TrainError::State(format!("{}: {e}", extra.display())))?;
        trainer.load_extra_state(&saved)?;
    }
    // Checkpoints written before `schedule_step` was saved counted one scheduler step per step.
    trainer.optimizer().step = state["schedule_step"].as_u64().map_or(step, |s| s as usize);
    // Each rank counts its share; their sum is the saved total.
    *trainer.num_tokens() = state["num_tokens"].as_f64().unwrap_or(0.0) / ranks as f64;
    if !state["trainer"].is_null() {
        trainer.load_state(&state["trainer"]).map_err(|e| TrainError::State(format!("{}: {e}", p.display())))?;
    }
    Ok(step)
}
