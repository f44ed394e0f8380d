//! ReMax (Li et al., arXiv:2310.10505, Algorithm 1): REINFORCE whose baseline is the reward of
//! the policy's own greedy response. Per prompt, `num_generations` sampled responses (the paper:
//! one) and one greedy response; the advantage of each sample is
//! `r(x, y_sampled) − r(x, y_greedy)` ([`remax_advantages`]), optionally with `beta` times the
//! sampled response's sequence KL to a reference subtracted from its reward (OpenRLHF's
//! `advantage_estimator = "remax"` with `init_kl_coef`). No critic, no group: the greedy
//! decode is the variance reduction.
//!
//! The update is the on-policy policy gradient through [`grpo_loss`] with no old log-probs
//! (ratio ≡ 1), normalised by `loss_type` (default `grpo`: token mean per sequence).

use candle_core::Tensor;
use reins_model::{Model, SamplingConfig};
use serde::{Deserialize, Serialize};

use super::accumulation::{accumulate, finish_step};
use super::metrics::{completion_metrics, mean_reward, scalar};
use super::reference::Reference;
use super::rollout::{completion_entropy, completion_token_logps, masked_row_sums, reference_logps, rollout};
use super::Metrics;
use crate::losses::kl::{kl_estimate, KlEstimator};
use crate::losses::ppo::{grpo_loss, GrpoLossConfig, GrpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::rewards::RewardSource;
use crate::rl::advantages::remax_advantages;
use crate::run::Sample;
use crate::{Result, TrainError};

/// ReMax options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemaxConfig {
    /// Sampled responses per prompt, all sharing the prompt's greedy baseline (default 1).
    pub num_generations: usize,
    /// KL coefficient on the sampled reward (default 0: no reference pass).
    pub beta: f64,
    /// Loss normalisation (default `grpo`).
    pub loss_type: GrpoLossType,
    /// New tokens per response at most (default 256).
    pub max_completion_length: usize,
    /// Sampling temperature (default 1.0); the greedy baseline ignores it.
    pub temperature: f64,
    /// Nucleus sampling (default 1.0 = off).
    pub top_p: f64,
    /// Top-k; 0 = off (default).
    pub top_k: usize,
    /// Sampler seed; generation `i` uses `seed + i` (default 42).
    pub seed: u64,
}

impl Default for RemaxConfig {
    fn default() -> Self {
        RemaxConfig {
            num_generations: 1,
            beta: 0.0,
            loss_type: GrpoLossType::Grpo,
            max_completion_length: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 42,
        }
    }
}

impl RemaxConfig {
    pub fn validate(&self) -> Result<()> {
        if self.num_generations == 0 || self.max_completion_length == 0 {
            return Err(TrainError::Config("num_generations and max_completion_length must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::Config("temperature must be > 0".into()));
        }
        Ok(())
    }
}

pub struct RemaxTrainer {
    pub policy: Model,
    /// Needed when `beta != 0`; when present, `kl` is logged at any `beta` (the CLI passes one
    /// when `max_kl` is set).
    pub reference: Option<Reference>,
    pub reward: Box<dyn RewardSource>,
    pub cfg: RemaxConfig,
    pub opt: Optimizer,
    pub generations: u64,
    pub num_tokens: f64,
    pub last_samples: Vec<Sample>,
}

impl RemaxTrainer {
    pub fn new(
        policy: Model,
        reference: Option<Reference>,
        reward: Box<dyn RewardSource>,
        cfg: RemaxConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        if cfg.beta != 0.0 && reference.is_none() {
            return Err(TrainError::Config(
                "beta != 0 needs a reference model (a frozen copy, or adapters off with LoRA); or set beta = 0".into(),
            ));
        }
        Ok(RemaxTrainer {
            policy,
            reference,
            reward,
            cfg,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
        })
    }

    /// One on-policy step over `prompt_batches` (gradient accumulation over micro-batches).
    pub fn train_step(&mut self, prompt_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        let k = prompt_batches.len();
        if k == 0 {
            return Err(TrainError::Input("remax: train_step needs at least one batch of prompts".into()));
        }
        self.last_samples.clear();
        let c = self.cfg.clone();
        let g = c.num_generations;
        let loss_cfg = GrpoLossConfig {
            beta: 0.0,
            loss_type: c.loss_type,
            max_completion_length: c.max_completion_length,
            ..Default::default()
        };
        let mut metrics = Metrics::new();
        accumulate(&mut self.opt, prompt_batches, &mut metrics, k as f64, |prompts| {
            let mut m = Metrics::new();
            let sampling = SamplingConfig {
                max_new_tokens: c.max_completion_length,
                do_sample: true,
                temperature: c.temperature,
                top_k: c.top_k,
                top_p: c.top_p,
                min_p: 0.0,
                seed: c.seed.wrapping_add(self.generations),
                stop_on_eos: true,
            };
            self.generations += 1;
            let r = rollout(&self.policy, prompts, g, &sampling, false)?;
            let greedy = rollout(&self.policy, prompts, 1, &SamplingConfig::greedy(c.max_completion_length), false)?;
            let scores = self.reward.score(&r.prompts, &r.completions)?;
            let baseline = self.reward.score(&greedy.prompts, &greedy.completions)?;
            self.last_samples.extend(Sample::rows(&r.prompts, &r.completions, &scores));
            completion_metrics(&r, &mut m);
            let n = scores.len();
            m.insert("reward".into(), mean_reward(&scores));
            m.insert("reward_greedy".into(), mean_reward(&baseline));
            self.num_tokens += r.num_tokens();

            let dev = self.policy.device().clone();
            let (logps, mask, logits) = completion_token_logps(&self.policy, &r, c.temperature)?;
            let mut rewards = Tensor::from_vec(scores, n, &dev)?;
            if let Some(rf) = &self.reference {
                let ref_logps = reference_logps(&self.policy, rf, &r, c.temperature)?;
                let kl = masked_row_sums(&kl_estimate(&logps.detach(), &ref_logps, KlEstimator::K1)?, &mask)?;
                m.insert("kl".into(), scalar(&kl.mean_all()?)?);
                if c.beta != 0.0 {
                    rewards = (rewards - (kl * c.beta)?)?;
                }
            }
            let base: Vec<f32> = baseline.iter().flat_map(|&b| std::iter::repeat_n(b, g)).collect();
            let adv = remax_advantages(&rewards, &Tensor::from_vec(base, n, &dev)?)?.detach();
            m.insert("advantages/mean".into(), scalar(&adv.mean_all()?)?);
            let out = grpo_loss(&logps, None, None, &adv, &mask, &loss_cfg, Some(r.num_loss_tokens()))?;
            m.insert("loss".into(), scalar(&out.loss)?);
            m.insert("entropy".into(), completion_entropy(&logits, &mask)?);
            Ok(((out.loss / k as f64)?, m))
        })?;
        finish_step(&mut self.opt, metrics, self.num_tokens)
    }

    /// Reward of the greedy responses (the ReMax baseline), no update.
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let greedy = rollout(&self.policy, prompts, 1, &SamplingConfig::greedy(self.cfg.max_completion_length), false)?;
        let s = self.reward.score(&greedy.prompts, &greedy.completions)?;
        let mut m = Metrics::new();
        completion_metrics(&greedy, &mut m);
        m.insert("reward".into(), mean_reward(&s));
        Ok(m)
    }
}

impl crate::run::Trainer for RemaxTrainer {
    type Batch = Vec<Vec<u32>>;
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        RemaxTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        RemaxTrainer::evaluate(self, batch)
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
