//! Fine-grained rewards (Wu et al., "Fine-Grained Human Feedback Gives Better Rewards for
//! Language Model Training", NeurIPS 2023, arXiv:2306.01693, code `qa_feedback`): several
//! reward models, each judging its own error type at its own granularity, combined into dense
//! per-token rewards.
//!
//! - A **segment** model ([`SegmentReward`], trained by `reins segment-reward`) reads its score
//!   head at the last token of every segment of the decoded completion and pays `+w` there when
//!   it sees no error (logit > 0), `−w` when it sees one (the paper's relevance and factuality
//!   rewards).
//! - A **holistic** model (any [`RewardSource`], normally a Bradley–Terry reward model) pays
//!   `w·(s − μ)/σ` at the last token (the paper's completeness reward; μ, σ its scores' mean
//!   and deviation on training data).
//!
//! PPO adds both to its per-token KL penalty: the holistic part is the sequence score
//! ([`RewardSource::score`]), the segment parts are the token rewards
//! ([`RewardSource::score_tokens`]). The paper whitens the summed rewards keeping their mean
//! (`shift_mean = False`) before GAE: PPO's `whiten_rewards`.

use std::path::{Path, PathBuf};

use candle_core::Device;
use reins_model::{Batch, LoadOptions, Model};
use serde::Deserialize;

use super::http::Decode;
use super::segments::{prefix_char_lengths, segment_end_tokens};
use super::{ModelReward, RewardSource};
use crate::trainers::segment_reward::SegmentRewardSpec;
use crate::{Result, TrainError};

/// A segment reward model paying `±weight` at each segment's last token.
pub struct SegmentReward {
    pub model: Model,
    pub spec: SegmentRewardSpec,
    pub weight: f32,
    /// Pay `+weight` for a segment without error (the paper's reward, default); `false`: only
    /// `−weight` for an error, nothing for a clean segment, so more segments earn nothing.
    pub reward_clean: bool,
    /// Completion ids to text (the policy's tokenizer, special tokens skipped).
    pub decode: Box<Decode>,
    pub pad_token_id: u32,
    /// Rows per forward pass (default 16).
    pub batch_size: usize,
}

impl SegmentReward {
    pub fn new(model: Model, spec: SegmentRewardSpec, weight: f32, decode: Box<Decode>) -> Result<Self> {
        if model.score.is_none() {
            return Err(TrainError::Config("segment reward: the model has no score head".into()));
        }
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        Ok(SegmentReward {
            model: model.detached(),
            spec,
            weight,
            reward_clean: true,
            decode,
            pad_token_id: pad,
            batch_size: 16,
        })
    }

    /// The rewards of each completion, one per completion token: `±weight` at segment ends
    /// (`−weight` or 0 without `reward_clean`), 0 elsewhere.
    pub fn token_rewards(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(completions.len());
        let rows: Vec<usize> = (0..completions.len()).collect();
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let seqs: Vec<Vec<u32>> =
                chunk.iter().map(|&i| [prompts[i].as_slice(), &completions[i]].concat()).collect();
            let scores = self.model.token_scores(&Batch::right_padded(&seqs, self.pad_token_id))?;
            let scores: Vec<Vec<f32>> =
                scores.narrow(2, 0, 1)?.squeeze(2)?.to_dtype(candle_core::DType::F32)?.to_vec2()?;
            for (k, &i) in chunk.iter().enumerate() {
                let c = &completions[i];
                let mut r = vec![0f32; c.len()];
                let segments = self.spec.granularity.segments(&(self.decode)(c));
                for end in segment_end_tokens(&segments, &prefix_char_lengths(c, &*self.decode)) {
                    let z = scores[k][prompts[i].len() + end];
                    r[end] += match (z > 0.0, self.reward_clean) {
                        (true, true) => self.weight,
                        (true, false) => 0.0,
                        (false, _) => -self.weight,
                    };
                }
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// A sequence-level reward, standardised and weighted: `w·(s − μ)/σ`.
pub struct HolisticReward {
    pub source: Box<dyn RewardSource>,
    pub weight: f32,
    pub mean: f32,
    pub std: f32,
}

impl RewardSource for HolisticReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let raw = self.source.score(prompts, completions)?;
        Ok(raw.into_iter().map(|s| self.weight * (s - self.mean) / self.std).collect())
    }

    fn name(&self) -> &str {
        "holistic"
    }
}

/// Segment rewards at their segments' ends plus an optional holistic reward at the last token.
pub struct FineGrainedReward {
    pub segments: Vec<SegmentReward>,
    pub holistic: Option<HolisticReward>,
}

impl RewardSource for FineGrainedReward {
    /// The holistic part (0 without one); the segment parts come per token.
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        match &self.holistic {
            Some(h) => h.score(prompts, completions),
            None => Ok(vec![0.0; completions.len()]),
        }
    }

    fn score_tokens(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Option<Vec<Vec<f32>>>> {
        let mut total: Vec<Vec<f32>> = completions.iter().map(|c| vec![0.0; c.len()]).collect();
        for s in &self.segments {
            for (t, r) in total.iter_mut().zip(s.token_rewards(prompts, completions)?) {
                t.iter_mut().zip(r).for_each(|(t, r)| *t += r);
            }
        }
        Ok(Some(total))
    }

    fn name(&self) -> &str {
        "fine_grained"
    }
}

/// The reward models of a fine-grained reward, as a TOML file lists them (paths as in the
/// other configs, relative to the working directory):
///
/// ```toml
/// [[segment]]            # one per segment reward model (`reins segment-reward`)
/// path = "runs/rm-relevance"
/// weight = 0.3
/// reward_clean = true    # +weight for a clean segment (default); false: only −weight for an error
///
/// [holistic]             # optional: a sequence-level reward model
/// path = "runs/rm"
/// weight = 0.3
/// mean = -0.447          # its scores' mean and deviation on training data (default 0 and 1)
/// std = 8.30
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineGrainedSpec {
    #[serde(default)]
    pub segment: Vec<SegmentEntry>,
    pub holistic: Option<HolisticEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub path: PathBuf,
    pub weight: f32,
    #[serde(default = "yes")]
    pub reward_clean: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolisticEntry {
    pub path: PathBuf,
    pub weight: f32,
    #[serde(default)]
    pub mean: f32,
    #[serde(default = "one")]
    pub std: f32,
}

fn one() -> f32 {
    1.0
}

impl FineGrainedSpec {
    /// Reads and checks the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))?;
        let spec: FineGrainedSpec = toml::from_str(&text).map_err(|e| {
            TrainError::Config(format!(
                "{}: {e} (see `reins ppo --help` for the fine-grained reward file)",
                path.display()
            ))
        })?;
        if spec.segment.is_empty() && spec.holistic.is_none() {
            return Err(TrainError::Config(format!(
                "{}: lists no reward model; add a [[segment]] (path, weight) or a [holistic] table",
                path.display()
            )));
        }
        if let Some(h) = &spec.holistic {
            if !(h.std > 0.0 && h.std.is_finite() && h.mean.is_finite()) {
                return Err(TrainError::Config(format!("{}: holistic std must be > 0", path.display())));
            }
        }
        let weights = spec.segment.iter().map(|s| s.weight).chain(spec.holistic.iter().map(|h| h.weight));
        if weights.into_iter().any(|w| !w.is_finite()) {
            return Err(TrainError::Config(format!("{}: every weight must be a finite number", path.display())));
        }
        Ok(spec)
    }

    /// Loads the models the file names; `decode` turns the policy's token ids into text (the
    /// segment models must share the policy's tokenizer, as any reward model scored on ids).
    pub fn load(
        path: &Path,
        device: &Device,
        decode: impl Fn(&[u32]) -> String + Clone + Send + Sync + 'static,
    ) -> Result<FineGrainedReward> {
        let spec = Self::read(path)?;
        let mut segments = Vec::new();
        for s in &spec.segment {
            let dir = &s.path;
            let kind = SegmentRewardSpec::read(dir)?;
            let model = Model::load(dir, device, &LoadOptions::default())?;
            let mut seg = SegmentReward::new(model, kind, s.weight, Box::new(decode.clone()))?;
            seg.reward_clean = s.reward_clean;
            segments.push(seg);
        }
        let holistic = match &spec.holistic {
            Some(h) => {
                let model = Model::load(&h.path, device, &LoadOptions::default())?;
                Some(HolisticReward {
                    source: Box::new(ModelReward::new(model)?),
                    weight: h.weight,
                    mean: h.mean,
                    std: h.std,
                })
            }
            None => None,
        };
        Ok(FineGrainedReward { segments, holistic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<f32>);
    impl RewardSource for Fixed {
        fn score(&self, _: &[Vec<u32>], _: &[Vec<u32>]) -> Result<Vec<f32>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn the_holistic_part_is_standardised_and_weighted() {
        let r = FineGrainedReward {
            segments: Vec::new(),
            holistic: Some(HolisticReward {
                source: Box::new(Fixed(vec![1.0, 5.0])),
                weight: 0.5,
                mean: 1.0,
                std: 2.0,
            }),
        };
        let e = vec![vec![1u32], vec![2]];
        assert_eq!(r.score(&e, &e).unwrap(), vec![0.0, 1.0]);
        assert_eq!(r.score_tokens(&e, &e).unwrap().unwrap(), vec![vec![0.0], vec![0.0]]);
    }

    /// On the tiny Llama reward-model fixture: `±weight` exactly at each sentence's last token
    /// (a token decoding to ". " ends one; the unfinished tail ends at the last token), with the
    /// sign of the model's own score there, batched or row by row; 0 everywhere else.
    #[test]
    fn segment_rewards_sit_at_segment_ends_with_the_models_sign() -> Result<()> {
        let dir = reins_data::testing::fixtures_dir().join("models/llama-rm");
        let model = Model::load(&dir, &Device::Cpu, &LoadOptions::default())?;
        let decode = |ids: &[u32]| ids.iter().map(|&i| if i % 3 == 0 { ". " } else { "a" }).collect::<String>();
        let prompts = vec![vec![5u32, 9, 17], vec![40, 2], vec![7]];
        let completions = vec![vec![31u32, 30, 44, 45, 46], vec![8, 10, 11, 13], vec![3, 6]];
        let spec = SegmentRewardSpec { granularity: super::super::segments::Granularity::Sentence, tags: vec![] };
        let mut seg = SegmentReward::new(model.clone(), spec, 0.5, Box::new(decode))?;
        seg.batch_size = 2;
        let got = seg.token_rewards(&prompts, &completions)?;
        let ends: [&[usize]; 3] = [&[1, 3, 4], &[3], &[0, 1]];
        for (i, (p, c)) in prompts.iter().zip(&completions).enumerate() {
            let row = [p.as_slice(), c].concat();
            let scores: Vec<f32> =
                model.token_scores(&Batch::right_padded(&[row], 0))?.narrow(2, 0, 1)?.flatten_all()?.to_vec1()?;
            for (k, r) in got[i].iter().enumerate() {
                let want = if ends[i].contains(&k) { 0.5f32.copysign(scores[p.len() + k]) } else { 0.0 };
                assert_eq!(*r, want, "row {i} token {k}: {:?}", got[i]);
            }
        }
        seg.reward_clean = false;
        let penalties = seg.token_rewards(&prompts, &completions)?;
        for (p, g) in penalties.iter().flatten().zip(got.iter().flatten()) {
            assert_eq!(*p, g.min(0.0), "penalty-only keeps the errors and drops the bonuses");
        }
        seg.reward_clean = true;
        let fg = FineGrainedReward { segments: vec![seg], holistic: None };
        assert_eq!(fg.score(&prompts, &completions)?, vec![0.0; 3]);
        assert_eq!(fg.score_tokens(&prompts, &completions)?.unwrap(), got);
        Ok(())
    }

    #[test]
    fn spec_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fg.toml");
        let read = |text: &str| {
            std::fs::write(&p, text).unwrap();
            FineGrainedSpec::read(&p)
        };
        let ok = read("[[segment]]\npath = \"a\"\nweight = 0.3\n[holistic]\npath = \"b\"\nweight = 1.0\n").unwrap();
        assert_eq!(ok.segment[0].path, PathBuf::from("a"));
        assert_eq!(ok.holistic.as_ref().unwrap().std, 1.0);
        assert!(ok.segment[0].reward_clean, "the paper's reward by default");
        assert!(read("").unwrap_err().to_string().contains("lists no reward model"));
        assert!(read("[[segment]]\npath = \"a\"\nwieght = 0.3\n").is_err(), "typo");
        assert!(read("[holistic]\npath = \"b\"\nweight = 1.0\nstd = 0.0\n").is_err());
    }
}
