//! `reins reward --set metarm_dataset=FILE`: MetaRM (Secrets of RLHF II §3.2), every step a
//! first-order meta step ([`reins_train::trainers::metarm`]) on samples of the shifted policy.
//! FILE holds `{"prompt": …, "completions": [...]}` lines, as `reins generate -o` writes them,
//! each with the same number k ≥ 2 of completions; they are unlabelled.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use reins_data::collate::{pad, PaddingSide};
use reins_data::tokenize::reward::tokenize_reward_response;
use reins_data::{HfTokenizer, Text};
use reins_train::trainers::metarm::MetaBatch;
use serde::{Deserialize, Serialize};

/// MetaRM settings of `reins reward` (flat keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaRmArgs {
    /// Policy samples, `{"prompt", "completions": [...]}` per line (default: none, no MetaRM).
    pub metarm_dataset: Option<PathBuf>,
    /// η of the meta ascent `θ' = θ + η∇J` (the paper gives no value). Default 0.01.
    pub metarm_eta: f64,
    /// Prompts per meta batch (each with its k completions). Default 4.
    pub metarm_prompts_per_batch: usize,
}

impl Default for MetaRmArgs {
    fn default() -> Self {
        MetaRmArgs { metarm_dataset: None, metarm_eta: 0.01, metarm_prompts_per_batch: 4 }
    }
}

#[derive(Deserialize)]
struct Line {
    prompt: Text,
    completions: Vec<Text>,
}

/// Reads and tokenizes the meta dataset into right-padded meta batches.
pub fn meta_batches(args: &MetaRmArgs, path: &Path, tok: &HfTokenizer, pad_id: u32) -> Result<Vec<MetaBatch>> {
    if !(args.metarm_eta.is_finite() && args.metarm_eta >= 0.0) || args.metarm_prompts_per_batch == 0 {
        bail!("`metarm_eta` must be a finite η >= 0 and `metarm_prompts_per_batch` at least 1");
    }
    let f = std::fs::File::open(path).with_context(|| format!("metarm_dataset {}", path.display()))?;
    let (mut groups, mut k) = (Vec::new(), None);
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| path.display().to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{} line {}", path.display(), n + 1);
        let l: Line = serde_json::from_str(&line).with_context(|| {
            format!("{}: not a {{\"prompt\", \"completions\": [...]}} line (`reins generate -o` writes them)", where_())
        })?;
        if l.completions.len() < 2 || k.is_some_and(|k| k != l.completions.len()) {
            bail!(
                "{}: {} completions; MetaRM needs the same k >= 2 on every line (the first had {})",
                where_(),
                l.completions.len(),
                k.unwrap_or(l.completions.len())
            );
        }
        k = Some(l.completions.len());
        let rows: Vec<Vec<u32>> = l
            .completions
            .iter()
            .map(|c| tokenize_reward_response(tok, &l.prompt, c))
            .collect::<std::result::Result<_, _>>()
            .with_context(where_)?;
        groups.push(rows);
    }
    let Some(k) = k else { bail!("{}: no policy samples", path.display()) };
    Ok(groups
        .chunks(args.metarm_prompts_per_batch)
        .map(|chunk| {
            let rows: Vec<Vec<u32>> = chunk.concat();
            let mask: Vec<Vec<u8>> = rows.iter().map(|r| vec![1; r.len()]).collect();
            MetaBatch {
                input_ids: pad(&rows, pad_id, PaddingSide::Right, None),
                attention_mask: pad(&mask, 0, PaddingSide::Right, None),
                k,
            }
        })
        .collect())
}
