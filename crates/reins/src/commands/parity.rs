//! `reins parity`: compare a checkpoint against outputs saved by transformers.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct ParityArgs {
    /// A Hugging Face model folder (config.json + safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A safetensors file with `input_ids`, `attention_mask` and the outputs to compare
    /// (`logits`, `token_logps`, `scores`, `gen_*`); an `expected.json` beside it adds the
    /// SFT loss and gradient norms.
    #[arg(long)]
    pub expected: PathBuf,
}

pub fn run(args: ParityArgs) -> Result<()> {
    let device = reins_model::default_device()?;
    let report = reins_model::parity::check(&args.model, &args.expected, &device)
        .with_context(|| format!("checking {} against {}", args.model.display(), args.expected.display()))?;
    print!("{report}");
    if report.ok() {
        println!("all {} checks within tolerance", report.checks.len());
        Ok(())
    } else {
        let failed = report.checks.iter().filter(|c| !c.ok()).count();
        anyhow::bail!("{failed} of {} checks are past tolerance", report.checks.len())
    }
}
