//! The metrics trainers share, under TRL's keys (see `docs/metrics.md`): reductions of tensors
//! and reward lists to the scalars a logging step reports, and how the metrics of several
//! micro-batches become one step's. Per-token statistics of logits (`entropy`,
//! `mean_token_accuracy`, `logits/*`) are in [`super::token_metrics`].

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use reins_model::generate::Finish;

use super::rollout::Rollout;
use crate::Result;

/// Metrics of one logging step, TRL's keys.
pub type Metrics = BTreeMap<String, f64>;

/// A scalar tensor as f64.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Mean of a detached tensor, in f32 as TRL computes it.
pub(crate) fn mean(t: &Tensor) -> Result<f64> {
    scalar(&t.detach().to_dtype(DType::F32)?.mean_all()?)
}

/// Mean logit of rows `start..start + len` of `[N, T, V]` logits (TRL logs `logits.mean()`).
pub(crate) fn mean_logit(logits: &Tensor, start: usize, len: usize) -> Result<f64> {
    scalar(&logits.narrow(0, start, len)?.detach().to_dtype(DType::F32)?.mean_all()?)
}

/// Mean of a list of rewards (0 for none).
pub(crate) fn mean_reward(rewards: &[f32]) -> f64 {
    rewards.iter().map(|&x| x as f64).sum::<f64>() / rewards.len().max(1) as f64
}

/// Attended tokens of a batch, TRL's `num_tokens` (prompt and completion, no padding).
pub(crate) fn attended_tokens(attention_mask: &[Vec<u8>]) -> f64 {
    attention_mask.iter().flatten().map(|&x| x as f64).sum()
}

/// TRL's pairwise reward metrics from per-pair implied rewards `[B]`: `rewards/chosen`,
/// `rewards/rejected`, `rewards/margins`, `rewards/accuracies`.
pub(crate) fn pair_reward_metrics(m: &mut Metrics, chosen: &Tensor, rejected: &Tensor) -> Result<()> {
    let margins = (chosen - rejected)?;
    m.insert("rewards/chosen".into(), mean(chosen)?);
    m.insert("rewards/rejected".into(), mean(rejected)?);
    m.insert("rewards/margins".into(), mean(&margins)?);
    m.insert("rewards/accuracies".into(), mean(&chosen.gt(rejected)?.to_dtype(DType::F32)?)?);
    Ok(())
}

/// TRL's completion metrics: `completions/{mean,min,max}_length`, `completions/clipped_ratio`,
/// `completions/{mean,min,max}_terminated_length`.
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

/// Reward metrics of a generation batch as TRL 1.16 logs them: `reward` (mean), `reward_std`
/// (unbiased std over the whole generation batch, not per group), `frac_reward_zero_std`
/// (share of groups of `num_generations` whose rewards are all equal).
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

/// `acc[key] += v / n` for each metric: the running mean of `n` micro-batches' (or updates')
/// metrics.
pub(crate) fn add_mean(acc: &mut Metrics, m: Metrics, n: f64) {
    for (key, v) in m {
        *acc.entry(key).or_insert(0.0) += v / n;
    }
}

/// How the metrics of one optimizer step's micro-batches are averaged into the step's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicroBatchMean {
    /// `Σ v / k` over all `k` micro-batches.
    All,
    /// Each key over the micro-batches that logged it (KTO: a micro-batch may hold no
    /// desirable or no undesirable example, and then has no `rewards/chosen` or `rewards/rejected`).
    WherePresent,
}

impl MicroBatchMean {
    /// The step's metrics from each micro-batch's, in order; `num_tokens` is added to the
    /// cumulative count `num_tokens` instead of averaged.
    pub fn reduce(self, per_batch: Vec<Metrics>, num_tokens: &mut f64) -> Metrics {
        let k = per_batch.len() as f64;
        let (mut sums, mut counts) = (Metrics::new(), Metrics::new());
        for m in per_batch {
            for (key, v) in m {
                if key == "num_tokens" {
                    *num_tokens += v;
                    continue;
                }
                match self {
                    MicroBatchMean::All => *sums.entry(key).or_insert(0.0) += v / k,
                    MicroBatchMean::WherePresent => {
                        *sums.entry(key.clone()).or_insert(0.0) += v;
                        *counts.entry(key).or_insert(0.0) += 1.0;
                    }
                }
            }
        }
        match self {
            MicroBatchMean::All => sums,
            MicroBatchMean::WherePresent => sums.into_iter().map(|(key, v)| (key.clone(), v / counts[&key])).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batch_means_sum_tokens_and_average_the_rest() {
        let m = |pairs: &[(&str, f64)]| pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect::<Metrics>();
        let per_batch =
            vec![m(&[("loss", 1.0), ("kl", 4.0), ("num_tokens", 3.0)]), m(&[("loss", 3.0), ("num_tokens", 5.0)])];
        let mut tokens = 10.0;
        let all = MicroBatchMean::All.reduce(per_batch.clone(), &mut tokens);
        assert_eq!(all, m(&[("loss", 2.0), ("kl", 2.0)]));
        assert_eq!(tokens, 18.0);
        let present = MicroBatchMean::WherePresent.reduce(per_batch, &mut tokens);
        assert_eq!(present, m(&[("loss", 2.0), ("kl", 4.0)]));
        assert_eq!(tokens, 26.0);
    }

    #[test]
    fn group_reward_metrics_use_the_unbiased_std_and_count_flat_groups() {
        let mut m = Metrics::new();
        reward_metrics(&[1.0, 1.0, 0.0, 2.0], 2, &mut m);
        assert_eq!(m["reward"], 1.0);
        assert!((m["reward_std"] - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(m["frac_reward_zero_std"], 0.5);
        assert_eq!(mean_reward(&[]), 0.0);
        assert_eq!(attended_tokens(&[vec![1, 1, 0], vec![1, 0, 0]]), 3.0);
    }
}
