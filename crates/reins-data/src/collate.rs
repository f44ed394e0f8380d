//! Collation into plain padded arrays (no tensors), as TRL's collators build them.
//!
//! Preference and reward batches have `2 * B` rows: the B chosen sequences first, then
//! the B rejected ones, right-padded. Generation prompts are left-padded.

use crate::tokenize::pack::Packed;
use crate::tokenize::preference::PreferenceIds;
use crate::tokenize::reward::RewardIds;
use crate::tokenize::sft::{SftIds, IGNORE_INDEX};
use crate::tokenize::{truncate, TruncationMode};

/// Which side padding goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaddingSide {
    /// Training batches.
    Right,
    /// Generation prompts (the new tokens follow the last real token).
    Left,
}

/// Pad rows to a common length (rounded up to `pad_to_multiple_of`), TRL's `pad`.
pub fn pad<T: Clone>(rows: &[Vec<T>], value: T, side: PaddingSide, pad_to_multiple_of: Option<usize>) -> Vec<Vec<T>> {
    let mut width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(m) = pad_to_multiple_of.filter(|&m| m > 0) {
        width = width.div_ceil(m) * m;
    }
    rows.iter()
        .map(|r| {
            let fill = std::iter::repeat_n(value.clone(), width - r.len());
            match side {
                PaddingSide::Right => r.iter().cloned().chain(fill).collect(),
                PaddingSide::Left => fill.chain(r.iter().cloned()).collect(),
            }
        })
        .collect()
}

/// A DPO batch: rows `0..B` chosen, rows `B..2B` rejected. `completion_mask` is 1 on the
/// completion tokens (incl. EOS / end-of-turn), 0 on prompt and padding.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferenceBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub completion_mask: Vec<Vec<u8>>,
    /// Per pair (length B), when the data has margins.
    pub margin: Option<Vec<f64>>,
    /// Per pair (length B), when any pair of the batch has a soft label (the others get 1.0,
    /// a hard label).
    pub strength: Option<Vec<f64>>,
    /// Per row (length 2B): summed reference log-probs when precomputed (TRL
    /// `precompute_ref_log_probs`, its `ref_chosen_logps` then `ref_rejected_logps`).
    pub ref_logps: Option<Vec<f64>>,
}

impl PreferenceBatch {
    /// Number of pairs (half the rows).
    pub fn pairs(&self) -> usize {
        self.input_ids.len() / 2
    }
}

/// TRL's `DataCollatorForPreference` (DPO): prompt+completion per row, each row truncated
/// to `max_length` (`keep_start` / `keep_end`), then right-padded with `pad_id`.
pub fn collate_preference(
    examples: &[PreferenceIds],
    pad_id: u32,
    max_length: Option<usize>,
    truncation_mode: TruncationMode,
    pad_to_multiple_of: Option<usize>,
) -> PreferenceBatch {
    let mut ids = Vec::with_capacity(2 * examples.len());
    let mut cmask = Vec::with_capacity(2 * examples.len());
    for pick_chosen in [true, false] {
        for e in examples {
            let completion = if pick_chosen { &e.chosen_ids } else { &e.rejected_ids };
            let row: Vec<u32> = e.prompt_ids.iter().chain(completion).copied().collect();
            let mask: Vec<u8> = std::iter::repeat_n(0u8, e.prompt_ids.len())
                .chain(std::iter::repeat_n(1u8, completion.len()))
                .collect();
            ids.push(truncate(&row, max_length, truncation_mode));
            cmask.push(truncate(&mask, max_length, truncation_mode));
        }
    }
    let attn: Vec<Vec<u8>> = ids.iter().map(|r| vec![1u8; r.len()]).collect();
    PreferenceBatch {
        input_ids: pad(&ids, pad_id, PaddingSide::Right, pad_to_multiple_of),
        attention_mask: pad(&attn, 0, PaddingSide::Right, pad_to_multiple_of),
        completion_mask: pad(&cmask, 0, PaddingSide::Right, pad_to_multiple_of),
        margin: examples.iter().map(|e| e.margin).collect(),
        strength: soft_labels(examples.iter().map(|e| e.strength)),
        ref_logps: None,
    }
}

/// A reward-model batch: rows `0..B` chosen, `B..2B` rejected.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    /// Per pair, when every example has a margin.
    pub margin: Option<Vec<f64>>,
    /// Per pair, when any example has a soft label (the others get 1.0, a hard label).
    pub strength: Option<Vec<f64>>,
}

/// Per-pair soft labels of a batch: `None` when no example has one, else each example's
/// label with 1.0 (a hard label) for those without.
fn soft_labels(labels: impl Iterator<Item = Option<f64>> + Clone) -> Option<Vec<f64>> {
    labels.clone().any(|p| p.is_some()).then(|| labels.map(|p| p.unwrap_or(1.0)).collect())
}

/// TRL's reward `DataCollatorForPreference`.
pub fn collate_reward(examples: &[RewardIds], pad_id: u32, pad_to_multiple_of: Option<usize>) -> RewardBatch {
    let ids: Vec<Vec<u32>> =
        examples.iter().map(|e| e.chosen_ids.clone()).chain(examples.iter().map(|e| e.rejected_ids.clone())).collect();
    let attn: Vec<Vec<u8>> = ids.iter().map(|r| vec![1u8; r.len()]).collect();
    RewardBatch {
        input_ids: pad(&ids, pad_id, PaddingSide::Right, pad_to_multiple_of),
        attention_mask: pad(&attn, 0, PaddingSide::Right, pad_to_multiple_of),
        margin: examples.iter().map(|e| e.margin).collect(),
        strength: soft_labels(examples.iter().map(|e| e.strength)),
    }
}

/// An SFT batch. `labels` are aligned with `input_ids` (the model shifts), -100 where ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct SftBatch {
    pub input_ids: Vec<Vec<u32>>,
    /// `None` in padding-free mode (one flattened row with `position_ids`).
    pub attention_mask: Option<Vec<Vec<u8>>>,
    pub labels: Vec<Vec<i64>>,
    /// Restart at 0 at each packed sequence; set for packed / padding-free batches.
    pub position_ids: Option<Vec<Vec<u32>>>,
}

/// TRL's `DataCollatorForLanguageModeling` without packing: right padding, labels padded
/// with -100.
pub fn collate_sft(examples: &[SftIds], pad_id: u32, pad_to_multiple_of: Option<usize>) -> SftBatch {
    let ids: Vec<Vec<u32>> = examples.iter().map(|e| e.input_ids.clone()).collect();
    let labels: Vec<Vec<i64>> = examples.iter().map(|e| e.labels.clone()).collect();
    let attn: Vec<Vec<u8>> = ids.iter().map(|r| vec![1u8; r.len()]).collect();
    SftBatch {
        input_ids: pad(&ids, pad_id, PaddingSide::Right, pad_to_multiple_of),
        attention_mask: Some(pad(&attn, 0, PaddingSide::Right, pad_to_multiple_of)),
        labels: pad(&labels, IGNORE_INDEX, PaddingSide::Right, pad_to_multiple_of),
        position_ids: None,
    }
}

/// TRL's padding-free collation of packed rows: everything flattened into one row,
/// `position_ids` restarting at every sequence, and the label at each sequence start set
/// to -100 (no token predicts across a boundary).
pub fn collate_packed(rows: &[Packed], pad_id: u32, pad_to_multiple_of: Option<usize>) -> SftBatch {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut pos = Vec::new();
    for r in rows {
        ids.extend(&r.input_ids);
        labels.extend(&r.labels);
        for &l in &r.seq_lengths {
            pos.extend(0..l as u32);
        }
    }
    let mut labels = pad(&[labels], IGNORE_INDEX, PaddingSide::Right, pad_to_multiple_of);
    let pos = pad(&[pos], 0, PaddingSide::Right, pad_to_multiple_of);
    for (l, &p) in labels[0].iter_mut().zip(&pos[0]) {
        if p == 0 {
            *l = IGNORE_INDEX;
        }
    }
    SftBatch {
        input_ids: pad(&[ids], pad_id, PaddingSide::Right, pad_to_multiple_of),
        attention_mask: None,
        labels,
        position_ids: Some(pos),
    }
}

/// A KTO batch: `input_ids`/masks for prompt + completion, the same for the mismatched KL
/// completions when given, and the labels.
#[derive(Clone, Debug, PartialEq)]
pub struct UnpairedBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub completion_mask: Vec<Vec<u8>>,
    /// TRL's `KL_input_ids` (when KL completions are given).
    pub kl_input_ids: Option<Vec<Vec<u32>>>,
    pub kl_attention_mask: Option<Vec<Vec<u8>>>,
    pub kl_completion_mask: Option<Vec<Vec<u8>>>,
    pub label: Vec<bool>,
}

/// TRL's `DataCollatorForUnpairedPreference`: rows truncated to `max_length` (keep start),
/// right-padded. `kl_completions` (from [`crate::tokenize::unpaired::kl_completion_ids`]) must
/// have one entry per example.
pub fn collate_unpaired(
    examples: &[crate::tokenize::unpaired::UnpairedIds],
    kl_completions: Option<&[Vec<u32>]>,
    pad_id: u32,
    max_length: Option<usize>,
    pad_to_multiple_of: Option<usize>,
) -> UnpairedBatch {
    let build = |answers: &mut dyn Iterator<Item = (&Vec<u32>, &Vec<u32>)>| {
        let mut ids = Vec::new();
        let mut cm = Vec::new();
        for (p, a) in answers {
            let row: Vec<u32> = p.iter().chain(a).copied().collect();
            let m: Vec<u8> = std::iter::repeat_n(0u8, p.len()).chain(std::iter::repeat_n(1u8, a.len())).collect();
            ids.push(truncate(&row, max_length, TruncationMode::KeepStart));
            cm.push(truncate(&m, max_length, TruncationMode::KeepStart));
        }
        let attn: Vec<Vec<u8>> = ids.iter().map(|r: &Vec<u32>| vec![1u8; r.len()]).collect();
        (
            pad(&ids, pad_id, PaddingSide::Right, pad_to_multiple_of),
            pad(&attn, 0, PaddingSide::Right, pad_to_multiple_of),
            pad(&cm, 0, PaddingSide::Right, pad_to_multiple_of),
        )
    };
    let (input_ids, attention_mask, completion_mask) =
        build(&mut examples.iter().map(|e| (&e.prompt_ids, &e.completion_ids)));
    let kl = kl_completions.map(|k| build(&mut examples.iter().map(|e| &e.prompt_ids).zip(k)));
    let (kl_input_ids, kl_attention_mask, kl_completion_mask) = match kl {
        Some((a, b, c)) => (Some(a), Some(b), Some(c)),
        None => (None, None, None),
    };
    UnpairedBatch {
        input_ids,
        attention_mask,
        completion_mask,
        kl_input_ids,
        kl_attention_mask,
        kl_completion_mask,
        label: examples.iter().map(|e| e.label).collect(),
    }
}

/// Left-padded prompts for generation, with their attention mask.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
}

pub fn collate_prompts(prompts: &[Vec<u32>], pad_id: u32) -> GenerationBatch {
    let attn: Vec<Vec<u8>> = prompts.iter().map(|r| vec![1u8; r.len()]).collect();
    GenerationBatch {
        input_ids: pad(prompts, pad_id, PaddingSide::Left, None),
        attention_mask: pad(&attn, 0, PaddingSide::Left, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_left_and_right_with_multiple() {
        let rows = vec![vec![1u32, 2, 3], vec![4]];
        assert_eq!(pad(&rows, 0, PaddingSide::Right, None), vec![vec![1, 2, 3], vec![4, 0, 0]]);
        assert_eq!(pad(&rows, 0, PaddingSide::Left, Some(4)), vec![vec![0, 1, 2, 3], vec![0, 0, 0, 4]]);
        let g = collate_prompts(&rows, 9);
        assert_eq!(g.attention_mask, vec![vec![1, 1, 1], vec![0, 0, 1]]);
    }

    #[test]
    fn dpo_truncation_keep_end_keeps_completion() {
        let e = PreferenceIds {
            prompt_ids: vec![1, 2, 3],
            chosen_ids: vec![4, 5],
            rejected_ids: vec![6],
            margin: None,
            strength: None,
        };
        let b = collate_preference(std::slice::from_ref(&e), 0, Some(3), TruncationMode::KeepEnd, None);
        assert_eq!(b.input_ids, vec![vec![3, 4, 5], vec![2, 3, 6]]);
        assert_eq!(b.completion_mask, vec![vec![0, 1, 1], vec![0, 0, 1]]);
        let b = collate_preference(&[e], 0, Some(3), TruncationMode::KeepStart, None);
        assert_eq!(b.input_ids, vec![vec![1, 2, 3], vec![1, 2, 3]]);
        assert_eq!(b.margin, None);
    }

    #[test]
    fn packed_positions_restart() {
        let rows =
            vec![Packed { input_ids: vec![1, 2, 3, 4, 5], labels: vec![1, 2, 3, 4, 5], seq_lengths: vec![3, 2] }];
        let b = collate_packed(&rows, 0, None);
        assert_eq!(b.position_ids, Some(vec![vec![0, 1, 2, 0, 1]]));
        assert_eq!(b.labels, vec![vec![-100, 2, 3, -100, 5]]);
    }
}
