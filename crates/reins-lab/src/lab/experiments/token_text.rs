//! The lab's judges over token ids: trainers hold rollouts as token ids, the world's gold and
//! annotators read text. A [`TextView`] turns ids back into the world's prompt (looked up among
//! the prompts the experiment encoded, or decoded with the chat markers stripped) and the
//! response (decoded and cut at the end marker).

use std::collections::HashMap;

use rand::RngCore;
use reins_data::HfTokenizer;
use reins_train::judges::{Judgment, PairwiseJudge};
use reins_train::rewards::RewardSource;
use reins_train::TrainError;

use crate::{chat, GoldReward};

/// Token ids to the world's texts.
pub(crate) struct TextView {
    /// Encoded prompt → its text, for the prompts the experiment knows.
    pub texts: HashMap<Vec<u32>, String>,
    pub tok: HfTokenizer,
}

impl TextView {
    fn decode(&self, ids: &[u32]) -> reins_train::Result<String> {
        self.tok.decode(ids, false).map_err(|e| TrainError::Input(format!("lab judge: {e}")))
    }

    pub fn prompt(&self, ids: &[u32]) -> reins_train::Result<String> {
        Ok(match self.texts.get(ids) {
            Some(t) => t.clone(),
            None => self.decode(ids)?.replace(chat::USER, "").replace(chat::ASSISTANT, "").trim().to_string(),
        })
    }

    pub fn response(&self, ids: &[u32]) -> reins_train::Result<String> {
        Ok(chat::extract_response(&self.decode(ids)?).0)
    }
}

/// The gold reward as a reward source over token ids (PF-PPO's actual score).
pub(crate) struct GoldSource {
    pub view: TextView,
    pub gold: GoldReward,
}

impl RewardSource for GoldSource {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> reins_train::Result<Vec<f32>> {
        prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| Ok(self.gold.score(&self.view.prompt(p)?, &self.view.response(c)?) as f32))
            .collect()
    }

    fn name(&self) -> &str {
        "gold"
    }
}

/// A judge of the world's texts as a judge of token ids.
pub(crate) struct TextJudge<J> {
    pub view: TextView,
    pub judge: J,
}

impl<J: PairwiseJudge<str>> PairwiseJudge<[u32]> for TextJudge<J> {
    fn judge(&self, prompt: &[u32], a: &[u32], b: &[u32], rng: &mut dyn RngCore) -> reins_train::Result<Judgment> {
        let p = self.view.prompt(prompt)?;
        self.judge.judge(&p, &self.view.response(a)?, &self.view.response(b)?, rng)
    }

    fn name(&self) -> &str {
        self.judge.name()
    }
}
