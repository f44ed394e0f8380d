//! A pessimistic reward-model source: `r(x, y) − λ·σ(x, y)`, the lower confidence bound of the
//! reward under the score head's Laplace posterior (see [`crate::statistics::pessimism`]), for
//! best-of-n and the online trainers.

use std::path::Path;

use candle_core::Device;
use reins_model::{LoadOptions, Model};

use super::{check_rows, RewardSource};
use crate::statistics::features::{pooled_features, score_head_weights};
use crate::statistics::pessimism::lower_confidence_bounds;
use crate::statistics::{load_posterior, HeadPosterior};
use crate::{Result, TrainError};

/// A reward model scored at its lower confidence bound.
pub struct LcbReward {
    pub model: Model,
    pub posterior: HeadPosterior,
    /// λ, how many posterior standard deviations to subtract.
    pub lambda: f64,
    /// Rows per forward pass (default 16).
    pub batch_size: usize,
    pub pad_token_id: u32,
}

impl LcbReward {
    /// `model` with `posterior` (which must be the posterior of this model's head).
    pub fn new(model: Model, posterior: HeadPosterior, lambda: f64) -> Result<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(TrainError::Config(format!("LCB coefficient λ must be a number ≥ 0 (got {lambda})")));
        }
        let w = score_head_weights(&model)?;
        let scale = w.iter().map(|x| x.abs()).fold(1e-6, f64::max);
        if w.len() != posterior.dim || w.iter().zip(&posterior.weight).any(|(a, b)| (a - b).abs() > 1e-4 * scale) {
            return Err(TrainError::Config(
                "the head posterior was fitted on another reward model (its weights differ from this model's score \
                 head); refit it with `reins reward-stats fit`"
                    .into(),
            ));
        }
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        Ok(LcbReward { model: model.detached(), posterior, lambda, batch_size: 16, pad_token_id: pad })
    }

    /// The posterior in `dir` (written by `reins reward-stats fit`) with the reward model it
    /// names.
    pub fn from_dir(dir: &Path, lambda: f64, device: &Device) -> Result<Self> {
        let (model_dir, posterior) = load_posterior(dir)?;
        let model = Model::load(&model_dir, device, &LoadOptions::default())?;
        LcbReward::new(model, posterior, lambda)
    }

    /// Plain rewards and their posterior standard deviations.
    pub fn rewards_and_stds(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<(Vec<f64>, Vec<f64>)> {
        check_rows(prompts, completions)?;
        let rows: Vec<Vec<u32>> =
            prompts.iter().zip(completions).map(|(p, c)| [p.as_slice(), c.as_slice()].concat()).collect();
        let (phi, r) = pooled_features(&self.model, &rows, self.pad_token_id, self.batch_size)?;
        let s = phi.iter().map(|f| self.posterior.reward_std(f)).collect::<Result<Vec<f64>>>()?;
        Ok((r, s))
    }
}

impl RewardSource for LcbReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let (r, s) = self.rewards_and_stds(prompts, completions)?;
        Ok(lower_confidence_bounds(&r, &s, self.lambda).into_iter().map(|x| x as f32).collect())
    }

    fn name(&self) -> &str {
        "reward_model_lcb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::ModelReward;
    use crate::statistics::{Curvature, HeadPosterior, Link, PairFeatures};

    /// On the tiny Llama reward-model fixture: the pooled features reproduce the model's own
    /// scores through the head's weights, λ = 0 is the plain reward, λ > 0 subtracts
    /// exactly λ·√(φᵀΣφ), and a posterior of another head is refused.
    #[test]
    fn lcb_reward_on_the_fixture_model() -> Result<()> {
        let dir = reins_data::testing::fixtures_dir().join("models/llama-rm");
        let model = Model::load(&dir, &Device::Cpu, &LoadOptions::default())?;
        let prompts = vec![vec![5u32, 9, 17], vec![5, 9, 17], vec![40, 2]];
        let completions = vec![vec![30u32, 31], vec![44, 45, 46, 47], vec![8]];
        let plain = ModelReward::new(model.clone())?.score(&prompts, &completions)?;
        let w = score_head_weights(&model)?;
        let rows: Vec<Vec<u32>> =
            prompts.iter().zip(&completions).map(|(p, c)| [p.clone(), c.clone()].concat()).collect();
        let (phi, r) = pooled_features(&model, &rows, 3, 2)?;
        for ((f, ri), pi) in phi.iter().zip(&r).zip(&plain) {
            let lin: f64 = f.iter().zip(&w).map(|(a, b)| a * b).sum();
            assert!((lin - ri).abs() < 1e-4 && (*pi as f64 - ri).abs() < 1e-4, "{lin} {ri} {pi}");
        }
        let pairs = PairFeatures {
            diffs: vec![phi[0].iter().zip(&phi[1]).map(|(a, b)| a - b).collect()],
            ..Default::default()
        };
        let post = HeadPosterior::fit(Link::BradleyTerry, Curvature::Hessian, &w, &pairs, 1.0)?;
        let zero = LcbReward::new(model.clone(), post.clone(), 0.0)?.score(&prompts, &completions)?;
        assert_eq!(zero.len(), 3);
        for (a, b) in zero.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-4);
        }
        let lcb = LcbReward::new(model.clone(), post.clone(), 2.0)?;
        let (rr, s) = lcb.rewards_and_stds(&prompts, &completions)?;
        let scored = lcb.score(&prompts, &completions)?;
        for i in 0..3 {
            assert!(s[i] > 0.0);
            // Batched f32 forwards with other padding: equal to f32 precision.
            assert!(
                (s[i] - post.reward_std(&phi[i])?).abs() < 1e-4 * (1.0 + s[i]),
                "{} vs {}",
                s[i],
                post.reward_std(&phi[i])?
            );
            assert!((scored[i] as f64 - (rr[i] - 2.0 * s[i])).abs() < 1e-4);
        }
        let mut other = post;
        other.weight[0] += 1.0;
        let err = LcbReward::new(model.clone(), other, 1.0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("another reward model"), "{err}");
        assert!(LcbReward::new(model, pairs_free_posterior(&w), -1.0).is_err());
        Ok(())
    }

    fn pairs_free_posterior(w: &[f64]) -> HeadPosterior {
        let d = w.len();
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            cov[i * d + i] = 1.0;
        }
        HeadPosterior {
            link: Link::BradleyTerry,
            curvature: Curvature::Hessian,
            prior_precision: 1.0,
            num_pairs: 0,
            dim: d,
            weight: w.to_vec(),
            covariance: cov,
        }
    }
}
