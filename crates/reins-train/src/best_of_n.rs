//! Best-of-n (rejection) sampling: `n` completions per prompt, scored by any
//! [`RewardSource`], the highest kept (Nakano et al., arXiv:2112.09332 §3.3; Touvron et al.,
//! arXiv:2307.09288 §3.2.3 "rejection sampling"). Used as inference (return the best) or to
//! build SFT data from the best completions.

use reins_model::generate::{generate, Finish, Hooks};
use reins_model::{Model, SamplingConfig};

use crate::rewards::RewardSource;
use crate::{Result, TrainError};

/// The scored samples of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// `n` completions (with a final EOS when the sampler emitted one).
    pub completions: Vec<Vec<u32>>,
    pub finish: Vec<Finish>,
    /// One reward per completion.
    pub scores: Vec<f32>,
    /// Index of the highest score (the first on ties).
    pub best: usize,
}

impl Candidates {
    pub fn best_completion(&self) -> &[u32] {
        &self.completions[self.best]
    }
    pub fn best_score(&self) -> f32 {
        self.scores[self.best]
    }
}

/// Samples `n` completions of every prompt with `model` (detached), `batch_size` prompts per
/// generation call (batch `b` uses seed `sampling.seed + b`), scores them with `reward` and
/// picks the best of each prompt.
pub fn best_of_n(
    model: &Model,
    prompts: &[Vec<u32>],
    n: usize,
    sampling: &SamplingConfig,
    reward: &dyn RewardSource,
    batch_size: usize,
) -> Result<Vec<Candidates>> {
    if n == 0 || batch_size == 0 {
        return Err(TrainError::Config("best-of-n: n and batch_size must be at least 1".into()));
    }
    let model = model.detached();
    let mut out = Vec::with_capacity(prompts.len());
    for (b, chunk) in prompts.chunks(batch_size).enumerate() {
        let repeated: Vec<Vec<u32>> = chunk.iter().flat_map(|p| std::iter::repeat_n(p.clone(), n)).collect();
        let s = SamplingConfig { seed: sampling.seed.wrapping_add(b as u64), ..sampling.clone() };
        let g = generate(&model, &repeated, &s, Hooks::default())?;
        let scores = reward.score(&repeated, &g.tokens)?;
        for (i, p) in chunk.iter().enumerate() {
            let rows = i * n..(i + 1) * n;
            let sc = scores[rows.clone()].to_vec();
            let best = (0..n).fold(0, |b, j| if sc[j] > sc[b] { j } else { b });
            out.push(Candidates {
                prompt: p.clone(),
                completions: g.tokens[rows.clone()].to_vec(),
                finish: g.finish[rows].to_vec(),
                scores: sc,
                best,
            });
        }
    }
    Ok(out)
}
