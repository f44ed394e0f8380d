//! Hugging Face decoder LMs on candle, written for training: every op on the training path
//! has a backward pass, and the numbers match transformers (see `tests/parity.rs`).
//!
//! - [`Model::load`] reads an HF folder (GPT-2, Llama, Mistral, Qwen2; LM or
//!   sequence-classification checkpoints) and adds heads or LoRA adapters.
//! - [`generate::generate`] samples batches with a KV cache.
//! - [`logprobs`] turns logits into token log-probabilities and losses.

pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod init;
pub mod kernels;
pub mod kv_cache;
pub mod logprobs;
pub mod lora;
pub mod memory;
pub mod model;
pub mod models;
pub mod nn;
pub mod packing;
pub mod parity;
pub mod threads;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use device::default_device;
pub use error::{ModelError, Result};
pub use generate::{generate, Generation, SamplingConfig};
pub use lora::LoraConfig;
pub use model::{Batch, LoadOptions, Model};
