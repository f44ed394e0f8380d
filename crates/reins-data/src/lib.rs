//! # reins-data
//!
//! Preference data for RLHF without the tensor stack: typed records, readers for the
//! formats the field uses, HF chat templates, and tokenization + collation that match
//! TRL 1.16 token for token.
//!
//! ## Records ([`records`])
//! TRL's types in standard and conversational form — language modeling, prompt-only,
//! prompt-completion, preference (explicit or implicit prompt, optional `margin`),
//! unpaired preference, stepwise supervision — plus ranked lists (ranks/scores and
//! per-aspect ratings) and span-level labels (character offsets). The feedback app's
//! `preference`, `ranked`, `kto`, `ratings` and `spans` exports read as they are written
//! (see [`formats::trl`]). Records carry optional annotator id,
//! soft label (`strength`) and reference response. Chat messages keep tool calls, tool
//! results and reasoning (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`).
//!
//! ## Files ([`io`]) and formats ([`formats`], detected by [`detect`])
//! JSONL, JSON arrays, gzip of either, Parquet (feature `parquet`, on by default); `-` is
//! stdin, and pipes and FIFOs are read once, front to back. [`stream`] converts row by row.
//! Formats: TRL columns (`trl`), Anthropic HH-RLHF (`hh`), OpenAssistant trees or messages (`oasst`),
//! UltraFeedback (`ultrafeedback`), Stanford SHP (`shp`), OpenAI summarize-from-feedback
//! comparisons (`summarize`), HelpSteer2 attributes (`helpsteer2`) and preferences
//! (`helpsteer2-preference`), PKU-SafeRLHF (`pku-safe`), Chatbot Arena and MT-bench (`arena`).
//! A bad row never stops a load: it is skipped and reported with file, line and reason
//! in the [`io::Report`], whose counts always add up (`rows = converted + skipped`).
//!
//! ## Conversions ([`convert`], [`split`], [`inspect`])
//! `--to preference` (pairs from ranked lists by strategy, ties dropped), `--to sft`
//! (best response), `--to ranked`, `--to unpaired` (KTO); a record kind a target cannot
//! hold is counted as not converted, with the reason. Prompt-grouped train/test splits;
//! inspection.
//!
//! ## Tokenization ([`tokenizer`], [`chat_template`], [`tokenize`], [`collate`])
//! [`tokenizer::HfTokenizer::from_dir`] loads `tokenizer.json`, the special tokens of
//! `tokenizer_config.json` and the chat template (`chat_template.jinja` or the config's
//! `chat_template`), rendered as transformers renders it (`tools` is `none` unless given;
//! `tojson` keeps key order). [`tokenize`] reproduces TRL's DPO / reward / SFT preprocessing and
//! packing; [`collate`] builds padded batches (DPO and reward batches: B chosen rows, then
//! B rejected rows).
//!
//! ## CLI
//! `reins data inspect FILE`, `reins data convert IN OUT --to preference|sft|ranked|unpaired`,
//! `reins data split IN --test-fraction 0.1` (`-` for stdin/stdout; an existing output
//! needs `--force`, an input is never written over).

pub mod chat_template;
pub mod collate;
pub mod convert;
pub mod detect;
pub mod error;
pub mod formats;
pub mod inspect;
pub mod io;
pub mod records;
pub mod split;
pub mod stream;
pub mod testing;
pub mod tokenize;
pub mod tokenizer;

pub use error::{DataError, Result};
pub use formats::{load, ConvertOptions, Format, Loaded, PairStrategy};
pub use records::{Message, Meta, Preference, Ranked, Record, Span, Text};
pub use tokenizer::HfTokenizer;
