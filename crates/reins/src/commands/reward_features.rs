//! `reins reward-features --config F.toml --data PAIRS --out DIR`: a domain-knowledge reward
//! model (Nath et al., arXiv:2402.15473) — Bradley–Terry weights over programmatic features of
//! the response ([`reins_train::rewards::features`]) — fit on any preference file `reins data`
//! reads. Writes `DIR/feature_rm.json` (features, standardisation, weights, train accuracy) and
//! prints each feature's weight. Use it as a reward with `features:DIR` (best-of-n and every
//! online trainer).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::io::check_output;
use reins_data::Record;

use super::plain;
use reins_train::rewards::features::{FeatureConfig, FeatureModel, FEATURE_MODEL_FILE};

#[derive(clap::Args)]
pub struct FeatureArgs {
    /// The features and fitting settings: `[[feature]]` tables (`kind` = `words`,
    /// `regex_count`, `regex_match`, `repeated_ngrams`, `prompt_overlap`), `l2`, `nonnegative`.
    #[arg(long)]
    config: PathBuf,
    /// Preference records (prompt, chosen, rejected): any file `reins data` reads.
    #[arg(long)]
    data: PathBuf,
    /// Folder to write `feature_rm.json` into.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing model.
    #[arg(long)]
    force: bool,
}

pub fn run(a: FeatureArgs) -> Result<()> {
    let file = a.out.join(FEATURE_MODEL_FILE);
    check_output(&file, &[&a.data, &a.config], a.force)?;
    let text = std::fs::read_to_string(&a.config).with_context(|| format!("reading {}", a.config.display()))?;
    let config = FeatureConfig::from_toml(&text, &a.config.display().to_string())?;
    let loaded = load(&a.data, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let pairs: Vec<(String, String, String)> = loaded
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Preference(p) => Some((plain(&p.prompt), plain(&p.chosen), plain(&p.rejected))),
            _ => None,
        })
        .collect();
    if pairs.is_empty() {
        bail!("{}: no preference records (prompt, chosen, rejected) to fit on", a.data.display());
    }
    let model = FeatureModel::fit(&config, &pairs)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    std::fs::write(&file, serde_json::to_string_pretty(&model)? + "\n")
        .with_context(|| format!("writing {}", file.display()))?;
    println!("fit on {} pairs; train accuracy {:.3}", model.n_pairs, model.train_accuracy);
    println!("weight per standard deviation of each feature:");
    for (n, w) in model.names.iter().zip(&model.weights) {
        println!("  {n:<24} {w:+.4}");
    }
    println!("wrote {} (use it as a reward: features:{})", file.display(), a.out.display());
    Ok(())
}
