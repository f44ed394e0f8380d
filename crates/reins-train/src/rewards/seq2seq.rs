//! Sequence-to-sequence reward models (Zhou et al., "Sequence to Sequence Reward Modeling:
//! Improving RLHF by Language Feedback", AAAI 2025, arXiv:2409.00162): the reward model is a
//! causal LM trained by sequence MLE on the preference pairs instead of a binary BT target, and
//! it scores a response token by token.
//!
//! Training, per pair, two mappings with weight 1 each ([`seq2seq_examples`]):
//! - correction: `x ++ y_rejected ++ sep → y_chosen`;
//! - identity: `x ++ y_chosen ++ sep → y_chosen`;
//!
//! the loss on the target tokens only (an SFT step). `sep` is a fixed text between the response
//! read and the response written (default `"\n\nA better response:"`), tokenized once.
//!
//! Reward of a policy sample `y` ([`Seq2SeqReward`]): feed `x ++ y ++ sep ++ y`, teacher-forcing
//! `y` as the target; each target token the model would itself have written next (its argmax)
//! gets `+α`, each token where `y` departs from it gets `−α`. A response the model would leave
//! unchanged collects `+α` per token; the tokens it would correct are penalised where they are.
//!
//! What the research note marks [recalled] (the paper's template, the reward magnitudes and the
//! 1:1 weighting) is a setting here, with no parity claimed.

use std::path::Path;

use candle_core::D;
use reins_data::tokenize::preference::PreferenceIds;
use reins_data::tokenize::sft::SftIds;
use reins_model::{Batch, Model};
use serde::{Deserialize, Serialize};

use super::RewardSource;
use crate::{Result, TrainError};

/// How a sequence-to-sequence reward model reads and pays; saved as `seq2seq_reward.json` in
/// every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seq2SeqSpec {
    /// Text between the response read and the response written (default
    /// `"\n\nA better response:"`).
    pub separator: String,
    /// Reward per target token: `+α` where the model agrees, `−α` where it departs (default 1).
    pub token_reward: f32,
}

impl Default for Seq2SeqSpec {
    fn default() -> Self {
        Seq2SeqSpec { separator: "\n\nA better response:".into(), token_reward: 1.0 }
    }
}

impl Seq2SeqSpec {
    pub const FILE: &'static str = "seq2seq_reward.json";

    pub fn validate(&self) -> Result<()> {
        if self.separator.is_empty() {
            return Err(TrainError::Config("separator must not be empty: it marks where the rewrite starts".into()));
        }
        if !(self.token_reward.is_finite() && self.token_reward > 0.0) {
            return Err(TrainError::Config(format!("token_reward must be > 0 (got {})", self.token_reward)));
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let spec: Seq2SeqSpec = crate::trainers::read_spec(dir, Self::FILE, "reins seq2seq-reward")?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_file(&self) -> Result<(String, String)> {
        crate::trainers::spec_file(Self::FILE, self)
    }
}

/// A pair's two training examples, correction then identity: `prompt ++ response ++ sep`
/// with the chosen response as the only labelled target.
pub fn seq2seq_examples(pair: &PreferenceIds, sep: &[u32]) -> [SftIds; 2] {
    let example = |read: &[u32]| {
        let input: Vec<u32> = [pair.prompt_ids.as_slice(), read, sep].concat();
        let n = input.len();
        let input_ids = [input, pair.chosen_ids.clone()].concat();
        let labels = input_ids.iter().enumerate().map(|(i, &t)| if i < n { -100 } else { t as i64 }).collect();
        SftIds { input_ids, labels }
    };
    [example(&pair.rejected_ids), example(&pair.chosen_ids)]
}

/// A sequence-to-sequence reward model paying `±token_reward` per completion token.
pub struct Seq2SeqReward {
    pub model: Model,
    pub sep_ids: Vec<u32>,
    pub token_reward: f32,
    pub pad_token_id: u32,
    /// Rows per forward pass (default 16).
    pub batch_size: usize,
}

impl Seq2SeqReward {
    pub fn new(model: Model, sep_ids: Vec<u32>, token_reward: f32) -> Result<Self> {
        if sep_ids.is_empty() {
            return Err(TrainError::Config("seq2seq reward: the separator tokenizes to nothing".into()));
        }
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        Ok(Seq2SeqReward { model: model.detached(), sep_ids, token_reward, pad_token_id: pad, batch_size: 16 })
    }

    /// Per completion, one reward per token: `+α` where the model's next-token argmax is the
    /// token, `−α` where it is not.
    pub fn token_rewards(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(completions.len());
        let rows: Vec<usize> = (0..completions.len()).collect();
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| [prompts[i].as_slice(), &completions[i], &self.sep_ids, &completions[i]].concat())
                .collect();
            let logits = self.model.logits(&Batch::right_padded(&seqs, self.pad_token_id))?;
            let predicted: Vec<Vec<u32>> = logits.argmax(D::Minus1)?.to_vec2()?;
            for (k, &i) in chunk.iter().enumerate() {
                let c = &completions[i];
                // target token j sits at `start + j`, predicted from the position before it
                let start = prompts[i].len() + c.len() + self.sep_ids.len();
                let r = c
                    .iter()
                    .enumerate()
                    .map(
                        |(j, &t)| if predicted[k][start + j - 1] == t { self.token_reward } else { -self.token_reward },
                    )
                    .collect();
                out.push(r);
            }
        }
        Ok(out)
    }
}

impl RewardSource for Seq2SeqReward {
    /// Nothing at the last token: the reward is all per token.
    fn score(&self, _prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        Ok(vec![0.0; completions.len()])
    }

    fn score_tokens(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Option<Vec<Vec<f32>>>> {
        if prompts.len() != completions.len() {
            return Err(TrainError::Input(format!(
                "seq2seq reward: {} prompts for {} completions",
                prompts.len(),
                completions.len()
            )));
        }
        Ok(Some(self.token_rewards(prompts, completions)?))
    }

    fn name(&self) -> &str {
        "seq2seq"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use reins_model::LoadOptions;

    #[test]
    fn a_pair_gives_a_correction_and_an_identity_example() {
        let pair = PreferenceIds {
            prompt_ids: vec![1, 2],
            chosen_ids: vec![7, 8, 0],
            rejected_ids: vec![5, 0],
            margin: None,
            strength: None,
        };
        let [fix, same] = seq2seq_examples(&pair, &[9]);
        assert_eq!(fix.input_ids, vec![1, 2, 5, 0, 9, 7, 8, 0]);
        assert_eq!(fix.labels, vec![-100, -100, -100, -100, -100, 7, 8, 0]);
        assert_eq!(same.input_ids, vec![1, 2, 7, 8, 0, 9, 7, 8, 0]);
        assert_eq!(same.labels, vec![-100, -100, -100, -100, -100, -100, 7, 8, 0]);
    }

    /// On the tiny Llama fixture: `+α` exactly where the model's own greedy next token (from an
    /// unbatched forward of the same sequence) is the completion token, `−α` elsewhere.
    #[test]
    fn token_rewards_follow_the_models_own_next_token() -> Result<()> {
        let dir = reins_data::testing::fixtures_dir().join("models/llama");
        let model = Model::load(&dir, &Device::Cpu, &LoadOptions::default())?;
        let sep = vec![11u32, 12];
        let mut r = Seq2SeqReward::new(model.clone(), sep.clone(), 0.5)?;
        r.batch_size = 2;
        let prompts = vec![vec![5u32, 9, 17], vec![40, 2], vec![7]];
        let completions = vec![vec![31u32, 30, 44], vec![8, 10, 11, 13], vec![3]];
        let got = r.token_rewards(&prompts, &completions)?;
        for (i, (p, c)) in prompts.iter().zip(&completions).enumerate() {
            let row = [p.as_slice(), c, &sep, c].concat();
            let next: Vec<u32> =
                model.logits(&Batch::right_padded(&[row], 0))?.argmax(D::Minus1)?.flatten_all()?.to_vec1()?;
            let start = p.len() + c.len() + sep.len();
            let want: Vec<f32> =
                c.iter().enumerate().map(|(j, &t)| if next[start + j - 1] == t { 0.5 } else { -0.5 }).collect();
            assert_eq!(got[i], want, "row {i}");
        }
        Ok(())
    }

    #[test]
    fn settings_are_checked() {
        assert!(Seq2SeqSpec::default().validate().is_ok());
        assert!(Seq2SeqSpec { separator: String::new(), ..Default::default() }.validate().is_err());
        assert!(Seq2SeqSpec { token_reward: 0.0, ..Default::default() }.validate().is_err());
    }
}
