//! Nash-MD (Munos et al., arXiv:2312.00886), TRL's `NashMDTrainer` semantics (TRL ≤ 1.13): per
//! prompt the policy samples `y` and the geometric mixture `π^β ∝ π_θ^{1−β}·π_ref^β` of policy
//! and reference samples the opponent `y'` (logits `(1 − β)·z_θ + β·z_ref` per token, each
//! model with its own KV cache); a preference source gives `P(y ≻ y')` — `σ(r(y) − r(y'))` from
//! a reward, as TRL, or any [`PairwiseJudge`]'s probability — and one step of
//! [`nash_md_loss`] runs on the policy's own samples. `β = mixture_coef`; `beta` is the KL
//! strength (the paper's τ).
//!
//! Metrics are TRL's: `loss/score`, `loss/kl`, `objective/entropy`, `rewards/probabilities`,
//! `rewards/margins` and `rewards/accuracies` (of the sequence log-ratio policy − reference),
//! `logps/chosen` (policy) and `logps/rejected` (reference) of the policy's samples,
//! `rewards/chosen` and `rewards/rejected` (scores of `y` and `y'`, with a reward source),
//! `val/model_contain_eos_token`, `val/ref_contain_eos_token`, `beta`, `mixture_coef`; plus
//! `reward` (the mean score of `y`, with a reward source).

use candle_core::Tensor;
use rand::SeedableRng;
use reins_model::generate::{generate_mixture, Finish, Hooks};
use reins_model::{Model, SamplingConfig};
use serde::{Deserialize, Serialize};

use super::accumulation::{accumulate, finish_step};
use super::metrics::{completion_metrics, mean, mean_reward};
use super::online_dpo::OnlineDpoConfig;
use super::reference::Reference;
use super::rollout::{completion_token_logps, layout_generation, reference_logps, rollout, score_rollout, Rollout};
use super::Metrics;
pub use crate::judges::Preferences;
use crate::losses::nash_md::{bt_probability, nash_md_loss, KlEstimator};
use crate::optim::optimizer::Optimizer;
use crate::run::Sample;
use crate::{Result, TrainError};

/// Nash-MD's own settings: TRL's `NashMDConfig` names. As in TRL, where `NashMDConfig` extends
/// `OnlineDPOConfig`, sampling (`max_new_tokens`, `temperature`, `top_p`, `top_k`,
/// `missing_eos_penalty`, `seed`) is [`OnlineDpoConfig`]'s; Nash-MD's loss reads plain logits,
/// whatever the sampling temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NashMdConfig {
    /// KL strength toward the reference (the paper's τ; TRL default 0.1).
    pub beta: f64,
    /// Weight β of the reference in the opponent's geometric mixture: 0 is self-play, 1 plays
    /// the reference (TRL default 0.5; the paper found 0.125–0.375 best).
    pub mixture_coef: f64,
    /// `per_token` (TRL, default) or `reward_to_go` (the paper's sequence estimator).
    pub kl_estimator: KlEstimator,
}

impl Default for NashMdConfig {
    fn default() -> Self {
        NashMdConfig { beta: 0.1, mixture_coef: 0.5, kl_estimator: KlEstimator::PerToken }
    }
}

impl NashMdConfig {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.mixture_coef) {
            return Err(TrainError::Config(format!(
                "mixture_coef must lie in [0, 1] (got {}): 0 is self-play, 1 plays the reference; the paper's best \
                 range is 0.125-0.375",
                self.mixture_coef
            )));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(TrainError::Config(format!("beta must be a number >= 0 (got {})", self.beta)));
        }
        Ok(())
    }
}

/// A batch's policy samples `y`, mixture samples `y'` (row `i` of each answers prompt `i`) and
/// `P(y ≻ y')`.
pub struct NashMdBatch {
    pub policy: Rollout,
    pub mixture: Rollout,
    pub probability: Vec<f64>,
    /// The scores of `y` and `y'` when a reward gave the probability.
    pub scores: Option<(Vec<f32>, Vec<f32>)>,
}

pub struct NashMdTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub preferences: Preferences,
    pub cfg: NashMdConfig,
    /// Sampling of both players (TRL's `OnlineDPOConfig` part).
    pub sampling: OnlineDpoConfig,
    pub opt: Optimizer,
    /// Generation batches sampled so far (seeds the samplers).
    pub generations: u64,
    pub num_tokens: f64,
    pub last_samples: Vec<Sample>,
}

impl NashMdTrainer {
    pub fn new(
        policy: Model,
        reference: Reference,
        preferences: impl Into<Preferences>,
        cfg: NashMdConfig,
        sampling: OnlineDpoConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        sampling.validate()?;
        if matches!(reference, Reference::Precomputed) {
            return Err(TrainError::Config("Nash-MD samples from the reference: it needs a reference model".into()));
        }
        Ok(NashMdTrainer {
            policy,
            reference,
            preferences: preferences.into(),
            cfg,
            sampling,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
        })
    }

    /// Samples `y ~ π_θ` and `y' ~ π^β` for each prompt and judges each pair.
    pub fn sample(&mut self, prompts: &[Vec<u32>]) -> Result<NashMdBatch> {
        let generation = self.generations;
        self.generations += 1;
        let sampling = self.sampling.sampling(generation);
        let seed = sampling.seed;
        let policy = rollout(&self.policy, prompts, 1, &sampling, false)?;
        let reference = self.reference.model(&self.policy)?;
        let beta = self.cfg.mixture_coef;
        let mixture_sampling = SamplingConfig { seed: seed ^ 0x4d49_5854, ..sampling };
        let g = generate_mixture(
            &[(&self.policy, 1.0 - beta), (&reference, beta)],
            prompts,
            &mixture_sampling,
            Hooks::default(),
        )?;
        let mixture = layout_generation(&self.policy, prompts.to_vec(), g, false);
        self.num_tokens += policy.num_tokens() + mixture.num_tokens();
        let b = self.judge(policy, mixture, seed)?;
        let shown: Vec<f32> = match &b.scores {
            Some((a, _)) => a.clone(),
            None => b.probability.iter().map(|&p| p as f32).collect(),
        };
        self.last_samples.extend(Sample::rows(&b.policy.prompts, &b.policy.completions, &shown));
        Ok(b)
    }

    /// `P(y ≻ y')` for row `i` of `policy` against row `i` of `mixture` (same prompts): from
    /// the reward's scores (`missing_eos_penalty` applied) or the judge (seeded by `seed`).
    pub fn judge(&self, policy: Rollout, mixture: Rollout, seed: u64) -> Result<NashMdBatch> {
        if policy.prompts != mixture.prompts {
            return Err(TrainError::Input(
                "nash_md: the policy's and the mixture's samples answer other prompts".into(),
            ));
        }
        let (probability, scores) = match &self.preferences {
            Preferences::Reward(r) => {
                let a = score_rollout(r.as_ref(), &policy, self.sampling.missing_eos_penalty)?;
                let b = score_rollout(r.as_ref(), &mixture, self.sampling.missing_eos_penalty)?;
                (bt_probability(&a, &b), Some((a, b)))
            }
            Preferences::Judge(j) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x4a55_4447);
                let p = (0..policy.prompts.len())
                    .map(|i| {
                        j.judge(&policy.prompts[i], &policy.completions[i], &mixture.completions[i], &mut rng)
                            .map(|x| x.p_a)
                    })
                    .collect::<Result<Vec<f64>>>()?;
                (p, None)
            }
        };
        Ok(NashMdBatch { policy, mixture, probability, scores })
    }

    /// One optimizer step on already sampled batches (one per micro-batch; the loss is averaged
    /// over them).
    pub fn step_on(&mut self, batches: Vec<NashMdBatch>) -> Result<Metrics> {
        let k = batches.len();
        if k == 0 {
            return Err(TrainError::Input("nash_md: a step needs at least one batch of prompts".into()));
        }
        let mut metrics = Metrics::new();
        let (policy, reference, cfg) = (&self.policy, &self.reference, &self.cfg);
        accumulate(&mut self.opt, batches, &mut metrics, k as f64, |b| {
            let (loss, m) = batch_loss(policy, reference, cfg, &b)?;
            Ok(((loss / k as f64)?, m))
        })?;
        metrics.insert("beta".into(), self.cfg.beta);
        metrics.insert("mixture_coef".into(), self.cfg.mixture_coef);
        finish_step(&mut self.opt, metrics, self.num_tokens)
    }

    /// Samples every micro-batch (before any update), then one optimizer step.
    pub fn train_step(&mut self, prompt_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        self.last_samples.clear();
        let batches = prompt_batches.iter().map(|p| self.sample(p)).collect::<Result<Vec<_>>>()?;
        self.step_on(batches)
    }
}

/// The loss of one batch (mean over its rows) and TRL's statistics.
pub fn batch_loss(
    policy: &Model,
    reference: &Reference,
    cfg: &NashMdConfig,
    b: &NashMdBatch,
) -> Result<(Tensor, Metrics)> {
    let (per_token, mask, _) = completion_token_logps(policy, &b.policy, 1.0)?;
    let ref_per_token = reference_logps(policy, reference, &b.policy, 1.0)?;
    let dtype = per_token.dtype();
    let p = Tensor::new(b.probability.as_slice(), per_token.device())?.to_dtype(dtype)?;
    let out = nash_md_loss(&per_token, &ref_per_token.to_dtype(dtype)?, &mask, &p, cfg.beta, cfg.kl_estimator)?;
    let mut m = Metrics::new();
    m.insert("loss".into(), mean(&out.loss.detach())?);
    let mask = mask.to_dtype(dtype)?;
    let logps = (per_token.detach() * &mask)?.sum(candle_core::D::Minus1)?;
    let ref_logps = (ref_per_token.to_dtype(dtype)? * &mask)?.sum(candle_core::D::Minus1)?;
    let margin = (&logps - &ref_logps)?;
    m.insert("loss/score".into(), mean(&out.score)?);
    m.insert("loss/kl".into(), mean(&out.kl)?);
    m.insert("logps/chosen".into(), mean(&logps)?);
    m.insert("logps/rejected".into(), mean(&ref_logps)?);
    m.insert("objective/entropy".into(), -mean(&logps)?);
    m.insert("rewards/margins".into(), mean(&margin)?);
    m.insert("rewards/accuracies".into(), mean(&margin.gt(0.0)?)?);
    m.insert("rewards/probabilities".into(), b.probability.iter().sum::<f64>() / b.probability.len().max(1) as f64);
    if let Some((a, o)) = &b.scores {
        m.insert("rewards/chosen".into(), mean_reward(a));
        m.insert("rewards/rejected".into(), mean_reward(o));
        m.insert("reward".into(), mean_reward(a));
    }
    let eos =
        |r: &Rollout| r.finish.iter().filter(|f| **f == Finish::Eos).count() as f64 / r.finish.len().max(1) as f64;
    m.insert("val/model_contain_eos_token".into(), eos(&b.policy));
    m.insert("val/ref_contain_eos_token".into(), eos(&b.mixture));
    completion_metrics(&b.policy, &mut m);
    Ok((out.loss, m))
}

impl crate::run::Trainer for NashMdTrainer {
    type Batch = Vec<Vec<u32>>;
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        NashMdTrainer::train_step(self, micro_batches)
    }
    /// Samples and judges without an update.
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        let b = self.sample(batch)?;
        let mut m = Metrics::new();
        completion_metrics(&b.policy, &mut m);
        m.insert("rewards/probabilities".into(), b.probability.iter().sum::<f64>() / b.probability.len().max(1) as f64);
        if let Some((a, _)) = &b.scores {
            m.insert("reward".into(), mean_reward(a));
        }
        Ok(m)
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
    fn samples(&self) -> Vec<Sample> {
        self.last_samples.clone()
    }
}
