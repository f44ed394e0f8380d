//! SFT tokenization (TRL `SFTTrainer._prepare_dataset`): `input_ids` and `labels` with
//! -100 where a token doesn't count (the prompt, when `completion_only_loss`).

use super::{common_prefix_length, eos_token, full_ids, prompt_ids, truncate, with_eos, Stats, TruncationMode};
use crate::error::Result;
use crate::records::{Record, Text};
use crate::tokenizer::HfTokenizer;

/// The label value that the loss ignores.
pub const IGNORE_INDEX: i64 = -100;

/// One tokenized SFT example (labels are aligned with `input_ids`, not shifted; the model
/// shifts them).
#[derive(Clone, Debug, PartialEq)]
pub struct SftIds {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// TRL `SFTConfig` fields that shape tokenization.
#[derive(Clone, Debug)]
pub struct SftOptions {
    /// Default 1024 (TRL's). With packing, the packed sequence length.
    pub max_length: Option<usize>,
    pub truncation_mode: TruncationMode,
    /// `None` (TRL's default): completion-only loss for prompt-completion data, full-sequence
    /// loss for language modeling data.
    pub completion_only_loss: Option<bool>,
}

impl Default for SftOptions {
    fn default() -> Self {
        Self { max_length: Some(1024), truncation_mode: TruncationMode::KeepStart, completion_only_loss: None }
    }
}

/// Tokenize one prompt-completion or language-modeling record (no truncation).
/// Returns `None` for other kinds.
pub fn tokenize_sft(tok: &HfTokenizer, r: &Record, completion_only_loss: Option<bool>) -> Result<Option<SftIds>> {
    match r {
        Record::PromptCompletion { prompt, completion, .. } => {
            let conversational = prompt.is_chat() || completion.is_chat();
            let completion = if conversational { completion.clone() } else { with_eos(completion, &eos_token(tok)?) };
            let p = prompt_ids(tok, prompt)?;
            let input_ids = full_ids(tok, &prompt.concat(&completion))?;
            let n = common_prefix_length(&p, &input_ids);
            let only = completion_only_loss.unwrap_or(true);
            let labels = input_ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if only && i < n { IGNORE_INDEX } else { t as i64 })
                .collect();
            Ok(Some(SftIds { input_ids, labels }))
        }
        Record::LanguageModeling { text, .. } => {
            let text = match text {
                Text::Plain(_) => with_eos(text, &eos_token(tok)?),
                chat => chat.clone(),
            };
            let input_ids = full_ids(tok, &text)?;
            let labels = input_ids.iter().map(|&t| t as i64).collect();
            Ok(Some(SftIds { input_ids, labels }))
        }
        _ => Ok(None),
    }
}

/// Tokenize a data set, truncate to `max_length` (unless `packing`, which cuts later), and
/// drop examples that truncation left without any label (counted).
pub fn tokenize_sft_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    opts: &SftOptions,
    packing: bool,
) -> Result<(Vec<SftIds>, Stats)> {
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Some(mut ids) = tokenize_sft(tok, r, opts.completion_only_loss)? else {
            stats.drop(&format!("{} is not SFT data (convert with --to sft)", r.kind().name()));
            continue;
        };
        if !packing && opts.max_length.is_some() {
            ids.input_ids = truncate(&ids.input_ids, opts.max_length, opts.truncation_mode);
            ids.labels = truncate(&ids.labels, opts.max_length, opts.truncation_mode);
            if ids.labels.iter().all(|&l| l == IGNORE_INDEX) {
                stats.drop("fully masked after truncation");
                continue;
            }
        }
        stats.kept += 1;
        out.push(ids);
    }
    Ok((out, stats))
}
