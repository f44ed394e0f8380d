//! Group Relative Policy Optimization (Shao et al., arXiv:2402.03300 §4), TRL 1.16
//! `GRPOTrainer` semantics: per step, `num_generations` completions of every prompt from the
//! sampler, one reward per completion from a [`RewardSource`], group-relative advantages
//! ([`grpo_advantages`]), then the clipped surrogate [`grpo_loss`] (GRPO/BNPO/Dr.GRPO/DAPO
//! normalisation) with an optional k3 KL to a frozen reference (`beta`, default 0). Without a
//! reference there is no reference pass at all; with one (needed for `beta != 0`; the CLI also
//! passes one when `max_kl` is set), `kl` is measured and logged even at `beta = 0`.
//!
//! Dr. GRPO (arXiv:2503.20783) is `scale_rewards = "none"` with `loss_type = "dr_grpo"`.

use candle_core::Tensor;
use reins_model::generate::SamplingConfig;
use reins_model::Model;
use serde::{Deserialize, Serialize};

use super::accumulation::{accumulate, log_step};
use super::metrics::{add_mean, completion_metrics, reward_metrics, reward_source_metrics, scalar};
use super::reference::Reference;
use super::rollout::{
    completion_only_token_logps, reference_logps, repeat_prompts, rollout_from, rollout_of_source,
    sampler_logps_tensor, CompletionSource, Rollout,
};
use super::rollout_server::ServerRollouts;
use super::Metrics;
use crate::losses::kl::{kl_estimate, KlEstimator};
use crate::losses::ops::masked_mean_all;
use crate::losses::ppo::{grpo_loss_weighted, GrpoLossConfig, GrpoLossType};
use crate::losses::sampler_correction::sampler_correction_weights;
use crate::optim::optimizer::Optimizer;
use crate::rewards::RewardSource;
use crate::rl::advantages::{grpo_advantages, ScaleRewards};
use crate::{parallel, Result, TrainError};

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

/// The policy's forward on a scored batch (log-probs, mask, entropy, as
/// [`completion_only_token_logps`]) and the reference's log-probs: those computed when sampling,
/// or a reference pass run beside the forward. Both passes only read weights, and on a CPU each
/// is a chain of short ops that two threads share poorly; side by side, each thread mostly
/// works on its own (GRPO +7–10 % steps/s on 2 cores, docs/speed.md).
#[allow(clippy::type_complexity)]
fn reference_beside(
    policy: &Model,
    reference: Option<&Reference>,
    s: &Scored,
    temperature: f64,
) -> Result<((Tensor, Tensor, f64), Option<Tensor>)> {
    let forward = || completion_only_token_logps(policy, &s.rollout, temperature);
    match (reference, &s.ref_logps) {
        (Some(rf), None) => {
            let (p, r) = rayon::join(forward, || reference_logps(policy, rf, &s.rollout, temperature));
            Ok((p?, Some(r?)))
        }
        (_, done) => Ok((forward()?, done.clone())),
    }
}

/// A sampled generation batch, scored and ready for the loss.
struct Scored {
    rollout: Rollout,
    advantages: Tensor,
    old_logps: Option<Tensor>,
    /// The reference's log-probs, computed here when several iterations reuse them; with one,
    /// the reference pass runs beside the policy's forward ([`reference_beside`]).
    ref_logps: Option<Tensor>,
    /// The server sampler's log-probs of the completion tokens, for the importance-sampling
    /// correction ([`super::rollout_server::ServerRollouts`]).
    sampler_logps: Option<Tensor>,
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
    /// How completions from a server are used: the policy lag allowed and the correction.
    pub server: ServerRollouts,
    /// The next step's prompt batches, when the run loop gives them (`max_policy_lag ≥ 1`).
    upcoming: Vec<Vec<Vec<u32>>>,
    /// Optimizer updates taken so far (the learner's version).
    updates: u64,
    /// The learner version the server last received.
    pushed_at: Option<u64>,
    /// Generations sent to the server ahead of time, with the version they were sampled from.
    started: Vec<(u64, u64)>,
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
            server: ServerRollouts::default(),
            upcoming: Vec::new(),
            updates: 0,
            pushed_at: None,
            started: Vec::new(),
        })
    }

    /// Pushes the policy to the server unless its weights are recent enough for a batch trained
    /// at learner version `trained_at` (`max_policy_lag`); the server then samples generation
    /// `generation` of `prompts` in the background.
    fn start_on_server(&mut self, prompts: &[Vec<u32>], generation: u64, trained_at: u64) -> Result<()> {
        let s = self.cfg.sampling(self.loss.max_completion_length, generation);
        let Some(source) = self.completions.as_deref_mut() else { return Ok(()) };
        if self.pushed_at.is_none_or(|p| p + self.server.max_policy_lag < trained_at) {
            source.sync(&self.policy, &s)?;
            self.pushed_at = Some(self.updates);
        }
        let rows = repeat_prompts(prompts, self.cfg.num_generations);
        if !source.start(&rows, generation, &s)? {
            return Err(TrainError::Config(
                "max_policy_lag > 0 needs a completion source that samples in the background (a rollout server)".into(),
            ));
        }
        self.started.push((generation, self.pushed_at.unwrap_or(0)));
        Ok(())
    }

    /// The rollout of the next generation: from the sampler, from the completion source (the
    /// policy pushed first), or — with `max_policy_lag ≥ 1` — from the server's background
    /// request for it, started last step or now. Logs `rollout/policy_lag` (learner updates
    /// between the pushed weights that sampled the batch and the learner that trains on it).
    fn next_rollout(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<Rollout> {
        let generation = self.generations;
        let s = self.cfg.sampling(self.loss.max_completion_length, generation);
        self.generations += 1;
        let g = self.cfg.num_generations;
        let mask_truncated = self.cfg.mask_truncated_completions;
        if self.completions.is_none() || self.server.max_policy_lag == 0 {
            let source = self.completions.as_deref_mut();
            return rollout_from(source, generation, &self.policy, prompts, g, &s, mask_truncated);
        }
        if !self.started.iter().any(|(gen, _)| *gen == generation) {
            self.start_on_server(prompts, generation, self.updates)?;
        }
        let i = self
            .started
            .iter()
            .position(|(gen, _)| *gen == generation)
            .ok_or_else(|| TrainError::State(format!("generation {generation} was not sent to the server")))?;
        let (_, version) = self.started.remove(i);
        m.insert("rollout/policy_lag".into(), (self.updates - version) as f64);
        let source = self.completions.as_deref_mut().ok_or_else(|| TrainError::Input("no completion source".into()))?;
        rollout_of_source(source, generation, &self.policy, prompts, g, mask_truncated)
    }

    /// The sampler's log-probs of a server rollout's tokens, when the importance-sampling
    /// correction needs them; `None` without a server or with the correction off.
    fn sampler_logps(&self, r: &Rollout) -> Result<Option<Tensor>> {
        if self.completions.is_none() || self.server.correction.is_none() {
            return Ok(None);
        }
        let sampler = sampler_logps_tensor(r, self.policy.device())?.ok_or_else(|| {
            TrainError::Config(
                "the rollout server returned no log-probs (`logprobs.token_logprobs`), which the importance-sampling \
                 correction needs; use a server that returns them, or set vllm_importance_sampling_correction = false"
                    .into(),
            )
        })?;
        Ok(Some(sampler))
    }

    /// Samples, scores and computes advantages for one batch of prompts.
    fn sample(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<Scored> {
        let g = self.cfg.num_generations;
        let r = self.next_rollout(prompts, m)?;
        let rewards = self.reward.score(&r.prompts, &r.completions)?;
        self.last_samples.extend(crate::run::Sample::rows(&r.prompts, &r.completions, &rewards));
        // Advantages and reward statistics over the whole batch, every data-parallel rank's rows
        // included (a batch-scaled std needs them all); this rank keeps its own rows' advantages.
        let n = rewards.len();
        let all = parallel::gather_f32(&rewards)?;
        reward_metrics(&all, g, m);
        reward_source_metrics(self.reward.name(), &all, m);
        completion_metrics(&r, m);
        let total = all.len();
        let advantages = grpo_advantages(
            &Tensor::from_vec(all, total, self.policy.device())?,
            g,
            self.cfg.scale_rewards,
        )?
        .narrow(0, parallel::world().rank() * n, n)?;
        let old_logps = if self.cfg.num_iterations > 1 {
            Some(completion_only_token_logps(&self.policy.detached(), &r, self.cfg.temperature)?.0)
        } else {
            None
        };
        let ref_logps = match &self.reference {
            Some(rf) if self.cfg.num_iterations > 1 => {
                Some(reference_logps(&self.policy, rf, &r, self.cfg.temperature)?)
            }
            _ => None,
        };
        let sampler_logps = self.sampler_logps(&r)?;
        self.num_tokens += r.num_tokens();
        Ok(Scored { rollout: r, advantages, old_logps, ref_logps, sampler_logps })
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
        // With a policy lag allowed, the server samples the next step's batches while this one
        // trains; they will be trained on after this update.
        for (i, p) in std::mem::take(&mut self.upcoming).iter().enumerate() {
            self.start_on_server(p, self.generations + i as u64, self.updates + 1)?;
        }
        // DAPO: one normaliser for the whole generation batch, over all data-parallel ranks; a
        // rank's loss is scaled by their number, as the optimizer averages the ranks' gradients.
        let total_tokens = parallel::sum_over_ranks(scored.iter().map(|s| s.rollout.num_loss_tokens()).sum())?;
        let ranks = parallel::world().world_size() as f64;
        let per_iter = (k * self.cfg.num_iterations) as f64;
        let mut last = None;
        for _ in 0..self.cfg.num_iterations {
            accumulate(&mut self.opt, &scored, &mut metrics, per_iter, |s| {
                let mut m = Metrics::new();
                let ((logps, mask, entropy), ref_logps) =
                    reference_beside(&self.policy, self.reference.as_ref(), s, self.cfg.temperature)?;
                // The learner/sampler ratio, against the old policy (this pass, detached, when on-policy).
                let sampler_weights = match (&s.sampler_logps, &self.server.correction) {
                    (Some(sampler), Some(c)) => {
                        let old = s.old_logps.clone().unwrap_or_else(|| logps.detach());
                        let w = sampler_correction_weights(&old, sampler, &mask, c)?;
                        sampling_metrics(&old, sampler, &w, &mask, &mut m)?;
                        Some(w)
                    }
                    _ => None,
                };
                let out = grpo_loss_weighted(
                    &logps,
                    s.old_logps.as_ref(),
                    ref_logps.as_ref(),
                    &s.advantages,
                    &mask,
                    &self.loss,
                    Some(total_tokens),
                    sampler_weights.as_ref(),
                )?;
                let loss = match self.loss.loss_type {
                    GrpoLossType::Dapo => (out.loss * ranks)?,
                    _ => (out.loss / k as f64)?,
                };
                let raw = scalar(&loss)? * if self.loss.loss_type == GrpoLossType::Dapo { 1.0 } else { k as f64 };
                m.insert("loss".into(), raw);
                match (&out.kl, &ref_logps) {
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
                Ok((loss, m))
            })?;
            last = Some(self.opt.step()?);
        }
        if let Some(s) = last {
            log_step(&mut metrics, &s, self.num_tokens);
        }
        self.updates += 1;
        Ok(metrics)
    }

    /// Samples and scores without an update (`eval_*` metrics come from this).
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        self.sample(prompts, &mut m)?;
        Ok(m)
    }
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
    fn wants_upcoming(&self) -> bool {
        self.completions.is_some() && self.server.max_policy_lag > 0
    }
    fn upcoming(&mut self, next: &[Vec<Vec<u32>>]) {
        self.upcoming = next.to_vec();
    }
}

/// TRL's `sampling/*` statistics over completion tokens: how far the learner's log-probs `old`
/// are from the sampler's, and the importance weights `w` they give.
fn sampling_metrics(old: &Tensor, sampler: &Tensor, w: &Tensor, mask: &Tensor, m: &mut Metrics) -> Result<()> {
    let f32s = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?) };
    let on = f32s(mask)?;
    let picked = |v: Vec<f32>| v.iter().zip(&on).filter(|(_, &k)| k > 0.0).map(|(x, _)| *x as f64).collect::<Vec<_>>();
    let (d, r) = (picked(f32s(&(old - sampler)?.abs()?)?), picked(f32s(w)?));
    if d.is_empty() {
        return Ok(());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    m.insert("sampling/sampling_logp_difference/mean".into(), mean(&d));
    m.insert("sampling/sampling_logp_difference/max".into(), d.iter().cloned().fold(0.0, f64::max));
    m.insert("sampling/importance_sampling_ratio/min".into(), r.iter().cloned().fold(f64::INFINITY, f64::min));
    m.insert("sampling/importance_sampling_ratio/mean".into(), mean(&r));
    m.insert("sampling/importance_sampling_ratio/max".into(), r.iter().cloned().fold(0.0, f64::max));
    Ok(())
}
