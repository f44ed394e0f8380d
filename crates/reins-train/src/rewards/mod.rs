//! Reward sources for online RL: token ids in, one scalar per completion out.
//!
//! The RL core never sees text: a source gets each prompt's and each completion's token ids
//! (unpadded; the completion includes a final EOS when the sampler emitted one). Sources that
//! need text decode inside their closure. Per-token rewards `[B, T]` (process rewards,
//! segment rewards; see the roadmap) come through [`RewardSource::score_tokens`], whose default
//! puts nothing per token, so trainers can already add them to the KL-penalised rewards.

pub mod features;
pub mod fine_grained;
pub mod fusion;
pub mod http;
pub mod lcb;
pub mod principles;
pub mod segments;
pub mod seq2seq;

pub use fusion::FusionReward;
pub use http::HttpReward;
pub use lcb::LcbReward;

use candle_core::{Device, Tensor};
use reins_model::{Batch, Model};

use crate::losses::reward::{ensemble_aggregate, EnsembleAggregation};
use crate::{Result, TrainError};

/// Scores completions of prompts (same length slices, row `i` is completion `i` of prompt `i`).
pub trait RewardSource {
    /// One scalar per completion.
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>>;

    /// Optional per-token rewards: one `Vec` per completion with one value per completion
    /// token, added on top of [`RewardSource::score`] by trainers that use token rewards
    /// (REINFORCE++, PPO). `None` (default): sequence-level rewards only.
    fn score_tokens(&self, _prompts: &[Vec<u32>], _completions: &[Vec<u32>]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(None)
    }

    /// Name for metrics (`rewards/<name>/mean`).
    fn name(&self) -> &str {
        "reward"
    }
}

type RuleFn = dyn Fn(&[u32], &[u32]) -> f32 + Send + Sync;

/// A reward from a Rust closure `(prompt_ids, completion_ids) -> f32` (rule/verifier rewards:
/// format checks, exact answers, length).
pub struct RuleReward {
    name: String,
    f: Box<RuleFn>,
}

impl RuleReward {
    pub fn new(f: impl Fn(&[u32], &[u32]) -> f32 + Send + Sync + 'static) -> Self {
        RuleReward { name: "rule".into(), f: Box::new(f) }
    }

    /// The same, with a name for metrics.
    pub fn named(name: &str, f: impl Fn(&[u32], &[u32]) -> f32 + Send + Sync + 'static) -> Self {
        RuleReward { name: name.into(), f: Box::new(f) }
    }
}

impl RewardSource for RuleReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        check_rows(prompts, completions)?;
        Ok(prompts.iter().zip(completions).map(|(p, c)| (self.f)(p, c)).collect())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A reward model: a [`Model`] with a score head (`*ForSequenceClassification`, or loaded
/// with `score_head`), read at the last token of `prompt ++ completion`, label 0. Runs on
/// detached weights (no graph), in chunks of `batch_size` rows.
pub struct ModelReward {
    pub model: Model,
    /// Rows per forward pass (default 16).
    pub batch_size: usize,
    /// Pad id for right padding (ignored by the mask).
    pub pad_token_id: u32,
}

impl ModelReward {
    pub fn new(model: Model) -> Result<Self> {
        if model.score.is_none() {
            return Err(TrainError::Config(
                "reward_model: the model has no score head; load a *ForSequenceClassification checkpoint or set \
                 `score_head`"
                    .into(),
            ));
        }
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        Ok(ModelReward { model: model.detached(), batch_size: 16, pad_token_id: pad })
    }
}

impl RewardSource for ModelReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        check_rows(prompts, completions)?;
        let rows: Vec<Vec<u32>> =
            prompts.iter().zip(completions).map(|(p, c)| [p.as_slice(), c.as_slice()].concat()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
            let ids = chunk.iter().map(|r| [r.clone(), vec![self.pad_token_id; t - r.len()]].concat()).collect();
            let mask = chunk.iter().map(|r| [vec![1u8; r.len()], vec![0u8; t - r.len()]].concat()).collect();
            let scores = self.model.scores(&Batch::new(ids, mask)?)?; // [b, num_labels]
            let col = scores.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(candle_core::DType::F32)?;
            out.extend(col.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn name(&self) -> &str {
        "reward_model"
    }
}

/// Several sources reduced to one reward per completion (Coste et al., arXiv:2310.02743):
/// mean, min (worst case) or `mean − λ·var` (uncertainty-weighted).
pub struct EnsembleReward {
    pub members: Vec<Box<dyn RewardSource>>,
    pub aggregation: EnsembleAggregation,
}

impl EnsembleReward {
    /// The members listed in a folder's `ensemble.json` (written by `reins reward` with
    /// `ensemble_size > 1`), each a reward-model checkpoint, with the manifest's aggregation.
    pub fn from_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let manifest = crate::trainers::reward_ensemble::EnsembleManifest::read(dir)?;
        let members = manifest
            .members
            .iter()
            .map(|p| -> Result<Box<dyn RewardSource>> {
                let m = Model::load(p, device, &reins_model::LoadOptions::default())?;
                Ok(Box::new(ModelReward::new(m)?))
            })
            .collect::<Result<_>>()?;
        Ok(EnsembleReward { members, aggregation: manifest.aggregation })
    }
}

impl RewardSource for EnsembleReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        if self.members.is_empty() {
            return Err(TrainError::Config("reward ensemble: needs at least one member".into()));
        }
        let b = completions.len();
        let mut all = Vec::with_capacity(self.members.len() * b);
        for m in &self.members {
            all.extend(m.score(prompts, completions)?);
        }
        let scores = Tensor::from_vec(all, (self.members.len(), b), &Device::Cpu)?;
        Ok(ensemble_aggregate(&scores, self.aggregation)?.to_vec1::<f32>()?)
    }

    fn name(&self) -> &str {
        "ensemble"
    }
}

/// A source's per-token rewards folded into its score: `score + Σ_t token rewards` per
/// completion, no token rewards. For trainers that take one reward per completion (GRPO,
/// online DPO, best-of-n…), so a dense source (fine-grained, sequence-to-sequence) still counts
/// in full there; PPO takes the tokens themselves.
pub struct SummedTokens(pub Box<dyn RewardSource>);

impl RewardSource for SummedTokens {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut s = self.0.score(prompts, completions)?;
        if let Some(tokens) = self.0.score_tokens(prompts, completions)? {
            for (s, t) in s.iter_mut().zip(tokens) {
                *s += t.iter().sum::<f32>();
            }
        }
        Ok(s)
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// Weighted sum of several sources (TRL `reward_funcs` with `reward_weights`).
pub struct WeightedSum {
    pub members: Vec<(Box<dyn RewardSource>, f32)>,
}

impl RewardSource for WeightedSum {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut total = vec![0f32; completions.len()];
        for (m, w) in &self.members {
            for (t, s) in total.iter_mut().zip(m.score(prompts, completions)?) {
                *t += w * s;
            }
        }
        Ok(total)
    }
}

fn check_rows(prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<()> {
    if prompts.len() != completions.len() {
        return Err(TrainError::Input(format!(
            "reward: {} prompts for {} completions (repeat each prompt once per completion)",
            prompts.len(),
            completions.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dense;
    impl RewardSource for Dense {
        fn score(&self, _: &[Vec<u32>], c: &[Vec<u32>]) -> Result<Vec<f32>> {
            Ok(vec![1.0; c.len()])
        }
        fn score_tokens(&self, _: &[Vec<u32>], c: &[Vec<u32>]) -> Result<Option<Vec<Vec<f32>>>> {
            Ok(Some(c.iter().map(|c| vec![0.5; c.len()]).collect()))
        }
    }

    #[test]
    fn summed_tokens_fold_the_dense_rewards_into_the_score() {
        let r = SummedTokens(Box::new(Dense));
        assert_eq!(r.score(&[vec![1], vec![2]], &[vec![1, 2, 3], vec![]]).unwrap(), vec![2.5, 1.0]);
        assert!(r.score_tokens(&[vec![1]], &[vec![1]]).unwrap().is_none());
    }

    #[test]
    fn rule_reward_scores_each_row() {
        let r = RuleReward::new(|_, c| c.len() as f32);
        let s = r.score(&[vec![1], vec![2]], &[vec![1, 2, 3], vec![]]).unwrap();
        assert_eq!(s, vec![3.0, 0.0]);
        assert!(r.score(&[vec![1]], &[vec![1], vec![2]]).is_err());
        assert!(r.score_tokens(&[vec![1]], &[vec![1]]).unwrap().is_none());
    }

    #[test]
    fn ensemble_reduces_members() {
        let members: Vec<Box<dyn RewardSource>> =
            vec![Box::new(RuleReward::new(|_, _| 1.0)), Box::new(RuleReward::new(|_, c| c.len() as f32))];
        let p = vec![vec![0u32]; 2];
        let c = vec![vec![5u32; 3], vec![]];
        let mean = EnsembleReward { members, aggregation: EnsembleAggregation::Mean };
        assert_eq!(mean.score(&p, &c).unwrap(), vec![2.0, 0.5]);
        let min = EnsembleReward { members: mean.members, aggregation: EnsembleAggregation::Min };
        assert_eq!(min.score(&p, &c).unwrap(), vec![1.0, 0.0]);
        let uwo =
            EnsembleReward { members: min.members, aggregation: EnsembleAggregation::MeanMinusVar { lambda: 1.0 } };
        // members (1, 3): mean 2, var 1; (1, 0): mean 0.5, var 0.25
        assert_eq!(uwo.score(&p, &c).unwrap(), vec![1.0, 0.25]);
        let sum = WeightedSum { members: vec![(Box::new(RuleReward::new(|_, c| c.len() as f32)), 0.5)] };
        assert_eq!(sum.score(&p, &c).unwrap(), vec![1.5, 0.0]);
    }
}
