//! `reins reward-stats consistency`: how consistent a trained reward model is on Contrast
//! Instructions (Shen et al., arXiv:2309.16155) built from any preference set. Each record's
//! prompt is paired with its nearest other prompt (word Jaccard ≥ τ, see
//! [`reins_train::consistency`]); the model scores the four (prompt, preferred response)
//! combinations of each item (plainly, or with RewardFusion over `--fusion` pairs); the command prints response and instruction consistency with
//! their counts and writes a JSON report with every item's rewards.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::io::check_output;
use reins_data::tokenize::reward::tokenize_reward_response;
use reins_data::{Record, Text};
use reins_train::consistency::{contrast_items, evaluate_consistency, Consistency};
use reins_train::statistics::features::pooled_features;
use serde_json::json;

use super::plain;
use super::reward_stats::Loaded;

#[derive(clap::Args)]
pub struct ConsistencyArgs {
    /// The reward model folder (a `reins reward` checkpoint or any *ForSequenceClassification).
    #[arg(long)]
    model: PathBuf,
    /// Preference records: any file `reins data` reads (prompt/chosen; rejected is not used).
    #[arg(long)]
    pairs: PathBuf,
    /// Least word Jaccard similarity of two prompts to make an item, in (0, 1].
    #[arg(long, default_value_t = 0.5)]
    tau: f64,
    /// The JSON report: both consistencies and every item with its four rewards.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing report.
    #[arg(long)]
    force: bool,
    /// Score with RewardFusion over these training pairs of the model (any file `reins data`
    /// reads), to see whether fusion makes the model more consistent.
    #[arg(long)]
    fusion: Option<PathBuf>,
    /// RewardFusion: neighbours fused per input.
    #[arg(long, default_value_t = reins_train::rewards::fusion::DEFAULT_TOP_K)]
    fusion_top_k: usize,
    /// RewardFusion: least cosine similarity of a neighbour.
    #[arg(long, default_value_t = reins_train::rewards::fusion::DEFAULT_THRESHOLD)]
    fusion_threshold: f64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

pub fn run(a: ConsistencyArgs) -> Result<()> {
    check_output(&a.out, &[&a.pairs], a.force)?;
    let loaded = load(&a.pairs, None, &ConvertOptions::default())?;
    eprintln!("{}", loaded.report);
    let records = loaded.records;
    // (record index, prompt, chosen) of each preference record.
    let prefs: Vec<(usize, &Text, &Text)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Record::Preference(p) => Some((i, &p.prompt, &p.chosen)),
            _ => None,
        })
        .collect();
    if prefs.len() < 2 {
        bail!("{}: need at least two preference records (prompt/chosen) to pair prompts", a.pairs.display());
    }
    let texts: Vec<(String, String)> = prefs.iter().map(|(_, p, c)| (plain(p), plain(c))).collect();
    let items = contrast_items(&texts, a.tau)?;
    if items.is_empty() {
        bail!(
            "{}: no two prompts share at least {} of their words (word Jaccard); lower --tau or use a set with \
             near-duplicate prompts",
            a.pairs.display(),
            a.tau
        );
    }
    let rm = Loaded::open(&a.model)?;
    let fused = match &a.fusion {
        Some(corpus) => {
            let mut f = super::online::fusion_reward(&a.model, corpus, rm.model.device())?
                .with_retrieval(a.fusion_top_k, a.fusion_threshold)?;
            f.batch_size = a.batch_size;
            Some(f)
        }
        None => None,
    };
    let (report, scores) = evaluate_consistency(&items, |queries| {
        let seqs = queries
            .iter()
            .map(|&(p, r)| {
                tokenize_reward_response(&rm.tok, prefs[p].1, prefs[r].2)
                    .with_context(|| format!("{}: record {}", a.pairs.display(), prefs[p].0 + 1))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| reins_train::TrainError::Input(format!("{e:#}")))?;
        match &fused {
            // Whole sequences as "prompts" with empty completions: the source scores their concatenation.
            Some(f) => Ok(f.plain_and_fused(&seqs, &vec![Vec::new(); seqs.len()])?.1),
            None => Ok(pooled_features(&rm.model, &seqs, rm.pad, a.batch_size)?.1),
        }
    })?;

    let id = |k: usize| records[prefs[k].0].meta().id.clone();
    let rows: Vec<_> = items
        .iter()
        .zip(&scores)
        .map(|(it, s)| {
            json!({
                "record_1": prefs[it.first].0 + 1, "record_2": prefs[it.second].0 + 1,
                "id_1": id(it.first), "id_2": id(it.second),
                "similarity": it.similarity,
                "r_i1_r1": s[0], "r_i1_r2": s[1], "r_i2_r1": s[2], "r_i2_r2": s[3],
            })
        })
        .collect();
    let metric = |c: &Consistency| json!({"consistent": c.consistent, "total": c.total, "rate": c.rate()});
    let out = json!({
        "model": a.model, "pairs": a.pairs, "tau": a.tau,
        "fusion": a.fusion.as_ref().map(|f| json!({"pairs": f, "top_k": a.fusion_top_k, "threshold": a.fusion_threshold})),
        "similarity": "word Jaccard (lowercased alphanumeric runs)",
        "preference_records": prefs.len(), "items": report.items,
        "response_consistency": metric(&report.response),
        "instruction_consistency": metric(&report.instruction),
        "contrast_items": rows,
    });
    let text = serde_json::to_string_pretty(&out)?;
    std::fs::write(&a.out, text + "\n").with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{} contrast items from {} preference records (word Jaccard ≥ {}){}: response consistency {:.3} ({}/{}), \
         instruction consistency {:.3} ({}/{}); wrote {}",
        report.items,
        prefs.len(),
        a.tau,
        if fused.is_some() { ", RewardFusion scores" } else { "" },
        report.response.rate(),
        report.response.consistent,
        report.response.total,
        report.instruction.rate(),
        report.instruction.consistent,
        report.instruction.total,
        a.out.display()
    );
    Ok(())
}
