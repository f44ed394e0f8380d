//! One trainer per file, each the algorithm from batch to update. A trainer receives collated
//! batches (it never parses files), runs the model, calls a pure loss from [`crate::losses`],
//! and steps the shared [`Optimizer`]. What trainers share lives beside them, once:
//! [`accumulation`] (micro-batches into one optimizer step, and the run loop's glue),
//! [`rollout`] (sampling, scoring and log-probs of completions for the online trainers),
//! [`metrics`] and [`token_metrics`] (what a step logs), [`reference`](mod@reference) (the
//! policy a KL or implied reward is measured against), the completion log-probs below, and
//! [`spec_file`] / [`read_spec`]: the settings file a reward model's checkpoint carries.
//!
//! [`Optimizer`]: crate::optim::optimizer::Optimizer

pub mod accumulation;
pub mod cpl;
pub mod cpo;
pub mod dpo;
pub mod grpo;
pub mod iterative_dpo;
pub mod kto;
pub mod lipo;
pub mod metarm;
pub mod metrics;
pub mod nash_md;
pub mod online_dpo;
pub mod orpo;
pub mod osp;
pub mod ppo;
pub mod principle_reward;
pub mod reference;
pub mod remax;
pub mod reward;
pub mod reward_ensemble;
pub mod reward_rationality;
pub mod rloo;
pub mod rollout;
pub mod rollout_server;
pub mod segment_reward;
pub mod sft;
pub mod simpo;
pub mod t_reg;
pub mod token_metrics;

use candle_core::{Tensor, D};
use reins_model::kv_cache::Past;
use reins_model::logprobs::{masked_token_logps_and_logits, token_logps};
use reins_model::{nn, Batch, Model};

pub use accumulation::BatchTrainer;
pub use metrics::Metrics;

use crate::{Result, TrainError};

/// A settings file a checkpoint carries beside its weights (`segment_reward.json`,
/// `principle_reward.json`, `seq2seq_reward.json`): `(name, pretty JSON)`.
pub fn spec_file<T: serde::Serialize>(name: &str, spec: &T) -> Result<(String, String)> {
    Ok((name.to_string(), serde_json::to_string_pretty(spec).map_err(|e| TrainError::State(e.to_string()))?))
}

/// The settings file `name` of the checkpoint `dir`, written by the command `made_by`.
pub fn read_spec<T: serde::de::DeserializeOwned>(dir: &std::path::Path, name: &str, made_by: &str) -> Result<T> {
    let p = dir.join(name);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| TrainError::Input(format!("{}: {e} (is this a model from `{made_by}`?)", p.display())))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
}

/// Per-token log-probs of the masked (completion) tokens and their per-row sums.
pub struct CompletionLogps {
    /// `[N, T-1]`, zero outside the completion.
    pub per_token: Tensor,
    /// `[N]`, summed over the completion.
    pub sums: Tensor,
    /// `[N, T-1]` completion mask aligned with `per_token`.
    pub mask: Tensor,
    /// `[N, T, V]` logits, for metrics and WPO.
    pub logits: Tensor,
}

/// Runs `model` on right-padded rows and gathers the log-probs of completion tokens
/// (`completion_mask[t+1] == 1` selects `log p(ids[t+1] | ids[..=t])`).
pub fn completion_logps(
    model: &Model,
    ids: &[Vec<u32>],
    attention_mask: &[Vec<u8>],
    completion_mask: &[Vec<u8>],
) -> Result<CompletionLogps> {
    let batch = Batch::new(ids.to_vec(), attention_mask.to_vec())?;
    let dev = model.device();
    let logits = model.logits(&batch)?;
    let idt = nn::ids_tensor(ids, dev)?;
    let cm = nn::mask_tensor(completion_mask, dev)?;
    let per_token = token_logps(&logits, &idt, &cm)?;
    let t = cm.dim(1)?;
    Ok(CompletionLogps { sums: per_token.sum(D::Minus1)?, mask: cm.narrow(1, 1, t - 1)?, per_token, logits })
}

/// [`completion_logps`] with positions `0..T` on every row when the rows are right-padded, as
/// transformers numbers them when no `position_ids` are passed. Real tokens get the positions
/// [`completion_logps`] gives them, so log-probs and losses are the same; only the logits at
/// padding positions differ, which TRL's ORPO and CPO include in their `logits/*` means.
/// Left-padded rows keep the mask's positions.
pub fn completion_logps_hf_padding(
    model: &Model,
    ids: &[Vec<u32>],
    attention_mask: &[Vec<u8>],
    completion_mask: &[Vec<u8>],
) -> Result<CompletionLogps> {
    let right_padded = attention_mask.iter().all(|r| r.windows(2).all(|w| w[0] >= w[1]));
    if !right_padded {
        return completion_logps(model, ids, attention_mask, completion_mask);
    }
    let dev = model.device();
    let idt = nn::ids_tensor(ids, dev)?;
    let positions: Vec<Vec<u32>> = ids.iter().map(|r| (0..r.len() as u32).collect()).collect();
    let logits = model.lm_logits(&model.forward_hidden(&idt, &positions, attention_mask, Past::None)?)?;
    let cm = nn::mask_tensor(completion_mask, dev)?;
    let per_token = token_logps(&logits, &idt, &cm)?;
    let t = cm.dim(1)?;
    Ok(CompletionLogps { sums: per_token.sum(D::Minus1)?, mask: cm.narrow(1, 1, t - 1)?, per_token, logits })
}

/// [`CompletionLogps`] without the logits: the LM head runs only on completion positions
/// (see [`reins_model::logprobs::masked_token_logps`]), for losses that need no logits.
pub struct CompletionOnlyLogps {
    /// `[N, T-1]`, zero outside the completion.
    pub per_token: Tensor,
    /// `[N]`, summed over the completion.
    pub sums: Tensor,
    /// `[N, T-1]` completion mask aligned with `per_token`.
    pub mask: Tensor,
    /// `[M, V]` logits of the `M` completion positions, row-major (for TRL's token metrics).
    pub logits: Tensor,
}

/// As [`completion_logps`], computing logits only where they are used.
pub fn completion_only_logps(
    model: &Model,
    ids: &[Vec<u32>],
    attention_mask: &[Vec<u8>],
    completion_mask: &[Vec<u8>],
) -> Result<CompletionOnlyLogps> {
    let batch = Batch::new(ids.to_vec(), attention_mask.to_vec())?;
    let (per_token, logits) = masked_token_logps_and_logits(model, &batch, completion_mask, 1.0)?;
    let cm = nn::mask_tensor(completion_mask, model.device())?;
    let t = cm.dim(1)?;
    Ok(CompletionOnlyLogps { sums: per_token.sum(D::Minus1)?, mask: cm.narrow(1, 1, t - 1)?, per_token, logits })
}
