//! REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al., arXiv:2402.14740), TRL 1.16
//! `RLOOTrainer` semantics: `num_generations` (k) completions per prompt, the sequence reward
//! minus `beta` times the sequence KL to the reference (`Σ_t log π_old − log π_ref`), the
//! leave-one-out baseline ([`rloo_advantages`]), and a PPO-style clipped loss on the
//! sequence advantage (with `num_iterations = 1` the ratio is 1 and this is plain REINFORCE).
//!
//! `advantage_estimator = "reinforce_pp"` switches to REINFORCE++ (Hu, arXiv:2501.03262):
//! per-token rewards (score at the last token, `−beta·KL_t` on every token), discounted
//! reward-to-go whitened over the batch ([`reinforce_pp_advantages`]), and the token-level PPO
//! clipped loss ([`ppo_policy_loss`]). No per-prompt baseline, so `num_generations` may be 1.

use candle_core::Tensor;
use reins_model::Model;
use serde::{Deserialize, Serialize};

use super::accumulation::{accumulate, log_step};
use super::metrics::{add_mean, completion_metrics, reward_metrics, reward_source_metrics, scalar};
use super::reference::Reference;
use super::rollout::{
    completion_entropy, completion_token_logps, masked_row_sums, reference_logps, rollout_from, token_rewards_tensor,
    CompletionSource, Rollout,
};
use super::Metrics;
use crate::losses::kl::{kl_estimate, kl_penalized_rewards, KlEstimator};
use crate::losses::ppo::{grpo_loss, ppo_policy_loss, rloo_sequence_loss, GrpoLossConfig, GrpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::rewards::RewardSource;
use crate::rl::advantages::{reinforce_pp_advantages, rloo_advantages};
use crate::{Result, TrainError};

/// Which advantage estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// Leave-one-out baseline on sequence rewards (RLOO). Default.
    #[default]
    Rloo,
    /// REINFORCE++: whitened per-token reward-to-go, no critic, no group baseline.
    ReinforcePp,
}

/// RLOO options (TRL `RLOOConfig` names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlooConfig {
    /// Completions per prompt, k (default 2).
    pub num_generations: usize,
    /// KL coefficient on the reward (default 0.05); 0 skips the reference pass.
    pub beta: f64,
    /// Clip range ε of the ratio (default 0.2).
    pub epsilon: f64,
    /// Upper clip ε_high; `None` means `epsilon` (default).
    pub epsilon_high: Option<f64>,
    /// Whiten the advantages over the batch (default false).
    pub normalize_advantages: bool,
    /// Clamp sequence rewards to `[lo, hi]` before the KL penalty (default off).
    pub reward_clip_range: Option<(f32, f32)>,
    /// `rloo` (default) or `reinforce_pp`.
    pub advantage_estimator: AdvantageEstimator,
    /// Discount γ of REINFORCE++'s reward-to-go (default 1.0).
    pub gamma: f64,
    /// Loss normalisation of the RLOO loss. Unset (default): TRL 1.16's sequence-level loss
    /// ([`rloo_sequence_loss`]: one ratio per completion on its summed log-probs, mean over
    /// completions); `grpo`, `bnpo`, `dr_grpo` or `dapo` use [`grpo_loss`]'s per-token ratios.
    pub loss_type: Option<GrpoLossType>,
    /// Optimisation passes over one generation batch (default 1).
    pub num_iterations: usize,
    /// New tokens per completion at most (default 512, TRL).
    pub max_completion_length: usize,
    /// Sampling temperature (default 1.0).
    pub temperature: f64,
    /// Nucleus sampling (default 1.0 = off).
    pub top_p: f64,
    /// Top-k; 0 = off (default).
    pub top_k: usize,
    /// Min-p; 0 = off (default).
    pub min_p: f64,
    /// Drop completions cut by `max_completion_length` from the loss (default false).
    pub mask_truncated_completions: bool,
    /// Sampler seed; generation `i` uses `seed + i` (default 42).
    pub seed: u64,
}

impl Default for RlooConfig {
    fn default() -> Self {
        RlooConfig {
            num_generations: 2,
            beta: 0.05,
            epsilon: 0.2,
            epsilon_high: None,
            normalize_advantages: false,
            reward_clip_range: None,
            advantage_estimator: AdvantageEstimator::Rloo,
            gamma: 1.0,
            loss_type: None,
            num_iterations: 1,
            max_completion_length: 512,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            mask_truncated_completions: false,
            seed: 42,
        }
    }
}

impl RlooConfig {
    pub fn validate(&self) -> Result<()> {
        let min_g = if self.advantage_estimator == AdvantageEstimator::Rloo { 2 } else { 1 };
        if self.num_generations < min_g {
            return Err(TrainError::Config(
                "num_generations must be at least 2 for RLOO (the baseline leaves one out)".into(),
            ));
        }
        if self.num_iterations == 0 {
            return Err(TrainError::Config("num_iterations must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::Config("temperature must be > 0".into()));
        }
        if let Some((lo, hi)) = self.reward_clip_range {
            if lo > hi {
                return Err(TrainError::Config("reward_clip_range: lower bound above upper bound".into()));
            }
        }
        Ok(())
    }

    fn sampling(&self, i: u64) -> reins_model::SamplingConfig {
        reins_model::SamplingConfig {
            max_new_tokens: self.max_completion_length,
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

struct Sampled {
    rollout: Rollout,
    scores: Vec<f32>,
    token_rewards: Option<Tensor>,
    ref_logps: Option<Tensor>,
}

pub struct RlooTrainer {
    pub policy: Model,
    /// Needed when `beta != 0`; when present, `kl` is logged at any `beta` (the CLI passes one
    /// when `max_kl` is set).
    pub reference: Option<Reference>,
    pub reward: Box<dyn RewardSource>,
    pub cfg: RlooConfig,
    pub opt: Optimizer,
    /// Generation batches sampled so far (seeds the sampler).
    pub generations: u64,
    /// Tokens seen so far.
    pub num_tokens: f64,
    /// The last step's completions and rewards (for `samples.jsonl`).
    pub last_samples: Vec<crate::run::Sample>,
    /// Completions from elsewhere instead of the sampler (default `None`: sample the policy).
    pub completions: Option<Box<dyn CompletionSource>>,
}

impl RlooTrainer {
    pub fn new(
        policy: Model,
        reference: Option<Reference>,
        reward: Box<dyn RewardSource>,
        cfg: RlooConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        if cfg.beta != 0.0 && reference.is_none() {
            return Err(TrainError::Config(
                "beta != 0 needs a reference model (a frozen copy, or adapters off with LoRA); or set beta = 0".into(),
            ));
        }
        Ok(RlooTrainer {
            policy,
            reference,
            reward,
            cfg,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
            completions: None,
        })
    }

    fn sample(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<Sampled> {
        let s = self.cfg.sampling(self.generations);
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
        let mut scores = self.reward.score(&r.prompts, &r.completions)?;
        if let Some((lo, hi)) = self.cfg.reward_clip_range {
            scores.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
        }
        self.last_samples.extend(crate::run::Sample::rows(&r.prompts, &r.completions, &scores));
        reward_metrics(&scores, g, m);
        reward_source_metrics(self.reward.name(), &scores, m);
        completion_metrics(&r, m);
        let dev = self.policy.device().clone();
        let token_rewards = match self.reward.score_tokens(&r.prompts, &r.completions)? {
            Some(v) => Some(token_rewards_tensor(&r, &v, &dev)?),
            None => None,
        };
        let ref_logps = match &self.reference {
            Some(rf) => Some(reference_logps(&self.policy, rf, &r, self.cfg.temperature)?),
            None => None,
        };
        self.num_tokens += r.num_tokens();
        Ok(Sampled { rollout: r, scores, token_rewards, ref_logps })
    }

    /// Advantages from the behaviour log-probs `old [N, T-1]`: `[N]` (RLOO) or `[N, T-1]`
    /// (REINFORCE++), and the mean per-token KL (`None` without a reference: not measured).
    fn advantages(cfg: &RlooConfig, s: &Sampled, old: &Tensor, mask: &Tensor) -> Result<(Tensor, Option<f64>)> {
        let kl = match &s.ref_logps {
            Some(r) => kl_estimate(old, r, KlEstimator::K1)?,
            None => old.zeros_like()?,
        };
        let seq_kl = masked_row_sums(&kl, mask)?;
        // TRL logs the KL per completion token (not per sequence).
        let mean_kl = match s.ref_logps {
            Some(_) => {
                let tokens = scalar(&mask.to_dtype(candle_core::DType::F32)?.sum_all()?)?.max(1.0);
                Some(scalar(&seq_kl.sum_all()?)? / tokens)
            }
            None => None,
        };
        let n = s.scores.len();
        let scores = Tensor::from_vec(s.scores.clone(), n, old.device())?;
        let adv = match cfg.advantage_estimator {
            AdvantageEstimator::Rloo => {
                let mut rewards = (scores - (seq_kl * cfg.beta)?)?;
                if let Some(tr) = &s.token_rewards {
                    rewards = (rewards + masked_row_sums(tr, mask)?)?;
                }
                rloo_advantages(&rewards, cfg.num_generations, cfg.normalize_advantages)?
            }
            AdvantageEstimator::ReinforcePp => {
                let tr = kl_penalized_rewards(&kl, mask, Some(&scores), s.token_rewards.as_ref(), cfg.beta)?;
                reinforce_pp_advantages(&tr, mask, cfg.gamma)?
            }
        };
        Ok((adv.detach(), mean_kl))
    }

    /// One generation over `prompt_batches` (one micro-batch each), then `num_iterations`
    /// optimizer steps with gradient accumulation over the micro-batches.
    pub fn train_step(&mut self, prompt_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        let k = prompt_batches.len();
        if k == 0 {
            return Err(TrainError::Input("rloo: train_step needs at least one batch of prompts".into()));
        }
        let mut metrics = Metrics::new();
        self.last_samples.clear();
        let mut sampled = Vec::with_capacity(k);
        for p in prompt_batches {
            let mut m = Metrics::new();
            sampled.push(self.sample(p, &mut m)?);
            add_mean(&mut metrics, m, k as f64);
        }
        let loss_cfg = GrpoLossConfig {
            beta: 0.0,
            epsilon: self.cfg.epsilon,
            epsilon_high: self.cfg.epsilon_high,
            loss_type: self.cfg.loss_type.unwrap_or_default(),
            max_completion_length: self.cfg.max_completion_length,
            ..Default::default()
        };
        let total_tokens: f64 = sampled.iter().map(|s| s.rollout.num_loss_tokens()).sum();
        let per_iter = (k * self.cfg.num_iterations) as f64;
        // Behaviour log-probs and advantages come from the first pass (before any update).
        let mut behaviour: Vec<Option<(Tensor, Tensor)>> = vec![None; k];
        let mut last = None;
        for _ in 0..self.cfg.num_iterations {
            accumulate(&mut self.opt, sampled.iter().zip(behaviour.iter_mut()), &mut metrics, per_iter, |(s, beh)| {
                let mut m = Metrics::new();
                let (logps, mask, logits) = completion_token_logps(&self.policy, &s.rollout, self.cfg.temperature)?;
                if beh.is_none() {
                    let old = logps.detach();
                    let (adv, kl) = Self::advantages(&self.cfg, s, &old, &mask)?;
                    if let Some(kl) = kl {
                        m.insert("kl".into(), kl * per_iter / k as f64);
                    }
                    *beh = Some((old, adv));
                }
                let (old, adv) = beh.as_ref().expect("set above");
                let loss = match self.cfg.advantage_estimator {
                    AdvantageEstimator::Rloo => {
                        let out = match self.cfg.loss_type {
                            None => {
                                let hi = self.cfg.epsilon_high.unwrap_or(self.cfg.epsilon);
                                rloo_sequence_loss(&logps, old, adv, &mask, self.cfg.epsilon, hi)?
                            }
                            Some(_) => grpo_loss(&logps, Some(old), None, adv, &mask, &loss_cfg, Some(total_tokens))?,
                        };
                        m.insert("clip_ratio/low_mean".into(), scalar(&out.clip_ratio_low)?);
                        m.insert("clip_ratio/high_mean".into(), scalar(&out.clip_ratio_high)?);
                        m.insert("clip_ratio/region_mean".into(), scalar(&out.clip_ratio_region)?);
                        // TRL's min/max over ranks: one rank here.
                        m.insert("clip_ratio/low_min".into(), m["clip_ratio/low_mean"]);
                        m.insert("clip_ratio/high_max".into(), m["clip_ratio/high_mean"]);
                        if self.cfg.loss_type == Some(GrpoLossType::Dapo) {
                            out.loss
                        } else {
                            (out.loss / k as f64)?
                        }
                    }
                    AdvantageEstimator::ReinforcePp => {
                        let out = ppo_policy_loss(&logps, old, adv, &mask, self.cfg.epsilon)?;
                        m.insert("clip_ratio/region_mean".into(), scalar(&out.clipfrac)?);
                        m.insert("policy/approxkl".into(), scalar(&out.approx_kl)?);
                        (out.loss / k as f64)?
                    }
                };
                m.insert("loss".into(), scalar(&loss)? * k as f64);
                m.insert("entropy".into(), completion_entropy(&logits, &mask)?);
                Ok((loss, m))
            })?;
            last = Some(self.opt.step()?);
        }
        if let Some(s) = last {
            log_step(&mut metrics, &s, self.num_tokens);
        }
        Ok(metrics)
    }

    /// Samples and scores without an update.
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        self.sample(prompts, &mut m)?;
        Ok(m)
    }
}

impl crate::run::Trainer for RlooTrainer {
    type Batch = Vec<Vec<u32>>;
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        RlooTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        RlooTrainer::evaluate(self, batch)
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
