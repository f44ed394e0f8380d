//! Group Relative Policy Optimization (Shao et al., arXiv:2402.03300 §4), TRL 1.16
//! `GRPOTrainer` semantics: per step, `num_generations` completions of every prompt from the
//! sampler, one reward per completion from a [`RewardSource`], group-relative advantages
//! ([`grpo_advantages`]), then the clipped surrogate [`grpo_loss`] (GRPO/BNPO/Dr.GRPO/DAPO
//! normalisation) with an optional k3 KL to a frozen reference (`beta`, default 0). Without a
//! reference there is no reference pass at all; with one (needed for `beta != 0`; the CLI also
//! passes one when `max_kl` is set), `kl` is measured and logged even at `beta = 0`.
//!
//! Dr. GRPO (arXiv:2503.20783) is `scale_rewards = "none"` with `loss_type = "dr_grpo"`.
//! The rollout helpers ([`rollout`], [`score_rollout`], [`completion_token_logps`],
//! [`reference_logps`]) are shared with RLOO, PPO, ReMax and online/iterative DPO.

use candle_core::{DType, Tensor, D};
use reins_model::generate::{generate, Finish, Generation, Hooks, SamplingConfig};
use reins_model::logprobs::{masked_token_logps, masked_token_logps_and_logits, token_logps};
use reins_model::{nn, Batch, Model};
use serde::{Deserialize, Serialize};

use super::dpo::Reference;
use super::{scalar, Metrics};
use crate::losses::kl::{kl_estimate, KlEstimator};
use crate::losses::ops::masked_mean_all;
use crate::losses::ppo::{entropy_from_logits, grpo_loss, GrpoLossConfig, GrpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::rewards::RewardSource;
use crate::rl::advantages::{grpo_advantages, masked_mean, ScaleRewards};
use crate::{Result, TrainError};

/// GRPO options besides the loss (TRL `GRPOConfig` names and defaults; the loss's own
/// options, `max_completion_length` included, are in [`GrpoLossConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Completions sampled per prompt, the group size G (default 8).
    pub num_generations: usize,
    /// How group-centred rewards are scaled: `group` (default), `batch` or `none` (Dr. GRPO).
    pub scale_rewards: ScaleRewards,
    /// Optimisation passes over one generation batch, μ (default 1: on-policy, ratio ≡ 1).
    pub num_iterations: usize,
    /// Sampling temperature; the loss uses the same `logits / temperature` (default 1.0).
    pub temperature: f64,
    /// Nucleus sampling (default 1.0 = off).
    pub top_p: f64,
    /// Top-k sampling; 0 = off (TRL `None`, default).
    pub top_k: usize,
    /// Min-p sampling; 0 = off (default).
    pub min_p: f64,
    /// Drop completions cut by `max_completion_length` from the loss (default false).
    pub mask_truncated_completions: bool,
    /// Seed of the sampler; generation `i` uses `seed + i` (default 42, TRL's `seed`).
    pub seed: u64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            num_generations: 8,
            scale_rewards: ScaleRewards::Group,
            num_iterations: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            mask_truncated_completions: false,
            seed: 42,
        }
    }
}

impl GrpoConfig {
    pub fn validate(&self) -> Result<()> {
        if self.num_generations < 2 {
            return Err(TrainError::Config(
                "num_generations must be at least 2 (group-relative advantages need a group)".into(),
            ));
        }
        if self.num_iterations == 0 {
            return Err(TrainError::Config("num_iterations must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::Config("temperature must be > 0".into()));
        }
        Ok(())
    }

    /// The sampler settings for generation number `i`.
    pub fn sampling(&self, max_completion_length: usize, i: u64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: max_completion_length,
            do_sample: true,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            seed: self.seed.wrapping_add(i),
            stop_on_eos: true,
        }
    }
}

/// One generation batch: every prompt repeated `num_generations` times (contiguous groups),
/// its completions, and the right-padded `prompt ++ completion` rows the loss runs on.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// `[N·G]` prompt ids (repeated).
    pub prompts: Vec<Vec<u32>>,
    /// `[N·G]` sampled completions (with the EOS when one was emitted).
    pub completions: Vec<Vec<u32>>,
    /// Why each completion stopped.
    pub finish: Vec<Finish>,
    /// The sampler's log-prob of each completion token, under `softmax(logits / temperature)`.
    pub sampler_logps: Vec<Vec<f32>>,
    /// `[N·G][T]` right-padded rows, attention mask and completion mask (1 on completion tokens).
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub completion_mask: Vec<Vec<u8>>,
}

impl Rollout {
    /// Completion lengths in tokens.
    pub fn lengths(&self) -> Vec<usize> {
        self.completions.iter().map(Vec::len).collect()
    }

    /// Completion tokens that count in the loss.
    pub fn num_loss_tokens(&self) -> f64 {
        self.completion_mask.iter().flatten().map(|&m| m as f64).sum()
    }

    /// Rows `rows` of the rollout, in that order (padding width unchanged).
    pub fn select(&self, rows: &[usize]) -> Rollout {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        Rollout {
            prompts: pick(&self.prompts, rows),
            completions: pick(&self.completions, rows),
            finish: pick(&self.finish, rows),
            sampler_logps: pick(&self.sampler_logps, rows),
            input_ids: pick(&self.input_ids, rows),
            attention_mask: pick(&self.attention_mask, rows),
            completion_mask: pick(&self.completion_mask, rows),
        }
    }
}

/// Where an online trainer's completions come from when not from its own sampler (TRL's
/// `rollout_func`): an external generator, or recorded rollouts replayed so that a parity
/// check trains on exactly the completions the reference stack trained on.
pub trait CompletionSource {
    /// One completion per row of `prompts` (every prompt already repeated `num_generations`
    /// times, groups contiguous), ending in an EOS when one stopped it; `generation` counts the
    /// generation batches sampled before this one.
    fn complete(&mut self, prompts: &[Vec<u32>], generation: u64) -> Result<Vec<Vec<u32>>>;
}

/// [`rollout`], or the completions of `source` laid out the same way: a completion ending in
/// one of the policy's EOS ids finished on EOS, any other was cut at `max_new_tokens`, and
/// the sampler log-probs are empty (no trainer here reads them).
pub fn rollout_from(
    source: Option<&mut (dyn CompletionSource + '_)>,
    generation: u64,
    policy: &Model,
    prompts: &[Vec<u32>],
    num_generations: usize,
    sampling: &SamplingConfig,
    mask_truncated: bool,
) -> Result<Rollout> {
    let Some(source) = source else {
        return rollout(policy, prompts, num_generations, sampling, mask_truncated);
    };
    let repeated: Vec<Vec<u32>> =
        prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), num_generations)).collect();
    let tokens = source.complete(&repeated, generation)?;
    if tokens.len() != repeated.len() {
        return Err(TrainError::Input(format!(
            "the completion source gave {} completions for {} prompt rows; it must give one per row",
            tokens.len(),
            repeated.len()
        )));
    }
    let eos = &policy.config.eos_token_ids;
    let finish = tokens
        .iter()
        .map(|c| if c.last().is_some_and(|t| eos.contains(t)) { Finish::Eos } else { Finish::Length })
        .collect();
    let logprobs = tokens.iter().map(|_| Vec::new()).collect();
    Ok(layout(policy, repeated, Generation { tokens, logprobs, finish }, mask_truncated))
}

/// Samples `num_generations` completions of every prompt with `policy` (detached weights, so
/// always the latest update) and lays them out for the loss. With `mask_truncated`, rows that
/// hit `max_new_tokens` get an all-zero completion mask.
pub fn rollout(
    policy: &Model,
    prompts: &[Vec<u32>],
    num_generations: usize,
    sampling: &SamplingConfig,
    mask_truncated: bool,
) -> Result<Rollout> {
    let repeated: Vec<Vec<u32>> =
        prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), num_generations)).collect();
    let g = generate(policy, &repeated, sampling, Hooks::default())?;
    Ok(layout(policy, repeated, g, mask_truncated))
}

/// Right-padded `prompt ++ completion` rows and masks of a generation batch.
fn layout(policy: &Model, repeated: Vec<Vec<u32>>, g: Generation, mask_truncated: bool) -> Rollout {
    let c = &policy.config;
    let pad = c.pad_token_id.or(c.eos_token_ids.first().copied()).unwrap_or(0);
    let t = repeated.iter().zip(&g.tokens).map(|(p, c)| p.len() + c.len()).max().unwrap_or(0);
    let (mut ids, mut am, mut cm) = (vec![], vec![], vec![]);
    for ((p, comp), fin) in repeated.iter().zip(&g.tokens).zip(&g.finish) {
        let n = p.len() + comp.len();
        let keep = !(mask_truncated && *fin == Finish::Length);
        ids.push([p.as_slice(), comp.as_slice(), vec![pad; t - n].as_slice()].concat());
        am.push([vec![1u8; n], vec![0u8; t - n]].concat());
        cm.push([vec![0u8; p.len()], vec![keep as u8; comp.len()], vec![0u8; t - n]].concat());
    }
    Rollout {
        prompts: repeated,
        completions: g.tokens,
        finish: g.finish,
        sampler_logps: g.logprobs,
        input_ids: ids,
        attention_mask: am,
        completion_mask: cm,
    }
}

/// Per-token log-probs of a rollout's completion tokens under `softmax(logits / temperature)`,
/// with graph when `model` is trainable: `(logps [N, T-1], mask [N, T-1], logits [N, T, V])`,
/// `logps` zero outside the completion.
pub fn completion_token_logps(model: &Model, r: &Rollout, temperature: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = model.device();
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    let mut logits = model.logits(&batch)?;
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    let ids = nn::ids_tensor(&r.input_ids, dev)?;
    let cm = nn::mask_tensor(&r.completion_mask, dev)?;
    let logps = token_logps(&logits, &ids, &cm)?;
    let t = cm.dim(1)?;
    Ok((logps, cm.narrow(1, 1, t - 1)?, logits))
}

/// As [`completion_token_logps`], with the LM head run only on completion positions:
/// `(logps [N, T-1], mask [N, T-1], entropy)`, the entropy (nats) of the next-token
/// distributions averaged over completion tokens (no graph), as [`completion_entropy`].
pub fn completion_only_token_logps(model: &Model, r: &Rollout, temperature: f64) -> Result<(Tensor, Tensor, f64)> {
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    let (logps, logits) = masked_token_logps_and_logits(model, &batch, &r.completion_mask, temperature)?;
    let cm = nn::mask_tensor(&r.completion_mask, model.device())?;
    let t = cm.dim(1)?;
    let entropy = if logits.dim(0)? == 0 { 0.0 } else { scalar(&entropy_from_logits(&logits.detach())?.mean_all()?)? };
    Ok((logps, cm.narrow(1, 1, t - 1)?, entropy))
}

/// Mean entropy (nats) of the next-token distributions at completion positions; no graph.
pub fn completion_entropy(logits: &Tensor, mask: &Tensor) -> Result<f64> {
    let t = logits.dim(1)?;
    let h = entropy_from_logits(&logits.detach().narrow(1, 0, t - 1)?)?;
    scalar(&masked_mean(&h, mask)?)
}

/// Log-probs of the rollout under the reference (detached), for the KL term.
pub fn reference_logps(policy: &Model, reference: &Reference, r: &Rollout, temperature: f64) -> Result<Tensor> {
    let m = reference.model(policy)?;
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    Ok(masked_token_logps(&m, &batch, &r.completion_mask, temperature)?.detach())
}

/// Scores a rollout's completions, subtracting `missing_eos_penalty` from those without an EOS.
pub fn score_rollout(reward: &dyn RewardSource, r: &Rollout, missing_eos_penalty: Option<f32>) -> Result<Vec<f32>> {
    let mut scores = reward.score(&r.prompts, &r.completions)?;
    if let Some(p) = missing_eos_penalty {
        for (s, f) in scores.iter_mut().zip(&r.finish) {
            if *f != Finish::Eos {
                *s -= p;
            }
        }
    }
    Ok(scores)
}

/// TRL's completion metrics: `completions/{mean,min,max}_length`, `completions/clipped_ratio`.
pub fn completion_metrics(r: &Rollout, m: &mut Metrics) {
    let lens = r.lengths();
    let n = lens.len().max(1) as f64;
    m.insert("completions/mean_length".into(), lens.iter().sum::<usize>() as f64 / n);
    m.insert("completions/min_length".into(), lens.iter().copied().min().unwrap_or(0) as f64);
    m.insert("completions/max_length".into(), lens.iter().copied().max().unwrap_or(0) as f64);
    let clipped = r.finish.iter().filter(|f| **f == Finish::Length).count() as f64;
    m.insert("completions/clipped_ratio".into(), clipped / n);
    // Completions that ended on their own (TRL logs 0 when every one was cut).
    let mut done: Vec<f64> =
        lens.iter().zip(&r.finish).filter(|(_, f)| **f != Finish::Length).map(|(&l, _)| l as f64).collect();
    if done.is_empty() {
        done.push(0.0);
    }
    let k = done.len() as f64;
    m.insert("completions/mean_terminated_length".into(), done.iter().sum::<f64>() / k);
    m.insert("completions/min_terminated_length".into(), done.iter().copied().fold(f64::INFINITY, f64::min));
    m.insert("completions/max_terminated_length".into(), done.iter().copied().fold(0.0, f64::max));
}

/// Unbiased standard deviation (torch's `std`), 0 for fewer than two values.
fn std_unbiased(x: &[f32]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// TRL's per-reward-function metrics `rewards/<name>/{mean,std}` (one function here).
pub fn reward_source_metrics(name: &str, rewards: &[f32], m: &mut Metrics) {
    let n = rewards.len().max(1) as f64;
    m.insert(format!("rewards/{name}/mean"), rewards.iter().map(|&x| x as f64).sum::<f64>() / n);
    m.insert(format!("rewards/{name}/std"), std_unbiased(rewards));
}

/// Reward metrics as TRL 1.16 logs them: `reward` (mean), `reward_std` (unbiased std over the
/// whole generation batch, not per group), `frac_reward_zero_std` (share of groups whose
/// rewards are all equal).
pub fn reward_metrics(rewards: &[f32], num_generations: usize, m: &mut Metrics) {
    let n = rewards.len().max(1) as f64;
    m.insert("reward".into(), rewards.iter().map(|&x| x as f64).sum::<f64>() / n);
    m.insert("reward_std".into(), std_unbiased(rewards));
    let (mut zero, mut groups) = (0.0f64, 0.0f64);
    for g in rewards.chunks(num_generations.max(1)) {
        zero += (std_unbiased(g) < 1e-6) as u8 as f64;
        groups += 1.0;
    }
    m.insert("frac_reward_zero_std".into(), zero / groups.max(1.0));
}

/// A sampled generation batch, scored and ready for the loss.
struct Scored {
    rollout: Rollout,
    advantages: Tensor,
    old_logps: Option<Tensor>,
    ref_logps: Option<Tensor>,
}

pub struct GrpoTrainer {
    pub policy: Model,
    /// Needed when `loss.beta != 0`; when present, `kl` is logged at any `beta`.
    pub reference: Option<Reference>,
    pub reward: Box<dyn RewardSource>,
    pub cfg: GrpoConfig,
    pub loss: GrpoLossConfig,
    pub opt: Optimizer,
    /// Generation batches sampled so far (seeds the sampler).
    pub generations: u64,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
    /// The last step's completions and rewards (for `samples.jsonl`).
    pub last_samples: Vec<crate::run::Sample>,
    /// Completions from elsewhere instead of the sampler (default `None`: sample the policy).
    pub completions: Option<Box<dyn CompletionSource>>,
}

impl GrpoTrainer {
    pub fn new(
        policy: Model,
        reference: Option<Reference>,
        reward: Box<dyn RewardSource>,
        cfg: GrpoConfig,
        loss: GrpoLossConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        if loss.beta != 0.0 && reference.is_none() {
            return Err(TrainError::Config(
                "beta != 0 needs a reference model (a frozen copy, or adapters off with LoRA); or set beta = 0".into(),
            ));
        }
        Ok(GrpoTrainer {
            policy,
            reference,
            reward,
            cfg,
            loss,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
            completions: None,
        })
    }

    /// Samples, scores and computes advantages for one batch of prompts.
    fn sample(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<Scored> {
        let s = self.cfg.sampling(self.loss.max_completion_length, self.generations);
        self.generations += 1;
        let g = self.cfg.num_generations;
        let source = self.completions.as_deref_mut();
        let r = rollout_from(
            source,
            self.generations - 1,
            &self.policy,
            prompts,
            g,
            &s,
            self.cfg.mask_truncated_completions,
        )?;
        let rewards = self.reward.score(&r.prompts, &r.completions)?;
        self.last_samples.extend(crate::run::Sample::rows(&r.prompts, &r.completions, &rewards));
        reward_metrics(&rewards, g, m);
        reward_source_metrics(self.reward.name(), &rewards, m);
        completion_metrics(&r, m);
        let n = rewards.len();
        let advantages =
            grpo_advantages(&Tensor::from_vec(rewards, n, self.policy.device())?, g, self.cfg.scale_rewards)?;
        let old_logps = if self.cfg.num_iterations > 1 {
            Some(completion_only_token_logps(&self.policy.detached(), &r, self.cfg.temperature)?.0)
        } else {
            None
        };
        let ref_logps = match &self.reference {
            Some(rf) => Some(reference_logps(&self.policy, rf, &r, self.cfg.temperature)?),
            None => None,
        };
        self.num_tokens += r.attention_mask.iter().flatten().map(|&x| x as f64).sum::<f64>();
        Ok(Scored { rollout: r, advantages, old_logps, ref_logps })
    }

    /// One generation over `prompt_batches` (one micro-batch each), then `num_iterations`
    /// optimizer steps on it with gradient accumulation over the micro-batches. Returns
    /// TRL's metrics, averaged over micro-batches (losses: over iterations too).
    pub fn train_step(&mut self, prompt_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        let k = prompt_batches.len();
        if k == 0 {
            return Err(TrainError::Input("grpo: train_step needs at least one batch of prompts".into()));
        }
        let mut metrics = Metrics::new();
        self.last_samples.clear();
        let mut scored = Vec::with_capacity(k);
        for p in prompt_batches {
            let mut m = Metrics::new();
            scored.push(self.sample(p, &mut m)?);
            add_mean(&mut metrics, m, k as f64);
        }
        // DAPO: one normaliser for the whole generation batch.
        let total_tokens: f64 = scored.iter().map(|s| s.rollout.num_loss_tokens()).sum();
        let per_iter = (k * self.cfg.num_iterations) as f64;
        let mut last = None;
        for _ in 0..self.cfg.num_iterations {
            for s in &scored {
                let mut m = Metrics::new();
                let (logps, mask, entropy) =
                    completion_only_token_logps(&self.policy, &s.rollout, self.cfg.temperature)?;
                let out = grpo_loss(
                    &logps,
                    s.old_logps.as_ref(),
                    s.ref_logps.as_ref(),
                    &s.advantages,
                    &mask,
                    &self.loss,
                    Some(total_tokens),
                )?;
                let loss = match self.loss.loss_type {
                    GrpoLossType::Dapo => out.loss,
                    _ => (out.loss / k as f64)?,
                };
                let raw = scalar(&loss)? * if self.loss.loss_type == GrpoLossType::Dapo { 1.0 } else { k as f64 };
                m.insert("loss".into(), raw);
                match (&out.kl, &s.ref_logps) {
                    (Some(kl), _) => {
                        m.insert("kl".into(), scalar(kl)?);
                    }
                    // beta = 0: the same k3 estimate, measured only (for `max_kl`).
                    (None, Some(r)) => {
                        let k3 = kl_estimate(&logps.detach(), r, KlEstimator::K3)?;
                        m.insert("kl".into(), scalar(&masked_mean_all(&k3, &mask)?)?);
                    }
                    (None, None) => {}
                }
                m.insert("clip_ratio/low_mean".into(), scalar(&out.clip_ratio_low)?);
                m.insert("clip_ratio/high_mean".into(), scalar(&out.clip_ratio_high)?);
                m.insert("clip_ratio/region_mean".into(), scalar(&out.clip_ratio_region)?);
                // TRL's min/max over ranks: one rank here.
                m.insert("clip_ratio/low_min".into(), m["clip_ratio/low_mean"]);
                m.insert("clip_ratio/high_max".into(), m["clip_ratio/high_mean"]);
                m.insert("entropy".into(), entropy);
                self.opt.accumulate(loss.backward()?)?;
                add_mean(&mut metrics, m, per_iter);
            }
            last = Some(self.opt.step()?);
        }
        if let Some(s) = last {
            metrics.insert("grad_norm".into(), s.grad_norm);
            metrics.insert("learning_rate".into(), s.learning_rate);
        }
        metrics.insert("num_tokens".into(), self.num_tokens);
        Ok(metrics)
    }

    /// Samples and scores without an update (`eval_*` metrics come from this).
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        self.sample(prompts, &mut m)?;
        Ok(m)
    }
}

/// `acc[key] += v / n` for each metric.
pub(crate) fn add_mean(acc: &mut Metrics, m: Metrics, n: f64) {
    for (key, v) in m {
        *acc.entry(key).or_insert(0.0) += v / n;
    }
}

/// Sequence-level sums `[N]` of per-token values `[N, T]` over the mask.
pub(crate) fn masked_row_sums(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((x * mask.to_dtype(x.dtype())?)?.sum(D::Minus1)?.to_dtype(DType::F32)?)
}

impl crate::run::Trainer for GrpoTrainer {
    type Batch = Vec<Vec<u32>>;
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        GrpoTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        GrpoTrainer::evaluate(self, batch)
    }
    fn model(&self) -> &Model {
        &self.policy
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.num_tokens
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({"generations": self.generations})
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.generations = state["generations"].as_u64().unwrap_or(0);
        Ok(())
    }
    fn samples(&self) -> Vec<crate::run::Sample> {
        self.last_samples.clone()
    }
}
