//! `reins pit data|improve`: PIT (implicit self-improvement, Wang et al. 2024) with reins'
//! trainers ([`reins_train::pit`]).
//!
//! `reins pit data --dataset pairs.jsonl --out pit/` turns preference pairs into the three data
//! sets of the recipe: `sft.jsonl` (`x ⊕ y_l → y_w`, for `reins sft`), `gap_pairs.jsonl` (the
//! gap reward model's four comparisons per pair, whole conversations as `chosen`/`rejected`, for
//! `reins reward`) and `prompts.jsonl` (conditional prompts `x ⊕ y_l`, for `reins rloo` / `grpo`
//! / `ppo` with the gap reward model as `reward_model_path`). `reins pit improve` runs the
//! inference loop: `y_0` from the policy, then `--rounds` improvements by the PIT model, each
//! scored by `--reward` when given.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::tokenize::tokenize_prompt;
use reins_data::{HfTokenizer, Meta, Record, Text};
use reins_model::{LoadOptions, Model, SamplingConfig};
use reins_train::pit::{gap_comparisons, improve, PitTemplate};
use serde_json::{json, Value};

use super::online::{prompt_of, reward_from_spec};

#[derive(clap::Subcommand)]
pub enum PitCmd {
    /// Preference pairs → PIT's SFT data, gap-reward-model pairs and conditional RL prompts.
    Data(DataArgs),
    /// The inference loop: the policy's answer, then `--rounds` improvements by the PIT model.
    Improve(ImproveArgs),
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// Preference pairs (any file `reins data` reads as prompt/chosen/rejected).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Output folder (created): sft.jsonl, gap_pairs.jsonl, prompts.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// The conditional prompt, with `{prompt}` and `{reference}`.
    #[arg(long)]
    pub pit_template: Option<String>,
}

#[derive(clap::Args)]
pub struct ImproveArgs {
    /// The policy that writes the first answer (a Hugging Face folder).
    #[arg(long)]
    pub policy: PathBuf,
    /// The PIT model that improves an answer (same tokenizer as the policy).
    #[arg(long)]
    pub pit: PathBuf,
    /// Prompts (any file `reins data` reads with a `prompt`).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Improvement rounds after the first answer.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// JSONL: prompt, responses (round 0 first) and, with --reward, their scores.
    #[arg(long)]
    pub out: PathBuf,
    /// Scores every round's answers on the plain prompt: `length`, `contains:<text>`, a reward
    /// model folder of answers (not the gap model), an http:// scorer.
    #[arg(long)]
    pub reward: Option<String>,
    #[arg(long)]
    pub pit_template: Option<String>,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: PitCmd) -> Result<()> {
    match cmd {
        PitCmd::Data(a) => data(a),
        PitCmd::Improve(a) => improve_cmd(a),
    }
}

fn template(t: &Option<String>) -> Result<PitTemplate> {
    let t = match t {
        Some(s) => PitTemplate { pit_template: s.clone() },
        None => PitTemplate::default(),
    };
    t.validate()?;
    Ok(t)
}

/// A response's text: a plain string, or the content of a chat response's messages.
fn response_text(t: &Text) -> String {
    match t {
        Text::Plain(s) => s.trim().to_string(),
        Text::Chat(m) => m.iter().map(|x| x.content.as_str()).collect::<Vec<_>>().join("\n").trim().to_string(),
    }
}

fn write_jsonl(path: &Path, lines: &[Value]) -> Result<()> {
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for l in lines {
        writeln!(w, "{l}").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn data(a: DataArgs) -> Result<()> {
    let t = template(&a.pit_template)?;
    let loaded = load(&a.dataset, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let (mut sft, mut gap, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
    for r in &loaded.records {
        let Record::Preference(p) = r else { continue };
        // References go into the prompt as trimmed text; responses stay as the data wrote them.
        let worse_first = t.conditional(&p.prompt, &response_text(&p.rejected))?;
        sft.push(
            Record::PromptCompletion {
                prompt: worse_first.clone(),
                completion: p.chosen.clone(),
                meta: Meta::default(),
            }
            .to_json(),
        );
        for (good, bad) in gap_comparisons(&p.chosen, &p.rejected) {
            let whole = |(reference, response): (&Text, &Text)| -> Result<Value> {
                let prompt = t.conditional(&p.prompt, &response_text(reference))?;
                Ok(serde_json::to_value(prompt.concat(response))?)
            };
            gap.push(json!({"chosen": whole(good)?, "rejected": whole(bad)?}));
        }
        prompts.push(Record::PromptOnly { prompt: worse_first, meta: Meta::default() }.to_json());
    }
    if sft.is_empty() {
        bail!("{}: no preference pairs (PIT needs prompt/chosen/rejected records)", a.dataset.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_jsonl(&a.out.join("sft.jsonl"), &sft)?;
    write_jsonl(&a.out.join("gap_pairs.jsonl"), &gap)?;
    write_jsonl(&a.out.join("prompts.jsonl"), &prompts)?;
    println!(
        "{} pairs → {}: sft.jsonl ({} examples), gap_pairs.jsonl ({} comparisons), prompts.jsonl ({} prompts)",
        sft.len(),
        a.out.display(),
        sft.len(),
        gap.len(),
        prompts.len()
    );
    Ok(())
}

fn improve_cmd(a: ImproveArgs) -> Result<()> {
    let t = template(&a.pit_template)?;
    let device = reins_model::default_device()?;
    let tok = Arc::new(HfTokenizer::from_dir(&a.policy)?);
    let policy = Model::load(&a.policy, &device, &LoadOptions::default())?;
    let pit = Model::load(&a.pit, &device, &LoadOptions::default())?;
    let loaded = load(&a.prompts, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let texts: Vec<Text> = loaded.records.iter().filter_map(prompt_of).cloned().collect();
    if texts.is_empty() {
        bail!("{}: no prompts found (need a `prompt` column)", a.prompts.display());
    }
    let ids: Vec<Vec<u32>> = texts.iter().map(|p| tokenize_prompt(&tok, p)).collect::<std::result::Result<_, _>>()?;
    let sampling = SamplingConfig {
        max_new_tokens: a.max_new_tokens,
        do_sample: true,
        temperature: a.temperature,
        seed: a.seed,
        ..Default::default()
    };
    sampling.validate()?;
    let decode = |y: &[u32]| -> reins_train::Result<String> { Ok(tok.decode(y, true)?.trim().to_string()) };
    let mut condition = |i: usize, y: &[u32]| -> reins_train::Result<Vec<u32>> {
        Ok(tokenize_prompt(&tok, &t.conditional(&texts[i], &decode(y)?)?)?)
    };
    let rounds = improve(&policy, &pit, &ids, &mut condition, a.rounds, &sampling)?;
    let scores: Option<Vec<Vec<f32>>> = match &a.reward {
        Some(spec) => {
            let timeout = std::time::Duration::from_secs(30);
            let Some(r) = reward_from_spec(spec, &tok, a.max_new_tokens, &device, timeout, true)? else {
                bail!("--reward `{spec}`: use length, contains:<text>, an http:// scorer or a reward model folder");
            };
            use reins_train::rewards::RewardSource as _;
            let r = reins_train::rewards::SummedTokens(r);
            Some(rounds.iter().map(|ys| r.score(&ids, ys)).collect::<reins_train::Result<_>>()?)
        }
        None => None,
    };
    let mut lines = Vec::new();
    for (i, p) in texts.iter().enumerate() {
        let responses: Vec<String> = rounds.iter().map(|ys| decode(&ys[i])).collect::<reins_train::Result<_>>()?;
        let mut line = json!({"prompt": p, "responses": responses});
        if let Some(s) = &scores {
            line["scores"] = json!(s.iter().map(|r| r[i]).collect::<Vec<f32>>());
        }
        lines.push(line);
    }
    write_jsonl(&a.out, &lines)?;
    println!("{} prompts, {} rounds after the first answer → {}", texts.len(), a.rounds, a.out.display());
    if let Some(s) = &scores {
        for (k, r) in s.iter().enumerate() {
            let mean = r.iter().map(|&x| f64::from(x)).sum::<f64>() / r.len().max(1) as f64;
            println!("  round {k}: mean reward {mean:.4}");
        }
    }
    Ok(())
}
