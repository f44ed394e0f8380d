//! An experiment's outcome over seeds and its three files: `result.json` (the record),
//! `summary.md` (the same, to read) and `report.html` (with its charts as inline SVG, opening
//! offline like the quickstart's report).

use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

use super::verdict::{Decision, Direction, Verdict};
use super::Paper;
use crate::report::Curve;
use crate::seeds::Row;
use crate::svg::{escape, BarChart, LineChart, Series};
use crate::LabError;

/// `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabResult {
    pub id: String,
    pub claim: String,
    pub paper: Paper,
    pub metric: String,
    pub expected_direction: Direction,
    /// Each arm's metric per seed, with its 95 % interval over seeds.
    pub arms: Vec<Row>,
    /// Further numbers per seed (fits, KL reached), not read by the rule.
    pub extras: Vec<Row>,
    pub verdict: Verdict,
    /// The verdict rule in words, as registered.
    pub rule: String,
    /// The rule's statistic per seed, its interval and the reference it was held against.
    pub decision: Decision,
    pub seeds: Vec<u64>,
    /// A CI-sized run: its verdict is not a finding.
    pub reduced: bool,
    /// The prompts every number is measured on.
    pub split: String,
    pub commit: String,
    /// FNV-1a of the resolved config (saved beside as `config.toml`).
    pub config_hash: String,
    pub wall_s: f64,
}

impl LabResult {
    /// The result as Markdown (`summary.md`).
    pub fn render_markdown(&self) -> String {
        let mut m = format!(
            "# {}{}\n\n**Claim.** {}\n\n**Paper.** {} (arXiv:{}).\n\n**Verdict: {}.** Rule: {}.\n\n",
            self.id,
            if self.reduced { " (reduced run: not a finding)" } else { "" },
            self.claim,
            self.paper.title,
            self.paper.arxiv,
            self.verdict,
            self.rule
        );
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            m,
            "Statistic {}: {} per seed, interval {} (reference {}).\n\nSeeds {}; measured on: {}; commit {}; config {}; {:.0} s.\n",
            self.decision.statistic,
            fmt_list(&self.decision.per_seed),
            self.decision.interval,
            self.decision.reference,
            seeds.join(", "),
            self.split,
            self.commit,
            self.config_hash,
            self.wall_s
        );
        for (title, rows) in
            [(format!("Arms: {}", self.metric), &self.arms), ("Further numbers".to_string(), &self.extras)]
        {
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(m, "## {title}\n\n| | mean [95 % interval] | per seed |\n|---|---|---|");
            for r in rows.iter() {
                let _ = writeln!(m, "| {} | {} | {} |", r.name, r.interval, fmt_list(&r.per_seed));
            }
            m.push('\n');
        }
        m
    }

    /// The report with its charts: the arms' means and each seed's curves.
    pub fn render_html(&self, curves: &[(u64, Vec<Curve>)]) -> String {
        let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
        let _ = write!(h, "{}</title><style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>", escape(&self.id));
        let _ = write!(
            h,
            "<h1>{}</h1><p><b>Claim.</b> {}</p><p><b>Paper.</b> {} (arXiv:{})</p><p><b>Verdict: {}</b>{}. Rule: {}.</p>",
            escape(&self.id),
            escape(&self.claim),
            escape(self.paper.title),
            escape(self.paper.arxiv),
            self.verdict,
            if self.reduced { " (reduced run: not a finding)" } else { "" },
            escape(&self.rule)
        );
        let _ = write!(
            h,
            "<p>Statistic {}: per seed {}, interval {} against {}. Seeds {}; measured on: {}; commit {}; config {}; {:.0} s.</p>",
            escape(&self.decision.statistic),
            fmt_list(&self.decision.per_seed),
            self.decision.interval,
            self.decision.reference,
            self.seeds.len(),
            escape(&self.split),
            escape(&self.commit),
            escape(&self.config_hash),
            self.wall_s
        );
        let bars = BarChart {
            title: self.metric.clone(),
            y_label: "mean over seeds".into(),
            bars: self.arms.iter().map(|r| (r.name.clone(), r.interval.mean)).collect(),
            reference: None,
        };
        h.push_str(&bars.to_svg());
        for (title, rows) in [(self.metric.as_str(), &self.arms), ("Further numbers", &self.extras)] {
            if rows.is_empty() {
                continue;
            }
            let _ = write!(
                h,
                "<h2>{}</h2><table><tr><th></th><th>mean [95 % interval]</th><th>per seed</th></tr>",
                escape(title)
            );
            for r in rows.iter() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.name),
                    r.interval,
                    fmt_list(&r.per_seed)
                );
            }
            h.push_str("</table>");
        }
        for (seed, cs) in curves {
            for c in cs {
                let chart = LineChart {
                    title: format!("{} (seed {seed})", c.title),
                    x_label: c.x_label.clone(),
                    y_label: c.y_label.clone(),
                    series: c.series.iter().map(|(n, pts)| Series::new(n.clone(), pts.clone())).collect(),
                    hlines: Vec::new(),
                };
                h.push_str(&chart.to_svg());
            }
        }
        h.push_str("</body></html>\n");
        h
    }

    /// Writes `result.json`, `summary.md`, `report.html` and `config.toml` into `dir`.
    pub fn write(&self, dir: &Path, config_toml: &str, curves: &[(u64, Vec<Curve>)]) -> Result<(), LabError> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
        let json = serde_json::to_string_pretty(self).expect("lab result serializes");
        for (name, text) in [
            ("result.json", json),
            ("summary.md", self.render_markdown()),
            ("report.html", self.render_html(curves)),
            ("config.toml", config_toml.to_string()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| LabError::io("writing", &path, e))?;
        }
        Ok(())
    }
}

fn fmt_list(xs: &[f64]) -> String {
    xs.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::verdict::Rule;
    use crate::seeds::Interval;

    pub(crate) fn sample() -> LabResult {
        let rule = Rule::PairedGap { better: "B", baseline: "A", direction: Direction::Higher };
        let decision = rule.decide(&[0.2, 0.3, 0.25]);
        let row = |n: &str, xs: Vec<f64>| Row { name: n.into(), interval: Interval::of(&xs), per_seed: xs };
        LabResult {
            id: "demo".into(),
            claim: "B beats <A>".into(),
            paper: Paper { title: "A paper", arxiv: "0000.00000" },
            metric: "gold".into(),
            expected_direction: Direction::Higher,
            arms: vec![row("A", vec![1.0, 1.1, 0.9]), row("B", vec![1.2, 1.4, 1.15])],
            extras: vec![],
            verdict: decision.verdict,
            rule: decision.rule.clone(),
            decision,
            seeds: vec![0, 1, 2],
            reduced: false,
            split: "test".into(),
            commit: "abc".into(),
            config_hash: "0123".into(),
            wall_s: 1.0,
        }
    }

    #[test]
    fn writes_the_three_files_with_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let curve = Curve {
            title: "gold vs KL".into(),
            x_label: "KL".into(),
            y_label: "gold".into(),
            series: vec![("single".into(), vec![(0.0, 1.0), (1.0, 2.0)])],
        };
        sample().write(dir.path(), "x = 1\n", &[(0, vec![curve])]).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap()).unwrap();
        assert_eq!(json["verdict"], "reproduced");
        assert_eq!(json["arms"][1]["per_seed"].as_array().unwrap().len(), 3);
        assert!(json["rule"].as_str().unwrap().contains("excludes 0"));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert_eq!(html.matches("<svg").count(), 2, "a bar chart and one curve");
        assert!(html.contains("B beats &lt;A&gt;") && !html.contains("http"));
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("**Verdict: reproduced.**") && md.contains("| B | 1.250 ["), "{md}");
    }
}
