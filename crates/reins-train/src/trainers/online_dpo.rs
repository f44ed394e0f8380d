//! Online DPO (Guo et al., arXiv:2402.04792 "Direct Language Model Alignment from Online AI
//! Feedback"), TRL 1.16 `OnlineDPOTrainer` semantics: per prompt the current policy samples two
//! completions, a reward source scores them (the higher one is `chosen`, ties go to the first)
//! or a pairwise judge compares them (the first is `chosen` when `P(first ≻ second) ≥ ½`), and
//! one step of the ordinary DPO loss ([`dpo_loss`], every `loss_type`) runs on those fresh pairs
//! against a frozen reference. Log-probs use `logits / temperature`, as in TRL. With a judge
//! there are no scores: the `objective/scores*` and `rlhf_reward` keys are not logged.
//!
//! Metrics are TRL's: `objective/kl` (mean sequence `Σ log π − log π_ref` over both
//! completions), `objective/entropy`, `objective/non_score_reward` (`−β·kl`),
//! `objective/rlhf_reward`, `objective/scores`, `objective/scores_margin`, `rewards/chosen`,
//! `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, `logps/chosen`,
//! `logps/rejected`, `val/contain_eos_token`, `beta`; plus `reward` (= `objective/scores`).
//!
//! [`dpo_on_pairs`] is the piece iterative DPO ([`super::iterative_dpo`]) shares.

use candle_core::{Tensor, D};
use rand::SeedableRng;
use reins_model::generate::Finish;
use reins_model::{Model, SamplingConfig};
use serde::{Deserialize, Serialize};

use super::accumulation::{accumulate, finish_step};
use super::metrics::{completion_metrics, mean_reward, scalar};
use super::reference::Reference;
use super::rollout::{completion_token_logps, reference_logps, rollout_from, score_rollout, CompletionSource, Rollout};
use super::Metrics;
use crate::judges::Preferences;
use crate::losses::dpo::{dpo_loss, dpo_metrics};
use crate::losses::{DpoConfig, DpoExtras};
use crate::optim::optimizer::Optimizer;
use crate::run::Sample;
use crate::{Result, TrainError};

/// Sampling options of TRL's `OnlineDPOConfig` (the loss's `beta`, `loss_type`, … are
/// [`DpoConfig`]'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineDpoConfig {
    /// New tokens per completion at most (default 64).
    pub max_new_tokens: usize,
    /// Sampling temperature, also applied to the loss's logits (default 0.9).
    pub temperature: f64,
    /// Nucleus sampling (default 1.0 = off).
    pub top_p: f64,
    /// Top-k; 0 = off (default).
    pub top_k: usize,
    /// Subtracted from the score of a completion without an EOS (default off).
    pub missing_eos_penalty: Option<f32>,
    /// Sampler seed; generation `i` uses `seed + i` (default 42).
    pub seed: u64,
}

impl Default for OnlineDpoConfig {
    fn default() -> Self {
        OnlineDpoConfig {
            max_new_tokens: 64,
            temperature: 0.9,
            top_p: 1.0,
            top_k: 0,
            missing_eos_penalty: None,
            seed: 42,
        }
    }
}

impl OnlineDpoConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(TrainError::Config("max_new_tokens must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::Config("temperature must be > 0".into()));
        }
        Ok(())
    }

    /// Sampler settings of generation `i`.
    pub fn sampling(&self, i: u64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.max_new_tokens,
            do_sample: true,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: 0.0,
            seed: self.seed.wrapping_add(i),
            stop_on_eos: true,
        }
    }
}

/// The DPO loss on `pairs`: a rollout whose first `n` rows are the chosen completions and whose
/// last `n` rows the rejected ones (same prompts, same order). `soft_labels` (`n` values in
/// [0, 1], the probability that chosen is preferred) replace the hard label, as in
/// [`crate::losses::dpo_loss`]. Returns the loss (with graph through `policy`) and TRL's DPO
/// metrics plus `objective/kl` and `objective/entropy`.
pub fn dpo_on_pairs(
    policy: &Model,
    reference: &Reference,
    pairs: &Rollout,
    cfg: &DpoConfig,
    temperature: f64,
    soft_labels: Option<&[f32]>,
) -> Result<(Tensor, Metrics)> {
    let n = pairs.prompts.len() / 2;
    if n == 0 || pairs.prompts.len() != 2 * n {
        return Err(TrainError::Input(format!(
            "dpo_on_pairs: {} rows are not chosen + rejected pairs",
            pairs.prompts.len()
        )));
    }
    let (per_token, mask, _) = completion_token_logps(policy, pairs, temperature)?;
    let logps = per_token.sum(D::Minus1)?; // [2n]
    let ref_logps = reference_logps(policy, reference, pairs, temperature)?.sum(D::Minus1)?;
    let (c, r) = (logps.narrow(0, 0, n)?, logps.narrow(0, n, n)?);
    let (rc, rr) = (ref_logps.narrow(0, 0, n)?, ref_logps.narrow(0, n, n)?);
    let lengths = mask.sum(D::Minus1)?;
    let extras = DpoExtras {
        chosen_lengths: Some(lengths.narrow(0, 0, n)?),
        rejected_lengths: Some(lengths.narrow(0, n, n)?),
        soft_labels: soft_labels.map(|p| Tensor::new(p, c.device())).transpose()?,
        ..Default::default()
    };
    let out = dpo_loss(&c, &r, &rc, &rr, cfg, &extras)?;
    let mut m = dpo_metrics(&out, &c.detach(), &r.detach())?;
    let kl = (logps.detach() - &ref_logps)?;
    m.insert("objective/kl".into(), scalar(&kl.mean_all()?)?);
    m.insert("objective/entropy".into(), -scalar(&logps.detach().mean_all()?)?);
    Ok((out.loss, m))
}

/// For each prompt `i` (rows `2i`, `2i+1` of a rollout with two completions per prompt), the
/// chosen and rejected rows: `[chosen…, rejected…]`. Ties go to the first completion (TRL:
/// `scores[first] >= scores[second]`).
pub fn pair_rows(scores: &[f32]) -> Vec<usize> {
    let n = scores.len() / 2;
    let (mut chosen, mut rejected) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (a, b) = (2 * i, 2 * i + 1);
        let (c, r) = if scores[a] >= scores[b] { (a, b) } else { (b, a) };
        chosen.push(c);
        rejected.push(r);
    }
    chosen.extend(rejected);
    chosen
}

pub struct OnlineDpoTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub preferences: Preferences,
    pub cfg: OnlineDpoConfig,
    pub loss: DpoConfig,
    pub opt: Optimizer,
    /// Generation batches sampled so far (seeds the sampler).
    pub generations: u64,
    pub num_tokens: f64,
    /// The last step's completions and scores.
    pub last_samples: Vec<Sample>,
    /// Where completions come from instead of the policy's own sampler (an inference server,
    /// recorded rollouts); `None` samples in process.
    pub completions: Option<Box<dyn CompletionSource>>,
}

impl OnlineDpoTrainer {
    pub fn new(
        policy: Model,
        reference: Reference,
        preferences: impl Into<Preferences>,
        cfg: OnlineDpoConfig,
        loss: DpoConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        loss.validate()?;
        Ok(OnlineDpoTrainer {
            policy,
            reference,
            preferences: preferences.into(),
            cfg,
            loss,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
            completions: None,
        })
    }

    /// Two completions per prompt, scored; returns the pairs (chosen rows, then rejected) and
    /// the sampling/score metrics.
    fn sample(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<Rollout> {
        let s = self.cfg.sampling(self.generations);
        let generation = self.generations;
        self.generations += 1;
        let r = rollout_from(self.completions.as_deref_mut(), generation, &self.policy, prompts, 2, &s, false)?;
        completion_metrics(&r, m);
        let eos = r.finish.iter().filter(|f| **f == Finish::Eos).count() as f64 / r.finish.len().max(1) as f64;
        m.insert("val/contain_eos_token".into(), eos);
        let rows = match &self.preferences {
            Preferences::Reward(reward) => {
                let scores = score_rollout(reward.as_ref(), &r, self.cfg.missing_eos_penalty)?;
                self.last_samples.extend(Sample::rows(&r.prompts, &r.completions, &scores));
                let rows = pair_rows(&scores);
                let n = rows.len() / 2;
                let mean = mean_reward(&scores);
                let margin =
                    (0..n).map(|i| (scores[rows[i]] - scores[rows[n + i]]) as f64).sum::<f64>() / n.max(1) as f64;
                m.insert("objective/scores".into(), mean);
                m.insert("reward".into(), mean);
                m.insert("objective/scores_margin".into(), margin);
                rows
            }
            Preferences::Judge(judge) => {
                // The judge's P(first ≻ second) of each prompt's two samples; ½ keeps the first.
                let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed ^ 0x4a55_4447);
                let mut p_first = Vec::with_capacity(r.prompts.len());
                for pair in 0..r.prompts.len() / 2 {
                    let (a, b) = (2 * pair, 2 * pair + 1);
                    let j = judge.judge(&r.prompts[a], &r.completions[a], &r.completions[b], &mut rng)?;
                    p_first.extend([j.p_a as f32, 1.0 - j.p_a as f32]);
                }
                self.last_samples.extend(Sample::rows(&r.prompts, &r.completions, &p_first));
                pair_rows(&p_first)
            }
        };
        self.num_tokens += r.num_tokens();
        Ok(r.select(&rows))
    }

    /// One optimizer step: fresh pairs for each micro-batch of prompts (all sampled before any
    /// loss; the weights do not change until the step), the DPO loss averaged over
    /// micro-batches (gradient accumulation).
    pub fn train_step(&mut self, prompt_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        let k = prompt_batches.len();
        if k == 0 {
            return Err(TrainError::Input("online_dpo: train_step needs at least one batch of prompts".into()));
        }
        self.last_samples.clear();
        let mut sampled = Vec::with_capacity(k);
        for p in prompt_batches {
            let mut m = Metrics::new();
            let pairs = self.sample(p, &mut m)?;
            sampled.push((pairs, m));
        }
        let mut metrics = Metrics::new();
        let beta = self.loss.beta;
        accumulate(&mut self.opt, sampled, &mut metrics, k as f64, |(pairs, mut m)| {
            let (loss, dm) =
                dpo_on_pairs(&self.policy, &self.reference, &pairs, &self.loss, self.cfg.temperature, None)?;
            m.extend(dm);
            let kl = m["objective/kl"];
            m.insert("objective/non_score_reward".into(), -beta * kl);
            if let Some(s) = m.get("objective/scores").copied() {
                m.insert("objective/rlhf_reward".into(), s - beta * kl);
            }
            Ok(((loss / k as f64)?, m))
        })?;
        metrics.insert("beta".into(), beta);
        finish_step(&mut self.opt, metrics, self.num_tokens)
    }

    /// Samples and scores pairs without an update.
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        self.sample(prompts, &mut m)?;
        Ok(m)
    }
}

impl crate::run::Trainer for OnlineDpoTrainer {
    type Batch = Vec<Vec<u32>>;
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        OnlineDpoTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        OnlineDpoTrainer::evaluate(self, batch)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_put_the_higher_score_first_and_ties_to_the_first() {
        assert_eq!(pair_rows(&[0.1, 0.9, 0.5, 0.5, 2.0, -1.0]), vec![1, 2, 4, 0, 3, 5]);
    }
}
