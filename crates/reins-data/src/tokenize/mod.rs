//! Tokenization exactly as TRL 1.16's trainers do it (`DPOTrainer`, `RewardTrainer`,
//! `SFTTrainer` `_prepare_dataset`):
//! - conversational records go through the chat template (`add_generation_prompt=True` for
//!   the prompt alone) and are tokenized without adding special tokens again;
//! - standard records get `eos_token` appended to the completion (unless already there) and
//!   are tokenized with special tokens, like `tokenizer(text)`;
//! - the completion starts where tokenized prompt and tokenized prompt+completion diverge
//!   ([`common_prefix_length`]), which is not always after the prompt;
//! - `max_length` with `keep_start` / `keep_end`; examples that would lose all learning
//!   signal are dropped and counted in [`Stats`].

pub mod pack;
pub mod preference;
pub mod reward;
pub mod sft;
pub mod unpaired;

use crate::error::{DataError, Result};
use crate::records::Text;
use crate::tokenizer::HfTokenizer;
use std::collections::BTreeMap;

/// Which end of a too-long sequence survives (TRL's `truncation_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TruncationMode {
    /// Keep the first `max_length` tokens (TRL's default).
    #[default]
    KeepStart,
    /// Keep the last `max_length` tokens.
    KeepEnd,
}

impl std::str::FromStr for TruncationMode {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "keep_start" | "keep-start" => Ok(Self::KeepStart),
            "keep_end" | "keep-end" => Ok(Self::KeepEnd),
            _ => Err(DataError::Invalid(format!("unknown truncation mode `{s}`; use keep_start or keep_end"))),
        }
    }
}

/// Truncate `v` to `max_length` keeping the start or the end (Python's `v[:n]` / `v[-n:]`).
pub fn truncate<T: Clone>(v: &[T], max_length: Option<usize>, mode: TruncationMode) -> Vec<T> {
    match max_length {
        Some(n) if v.len() > n => match mode {
            TruncationMode::KeepStart => v[..n].to_vec(),
            TruncationMode::KeepEnd => v[v.len() - n..].to_vec(),
        },
        _ => v.to_vec(),
    }
}

/// Number of leading tokens the two sequences share (TRL's `common_prefix_length`).
pub fn common_prefix_length(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many examples were tokenized and how many were dropped, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub kept: usize,
    pub dropped: BTreeMap<String, usize>,
}

impl Stats {
    pub fn drop(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }
}

/// Tokenize a prompt for generation (online methods: PPO, GRPO, online DPO), as TRL does:
/// conversational prompts through the chat template with the generation prompt, plain
/// prompts with `tokenizer(prompt)`. Left-pad a batch with [`crate::collate::collate_prompts`].
pub fn tokenize_prompt(tok: &HfTokenizer, prompt: &Text) -> Result<Vec<u32>> {
    prompt_ids(tok, prompt)
}

/// Tokenize a prompt alone: chat template with the generation prompt, or plain text.
pub(crate) fn prompt_ids(tok: &HfTokenizer, prompt: &Text) -> Result<Vec<u32>> {
    match prompt {
        Text::Chat(m) => tok.encode_chat(m, true),
        Text::Plain(s) => tok.encode(s, true),
    }
}

/// Tokenize a whole sequence (prompt + completion, already concatenated).
pub(crate) fn full_ids(tok: &HfTokenizer, text: &Text) -> Result<Vec<u32>> {
    match text {
        Text::Chat(m) => tok.encode_chat(m, false),
        Text::Plain(s) => tok.encode(s, true),
    }
}

/// The EOS string, or an error saying where it should come from.
pub(crate) fn eos_token(tok: &HfTokenizer) -> Result<String> {
    tok.eos_token().map(str::to_string).ok_or_else(|| DataError::Tokenizer {
        path: tok.dir().join("tokenizer_config.json"),
        message: "no `eos_token`; standard (non-conversational) data needs one to end completions. Add `\"eos_token\": \"...\"` to tokenizer_config.json".into(),
    })
}

/// Append EOS to a plain completion unless it already ends with it (TRL's `add_eos`).
pub(crate) fn with_eos(text: &Text, eos: &str) -> Text {
    match text {
        Text::Plain(s) if !s.ends_with(eos) => Text::Plain(format!("{s}{eos}")),
        other => other.clone(),
    }
}
