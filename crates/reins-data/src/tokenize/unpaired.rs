//! KTO tokenization (TRL `KTOTrainer._prepare_dataset`): paired data is first unpaired
//! ([`crate::convert::unpair`]); each example becomes `prompt_ids` + `completion_ids` cut
//! at the common prefix, with EOS appended to standard completions; examples whose prompt
//! alone fills `max_length` are dropped. The KL completions are the batch's completions
//! rotated by one ([`kl_completion_ids`]).

use super::{common_prefix_length, eos_token, full_ids, prompt_ids, with_eos, Stats};
use crate::error::Result;
use crate::records::Record;
use crate::tokenizer::HfTokenizer;

#[derive(Clone, Debug, PartialEq)]
pub struct UnpairedIds {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// true = desirable.
    pub label: bool,
}

/// Tokenize unpaired records (`max_length` default 1024 in TRL's `KTOConfig`).
pub fn tokenize_unpaired_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    max_length: Option<usize>,
) -> Result<(Vec<UnpairedIds>, Stats)> {
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Record::Unpaired { prompt, completion, label, .. } = r else {
            stats.drop(&format!("{} is not unpaired (convert preferences with convert::unpair)", r.kind().name()));
            continue;
        };
        let completion = if prompt.is_chat() || completion.is_chat() {
            completion.clone()
        } else {
            with_eos(completion, &eos_token(tok)?)
        };
        let p = prompt_ids(tok, prompt)?;
        let full = full_ids(tok, &prompt.concat(&completion))?;
        let n = common_prefix_length(&p, &full);
        if max_length.is_some_and(|m| n >= m) {
            stats.drop("prompt alone fills max_length");
            continue;
        }
        stats.kept += 1;
        out.push(UnpairedIds { prompt_ids: p[..n].to_vec(), completion_ids: full[n..].to_vec(), label: *label });
    }
    Ok((out, stats))
}

/// TRL's mismatched KL completions: within each batch of `batch_size` (TRL uses
/// `per_device_train_batch_size`), completion `i` is paired with completion `i - 1`
/// (the first with the last).
pub fn kl_completion_ids(examples: &[UnpairedIds], batch_size: usize) -> Vec<Vec<u32>> {
    examples
        .chunks(batch_size.max(1))
        .flat_map(|c| {
            let mut v: Vec<Vec<u32>> = c.iter().map(|e| e.completion_ids.clone()).collect();
            v.rotate_right(1);
            v
        })
        .collect()
}
