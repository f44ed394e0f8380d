//! `reins best-of-n --model DIR --prompts FILE --n 8 --reward SPEC --out best.jsonl [--all all.jsonl]`:
//! rejection sampling. Writes the best completion of each prompt in TRL's prompt/completion
//! form (usable as SFT data, or as the answer at inference), and optionally every scored sample.
//!
//! `--reward` is `length`, `contains:<text>`, an `http://` scorer, a reward model folder, a
//! reward-ensemble folder from `reins reward` (its own aggregation), or `lcb:<λ>:<dir>` (the
//! pessimistic reward `r − λ·σ` of the reward model whose head posterior `reins reward-stats
//! fit` wrote into `dir`); several `--reward` flags form an ensemble reduced by `--ensemble`
//! (mean or min).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::tokenize::tokenize_prompt;
use reins_data::{HfTokenizer, Text};
use reins_model::{LoadOptions, Model, SamplingConfig};
use reins_train::best_of_n::best_of_n;
use reins_train::losses::reward::EnsembleAggregation;
use reins_train::rewards::{EnsembleReward, RewardSource};
use serde_json::{json, Value};

use super::online::{prompt_of, reward_from_spec};

#[derive(clap::Args)]
pub struct BestOfNArgs {
    /// A Hugging Face model folder (the policy that samples).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompts: any file `reins data` reads with a `prompt` (JSONL, JSON, Parquet, gzip).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Samples per prompt.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// `length`, `contains:<text>`, `http://host:port/path`, a reward model folder, a
    /// reward-ensemble folder (with `ensemble.json`), `lcb:<λ>:<posterior dir>` (pessimistic
    /// `r − λ·σ`), `fusion:<reward model dir>:<its training pairs>` (RewardFusion),
    /// `principles:<dir or steering file.toml>` (RLBFF: steer by the principles you choose) or
    /// any other spec of the online commands' `reward`; repeat for an ensemble.
    #[arg(long, required = true)]
    pub reward: Vec<String>,
    /// How an ensemble of rewards is reduced: `mean` or `min`.
    #[arg(long, default_value = "mean")]
    pub ensemble: String,
    /// Where the best completion of each prompt goes (JSONL: prompt, completion, score).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every scored sample here (JSONL: prompt, completion, score, best).
    #[arg(long)]
    pub all: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompts per generation batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seconds to wait for an http:// scorer.
    #[arg(long, default_value_t = 30.0)]
    pub reward_timeout: f64,
}

pub fn run(a: BestOfNArgs) -> Result<()> {
    if a.n == 0 || a.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    if !(a.reward_timeout > 0.0 && a.reward_timeout.is_finite()) {
        bail!("--reward-timeout must be a positive number of seconds");
    }
    let device = reins_model::default_device()?;
    let tok = Arc::new(HfTokenizer::from_dir(&a.model)?);
    let model = Model::load(&a.model, &device, &LoadOptions::default())?;
    let timeout = std::time::Duration::from_secs_f64(a.reward_timeout);
    let mut members: Vec<Box<dyn RewardSource>> = Vec::new();
    for spec in &a.reward {
        match reward_from_spec(spec, &tok, a.max_new_tokens, &device, timeout, true)? {
            Some(r) => members.push(Box::new(reins_train::rewards::SummedTokens(r))),
            None => bail!(
                "--reward `{spec}`: use length, contains:<text>, an http://host:port/path scorer, a reward model \
                 folder (with config.json), a reward-ensemble folder (with ensemble.json), lcb:<λ>:<posterior dir> or \
                 fusion:<reward model dir>:<its training pairs>"
            ),
        }
    }
    let reward: Box<dyn RewardSource> = if members.len() == 1 {
        members.remove(0)
    } else {
        let aggregation = match a.ensemble.as_str() {
            "mean" => EnsembleAggregation::Mean,
            "min" => EnsembleAggregation::Min,
            other => bail!("--ensemble `{other}`: use mean or min"),
        };
        Box::new(EnsembleReward { members, aggregation })
    };
    let loaded = load(&a.prompts, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let texts: Vec<Text> = loaded.records.iter().filter_map(prompt_of).cloned().collect();
    if texts.is_empty() {
        bail!("{}: no prompts found (need a `prompt` column)", a.prompts.display());
    }
    let prompts: Vec<Vec<u32>> =
        texts.iter().map(|p| tokenize_prompt(&tok, p)).collect::<std::result::Result<_, _>>()?;
    let sampling = SamplingConfig {
        max_new_tokens: a.max_new_tokens,
        do_sample: true,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: 0.0,
        seed: a.seed,
        stop_on_eos: true,
    };
    sampling.validate()?;
    let results = best_of_n(&model, &prompts, a.n, &sampling, reward.as_ref(), a.batch_size)?;

    let completion = |prompt: &Text, ids: &[u32]| -> Result<Value> {
        let text = tok.decode(ids, true)?;
        Ok(if prompt.is_chat() { json!([{"role": "assistant", "content": text}]) } else { json!(text) })
    };
    let create = |p: &PathBuf| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));
    let mut best_out = std::io::BufWriter::new(create(&a.out)?);
    let mut all_out = a.all.as_ref().map(create).transpose()?.map(std::io::BufWriter::new);
    let (mut best_sum, mut mean_sum) = (0.0f64, 0.0f64);
    for (c, prompt) in results.iter().zip(&texts) {
        let line =
            json!({"prompt": prompt, "completion": completion(prompt, c.best_completion())?, "score": c.best_score()});
        writeln!(best_out, "{line}").with_context(|| format!("writing {}", a.out.display()))?;
        if let Some(w) = all_out.as_mut() {
            for (j, ids) in c.completions.iter().enumerate() {
                let line = json!({"prompt": prompt, "completion": completion(prompt, ids)?, "score": c.scores[j], "best": j == c.best});
                writeln!(w, "{line}").context("writing --all")?;
            }
        }
        best_sum += c.best_score() as f64;
        mean_sum += c.scores.iter().map(|&x| x as f64).sum::<f64>() / c.scores.len() as f64;
    }
    best_out.flush()?;
    if let Some(mut w) = all_out {
        w.flush()?;
    }
    let k = results.len() as f64;
    println!(
        "{} prompts × {} samples: mean reward {:.4}, best-of-{} reward {:.4}; wrote {}",
        results.len(),
        a.n,
        mean_sum / k,
        a.n,
        best_sum / k,
        a.out.display()
    );
    Ok(())
}
