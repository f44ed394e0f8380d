//! The reward of a principle reward model (RLBFF, arXiv:2509.21319): for the chosen principle
//! set `P` with weights `w_p`, `R(x, y) = Σ_p w_p σ(s(x, y, p)) / Σ_p w_p`, where `s` is the
//! model's logit that `y` satisfies `p` ([`crate::trainers::principle_reward`]). The set is the
//! user's choice at inference — all the principles the model was trained on by default, or a
//! few of them to steer (`brevity` alone for short answers).
//!
//! As a reward spec: `principles:<model dir>` (the model's default set, equal weights) or
//! `principles:<file.toml>`:
//!
//! ```toml
//! path = "runs/principle-rm"
//! principles = ["The answer is concise"]
//! weights = [1.0]          # optional, one per principle (default: equal)
//! allow_unseen = false     # true: principles the model was not trained on are allowed
//! ```

use std::path::{Path, PathBuf};

use candle_core::Device;
use reins_model::{LoadOptions, Model};
use serde::Deserialize;

use super::{ModelReward, RewardSource};
use crate::trainers::principle_reward::PrincipleRewardSpec;
use crate::{Result, TrainError};

/// A principle reward model with the principles it averages.
pub struct PrincipleReward {
    inner: ModelReward,
    /// `(principle, its suffix ids, weight)`.
    principles: Vec<(String, Vec<u32>, f32)>,
}

impl PrincipleReward {
    /// `principles`: `(text, weight)`; `encode` turns a suffix into ids (the policy's
    /// tokenizer, no special tokens added).
    pub fn new(
        model: Model,
        spec: &PrincipleRewardSpec,
        principles: &[(String, f32)],
        encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    ) -> Result<Self> {
        if principles.is_empty() {
            return Err(TrainError::Config("principle reward: no principle to score".into()));
        }
        if principles.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0)) || principles.iter().all(|(_, w)| *w == 0.0) {
            return Err(TrainError::Config("principle reward: weights must be >= 0 and not all 0".into()));
        }
        let principles = principles
            .iter()
            .map(|(p, w)| Ok((p.clone(), encode(&spec.suffix(p))?, *w)))
            .collect::<Result<Vec<_>>>()?;
        Ok(PrincipleReward { inner: ModelReward::new(model)?, principles })
    }

    /// The principles scored, in order.
    pub fn principles(&self) -> Vec<&str> {
        self.principles.iter().map(|(p, ..)| p.as_str()).collect()
    }

    /// `σ(s(x, y, p))` of every completion for every principle: `[P][N]`.
    pub fn probabilities(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        self.principles
            .iter()
            .map(|(_, suffix, _)| {
                let asked: Vec<Vec<u32>> = completions.iter().map(|c| [c.as_slice(), suffix].concat()).collect();
                Ok(self.inner.score(prompts, &asked)?.into_iter().map(sigmoid).collect())
            })
            .collect()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl RewardSource for PrincipleReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let probs = self.probabilities(prompts, completions)?;
        let total: f32 = self.principles.iter().map(|p| p.2).sum();
        Ok((0..completions.len())
            .map(|j| self.principles.iter().zip(&probs).map(|((.., w), p)| w * p[j]).sum::<f32>() / total)
            .collect())
    }

    fn name(&self) -> &str {
        "principles"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SteeringFile {
    path: PathBuf,
    #[serde(default)]
    principles: Vec<String>,
    #[serde(default)]
    weights: Vec<f32>,
    #[serde(default)]
    allow_unseen: bool,
}

/// The reward of `principles:<target>`: a model folder (its default set) or a steering file
/// (see the module docs).
pub fn load(target: &Path, device: &Device, encode: &dyn Fn(&str) -> Result<Vec<u32>>) -> Result<PrincipleReward> {
    let (dir, chosen, weights, allow_unseen) = if target.is_dir() {
        (target.to_path_buf(), Vec::new(), Vec::new(), false)
    } else {
        let text = std::fs::read_to_string(target)
            .map_err(|e| TrainError::Input(format!("principle reward {}: {e}", target.display())))?;
        let f: SteeringFile = toml::from_str(&text).map_err(|e| {
            TrainError::Input(format!(
                "principle reward {}: {e}(keys: path, principles, weights, allow_unseen)",
                target.display()
            ))
        })?;
        // Paths are read as written (from the working directory), as a fine-grained file's.
        let dir = f.path;
        (dir, f.principles, f.weights, f.allow_unseen)
    };
    let spec = PrincipleRewardSpec::read(&dir)?;
    let chosen = if chosen.is_empty() { spec.principles.clone() } else { chosen };
    if !allow_unseen {
        if let Some(p) = chosen.iter().find(|p| !spec.principles.contains(p)) {
            return Err(TrainError::Config(format!(
                "principle reward: {p:?} is not one the model in {} was trained on ({}); fix the spelling, or set \
                 `allow_unseen = true` to ask it anyway",
                dir.display(),
                spec.principles.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if !weights.is_empty() && weights.len() != chosen.len() {
        return Err(TrainError::Config(format!(
            "principle reward: {} weights for {} principles (give one per principle, or none)",
            weights.len(),
            chosen.len()
        )));
    }
    let weighted: Vec<(String, f32)> =
        chosen.into_iter().enumerate().map(|(i, p)| (p, weights.get(i).copied().unwrap_or(1.0))).collect();
    let model = Model::load(&dir, device, &LoadOptions::default())?;
    PrincipleReward::new(model, &spec, &weighted, encode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reins_model::Batch;

    /// On the tiny Llama fixture with a fresh score head: the reward is the weighted mean of
    /// `σ(score)` of `prompt ++ completion ++ suffix(p)`, each row forwarded on its own.
    #[test]
    fn the_reward_is_the_weighted_mean_probability_over_the_chosen_principles() -> Result<()> {
        let dir = reins_data::testing::fixtures_dir().join("models/llama");
        let opts = LoadOptions { score_head: Some(1), seed: 3, ..Default::default() };
        let model = Model::load(&dir, &Device::Cpu, &opts)?;
        let spec = PrincipleRewardSpec::default();
        // a stand-in tokenizer: one id per character
        let encode = |t: &str| Ok(t.bytes().map(|b| b as u32 % 100).collect::<Vec<u32>>());
        let chosen = [("concise".to_string(), 2.0), ("polite".to_string(), 1.0)];
        let r = PrincipleReward::new(model.clone(), &spec, &chosen, &encode)?;
        let prompts = vec![vec![5u32, 9, 17], vec![40, 2]];
        let completions = vec![vec![31u32, 30, 44, 2], vec![8, 10]];
        let got = r.score(&prompts, &completions)?;
        for (i, (p, c)) in prompts.iter().zip(&completions).enumerate() {
            let mut want = 0.0;
            for (principle, w) in &chosen {
                let row = [p.as_slice(), c, &encode(&spec.suffix(principle))?].concat();
                let s: Vec<f32> = model.scores(&Batch::right_padded(&[row], 0))?.flatten_all()?.to_vec1()?;
                want += *w as f64 / 3.0 / (1.0 + (-s[0] as f64).exp());
            }
            assert!((got[i] as f64 - want).abs() < 1e-5, "row {i}: {} vs {want}", got[i]);
        }
        assert_eq!(r.principles(), ["concise", "polite"]);
        Ok(())
    }

    #[test]
    fn steering_files_are_checked_against_the_trained_principles() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let model_dir = tmp.path().join("m");
        std::fs::create_dir(&model_dir).unwrap();
        let spec = PrincipleRewardSpec { principles: vec!["concise".into(), "polite".into()], ..Default::default() };
        let (name, text) = spec.to_file()?;
        std::fs::write(model_dir.join(name), text).unwrap();
        let encode = |t: &str| Ok(t.bytes().map(u32::from).collect::<Vec<u32>>());
        let steer = |body: &str| {
            let f = tmp.path().join("steer.toml");
            std::fs::write(&f, format!("path = {:?}\n{body}", model_dir.display().to_string())).unwrap();
            load(&f, &Device::Cpu, &encode).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(
            steer("principles = [\"consise\"]").contains("not one the model"),
            "{}",
            steer("principles = [\"consise\"]")
        );
        assert!(steer("principles = [\"concise\"]\nweights = [1.0, 2.0]").contains("2 weights for 1 principles"));
        assert!(steer("principle = [\"concise\"]").contains("unknown field"));
        // past the checks, loading fails only at the (absent) weights
        assert!(steer("principles = [\"concise\"]").contains("config.json"), "{}", steer("principles = [\"concise\"]"));
        Ok(())
    }
}
