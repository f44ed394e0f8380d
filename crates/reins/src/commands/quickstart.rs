//! `reins quickstart`: the whole RLHF loop on a synthetic world with simulated annotators and a
//! hidden gold reward; writes `report.html` and `summary.md`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reins_lab::experiment::{self, Progress};
use reins_lab::seeds::SeedSummary;
use reins_lab::{LabConfig, ReportData};

#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// A lab config (TOML); every key and its default: `reins quickstart --print-config`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The small preset CI runs (seconds instead of minutes).
    #[arg(long)]
    pub reduced: bool,
    /// Where the report goes (overrides `output_dir`).
    #[arg(long)]
    pub output_dir: Option<String>,
    /// Where the tokenizer and base model are cached (overrides `cache_dir`).
    #[arg(long)]
    pub cache_dir: Option<String>,
    /// Print the resolved config and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Run this many seeds (the config's seed, then the next ones), each into its own
    /// `seed-N` folder, and summarize them in `seeds.md`: means with 95 % intervals.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub seeds: u64,
}

/// A bar per stage on a terminal; elsewhere one line per stage (with the seconds since the
/// start) and a line per tenth of its work.
pub(crate) struct Bars {
    tty: bool,
    bar: Option<ProgressBar>,
    name: String,
    started: std::time::Instant,
    total: usize,
    done: usize,
}

impl Bars {
    pub(crate) fn new() -> Bars {
        Bars {
            tty: std::io::stderr().is_terminal(),
            bar: None,
            name: String::new(),
            started: std::time::Instant::now(),
            total: 0,
            done: 0,
        }
    }

    /// Ends the current stage's bar, if any.
    pub(crate) fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

impl Progress for Bars {
    fn stage(&mut self, name: &str, total: usize) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        self.name = name.to_string();
        self.total = total;
        self.done = 0;
        if self.tty {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix:>16} {bar:30} {pos}/{len} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(name.to_string());
            self.bar = Some(b);
        } else {
            eprintln!("== {name} (at {:.0} s)", self.started.elapsed().as_secs_f64());
        }
    }

    fn tick(&mut self, message: &str) {
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.set_message(message.to_string());
            }
            None => {
                self.done += 1;
                let every = (self.total / 10).max(1);
                if self.done.is_multiple_of(every) || self.done == self.total {
                    eprintln!("   {} {}/{}: {message}", self.name, self.done, self.total);
                }
            }
        }
    }
}

pub fn run(a: QuickstartArgs) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => LabConfig::load(p)?,
        None if a.reduced => LabConfig::reduced(),
        None => LabConfig::default(),
    };
    if let Some(o) = a.output_dir {
        cfg.output_dir = o;
    }
    if let Some(c) = a.cache_dir {
        cfg.cache_dir = c;
    }
    if a.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let mut bars = Bars::new();
    if a.seeds == 1 {
        let out = experiment::run(&cfg, &mut bars).context("quickstart")?;
        if let Some(b) = bars.bar.take() {
            b.finish();
        }
        print_table(&out.data);
        println!("report: {}", out.report.html.display());
        println!("summary: {}", out.report.markdown.display());
        return Ok(());
    }
    let root = PathBuf::from(&cfg.output_dir);
    let mut runs = Vec::new();
    for seed in cfg.seed..cfg.seed + a.seeds {
        let mut one = cfg.clone();
        one.seed = seed;
        one.output_dir = root.join(format!("seed-{seed}")).display().to_string();
        eprintln!("== seed {seed}");
        let out = experiment::run(&one, &mut bars).with_context(|| format!("quickstart, seed {seed}"))?;
        if let Some(b) = bars.bar.take() {
            b.finish();
        }
        println!("seed {seed}: {}", out.report.html.display());
        runs.push((seed, out.data));
    }
    let summary = SeedSummary::new(&runs);
    let path = summary.write(&root).context("writing the seed summary")?;
    print!("{}", summary.render_markdown());
    println!("summary over seeds: {}", path.display());
    Ok(())
}

/// The methods' and reward models' numbers of one run, as a plain table.
fn print_table(data: &ReportData) {
    println!("{:<28} {:>10} {:>14} {:>10} {:>12}", "method", "mean gold", "win vs SFT", "KL", "proxy-gold");
    for m in &data.methods {
        println!(
            "{:<28} {:>10.3} {:>14.3} {:>10.3} {:>12.3}",
            m.name,
            m.mean_gold,
            m.gold_win_rate_vs_sft,
            m.kl_to_ref,
            m.proxy_gold_gap.unwrap_or(f64::NAN)
        );
    }
    for r in &data.reward_models {
        println!("{:<28} accuracy vs gold {:.3} on {} test pairs", r.name, r.accuracy_vs_gold, r.n_pairs);
    }
}
