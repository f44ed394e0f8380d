//! DPO tokenization (TRL `DPOTrainer._prepare_dataset`): `prompt_ids`, `chosen_ids`,
//! `rejected_ids`, the prompt cut at the common prefix of both pairs.

use super::{common_prefix_length, eos_token, full_ids, prompt_ids, with_eos, Stats, TruncationMode};
use crate::error::Result;
use crate::records::{Preference, Record};
use crate::tokenizer::HfTokenizer;

/// One tokenized preference pair, as TRL stores it before collation.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferenceIds {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
    pub margin: Option<f64>,
    pub strength: Option<f64>,
}

/// TRL `DPOConfig` fields that shape tokenization.
#[derive(Clone, Debug)]
pub struct PreferenceOptions {
    /// Maximum length of prompt + completion (default 1024, TRL's); `None` = no limit.
    pub max_length: Option<usize>,
    /// Default `keep_start`, TRL's.
    pub truncation_mode: TruncationMode,
}

impl Default for PreferenceOptions {
    fn default() -> Self {
        Self { max_length: Some(1024), truncation_mode: TruncationMode::KeepStart }
    }
}

/// Tokenize one pair. Standard data gets EOS appended to chosen and rejected.
pub fn tokenize_preference(tok: &HfTokenizer, p: &Preference) -> Result<PreferenceIds> {
    let conversational = p.prompt.is_chat() || p.chosen.is_chat();
    let (chosen, rejected) = if conversational {
        (p.chosen.clone(), p.rejected.clone())
    } else {
        let eos = eos_token(tok)?;
        (with_eos(&p.chosen, &eos), with_eos(&p.rejected, &eos))
    };
    let prompt = prompt_ids(tok, &p.prompt)?;
    let prompt_chosen = full_ids(tok, &p.prompt.concat(&chosen))?;
    let prompt_rejected = full_ids(tok, &p.prompt.concat(&rejected))?;
    let n = common_prefix_length(&prompt, &prompt_chosen).min(common_prefix_length(&prompt, &prompt_rejected));
    Ok(PreferenceIds {
        prompt_ids: prompt[..n].to_vec(),
        chosen_ids: prompt_chosen[n..].to_vec(),
        rejected_ids: prompt_rejected[n..].to_vec(),
        margin: p.margin,
        strength: p.strength,
    })
}

/// Tokenize a data set of preference records. Non-preference records are dropped (counted);
/// with `keep_start` truncation, pairs whose prompt alone fills `max_length` are dropped
/// (counted), as TRL does.
pub fn tokenize_preference_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    opts: &PreferenceOptions,
) -> Result<(Vec<PreferenceIds>, Stats)> {
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Record::Preference(p) = r else {
            stats.drop(&format!("{} is not a preference", r.kind().name()));
            continue;
        };
        let ids = tokenize_preference(tok, p)?;
        if let (Some(max), TruncationMode::KeepStart) = (opts.max_length, opts.truncation_mode) {
            if ids.prompt_ids.len() >= max {
                stats.drop("prompt alone fills max_length");
                continue;
            }
        }
        stats.kept += 1;
        out.push(ids);
    }
    Ok((out, stats))
}
