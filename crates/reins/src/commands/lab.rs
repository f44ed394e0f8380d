//! `reins lab`: the registered experiments that check the field's claims against the lab's
//! gold reward. `list` shows them; `run ID|all` runs them over seeds and writes, per
//! experiment, `result.json`, `summary.md` and `report.html` into `OUT/ID/`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use reins_lab::lab::{self, RunOptions};

use super::quickstart::Bars;

#[derive(clap::Subcommand)]
pub enum LabCmd {
    /// Every registered experiment: id, claim, paper, metric and expected direction.
    List {
        /// One JSON array instead of the text listing.
        #[arg(long)]
        json: bool,
    },
    /// Run one experiment (or `all`) over seeds 0..N-1.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// An experiment id from `reins lab list`, or `all`.
    pub id: String,
    /// The CI-sized settings (minutes for all); its verdicts are not findings.
    #[arg(long)]
    pub reduced: bool,
    /// A run config (`[lab]` and `[knobs]` tables) laid over the registered settings (full,
    /// or reduced with `--reduced`): the keys it sets replace theirs, the rest stay.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where results go: one folder per experiment inside. Default `lab-out`.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// Seeds 0..N-1; a full run needs at least 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub seeds: u64,
    /// Where the tokenizer and base models are cached (overrides the config's `cache_dir`,
    /// shared with `reins quickstart`).
    #[arg(long)]
    pub cache_dir: Option<String>,
}

pub fn run(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::List { json } => list(json),
        LabCmd::Run(a) => run_experiments(a),
    }
}

fn list(json: bool) -> Result<()> {
    let all = lab::registry();
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "claim": e.claim,
                    "paper": e.paper,
                    "metric": e.metric,
                    "expected_direction": e.direction(),
                    "rule": e.rule.text(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for e in &all {
        println!("{}\n  claim:  {}\n  paper:  {} (arXiv:{})", e.id, e.claim, e.paper.title, e.paper.arxiv);
        println!("  metric: {} (expected: {:?})\n  rule:   {}\n", e.metric, e.direction(), e.rule.text());
    }
    Ok(())
}

fn run_experiments(a: RunArgs) -> Result<()> {
    let exps = if a.id == "all" { lab::registry() } else { vec![lab::find(&a.id)?] };
    let file_cfg = match &a.config {
        Some(p) => Some((std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?, p)),
        None => None,
    };
    if !a.reduced && a.seeds < 3 {
        eprintln!("note: a full run reports with at least 3 seeds; {} seed(s) give no finding", a.seeds);
    }
    let commit = commit();
    let mut bars = Bars::new();
    let mut done = Vec::new();
    for exp in &exps {
        let registered = (exp.config)(a.reduced);
        let mut cfg = match &file_cfg {
            Some((text, p)) => registered.layered(text, &p.display().to_string())?,
            None => registered,
        };
        if let Some(c) = &a.cache_dir {
            cfg.lab.cache_dir = c.clone();
        }
        let out = a.out.join(exp.id);
        let opts = RunOptions { seeds: a.seeds, reduced: a.reduced, out_dir: &out, commit: commit.clone() };
        eprintln!("== experiment {}", exp.id);
        let result = lab::run(exp, &cfg, &opts, &mut bars).with_context(|| format!("lab experiment {}", exp.id))?;
        bars.finish();
        println!(
            "{}: {} ({} = {}; {:.0} s) -> {}",
            exp.id,
            result.verdict,
            result.decision.statistic,
            result.decision.interval,
            result.wall_s,
            out.join("result.json").display()
        );
        done.push(result);
    }
    if done.len() > 1 {
        println!("\n| experiment | verdict | wall s |\n|---|---|---:|");
        for r in &done {
            println!("| {} | {}{} | {:.0} |", r.id, r.verdict, if r.reduced { " (reduced)" } else { "" }, r.wall_s);
        }
    }
    Ok(())
}

/// The commit the binary was built from, stamped by `build.rs` (`+dirty` when the working
/// tree had uncommitted changes to tracked files; `unknown` outside a git checkout).
fn commit() -> String {
    env!("REINS_BUILD_COMMIT").to_string()
}
