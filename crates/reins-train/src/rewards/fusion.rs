//! RewardFusion (Shen et al., "The Trickle-down Impact of Reward (In-)consistency on RLHF",
//! arXiv:2309.16155; the authors' `reward_fusion.py`): at scoring time, retrieve the input's
//! nearest texts from the reward model's training corpus (prompt + preferred response) and
//! score the input as a similarity-weighted mean of its own reward and theirs. Smoothing the
//! reward over near-identical texts is meant to make it more consistent.
//!
//! - Retrieval: cosine similarity of embeddings, the `top_k` most similar training texts with
//!   similarity ≥ `threshold` (the paper's code: 5 and 0.9). The paper embeds with a SimCSE
//!   encoder; reins uses the reward model's own pooled feature (the last real token's hidden
//!   state, what the score head reads), so no second model is needed.
//! - Fusion: `r̃ = (r(x) + Σ_j s_j r_j) / (1 + Σ_j s_j)`, the input at weight 1 and each
//!   neighbour `j` at its similarity `s_j`, normalised to sum to 1. With no neighbour above
//!   the threshold it is the plain reward.

use reins_model::Model;

use super::{check_rows, RewardSource};
use crate::statistics::features::pooled_features;
use crate::{Result, TrainError};

/// The paper's number of neighbours.
pub const DEFAULT_TOP_K: usize = 5;
/// The paper's least cosine similarity of a neighbour.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// Fused reward of an input scored `own` with `neighbours` `(similarity, reward)`.
pub fn fuse(own: f64, neighbours: &[(f64, f64)]) -> f64 {
    let (num, den) = neighbours.iter().fold((own, 1.0), |(n, d), &(s, r)| (n + s * r, d + s));
    num / den
}

/// `v / |v|` (a zero vector stays zero, so it matches nothing).
pub fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// Brute-force cosine kNN over unit vectors: the (index, similarity) of the `top_k` rows of
/// `index` most similar to the unit vector `query` with similarity ≥ `threshold`, most similar
/// first (ties: lower index first).
pub fn nearest(index: &[Vec<f64>], query: &[f64], top_k: usize, threshold: f64) -> Vec<(usize, f64)> {
    let mut hits: Vec<(usize, f64)> = index
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.iter().zip(query).map(|(a, b)| a * b).sum::<f64>()))
        .filter(|&(_, s)| s >= threshold)
        .collect();
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    hits.truncate(top_k);
    hits
}

/// A reward model scored with RewardFusion over its training texts.
pub struct FusionReward {
    pub model: Model,
    /// Unit embeddings of the training texts `[N][D]`.
    pub index: Vec<Vec<f64>>,
    /// The reward model's score of each training text `[N]`.
    pub index_rewards: Vec<f64>,
    pub top_k: usize,
    pub threshold: f64,
    /// Rows per forward pass (default 16).
    pub batch_size: usize,
    pub pad_token_id: u32,
}

impl FusionReward {
    /// Indexes `corpus` (token ids of each training text, prompt + preferred response) with
    /// the paper's `top_k` 5 and threshold 0.9.
    pub fn new(model: Model, corpus: &[Vec<u32>]) -> Result<Self> {
        if corpus.is_empty() {
            return Err(TrainError::Input(
                "reward fusion: the training corpus is empty; give the reward model's training pairs".into(),
            ));
        }
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        let model = model.detached();
        let (feats, rewards) = pooled_features(&model, corpus, pad, 16)?;
        Ok(FusionReward {
            model,
            index: feats.iter().map(|f| unit(f)).collect(),
            index_rewards: rewards,
            top_k: DEFAULT_TOP_K,
            threshold: DEFAULT_THRESHOLD,
            batch_size: 16,
            pad_token_id: pad,
        })
    }

    /// Other retrieval settings: `top_k ≥ 1`, `threshold` a cosine in [-1, 1].
    pub fn with_retrieval(mut self, top_k: usize, threshold: f64) -> Result<Self> {
        if top_k == 0 || !(-1.0..=1.0).contains(&threshold) {
            return Err(TrainError::Config(format!(
                "reward fusion: top_k must be at least 1 and threshold a cosine in [-1, 1] (got {top_k}, {threshold}); \
                 the paper uses 5 and 0.9"
            )));
        }
        self.top_k = top_k;
        self.threshold = threshold;
        Ok(self)
    }

    /// Plain and fused rewards of each row, with the number of neighbours each used.
    pub fn plain_and_fused(
        &self,
        prompts: &[Vec<u32>],
        completions: &[Vec<u32>],
    ) -> Result<(Vec<f64>, Vec<f64>, Vec<usize>)> {
        check_rows(prompts, completions)?;
        let rows: Vec<Vec<u32>> =
            prompts.iter().zip(completions).map(|(p, c)| [p.as_slice(), c.as_slice()].concat()).collect();
        let (feats, plain) = pooled_features(&self.model, &rows, self.pad_token_id, self.batch_size)?;
        let (mut fused, mut used) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
        for (f, &r) in feats.iter().zip(&plain) {
            let hits = nearest(&self.index, &unit(f), self.top_k, self.threshold);
            let nb: Vec<(f64, f64)> = hits.iter().map(|&(i, s)| (s, self.index_rewards[i])).collect();
            fused.push(fuse(r, &nb));
            used.push(nb.len());
        }
        Ok((plain, fused, used))
    }
}

impl RewardSource for FusionReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        Ok(self.plain_and_fused(prompts, completions)?.1.into_iter().map(|x| x as f32).collect())
    }

    fn name(&self) -> &str {
        "reward_model_fusion"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::ModelReward;
    use candle_core::Device;
    use reins_model::LoadOptions;

    #[test]
    fn fusion_arithmetic_by_hand() {
        // No neighbours: the plain reward.
        assert_eq!(fuse(2.0, &[]), 2.0);
        // (1·2 + 0.9·4 + 0.95·0) / (1 + 0.9 + 0.95) = 5.6 / 2.85.
        assert!((fuse(2.0, &[(0.9, 4.0), (0.95, 0.0)]) - 5.6 / 2.85).abs() < 1e-12);
        // A neighbour with the input's own reward changes nothing.
        assert!((fuse(-1.5, &[(1.0, -1.5), (0.92, -1.5)]) + 1.5).abs() < 1e-12);
    }

    #[test]
    fn nearest_keeps_top_k_above_threshold() {
        let index = vec![unit(&[1.0, 0.0]), unit(&[1.0, 1.0]), unit(&[0.0, 1.0]), unit(&[2.0, 0.0]), vec![0.0, 0.0]];
        let q = unit(&[1.0, 0.0]);
        // Cosines: 1, 1/√2, 0, 1, 0. Ties at 1: lower index first.
        assert_eq!(nearest(&index, &q, 5, 0.9), [(0, 1.0), (3, 1.0)]);
        assert_eq!(nearest(&index, &q, 1, 0.9), [(0, 1.0)]);
        let h = nearest(&index, &q, 3, 0.5);
        assert_eq!(h.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 3, 1]);
        assert!((h[2].1 - 0.5f64.sqrt()).abs() < 1e-12);
        assert!(nearest(&index, &q, 5, 1.01).is_empty());
    }

    /// On the tiny Llama reward-model fixture: with nothing above the threshold the fused
    /// reward is the plain one; an input whose neighbour is itself (cosine 1) keeps its
    /// reward; with every text a neighbour the score is the hand-computed weighted mean.
    #[test]
    fn fusion_reward_on_the_fixture_model() -> Result<()> {
        let dir = reins_data::testing::fixtures_dir().join("models/llama-rm");
        let model = Model::load(&dir, &Device::Cpu, &LoadOptions::default())?;
        let prompts = vec![vec![5u32, 9, 17], vec![40, 2]];
        let completions = vec![vec![30u32, 31], vec![8]];
        let corpus = vec![vec![5u32, 9, 17, 30, 31], vec![11, 12, 13, 14]];
        let plain = ModelReward::new(model.clone())?.score(&prompts, &completions)?;

        let none = FusionReward::new(model.clone(), &corpus)?.with_retrieval(5, 1.0)?;
        let (p, f, used) = none.plain_and_fused(&prompts, &completions)?;
        assert_eq!(used[1], 0);
        for i in 0..2 {
            // (Row 0 is corpus text 0, cosine 1 up to rounding; fusing with itself is a no-op.)
            assert!((p[i] - plain[i] as f64).abs() < 1e-4 && (f[i] - p[i]).abs() < 1e-4, "{p:?} {f:?} {used:?}");
        }

        // Row 0 is corpus text 0: at threshold 0.999 its only neighbour is itself.
        let own = FusionReward::new(model.clone(), &corpus)?.with_retrieval(5, 0.999)?;
        let (p, f, used) = own.plain_and_fused(&prompts, &completions)?;
        assert_eq!(used[0], 1);
        assert!((f[0] - p[0]).abs() < 1e-4, "{} vs {}", f[0], p[0]);

        // Every corpus text a neighbour: the weighted mean, by hand from the features.
        let all = FusionReward::new(model.clone(), &corpus)?.with_retrieval(5, -1.0)?;
        let (p, f, used) = all.plain_and_fused(&prompts, &completions)?;
        let (qf, _) = pooled_features(&model, &[vec![40u32, 2, 8]], 0, 1)?;
        let q = unit(&qf[0]);
        let s: Vec<f64> = all.index.iter().map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum()).collect();
        let want = (p[1] + s[0] * all.index_rewards[0] + s[1] * all.index_rewards[1]) / (1.0 + s[0] + s[1]);
        assert_eq!(used, [2, 2]);
        assert!((f[1] - want).abs() < 1e-4, "{} vs {want}", f[1]);
        let scored = all.score(&prompts, &completions)?;
        assert!((scored[1] as f64 - f[1]).abs() < 1e-5);

        assert!(FusionReward::new(model.clone(), &[]).is_err());
        assert!(FusionReward::new(model.clone(), &corpus)?.with_retrieval(0, 0.9).is_err());
        assert!(FusionReward::new(model, &corpus)?.with_retrieval(5, 1.5).is_err());
        Ok(())
    }
}
