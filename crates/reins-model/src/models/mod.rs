//! One file per architecture family.
pub mod gpt2;
pub mod llama;
