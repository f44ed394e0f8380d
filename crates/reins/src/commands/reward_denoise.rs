//! `reins reward --set strength_report=RUN/preference_strength.jsonl`: noise-aware training
//! from an earlier ensemble's preference strength (Secrets of RLHF II, arXiv:2401.06080,
//! §2.4–2.5). The report is matched to the training pairs by their text; the per-pair rule
//! ([`reins_train::losses::treat_pairs`]) flips, label-smooths and sets an adaptive margin;
//! what it did to each pair is written to `strength_treatment.jsonl` in the run folder.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use reins_data::tokenize::reward::RewardIds;
use reins_data::{Record, Text};
use reins_train::losses::{treat_pairs, NoiseAwareConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The flat key that turns noise-aware training on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrengthReportArgs {
    /// `preference_strength.jsonl` of an earlier `reins reward --set ensemble_size=k` run on
    /// the same training pairs (default: none, plain Bradley–Terry).
    pub strength_report: Option<PathBuf>,
}

/// The fields of a report row this reads back.
#[derive(Deserialize)]
struct Row {
    mean: f64,
    std: f64,
    prompt: Text,
    chosen: Text,
    rejected: Text,
}

/// What the rule did to the training set.
#[derive(Debug, Clone, PartialEq)]
pub struct Denoised {
    pub pairs: usize,
    pub flipped: usize,
    pub smoothed: usize,
    pub mean_margin: f64,
}

impl Denoised {
    pub fn metrics(&self) -> [(String, f64); 3] {
        [
            ("denoise/flipped".into(), self.flipped as f64),
            ("denoise/smoothed".into(), self.smoothed as f64),
            ("denoise/mean_margin".into(), self.mean_margin),
        ]
    }
}

fn key(prompt: &Text, chosen: &Text, rejected: &Text) -> Result<String> {
    Ok(serde_json::to_string(&(prompt, chosen, rejected))?)
}

/// Reads the report: pair text → (mean, std) in the report's orientation.
fn read_report(path: &Path) -> Result<HashMap<String, (f64, f64)>> {
    let hint = "hint: the file is the `preference_strength.jsonl` that `reins reward --set ensemble_size=k` writes";
    let f = std::fs::File::open(path).with_context(|| format!("strength_report {}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a preference-strength row\n{hint}", path.display(), n + 1))?;
        out.entry(key(&row.prompt, &row.chosen, &row.rejected)?).or_insert((row.mean, row.std));
    }
    if out.is_empty() {
        bail!("{}: no rows\n{hint}", path.display());
    }
    Ok(out)
}

/// Treats `train` (pairs with their index in `records`) in place by the strength in the report
/// at `path`, and writes `strength_treatment.jsonl` into `out`.
pub fn apply(
    path: &Path,
    cfg: &NoiseAwareConfig,
    records: &[Record],
    train: &mut [(usize, RewardIds)],
    out: &Path,
) -> Result<Denoised> {
    let report = read_report(path)?;
    let mut strengths = Vec::with_capacity(train.len());
    let mut missing = Vec::new();
    for (rec, ids) in train.iter() {
        let Record::Preference(p) = &records[*rec] else { bail!("record {} is not a pair", rec + 1) };
        if ids.margin.is_some() && (cfg.strength_margin_scale > 0.0 || cfg.strength_flip_fraction > 0.0) {
            bail!(
                "record {} has a `margin` column and the strength rule flips labels or sets margins: both decide the \
                 Bradley-Terry margin; drop the column, or set strength_margin_scale = 0 and strength_flip_fraction = 0",
                rec + 1
            );
        }
        if let Some(&(m, s)) = report.get(&key(&p.prompt, &p.chosen, &p.rejected)?) {
            strengths.push((m, s));
        } else if let Some(&(m, s)) = report.get(&key(&p.prompt, &p.rejected, &p.chosen)?) {
            // Labelled the other way round in the report's run: the strength changes sign.
            strengths.push((-m, s));
        } else {
            missing.push(rec + 1);
            strengths.push((0.0, 0.0));
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} of {} training pairs have no row in {} (first: record {}); the report scores the eval split when the \
             ensemble run had an `eval_dataset`\nhint: rerun the ensemble on this training file with eval_dataset unset \
             (or equal to dataset) and the same max_length",
            missing.len(),
            train.len(),
            path.display(),
            missing[0]
        );
    }
    let treatments = treat_pairs(&strengths, cfg)?;
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let log = out.join("strength_treatment.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).with_context(|| log.display().to_string())?);
    for ((rec, ids), t) in train.iter_mut().zip(&treatments) {
        if t.flipped {
            std::mem::swap(&mut ids.chosen_ids, &mut ids.rejected_ids);
        }
        ids.strength = t.soft_label(ids.strength);
        if cfg.strength_margin_scale > 0.0 {
            ids.margin = Some(t.margin);
        }
        let line = json!({"record": *rec + 1, "flipped": t.flipped, "strength": t.mean, "label_smoothing": t.smoothing,
            "margin": ids.margin, "soft_label": ids.strength});
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    let n = treatments.len();
    Ok(Denoised {
        pairs: n,
        flipped: treatments.iter().filter(|t| t.flipped).count(),
        smoothed: treatments.iter().filter(|t| t.smoothing > 0.0).count(),
        mean_margin: if cfg.strength_margin_scale > 0.0 {
            treatments.iter().map(|t| t.margin).sum::<f64>() / n.max(1) as f64
        } else {
            0.0
        },
    })
}

impl std::fmt::Display for Denoised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "preference strength of {} pairs: {} flipped, {} label-smoothed, mean margin {:.3}",
            self.pairs, self.flipped, self.smoothed, self.mean_margin
        )
    }
}
