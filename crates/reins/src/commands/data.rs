//! `reins data ...`: inspect, convert and split preference data files, and turn written
//! feedback into principle checks.

use anyhow::{Context, Result};
use reins_data::convert::{convert_stream, Target};
use reins_data::formats::{load, ConvertOptions, Format, PairStrategy, PkuTarget};
use reins_data::io::{check_output, is_stdio, output::same_file, Output};
use reins_data::records::Record;
use reins_data::stream::RecordStream;
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
        /// JSONL, JSON array, gzip of either, or Parquet; `-` reads stdin.
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
    /// Convert a data file into TRL-style JSONL records (`.gz` output is gzipped), row by row.
    /// Fails, writing nothing, when no record could be converted.
    Convert {
        /// Input file; `-` reads stdin.
        input: PathBuf,
        /// Output file; `-` writes stdout. Never the input; an existing file needs --force.
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
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Split a data file into train and test JSONL, keeping each prompt on one side.
    Split {
        /// Input file; `-` reads stdin (then name both outputs).
        input: PathBuf,
        /// Fraction of prompts that go to the test side.
        #[arg(long, default_value_t = 0.1)]
        test_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Train output (default: INPUT without `.jsonl`/`.json`/`.gz`/`.parquet`, plus
        /// `.train.jsonl`); `-` writes stdout.
        #[arg(long)]
        train: Option<PathBuf>,
        /// Test output (default: as --train, with `.test.jsonl`); `-` writes stdout.
        #[arg(long)]
        test: Option<PathBuf>,
        /// Replace the outputs if they exist (an input is never replaced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Principle checks from written feedback by a rule file (RLBFF's extraction, by rules):
    /// each row's feedback text becomes `{"principles": {"<principle>": true|false}}` for
    /// `reins principle-reward`. Rows that check no principle are left out.
    Principles {
        /// Rows with `prompt`, `completion` (or `response`) and the feedback text (the feedback
        /// app's `critiques` export); `-` reads stdin.
        input: PathBuf,
        /// Output JSONL; `-` writes stdout. An existing file needs --force.
        output: PathBuf,
        /// The rule file: `[[principle]]` tables with `name` and `yes` / `no` lists of
        /// regular expressions (see examples/principle_rules.toml).
        #[arg(long)]
        rules: PathBuf,
        /// The key holding the feedback text.
        #[arg(long, default_value = "critique")]
        field: String,
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `dir/name.jsonl.gz` -> `dir/name.SUFFIX.jsonl`: only the data extensions are removed, so
/// `pairs.train.jsonl` splits into `pairs.train.train.jsonl`, never onto itself.
fn sibling(input: &Path, suffix: &str) -> PathBuf {
    let mut stem = input.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    while let Some(s) = [".gz", ".jsonl", ".json", ".parquet"].iter().find_map(|ext| stem.strip_suffix(ext)) {
        stem = s;
    }
    let stem = if stem.is_empty() { "data" } else { stem };
    input.with_file_name(format!("{stem}.{suffix}.jsonl"))
}

/// How an output is named in messages.
fn shown(path: &Path) -> String {
    if is_stdio(path) {
        "stdout".into()
    } else {
        path.display().to_string()
    }
}

fn write_all(path: &Path, records: &[Record]) -> Result<Output> {
    let mut out = Output::create(path)?;
    for r in records {
        out.write(&r.to_json())?;
    }
    Ok(out)
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
        DataCmd::Convert { input, output, to, read, strategy, seed, force } => {
            check_output(&output, &[&input], force)?;
            let opts = read.options(strategy, seed)?;
            let reading = || format!("reading {}", input.display());
            let mut stream = RecordStream::open(&input, read.format, &opts).with_context(reading)?;
            let mut out = Output::create(&output)?;
            let dropped = convert_stream(&mut stream, to, &opts, &mut |r: Record| out.write(&r.to_json()))
                .with_context(reading)?;
            let report = stream.finish();
            print_problems(&report);
            for (why, n) in &dropped {
                eprintln!("  not converted {n}: {why}");
            }
            // An empty output would look like success to the next step of a pipeline.
            anyhow::ensure!(
                out.written() > 0,
                "nothing was converted to {}: {} rows read, {} records, none of them usable (reasons above); {} was not written",
                to.name(),
                report.rows,
                report.records,
                shown(&output)
            );
            let n = out.commit()?;
            eprintln!("wrote {n} records to {}", shown(&output));
        }
        DataCmd::Split { input, test_fraction, seed, train, test, force, read } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&test_fraction),
                "--test-fraction must be between 0 and 1, got {test_fraction}"
            );
            anyhow::ensure!(
                !is_stdio(&input) || (train.is_some() && test.is_some()),
                "reading stdin: name both outputs with --train and --test"
            );
            let train = train.unwrap_or_else(|| sibling(&input, "train"));
            let test = test.unwrap_or_else(|| sibling(&input, "test"));
            anyhow::ensure!(
                train != test && !same_file(&train, &test),
                "--train and --test are the same path ({}); give them different names",
                shown(&train)
            );
            check_output(&train, &[&input], force)?;
            check_output(&test, &[&input], force)?;
            let opts = read.options(PairStrategy::default(), seed)?;
            let loaded = load(&input, read.format, &opts).with_context(|| format!("reading {}", input.display()))?;
            print_problems(&loaded.report);
            let (tr, te) = reins_data::split::split(loaded.records, test_fraction, seed);
            let (train_out, test_out) = (write_all(&train, &tr)?, write_all(&test, &te)?);
            let (ntr, nte) = (train_out.commit()?, test_out.commit()?);
            eprintln!("wrote {ntr} records to {} and {nte} to {}", shown(&train), shown(&test));
        }
        DataCmd::Principles { input, output, rules, field, force } => {
            check_output(&output, &[&input], force)?;
            extract_principles(&input, &output, &rules, &field)?;
        }
    }
    Ok(())
}

/// `reins data principles`: the rule file's checks of each row's `field`.
fn extract_principles(input: &Path, output: &Path, rules: &Path, field: &str) -> Result<()> {
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    let rules = reins_train::principle_rules::PrincipleRules::load(rules)?;
    let mut report = reins_data::io::Report::new(reins_data::io::display_name(input));
    let mut reader = reins_data::io::RowReader::open(input).with_context(|| format!("reading {}", input.display()))?;
    let mut out = Output::create(output)?;
    let (mut rows, mut unchecked) = (0usize, 0usize);
    let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new(); // yes, no, ambiguous
    while let Some(row) = reader.next_row(&mut report)? {
        rows += 1;
        let o = row.value.as_object().context("row is not an object")?;
        let text = |k: &str| o.get(k).and_then(Value::as_str);
        let Some(feedback) = text(field) else {
            report.skip(row.line, "no feedback", format!("no `{field}` text (choose the key with --field)"));
            continue;
        };
        let Some(response) = text("completion").or_else(|| text("response")) else {
            report.skip(row.line, "no response", "no `completion` or `response` text");
            continue;
        };
        let Some(prompt) = o.get("prompt").filter(|p| !p.is_null()) else {
            report.skip(row.line, "no prompt", "no `prompt`");
            continue;
        };
        let e = rules.extract(feedback);
        for p in &e.ambiguous {
            counts.entry(p.clone()).or_default()[2] += 1;
        }
        if e.checks.is_empty() {
            unchecked += 1;
            continue;
        }
        for (p, &yes) in &e.checks {
            counts.entry(p.clone()).or_default()[if yes { 0 } else { 1 }] += 1;
        }
        let mut r = json!({"prompt": prompt, "completion": response, "principles": e.checks});
        for k in ["id", "item_id", "annotator_id", "annotator"] {
            if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
                r[k] = v.clone();
            }
        }
        out.write(&r)?;
    }
    for p in report.problems.iter().take(20) {
        eprintln!("  {p}");
    }
    for (p, [yes, no, both]) in &counts {
        eprintln!("  {p:?}: {yes} yes, {no} no, {both} left out (said both ways)");
    }
    anyhow::ensure!(
        out.written() > 0,
        "no row's `{field}` checks a principle of the rule file ({rows} rows read, {unchecked} mention none); {} \
         was not written",
        shown(output)
    );
    let n = out.commit()?;
    eprintln!("wrote {n} rows with principle checks to {} ({unchecked} rows checked none)", shown(output));
    Ok(())
}
