//! One module per subcommand; each maps its arguments to library calls.
pub mod bench;
pub mod best_of_n;
pub mod data;
pub mod generate;
pub mod lab;
pub mod online;
pub mod parity;
pub mod pit;
pub mod principle_reward;
pub mod quickstart;
pub mod reward;
pub mod reward_consistency;
pub mod reward_convex_da;
pub mod reward_denoise;
pub mod reward_features;
pub mod reward_metarm;
pub mod reward_rationality;
pub mod reward_residual;
pub mod reward_stats;
pub mod segment_reward;
pub mod seq2seq_reward;
pub mod serve;
pub mod serve_model;
pub mod t_reg;
pub mod train;
#[cfg(test)]
mod trl_defaults;

use anyhow::{Context, Result};
use reins_data::Text;
use reins_train::config::FlatConfig;
use std::path::Path;

/// The config of a training command: `--config F.toml` (TRL's defaults without one), then each
/// `--set key=value`, then the method's presets; a key that none of the method's config parts
/// (`parts`, their defaults as JSON objects) knows is refused, so a typo never passes silently.
/// Says once that `bf16` on a CPU is slower than f32 (candle widens bf16 to multiply).
pub(crate) fn note_bf16(args: &reins_train::config::TrainingArgs, device: &candle_core::Device) {
    if args.bf16 && device.is_cpu() {
        eprintln!(
            "reins: bf16 on the CPU: the products run in bf16 precision, but candle widens them to f32 to multiply, so this is slower than f32; it is meant for GPUs"
        );
    }
}

pub(crate) fn resolve_config(
    path: Option<&Path>,
    set: &[String],
    presets: impl FnOnce(&mut FlatConfig),
    parts: &[serde_json::Value],
) -> Result<FlatConfig> {
    let mut flat = match path {
        Some(p) => {
            FlatConfig::from_toml(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("in {}", p.display()))?
        }
        None => FlatConfig::default(),
    };
    for s in set {
        flat.set(s)?;
    }
    presets(&mut flat);
    let known: Vec<String> = parts.iter().filter_map(|p| p.as_object()).flat_map(|m| m.keys().cloned()).collect();
    flat.check_known(&known)?;
    Ok(flat)
}

/// A text as one string (chat turns' contents joined by newlines).
pub(crate) fn plain(t: &Text) -> String {
    match t {
        Text::Plain(s) => s.clone(),
        Text::Chat(m) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
    }
}
