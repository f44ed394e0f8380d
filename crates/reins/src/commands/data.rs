//! `reins data ...`: inspect, convert and split preference data files.

use anyhow::{Context, Result};
use reins_data::convert::{convert, Target};
use reins_data::formats::{load, ConvertOptions, Format, PairStrategy, PkuTarget};
use reins_data::io::write_jsonl;
use std::path::{Path, PathBuf};

/// Options shared by the commands that read a file.
#[derive(clap::Args, Debug, Clone)]
pub struct ReadArgs {
    /// Source format (detected from the keys when left out): trl, hh, oasst, ultrafeedback,
    /// shp, summarize, helpsteer2, helpsteer2-preference, pku-safe, arena.
    #[arg(long)]
    pub format: Option<Format>,
    /// Keep pairs with an empty chosen or rejected reply (skipped by default).
    #[arg(long)]
    pub keep_empty: bool,
    /// Keep ties (Chatbot Arena) as pairs with strength 0.5 (skipped by default).
    #[arg(long)]
    pub keep_ties: bool,
    /// PKU-SafeRLHF label to pair by: better or safer.
    #[arg(long, default_value = "better")]
    pub pku_target: String,
    /// UltraFeedback: rank by the mean aspect rating instead of overall_score.
    #[arg(long)]
    pub mean_rating: bool,
}

impl ReadArgs {
    fn options(&self, strategy: PairStrategy, seed: u64) -> Result<ConvertOptions> {
        let pku_target = match self.pku_target.as_str() {
            "better" => PkuTarget::Better,
            "safer" => PkuTarget::Safer,
            other => anyhow::bail!("--pku-target must be `better` or `safer`, not `{other}`"),
        };
        Ok(ConvertOptions {
            pair_strategy: strategy,
            seed,
            keep_empty: self.keep_empty,
            keep_ties: self.keep_ties,
            pku_target,
            ultrafeedback_mean_rating: self.mean_rating,
        })
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCmd {
    /// Detected format, counts, length histograms and problems of a data file.
    Inspect {
        /// JSONL, JSON array, gzip of either, or Parquet.
        file: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
        /// Measure lengths in tokens of this HF tokenizer folder (characters otherwise).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Print the inspection as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a data file into TRL-style JSONL records (`.gz` output is gzipped).
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// preference, sft, ranked or unpaired.
        #[arg(long)]
        to: Target,
        #[command(flatten)]
        read: ReadArgs,
        /// How ranked lists become pairs: best-vs-random, best-vs-worst, best-vs-each, all-pairs.
        #[arg(long, default_value = "best-vs-random")]
        strategy: PairStrategy,
        /// Seed for best-vs-random.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Split a data file into train and test JSONL, keeping each prompt on one side.
    Split {
        input: PathBuf,
        /// Fraction of prompts that go to the test side.
        #[arg(long, default_value_t = 0.1)]
        test_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Train output (default: INPUT stem + `.train.jsonl`).
        #[arg(long)]
        train: Option<PathBuf>,
        /// Test output (default: INPUT stem + `.test.jsonl`).
        #[arg(long)]
        test: Option<PathBuf>,
        #[command(flatten)]
        read: ReadArgs,
    },
}

fn sibling(input: &Path, suffix: &str) -> PathBuf {
    let name = input.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    let stem = name.split('.').next().filter(|s| !s.is_empty()).unwrap_or("data");
    input.with_file_name(format!("{stem}.{suffix}.jsonl"))
}

fn print_problems(report: &reins_data::io::Report) {
    eprintln!("{report}");
    for p in report.problems.iter().take(20) {
        eprintln!("  {p}");
    }
    if report.skipped_total() > 20 {
        eprintln!("  ... ({} skipped rows in all)", report.skipped_total());
    }
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Inspect { file, read, tokenizer, json } => {
            let opts = read.options(PairStrategy::default(), 42)?;
            let tok = tokenizer.map(reins_data::HfTokenizer::from_dir).transpose().context("loading --tokenizer")?;
            let ins = reins_data::inspect::inspect(&file, read.format, &opts, tok.as_ref())
                .with_context(|| format!("inspecting {}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else {
                print!("{ins}");
            }
        }
        DataCmd::Convert { input, output, to, read, strategy, seed } => {
            let opts = read.options(strategy, seed)?;
            let loaded = load(&input, read.format, &opts).with_context(|| format!("reading {}", input.display()))?;
            print_problems(&loaded.report);
            let c = convert(loaded.records, to, &opts);
            for (why, n) in &c.dropped {
                eprintln!("  not converted {n}: {why}");
            }
            let values: Vec<_> = c.records.iter().map(|r| r.to_json()).collect();
            let n = write_jsonl(&output, &values)?;
            eprintln!("wrote {n} records to {}", output.display());
        }
        DataCmd::Split { input, test_fraction, seed, train, test, read } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&test_fraction),
                "--test-fraction must be between 0 and 1, got {test_fraction}"
            );
            let opts = read.options(PairStrategy::default(), seed)?;
            let loaded = load(&input, read.format, &opts).with_context(|| format!("reading {}", input.display()))?;
            print_problems(&loaded.report);
            let (tr, te) = reins_data::split::split(loaded.records, test_fraction, seed);
            let train = train.unwrap_or_else(|| sibling(&input, "train"));
            let test = test.unwrap_or_else(|| sibling(&input, "test"));
            let ntr = write_jsonl(&train, &tr.iter().map(|r| r.to_json()).collect::<Vec<_>>())?;
            let nte = write_jsonl(&test, &te.iter().map(|r| r.to_json()).collect::<Vec<_>>())?;
            eprintln!("wrote {ntr} records to {} and {nte} to {}", train.display(), test.display());
        }
    }
    Ok(())
}
