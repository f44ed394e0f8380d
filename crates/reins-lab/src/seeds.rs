//! One experiment over several seeds: every number as a mean with a 95 % interval, and each
//! target's verdict per seed — a result is a distribution, not a draw.
//!
//! Each seed builds its own world split, annotators, base model and policies, so the spread
//! covers everything a seed touches. Intervals are Student-t intervals over the per-seed values
//! (`mean ± t_{0.975, n−1} · s / √n`); with one seed the interval is the point itself.

use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::report::ReportData;
use crate::LabError;

/// A mean over seeds with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// Seeds counted.
    pub n: usize,
}

impl Interval {
    /// The Student-t 95 % interval of `xs` (sample standard deviation, n − 1 degrees of freedom).
    pub fn of(xs: &[f64]) -> Interval {
        let n = xs.len();
        if n == 0 {
            return Interval { mean: f64::NAN, lo: f64::NAN, hi: f64::NAN, n };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Interval { mean, lo: mean, hi: mean, n };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_975(n - 1) * (var / n as f64).sqrt();
        Interval { mean, lo: mean - half, hi: mean + half, n }
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.n > 1 {
            write!(f, "{:.3} [{:.3}, {:.3}]", self.mean, self.lo, self.hi)
        } else {
            write!(f, "{:.3}", self.mean)
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (tabulated to 30, then the
/// Cornish–Fisher expansion around the normal quantile to second order, within 1e-3).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, n): (f64, f64) = (1.959_964, df as f64);
            z + (z.powi(3) + z) / (4.0 * n) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// One row name with its value per seed and the interval over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub per_seed: Vec<f64>,
    pub interval: Interval,
}

impl Row {
    fn new(name: String, per_seed: Vec<f64>) -> Row {
        let finite: Vec<f64> = per_seed.iter().copied().filter(|x| x.is_finite()).collect();
        Row { interval: Interval::of(&finite), name, per_seed }
    }
}

/// The seeds' summary: methods, reward models and targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    pub seeds: Vec<u64>,
    /// Per method: gold win rate vs SFT, mean gold, KL to the reference.
    pub win_rate: Vec<Row>,
    pub mean_gold: Vec<Row>,
    pub kl: Vec<Row>,
    /// Per reward model: accuracy against noiseless gold.
    pub rm_accuracy: Vec<Row>,
    /// Per target (by position; names carry per-seed details, so the first seed's is shown):
    /// the value per seed, its threshold and how many seeds met it.
    pub targets: Vec<TargetRow>,
    /// The method with the highest gold win rate, per seed.
    pub best_method: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRow {
    pub row: Row,
    pub threshold: f64,
    pub met: usize,
}

impl SeedSummary {
    /// Summarizes one report per seed (methods and reward models matched by name, targets by
    /// position; a method missing from a seed counts as NaN there and is left out of its mean).
    pub fn new(runs: &[(u64, ReportData)]) -> SeedSummary {
        let names = |f: &dyn Fn(&ReportData) -> Vec<String>| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for (_, d) in runs {
                for n in f(d) {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
            out
        };
        let methods = names(&|d| d.methods.iter().map(|m| m.name.clone()).collect());
        let method_rows = |value: &dyn Fn(&crate::report::MethodRow) -> f64| -> Vec<Row> {
            methods
                .iter()
                .map(|name| {
                    let xs = runs
                        .iter()
                        .map(|(_, d)| d.methods.iter().find(|m| &m.name == name).map(value).unwrap_or(f64::NAN))
                        .collect();
                    Row::new(name.clone(), xs)
                })
                .collect()
        };
        let rms = names(&|d| d.reward_models.iter().map(|r| r.name.clone()).collect());
        let rm_accuracy = rms
            .iter()
            .map(|name| {
                let xs = runs
                    .iter()
                    .map(|(_, d)| {
                        d.reward_models.iter().find(|r| &r.name == name).map(|r| r.accuracy_vs_gold).unwrap_or(f64::NAN)
                    })
                    .collect();
                Row::new(name.clone(), xs)
            })
            .collect();
        let n_targets = runs.iter().map(|(_, d)| d.targets.len()).max().unwrap_or(0);
        let targets = (0..n_targets)
            .map(|i| {
                let ts: Vec<_> = runs.iter().filter_map(|(_, d)| d.targets.get(i)).collect();
                let name = ts.first().map(|t| t.name.clone()).unwrap_or_default();
                TargetRow {
                    row: Row::new(name, ts.iter().map(|t| t.value).collect()),
                    threshold: ts.first().map(|t| t.threshold).unwrap_or(f64::NAN),
                    met: ts.iter().filter(|t| t.met()).count(),
                }
            })
            .collect();
        let best_method = runs
            .iter()
            .map(|(_, d)| {
                d.methods
                    .iter()
                    .skip(1)
                    .max_by(|a, b| a.gold_win_rate_vs_sft.total_cmp(&b.gold_win_rate_vs_sft))
                    .map(|m| m.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        SeedSummary {
            seeds: runs.iter().map(|(s, _)| *s).collect(),
            win_rate: method_rows(&|m| m.gold_win_rate_vs_sft),
            mean_gold: method_rows(&|m| m.mean_gold),
            kl: method_rows(&|m| m.kl_to_ref),
            rm_accuracy,
            targets,
            best_method,
        }
    }

    /// The summary as Markdown (`seeds.md`).
    pub fn render_markdown(&self) -> String {
        let seeds = self.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
        let mut m = format!(
            "# reins quickstart over seeds {seeds}\n\nEvery number is measured on the test prompts (held out, and read by no tuning choice); \
             `mean [lo, hi]` is the mean over seeds with its 95 % Student-t interval; per-seed values follow.\n\n"
        );
        let table = |m: &mut String, title: &str, rows: &[Row]| {
            let _ = writeln!(m, "## {title}\n\n| | mean [95 % interval] | per seed |\n|---|---|---|");
            for r in rows {
                let per: Vec<String> = r.per_seed.iter().map(|x| format!("{x:.3}")).collect();
                let _ = writeln!(m, "| {} | {} | {} |", r.name, r.interval, per.join(" / "));
            }
            m.push('\n');
        };
        table(&mut m, "Gold win rate vs SFT", &self.win_rate);
        table(&mut m, "Mean gold score", &self.mean_gold);
        table(&mut m, "KL to the SFT reference (nats per sequence)", &self.kl);
        table(&mut m, "Reward-model accuracy vs noiseless gold", &self.rm_accuracy);
        let _ = writeln!(m, "## Targets\n\n| target (as named in the first seed) | threshold | mean [95 % interval] | per seed | seeds met |\n|---|---:|---|---|---:|");
        for t in &self.targets {
            let per: Vec<String> = t.row.per_seed.iter().map(|x| format!("{x:.3}")).collect();
            let _ = writeln!(
                m,
                "| {} | {:.2} | {} | {} | {} of {} |",
                t.row.name,
                t.threshold,
                t.row.interval,
                per.join(" / "),
                t.met,
                t.row.per_seed.len()
            );
        }
        let _ = writeln!(m, "\nBest method per seed: {}.", self.best_method.join(" / "));
        m
    }

    /// Writes `seeds.md` and `seeds.json` into `dir`; returns the Markdown's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, LabError> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
        let md = dir.join("seeds.md");
        let json = dir.join("seeds.json");
        let body = serde_json::to_string_pretty(self).expect("seed summary serializes");
        for (path, text) in [(&md, self.render_markdown()), (&json, body)] {
            std::fs::write(path, text).map_err(|e| LabError::io("writing", path, e))?;
        }
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MethodRow, Target};

    #[test]
    fn interval_matches_a_hand_computation() {
        // mean 2, s = 1, n = 3: half-width 4.303 / sqrt(3).
        let i = Interval::of(&[1.0, 2.0, 3.0]);
        assert!((i.mean - 2.0).abs() < 1e-12);
        assert!((i.hi - 2.0 - 4.303 / 3f64.sqrt()).abs() < 1e-9, "{i:?}");
        assert!((i.lo + i.hi - 4.0).abs() < 1e-12);
        let one = Interval::of(&[0.7]);
        assert_eq!((one.lo, one.hi), (0.7, 0.7));
        assert!(Interval::of(&[]).mean.is_nan());
        // Past the table the approximation stays within 1e-3 of t (df 40: 2.021, df 120: 1.980).
        assert!((t_975(40) - 2.021).abs() < 1e-3 && (t_975(120) - 1.980).abs() < 1e-3);
    }

    fn run(win: f64, acc: f64) -> ReportData {
        let row = |name: &str, w: f64| MethodRow {
            name: name.into(),
            mean_gold: w,
            gold_win_rate_vs_sft: w,
            kl_to_ref: 1.0,
            mean_proxy: None,
            proxy_gold_gap: None,
        };
        ReportData {
            methods: vec![row("SFT", 0.5), row("DPO", win), row("PPO", 0.6)],
            targets: vec![Target { name: "accuracy".into(), value: acc, threshold: 0.8 }],
            ..Default::default()
        }
    }

    #[test]
    fn summary_counts_seeds_and_names_each_seeds_best_method() {
        let s = SeedSummary::new(&[(0, run(0.7, 0.81)), (1, run(0.5, 0.79)), (2, run(0.9, 0.85))]);
        assert_eq!(s.seeds, vec![0, 1, 2]);
        let dpo = s.win_rate.iter().find(|r| r.name == "DPO").unwrap();
        assert_eq!(dpo.per_seed, vec![0.7, 0.5, 0.9]);
        assert!((dpo.interval.mean - 0.7).abs() < 1e-12 && dpo.interval.lo < 0.5);
        assert_eq!(s.targets[0].met, 2);
        assert_eq!(s.best_method, vec!["DPO", "PPO", "DPO"]);
        let md = s.render_markdown();
        assert!(md.contains("| DPO | 0.700 ["), "{md}");
        assert!(md.contains("| 2 of 3 |"), "{md}");
    }
}
