//! `reins grpo|rloo|ppo|remax|online-dpo|iterative-dpo|inpo|nash-md|osp --config FILE.toml [--set key=value ...]`: online RL on prompts with a
//! reward chosen by name, through the shared run loop (run folder, metrics, checkpoints).
//!
//! `reward = "length"` (completion tokens / `max_completion_length`), `"contains:<text>"`
//! (1 when the decoded completion contains `<text>`), `"model"` with `reward_model_path`
//! (a `*ForSequenceClassification` checkpoint, score at the last token; or an ensemble folder
//! from `reins reward` with `ensemble_size > 1`, scored with its aggregation), or an
//! `http://host:port/path` scorer (`{"prompts", "completions"}` in, `{"scores"}` out, text,
//! `reward_timeout` seconds), or `"lcb:<λ>:<dir>"`: the pessimistic reward `r − λ·σ` of the
//! reward model whose head posterior `reins reward-stats fit` wrote into `dir`, or
//! `"fine_grained:<file.toml>"`: Fine-Grained RLHF's dense rewards, segment reward models from
//! `reins segment-reward` paying `±weight` at each segment's end plus an optional holistic
//! reward model at the last token (`[[segment]] path, weight` and `[holistic] path, weight,
//! mean, std`), or `"seq2seq:<dir>"`: a sequence-to-sequence reward model from
//! `reins seq2seq-reward`, `±token_reward` per token, or `"principles:<dir or file.toml>"`:
//! a principle reward model from `reins principle-reward` (RLBFF), the mean probability that
//! the completion satisfies each chosen principle. PPO adds dense rewards per token; the
//! other commands take their sum per completion.
//!
//! With `max_kl` set, every command measures the KL to the reference (GRPO, RLOO and ReMax get
//! a reference even at `beta = 0`), so the limit always applies. `reins ppo` with
//! `pf_filter = "auto"` picks the PF-PPO filter by R² against `pf_heldout_reward` on the
//! `eval_dataset` prompts (the training prompts without one) before step 1.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::tokenize::tokenize_prompt;
use reins_data::{HfTokenizer, Record, Text};
use reins_model::{LoadOptions, Model};
use reins_train::config::{resolved, FlatConfig, TrainingArgs};
use reins_train::judges::RewardJudge;
use reins_train::judges::{JudgeArgs, JudgeSource, SelfJudge};
use reins_train::losses::sampler_correction::{SamplerCorrection, SamplerCorrectionMode};
use reins_train::losses::GrpoLossConfig;
use reins_train::losses::{DpoConfig, InpoConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::rewards::features::{FeatureReward, ResidualReward};
use reins_train::rewards::fine_grained::FineGrainedSpec;
use reins_train::rewards::seq2seq::{Seq2SeqReward, Seq2SeqSpec};
use reins_train::rewards::{
    EnsembleReward, FusionReward, HttpReward, LcbReward, ModelReward, RewardSource, RuleReward, SummedTokens,
};
use reins_train::rl::PolicyFilter;
use reins_train::run::{self, Progress};
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::grpo::{GrpoConfig, GrpoTrainer};
use reins_train::trainers::iterative_dpo::{IterativeDpoConfig, IterativeDpoTrainer, PairObjective};
use reins_train::trainers::nash_md::{NashMdConfig, NashMdTrainer, Preferences};
use reins_train::trainers::online_dpo::{OnlineDpoConfig, OnlineDpoTrainer};
use reins_train::trainers::osp::{OspConfig, OspJudge, OspTrainer};
use reins_train::trainers::ppo::{PpoConfig, PpoTrainer};
use reins_train::trainers::remax::{RemaxConfig, RemaxTrainer};
use reins_train::trainers::reward_ensemble::EnsembleManifest;
use reins_train::trainers::rloo::{RlooConfig, RlooTrainer};
use reins_train::trainers::rollout::CompletionSource;
use reins_train::trainers::rollout_server::RolloutServer;
use reins_train::trainers::rollout_server::ServerRollouts;
use reins_train::trainers::Metrics;
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct OnlineArgs {
    /// A TOML file of TRL-named settings (`model_name_or_path`, `dataset` of prompts, `reward`, …).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set beta=0.04` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Where rewards come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardArgs {
    /// `length`, `contains:<text>`, `model`, `lcb:<λ>:<posterior dir>` (pessimistic reward
    /// model, `r − λ·σ`), `fusion:<reward model dir>:<its training pairs>` (RewardFusion),
    /// `fine_grained:<file.toml>` (Fine-Grained RLHF's segment and holistic reward models),
    /// `seq2seq:<dir>` (a sequence-to-sequence reward model), `principles:<dir or file.toml>`
    /// (RLBFF's principle reward model) or an `http://` scorer (default `length`).
    pub reward: String,
    /// Reward model folder (or reward-ensemble folder) for `reward = "model"`.
    pub reward_model_path: Option<PathBuf>,
    /// Seconds to wait for an `http://` scorer (connect, send, each read); default 30.
    pub reward_timeout: f64,
}

impl Default for RewardArgs {
    fn default() -> Self {
        RewardArgs { reward: "length".into(), reward_model_path: None, reward_timeout: 30.0 }
    }
}

/// `reins grpo`, `rloo` and `online-dpo`: sample from an inference server instead of in process (TRL's
/// names; the server must load LoRA adapters by vLLM's `/v1/load_lora_adapter`, or full weights by
/// SGLang's `/update_weights_from_disk`, and return token ids, as `reins serve-model` does).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutArgs {
    /// The server's API root, e.g. `http://127.0.0.1:8000/v1` (default none: sample in process).
    pub vllm_server_base_url: Option<String>,
    /// Seconds to wait for the server (connect, send, each read); TRL's default 240.
    pub vllm_server_timeout: f64,
    /// GRPO: learner updates the server's weights may lag behind when a batch is trained on
    /// (default 0: pushed before every batch). At 1 or more the server samples the next step's
    /// batch while this one trains, and the weights are pushed only as often as the bound needs.
    pub max_policy_lag: u64,
    /// GRPO: weight each token's loss by the learner/sampler probability ratio (TRL's default true).
    pub vllm_importance_sampling_correction: bool,
    /// `sequence_mask` (default), `sequence_truncate`, `token_mask` or `token_truncate`.
    pub vllm_importance_sampling_mode: SamplerCorrectionMode,
    /// The ratio's upper bound (TRL's default 3.0; `vllm_importance_sampling_cap`, TRL's
    /// older name, is read as this).
    #[serde(alias = "vllm_importance_sampling_cap")]
    pub vllm_importance_sampling_clip_max: Option<f64>,
    /// The ratio's lower bound (default none).
    pub vllm_importance_sampling_clip_min: Option<f64>,
}

impl Default for RolloutArgs {
    fn default() -> Self {
        RolloutArgs {
            vllm_server_base_url: None,
            vllm_server_timeout: 240.0,
            max_policy_lag: 0,
            vllm_importance_sampling_correction: true,
            vllm_importance_sampling_mode: SamplerCorrectionMode::SequenceMask,
            vllm_importance_sampling_clip_max: Some(3.0),
            vllm_importance_sampling_clip_min: None,
        }
    }
}

impl RolloutArgs {
    /// GRPO's use of the server's rollouts.
    fn server_rollouts(&self) -> Result<ServerRollouts> {
        let correction = if self.vllm_importance_sampling_correction {
            Some(SamplerCorrection::new(
                self.vllm_importance_sampling_mode,
                self.vllm_importance_sampling_clip_min,
                self.vllm_importance_sampling_clip_max,
            )?)
        } else {
            None
        };
        Ok(ServerRollouts { max_policy_lag: self.max_policy_lag, correction })
    }

    /// RLOO and online DPO sample at lag 0, uncorrected.
    fn only_lag_zero(&self, method: &str) -> Result<()> {
        if self.max_policy_lag > 0 {
            bail!("max_policy_lag: {method} samples from the server at lag 0 only; GRPO takes a lag");
        }
        Ok(())
    }

    /// The rollout server, with adapters written under `output_dir/rollout-adapters`.
    fn source(&self, args: &TrainingArgs) -> Result<Option<Box<dyn CompletionSource>>> {
        let Some(url) = &self.vllm_server_base_url else { return Ok(None) };
        if reins_train::parallel::world().world_size() > 1 {
            bail!("vllm_server_base_url: rollouts from a server are not sampled data-parallel yet; run one process, or sample in-process");
        }
        if !(self.vllm_server_timeout > 0.0 && self.vllm_server_timeout.is_finite()) {
            bail!("vllm_server_timeout must be a positive number of seconds");
        }
        let timeout = std::time::Duration::from_secs_f64(self.vllm_server_timeout);
        let base = args.model_name_or_path.display().to_string();
        let dir = args.output_dir.join(if args.lora().is_some() { "rollout-adapters" } else { "rollout-weights" });
        Ok(Some(Box::new(RolloutServer::new(url, timeout, dir, &base)?)))
    }
}

/// `reins ppo` only: what `pf_filter = "auto"` needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PfAutoArgs {
    /// The held-out score ("actual score" in PF-PPO: tests passed, a gold judge) that
    /// `pf_filter = "auto"` compares the reward with: `contains:<text>`, `length`, an
    /// `http://` scorer or a reward model folder (default none).
    pub pf_heldout_reward: Option<String>,
}

#[derive(Clone, Copy)]
pub enum Method {
    Grpo,
    Rloo,
    Ppo,
    Remax,
    OnlineDpo,
    IterativeDpo,
    Inpo,
    NashMd,
    Osp,
}

pub fn prompt_of(r: &Record) -> Option<&Text> {
    match r {
        Record::Preference(p) => Some(&p.prompt),
        Record::PromptOnly { prompt, .. }
        | Record::PromptCompletion { prompt, .. }
        | Record::Unpaired { prompt, .. }
        | Record::RankedList { prompt, .. }
        | Record::Spans { prompt, .. }
        | Record::Principles { prompt, .. } => Some(prompt),
        _ => None,
    }
}

/// The configured reward. Dense sources (`fine_grained:`, `seq2seq:`) keep their per-token
/// rewards only for trainers that take them (`per_token`: PPO); the others get their sum per
/// completion ([`SummedTokens`]).
fn reward_source(
    r: &RewardArgs,
    tok: &Arc<HfTokenizer>,
    max_len: usize,
    device: &candle_core::Device,
    per_token: bool,
) -> Result<Box<dyn RewardSource>> {
    let source = sequence_or_dense_reward(r, tok, max_len, device)?;
    Ok(if per_token { source } else { Box::new(SummedTokens(source)) })
}

fn sequence_or_dense_reward(
    r: &RewardArgs,
    tok: &Arc<HfTokenizer>,
    max_len: usize,
    device: &candle_core::Device,
) -> Result<Box<dyn RewardSource>> {
    if r.reward == "model" {
        let p = r.reward_model_path.as_ref().context("reward = \"model\" needs reward_model_path")?;
        return reward_model_dir(p, device);
    }
    if !(r.reward_timeout > 0.0 && r.reward_timeout.is_finite()) {
        bail!("reward_timeout must be a positive number of seconds");
    }
    let timeout = std::time::Duration::from_secs_f64(r.reward_timeout);
    match reward_from_spec(&r.reward, tok, max_len, device, timeout, false)? {
        Some(src) => Ok(src),
        None => bail!(
            "unknown reward `{}`: use \"length\", \"contains:<text>\", \"model\" (with reward_model_path), \
             \"lcb:<λ>:<posterior dir>\", \"fusion:<reward model dir>:<its training pairs>\", \
             \"features:<dir of reins reward-features>\", \"residual:<dir>\", \"fine_grained:<file.toml>\", \
             \"seq2seq:<dir>\", \
             \"principles:<dir or file.toml>\" or an http://host:port/path scorer",
            r.reward
        ),
    }
}

/// A reward from a short spec: `length` (completion tokens / `max_len`), `contains:<text>`,
/// `lcb:<λ>:<dir>` (the reward model of the head posterior in `dir`, scored at its lower
/// confidence bound `r − λ·σ`), `fusion:<rm dir>:<pairs file>[:<top_k>:<threshold>]` (the reward
/// model with RewardFusion over its training pairs), `features:<dir>` (a feature reward model
/// from `reins reward-features`, scored on decoded text), `residual:<dir>` (a reward model
/// trained with `residual_of_features`: the feature model its checkpoint carries plus its own
/// score), `fine_grained:<file.toml>` (segment
/// reward models and a holistic one, [`FineGrainedSpec`]: dense per-token rewards),
/// `seq2seq:<dir>` (a sequence-to-sequence reward model from `reins seq2seq-reward`: `±α` per
/// token), `principles:<dir or file.toml>` (a principle reward model from `reins
/// principle-reward`, averaged over its principles or the ones a steering file chooses),
/// `http://…`
/// (a remote scorer, sent text), or — with
/// `allow_dir` — a reward model folder.
/// `None` when the spec is none of these. Dense sources come back with their per-token rewards:
/// wrap them in [`SummedTokens`] where one score per completion is read.
pub fn reward_from_spec(
    spec: &str,
    tok: &Arc<HfTokenizer>,
    max_len: usize,
    device: &candle_core::Device,
    timeout: std::time::Duration,
    allow_dir: bool,
) -> Result<Option<Box<dyn RewardSource>>> {
    if spec == "length" {
        return Ok(Some(Box::new(RuleReward::named("length", move |_, c| c.len() as f32 / max_len.max(1) as f32))));
    }
    if let Some(text) = spec.strip_prefix("contains:") {
        let (text, tok) = (text.to_string(), tok.clone());
        return Ok(Some(Box::new(RuleReward::named("contains", move |_, c| {
            tok.decode(c, true).map(|s| s.contains(&text) as u8 as f32).unwrap_or(0.0)
        }))));
    }
    if let Some(rest) = spec.strip_prefix("lcb:") {
        let hint = "use lcb:<λ>:<folder with head_posterior.json>, e.g. lcb:1.0:runs/rm (see `reins reward-stats fit`)";
        let (lambda, dir) = rest.split_once(':').with_context(|| format!("reward `{spec}`: {hint}"))?;
        let lambda: f64 =
            lambda.parse().map_err(|_| anyhow::anyhow!("reward `{spec}`: λ `{lambda}` is not a number; {hint}"))?;
        let lcb = LcbReward::from_dir(std::path::Path::new(dir), lambda, device)
            .with_context(|| format!("pessimistic reward `{spec}`"))?;
        return Ok(Some(Box::new(lcb)));
    }
    if let Some(rest) = spec.strip_prefix("fusion:") {
        let hint = "use fusion:<reward model dir>:<its training pairs file>[:<top_k>:<threshold>], e.g. \
                    fusion:fixtures/hf/models/llama-rm:examples/data/pairs.jsonl (top_k 5, threshold 0.9)";
        // Optional retrieval settings at the end: `…:<top_k>:<threshold>` when both parse.
        let mut tail = rest.rsplitn(3, ':');
        let (th, k, head) = (tail.next(), tail.next(), tail.next());
        let (paths, retrieval) =
            match (head, k.and_then(|k| k.parse::<usize>().ok()), th.and_then(|t| t.parse::<f64>().ok())) {
                (Some(head), Some(k), Some(t)) => (head, Some((k, t))),
                _ => (rest, None),
            };
        let (dir, pairs) = paths.split_once(':').with_context(|| format!("reward `{spec}`: {hint}"))?;
        let mut fused = fusion_reward(std::path::Path::new(dir), std::path::Path::new(pairs), device)
            .with_context(|| format!("reward `{spec}` ({hint})"))?;
        if let Some((k, t)) = retrieval {
            fused = fused.with_retrieval(k, t).with_context(|| format!("reward `{spec}`"))?;
        }
        return Ok(Some(Box::new(fused)));
    }
    if let Some(dir) = spec.strip_prefix("features:") {
        let model = FeatureReward::load_model(std::path::Path::new(dir))?;
        return Ok(Some(Box::new(FeatureReward::new(model, Box::new(decoder(tok)))?)));
    }
    if let Some(dir) = spec.strip_prefix("residual:") {
        let r = ResidualReward::load(std::path::Path::new(dir), device, Box::new(decoder(tok)))
            .with_context(|| format!("reward `{spec}` (a reward model trained with `residual_of_features`)"))?;
        return Ok(Some(Box::new(r)));
    }
    if let Some(dir) = spec.strip_prefix("seq2seq:") {
        let dir = std::path::Path::new(dir);
        let kind = Seq2SeqSpec::read(dir).with_context(|| format!("reward `{spec}`"))?;
        let model = Model::load(dir, device, &LoadOptions::default())
            .with_context(|| format!("sequence-to-sequence reward model {}", dir.display()))?;
        let sep = tok.encode(&kind.separator, false)?;
        return Ok(Some(Box::new(Seq2SeqReward::new(model, sep, kind.token_reward)?)));
    }
    if let Some(target) = spec.strip_prefix("principles:") {
        let encode = |t: &str| Ok(tok.encode(t, false)?);
        let r = reins_train::rewards::principles::load(std::path::Path::new(target), device, &encode)
            .with_context(|| format!("principle reward `{spec}`"))?;
        return Ok(Some(Box::new(r)));
    }
    if let Some(file) = spec.strip_prefix("fine_grained:") {
        let fg = FineGrainedSpec::load(std::path::Path::new(file), device, decoder(tok))
            .with_context(|| format!("fine-grained reward `{spec}`"))?;
        return Ok(Some(Box::new(fg)));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Some(Box::new(HttpReward::new(spec, timeout, Some(Box::new(decoder(tok))))?)));
    }
    let dir = std::path::Path::new(spec);
    if allow_dir && (dir.join("config.json").exists() || dir.join(EnsembleManifest::FILE).exists()) {
        return Ok(Some(reward_model_dir(dir, device)?));
    }
    Ok(None)
}

/// Token ids to text for the rewards that read text (special tokens skipped).
fn decoder(tok: &Arc<HfTokenizer>) -> impl Fn(&[u32]) -> String + Clone + Send + Sync + 'static {
    let tok = tok.clone();
    move |ids: &[u32]| tok.decode(ids, true).unwrap_or_default()
}

/// A reward model folder, or an ensemble folder written by `reins reward` with
/// `ensemble_size > 1` (its `ensemble.json` lists the members and their aggregation).
fn reward_model_dir(dir: &std::path::Path, device: &candle_core::Device) -> Result<Box<dyn RewardSource>> {
    if dir.join(EnsembleManifest::FILE).exists() {
        let e = EnsembleReward::from_dir(dir, device).with_context(|| format!("reward ensemble {}", dir.display()))?;
        return Ok(Box::new(e));
    }
    let m =
        Model::load(dir, device, &LoadOptions::default()).with_context(|| format!("reward model {}", dir.display()))?;
    Ok(Box::new(ModelReward::new(m).with_context(|| format!("reward model {}", dir.display()))?))
}

/// The reward model in `dir` with RewardFusion over the prompt + chosen texts of the
/// preference records in `pairs` (its training set; any format `reins data` reads), tokenized
/// with the reward model's own tokenizer.
pub(crate) fn fusion_reward(
    dir: &std::path::Path,
    pairs: &std::path::Path,
    device: &candle_core::Device,
) -> Result<FusionReward> {
    let tok = HfTokenizer::from_dir(dir).with_context(|| format!("tokenizer of {}", dir.display()))?;
    let records = load(pairs, None, &ConvertOptions::default())?.records;
    let mut corpus = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let Record::Preference(p) = r {
            let ids = reins_data::tokenize::reward::tokenize_reward_response(&tok, &p.prompt, &p.chosen)
                .with_context(|| format!("{}: record {}", pairs.display(), i + 1))?;
            corpus.push(ids);
        }
    }
    if corpus.is_empty() {
        bail!("{}: no preference records (prompt/chosen) to retrieve from", pairs.display());
    }
    let m =
        Model::load(dir, device, &LoadOptions::default()).with_context(|| format!("reward model {}", dir.display()))?;
    Ok(FusionReward::new(m, &corpus)?)
}

struct Lines;

impl Progress for Lines {
    fn start(&mut self, total: usize, first: usize) {
        eprintln!("training {total} steps (from step {first})");
    }
    fn step(&mut self, step: usize, m: &Metrics) {
        // The loss, and whichever of the reward, the self-judge's strength and the KL were logged.
        let mut line = format!("step {step}: loss {:.4}", m.get("loss").copied().unwrap_or(f64::NAN));
        for (key, name) in [("reward", "reward"), ("osp/strength", "strength"), ("objective/kl", "kl")] {
            if let Some(v) = m.get(key) {
                line.push_str(&format!("  {name} {v:.4}"));
            }
        }
        eprintln!("{line}");
    }
    fn log(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// Defaults that depend on the method, put into `flat` unless the user set them: TRL's
/// learning rate of each trainer (`OnlineDPOConfig` 5e-7, the others 1e-6), and GRPO's
/// `epsilon` and `max_completion_length`, which both of its config parts read.
pub(crate) fn apply_presets(method: Method, flat: &mut FlatConfig) {
    // Nash-MD's config extends TRL's `OnlineDPOConfig`, learning rate included.
    let lr = if matches!(method, Method::OnlineDpo | Method::NashMd) { 5e-7 } else { 1e-6 };
    flat.table.entry("learning_rate").or_insert(serde_json::Value::from(lr));
    // OSP's policy judges its own samples; the other judged methods default to the reward.
    if matches!(method, Method::Osp) {
        flat.table.entry("judge").or_insert("self".into());
    }
    if matches!(method, Method::Grpo) {
        let d = GrpoLossConfig::default();
        flat.table.entry("epsilon").or_insert(d.epsilon.into());
        flat.table.entry("max_completion_length").or_insert(d.max_completion_length.into());
    }
}

/// The default value of every config part `method` reads: their keys are the known keys.
pub(crate) fn default_parts(method: Method) -> Vec<serde_json::Value> {
    let mut parts =
        vec![to_json(&TrainingArgs::default()), to_json(&OptimConfig::default()), to_json(&RewardArgs::default())];
    match method {
        Method::Grpo => {
            parts.push(to_json(&GrpoConfig::default()));
            parts.push(to_json(&GrpoLossConfig::default()));
            parts.push(to_json(&RolloutArgs::default()));
        }
        Method::Rloo => {
            parts.push(to_json(&RlooConfig::default()));
            parts.push(to_json(&RolloutArgs::default()));
        }
        Method::Ppo => {
            parts.push(to_json(&PpoConfig::default()));
            parts.push(to_json(&PfAutoArgs::default()));
        }
        Method::Remax => parts.push(to_json(&RemaxConfig::default())),
        Method::OnlineDpo => {
            parts.push(to_json(&OnlineDpoConfig::default()));
            parts.push(to_json(&DpoConfig::default()));
            parts.push(to_json(&RolloutArgs::default()));
        }
        Method::IterativeDpo => {
            parts.push(to_json(&IterativeDpoConfig::default()));
            parts.push(to_json(&DpoConfig::default()));
        }
        Method::Inpo => {
            parts.push(to_json(&IterativeDpoConfig::default()));
            parts.push(to_json(&InpoConfig::default()));
        }
        Method::NashMd => {
            parts.push(to_json(&OnlineDpoConfig::default()));
            parts.push(to_json(&NashMdConfig::default()));
        }
        Method::Osp => {
            parts.push(to_json(&IterativeDpoConfig::default()));
            parts.push(to_json(&DpoConfig::default()));
            parts.push(to_json(&OspConfig::default()));
        }
    }
    // The methods that learn from a judge's preferences (a reward, or the policy itself).
    if matches!(method, Method::OnlineDpo | Method::IterativeDpo | Method::Inpo | Method::NashMd | Method::Osp) {
        parts.push(to_json(&JudgeArgs::default()));
    }
    parts
}

pub fn run(method: Method, a: OnlineArgs) -> Result<()> {
    let device = reins_model::default_device()?;
    let flat =
        super::resolve_config(a.config.as_deref(), &a.set, |f| apply_presets(method, f), &default_parts(method))?;
    let args: TrainingArgs = flat.part()?;
    args.validate()?;
    super::note_bf16(&args, &device);
    let optim: OptimConfig = flat.part()?;
    let rargs: RewardArgs = flat.part()?;
    let tok = Arc::new(HfTokenizer::from_dir(&args.model_name_or_path)?);
    let lora = args.lora();
    // PPO's critic is a value head on the policy (TRL's shared-trunk layout).
    let value_head = matches!(method, Method::Ppo);
    let autocast = args.autocast();
    let opts = LoadOptions {
        trainable: true,
        lora: lora.clone(),
        seed: args.seed,
        value_head,
        autocast,
        ..Default::default()
    };
    let model = Model::load(&args.model_name_or_path, &device, &opts)?;
    let prompts = prompts_of(&args.dataset, &tok)?;
    let total = run::total_steps(&args, prompts.len());
    // The schedule counts optimizer steps: `per_step` of them in each run step (GRPO's and
    // RLOO's `num_iterations`; PPO advances its schedule once per step).
    let optimizer = |per_step: usize| Optimizer::new(model.params(), &optim, total * per_step);
    // A reference is needed for a KL penalty, and to measure the KL that `max_kl` watches.
    let needs_reference = |beta: f64| beta != 0.0 || args.max_kl.is_some();
    let reference = || -> Result<Reference> {
        Ok(if lora.is_some() {
            Reference::AdaptersOff
        } else {
            Reference::Model(Box::new(Model::load(
                &args.model_name_or_path,
                &device,
                &LoadOptions { autocast, ..Default::default() },
            )?))
        })
    };
    let collate = |idx: &[usize]| Ok(idx.iter().map(|&i| prompts[i].clone()).collect::<Vec<_>>());
    let mut progress = Lines;
    let summary = match method {
        Method::Grpo => {
            let cfg: GrpoConfig = flat.part()?;
            let loss: GrpoLossConfig = flat.part()?;
            let reward = reward_source(&rargs, &tok, loss.max_completion_length, &device, false)?;
            let r = if needs_reference(loss.beta) { Some(reference()?) } else { None };
            let rollout: RolloutArgs = flat.part()?;
            let source = rollout.source(&args)?;
            let resolved = resolved(&[
                to_json(&args),
                to_json(&optim),
                to_json(&rargs),
                to_json(&cfg),
                to_json(&loss),
                to_json(&rollout),
            ]);
            let opt = optimizer(cfg.num_iterations)?;
            let mut t = GrpoTrainer::new(model, r, reward, cfg, loss, opt)?;
            t.completions = source;
            t.server = rollout.server_rollouts()?;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::Rloo => {
            let cfg: RlooConfig = flat.part()?;
            let reward = reward_source(&rargs, &tok, cfg.max_completion_length, &device, false)?;
            let r = if needs_reference(cfg.beta) { Some(reference()?) } else { None };
            let rollout: RolloutArgs = flat.part()?;
            rollout.only_lag_zero("rloo")?;
            let source = rollout.source(&args)?;
            let resolved =
                resolved(&[to_json(&args), to_json(&optim), to_json(&rargs), to_json(&cfg), to_json(&rollout)]);
            let opt = optimizer(cfg.num_iterations)?;
            let mut t = RlooTrainer::new(model, r, reward, cfg, opt)?;
            t.completions = source;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::Ppo => {
            let cfg: PpoConfig = flat.part()?;
            let pf: PfAutoArgs = flat.part()?;
            let reward = reward_source(&rargs, &tok, cfg.response_length, &device, true)?;
            let heldout = pf_heldout(&cfg, &pf, &rargs, &tok, &device)?;
            let resolved = resolved(&[to_json(&args), to_json(&optim), to_json(&rargs), to_json(&cfg), to_json(&pf)]);
            let opt = optimizer(1)?;
            let mut t = PpoTrainer::new(model, None, reference()?, reward, cfg, opt)?;
            if let Some(h) = heldout {
                let heldout_prompts = match &args.eval_dataset {
                    Some(p) => prompts_of(p, &tok)?,
                    None => prompts.clone(),
                };
                let c = t.choose_filter(&heldout_prompts, h.as_ref())?;
                let r2: Vec<String> = c.r2.iter().map(|(f, v)| format!("{} {v:.3}", f.name())).collect();
                eprintln!(
                    "pf_filter = auto: R^2 of reward vs pf_heldout_reward on {} prompts: {}; using {}",
                    heldout_prompts.len(),
                    r2.join(", "),
                    c.chosen.name()
                );
                if c.r2.iter().all(|(_, v)| *v == 0.0) {
                    eprintln!(
                        "warning: every R^2 is 0 (the reward or pf_heldout_reward is constant on these samples), so the \
                         choice carries no information; use more or other prompts (eval_dataset), or name a filter"
                    );
                }
            }
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::Remax => {
            let cfg: RemaxConfig = flat.part()?;
            let reward = reward_source(&rargs, &tok, cfg.max_completion_length, &device, false)?;
            let r = if needs_reference(cfg.beta) { Some(reference()?) } else { None };
            let resolved = resolved(&[to_json(&args), to_json(&optim), to_json(&rargs), to_json(&cfg)]);
            let opt = optimizer(1)?;
            let mut t = RemaxTrainer::new(model, r, reward, cfg, opt)?;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::OnlineDpo => {
            let cfg: OnlineDpoConfig = flat.part()?;
            let loss: DpoConfig = flat.part()?;
            let reward = reward_source(&rargs, &tok, cfg.max_new_tokens, &device, false)?;
            let rollout: RolloutArgs = flat.part()?;
            rollout.only_lag_zero("online-dpo")?;
            let source = rollout.source(&args)?;
            let judge: JudgeArgs = flat.part()?;
            let resolved = resolved(&[
                to_json(&args),
                to_json(&optim),
                to_json(&rargs),
                to_json(&cfg),
                to_json(&loss),
                to_json(&rollout),
                to_json(&judge),
            ]);
            let opt = optimizer(1)?;
            let prefs = preferences(&judge, reward, &model, &tok)?;
            let mut t = OnlineDpoTrainer::new(model, reference()?, prefs, cfg, loss, opt)?;
            t.completions = source;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::IterativeDpo | Method::Inpo => {
            // One run step is one round: `per_device_train_batch_size` prompts, then DPO (or
            // INPO: π_ref the starting model, π_t the policy at the round's start) epochs on
            // their best/worst pairs with a fresh optimizer.
            let cfg: IterativeDpoConfig = flat.part()?;
            let (loss_json, objective) = if matches!(method, Method::Inpo) {
                let l: InpoConfig = flat.part()?;
                (to_json(&l), PairObjective::Inpo(l))
            } else {
                let l: DpoConfig = flat.part()?;
                (to_json(&l), PairObjective::Dpo(l))
            };
            let reward = reward_source(&rargs, &tok, cfg.max_new_tokens, &device, false)?;
            let judge: JudgeArgs = flat.part()?;
            let resolved = resolved(&[
                to_json(&args),
                to_json(&optim),
                to_json(&rargs),
                to_json(&cfg),
                loss_json,
                to_json(&judge),
            ]);
            let prefs = preferences(&judge, reward, &model, &tok)?;
            let mut t = IterativeDpoTrainer::new(model, reference()?, prefs, cfg, objective, optim.clone())?;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::NashMd => {
            // `P(y ≻ y') = σ(r(y) − r(y'))` from the named reward, as TRL with a reward model.
            let cfg: NashMdConfig = flat.part()?;
            let sampling: OnlineDpoConfig = flat.part()?;
            let reward = reward_source(&rargs, &tok, sampling.max_new_tokens, &device, false)?;
            let judge: JudgeArgs = flat.part()?;
            let resolved = resolved(&[
                to_json(&args),
                to_json(&optim),
                to_json(&rargs),
                to_json(&sampling),
                to_json(&cfg),
                to_json(&judge),
            ]);
            let opt = optimizer(1)?;
            let prefs = preferences(&judge, reward, &model, &tok)?;
            let mut t = NashMdTrainer::new(model, reference()?, prefs, cfg, sampling, opt)?;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
        Method::Osp => {
            // One run step is one round, as iterative DPO's: K samples per prompt judged by the
            // policy itself (or the reward), ranked pairs with their strengths, SPCE epochs.
            let cfg: IterativeDpoConfig = flat.part()?;
            let loss: DpoConfig = flat.part()?;
            let osp: OspConfig = flat.part()?;
            let judge_args: JudgeArgs = flat.part()?;
            let judge = match judge_args.judge {
                JudgeSource::Policy => OspJudge::Policy(judge_args.template(), tok.clone()),
                JudgeSource::Reward => OspJudge::Other(Box::new(RewardJudge {
                    reward: reward_source(&rargs, &tok, cfg.max_new_tokens, &device, false)?,
                })),
            };
            let resolved = resolved(&[
                to_json(&args),
                to_json(&optim),
                to_json(&rargs),
                to_json(&cfg),
                to_json(&loss),
                to_json(&osp),
                to_json(&judge_args),
            ]);
            let mut t = OspTrainer::new(model, reference()?, judge, cfg, osp, loss, optim.clone())?;
            run::train(&mut t, &args, &resolved, prompts.len(), &collate, &[], &mut progress)?
        }
    };
    println!("trained {} steps; final checkpoint: {}", summary.steps, summary.final_checkpoint.display());
    for (k, v) in &summary.last_metrics {
        println!("  {k:<28} {v:.6}");
    }
    Ok(())
}

/// A judged method's preferences: the run's reward, or the policy itself judging through
/// `judge_template` (on the live weights: the judge follows every optimizer step).
fn preferences(
    judge: &JudgeArgs,
    reward: Box<dyn RewardSource>,
    model: &Model,
    tok: &Arc<HfTokenizer>,
) -> Result<Preferences> {
    Ok(match judge.judge {
        JudgeSource::Reward => Preferences::Reward(reward),
        JudgeSource::Policy => {
            Preferences::Judge(Box::new(SelfJudge::new(model.detached(), tok.clone(), judge.template())?))
        }
    })
}

/// The tokenized prompts of a dataset file (its load report goes to stderr).
fn prompts_of(path: &std::path::Path, tok: &HfTokenizer) -> Result<Vec<Vec<u32>>> {
    let loaded = load(path, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let prompts: Vec<Vec<u32>> = loaded
        .records
        .iter()
        .filter_map(prompt_of)
        .map(|p| tokenize_prompt(tok, p))
        .collect::<std::result::Result<_, _>>()?;
    if prompts.is_empty() {
        bail!("{}: no prompts found (need a `prompt` column)", path.display());
    }
    Ok(prompts)
}

/// The held-out scorer of `pf_filter = "auto"`; `None` for any other filter.
fn pf_heldout(
    cfg: &PpoConfig,
    pf: &PfAutoArgs,
    rargs: &RewardArgs,
    tok: &Arc<HfTokenizer>,
    device: &candle_core::Device,
) -> Result<Option<Box<dyn RewardSource>>> {
    let auto = cfg.pf_filter == PolicyFilter::Auto;
    let spec = match (&pf.pf_heldout_reward, auto) {
        (Some(spec), true) => spec,
        (None, false) => return Ok(None),
        (None, true) => bail!(
            "pf_filter = \"auto\" picks the PF-PPO filter by R^2 between the reward and a held-out score: set \
             pf_heldout_reward (\"contains:<text>\", \"length\", an http:// scorer or a reward model folder), or \
             name a filter (best_worst, best_random, best_of_n, reward_band)"
        ),
        (Some(_), false) => {
            bail!("pf_heldout_reward is used only with pf_filter = \"auto\"; remove it or set pf_filter = \"auto\"")
        }
    };
    let timeout = std::time::Duration::from_secs_f64(rargs.reward_timeout.max(0.001));
    match reward_from_spec(spec, tok, cfg.response_length, device, timeout, true)? {
        Some(src) => Ok(Some(Box::new(SummedTokens(src)))),
        None => bail!(
            "unknown pf_heldout_reward `{spec}`: use \"contains:<text>\", \"length\", an http://host:port/path scorer \
             or a reward model folder"
        ),
    }
}

fn to_json<T: Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}
