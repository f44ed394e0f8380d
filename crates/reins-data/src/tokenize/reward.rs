//! Reward-model tokenization (TRL `RewardTrainer._prepare_dataset`): whole
//! `prompt + chosen` and `prompt + rejected` sequences; pairs longer than `max_length` are
//! dropped (not truncated).

use super::{eos_token, full_ids, with_eos, Stats};
use crate::error::Result;
use crate::records::{Preference, Record, Text};
use crate::tokenizer::HfTokenizer;

#[derive(Clone, Debug, PartialEq)]
pub struct RewardIds {
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
    pub margin: Option<f64>,
    /// Soft label: the probability that chosen is preferred (`None` = 1, a hard label).
    pub strength: Option<f64>,
}

/// TRL `RewardConfig.max_length` (default 1024).
#[derive(Clone, Debug)]
pub struct RewardOptions {
    pub max_length: Option<usize>,
}

impl Default for RewardOptions {
    fn default() -> Self {
        Self { max_length: Some(1024) }
    }
}

pub fn tokenize_reward(tok: &HfTokenizer, p: &Preference) -> Result<RewardIds> {
    Ok(RewardIds {
        chosen_ids: tokenize_reward_response(tok, &p.prompt, &p.chosen)?,
        rejected_ids: tokenize_reward_response(tok, &p.prompt, &p.rejected)?,
        margin: p.margin,
        strength: p.strength,
    })
}

/// One scored sequence, `prompt + response` (EOS appended to plain-text responses; chat
/// responses end with the template's end of turn), as the reward model reads it.
pub fn tokenize_reward_response(tok: &HfTokenizer, prompt: &Text, response: &Text) -> Result<Vec<u32>> {
    let response =
        if prompt.is_chat() || response.is_chat() { response.clone() } else { with_eos(response, &eos_token(tok)?) };
    full_ids(tok, &prompt.concat(&response))
}

pub fn tokenize_reward_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    opts: &RewardOptions,
) -> Result<(Vec<RewardIds>, Stats)> {
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Record::Preference(p) = r else {
            stats.drop(&format!("{} is not a preference", r.kind().name()));
            continue;
        };
        let ids = tokenize_reward(tok, p)?;
        if let Some(max) = opts.max_length {
            if ids.chosen_ids.len() > max || ids.rejected_ids.len() > max {
                stats.drop("longer than max_length");
                continue;
            }
        }
        stats.kept += 1;
        out.push(ids);
    }
    Ok((out, stats))
}
