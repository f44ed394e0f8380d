//! The lab's report: a self-contained `report.html` (inline CSS and SVG, no scripts, no URLs,
//! opens offline in any browser) and `summary.md`, both rendered from one [`ReportData`].

use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::svg::{escape, BarChart, LineChart, Series};
use crate::LabError;

/// One aligned policy, evaluated on the test prompts by the gold reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// "SFT", "PPO", "GRPO", "DPO", "online DPO", "best-of-16", ….
    pub name: String,
    /// Mean gold score of its responses.
    pub mean_gold: f64,
    /// Gold win rate against the SFT policy on the same prompts (ties ½).
    pub gold_win_rate_vs_sft: f64,
    /// KL to the reference (SFT) policy, nats per sequence.
    pub kl_to_ref: f64,
    /// Mean proxy (reward-model) reward, raw; `None` when not applicable.
    pub mean_proxy: Option<f64>,
    /// Calibrated proxy − gold (`metrics::proxy_gold_gap`); `None` when not applicable.
    pub proxy_gold_gap: Option<f64>,
}

/// A reward model's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardModelRow {
    /// "single", "ensemble (4)", ….
    pub name: String,
    /// Accuracy against noiseless gold preferences on pairs of test prompts.
    pub accuracy_vs_gold: f64,
    /// Accuracy against the annotators' (noisy) labels of those pairs, if measured.
    pub accuracy_vs_labels: Option<f64>,
    /// Test pairs counted.
    pub n_pairs: usize,
}

/// One annotator's (or the population's) labels against gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorRow {
    pub id: String,
    pub n_labels: usize,
    /// Fraction of its A/B labels that match noiseless gold.
    pub agreement_with_gold: f64,
    pub tie_rate: f64,
    pub skip_rate: f64,
}

/// A point of an over-optimization run: a checkpoint's KL, gold and (calibrated) proxy reward.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverOptPoint {
    pub kl: f64,
    pub gold: f64,
    pub proxy: f64,
}

/// An over-optimization curve (one reward model: "single RM", "ensemble").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverOptCurve {
    pub name: String,
    pub points: Vec<OverOptPoint>,
}

/// A before/after generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    /// The method that produced `after`.
    pub method: String,
    /// The SFT policy's response.
    pub before: String,
    pub after: String,
    pub gold_before: f64,
    pub gold_after: f64,
}

/// A target of the issue and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub threshold: f64,
}

impl Target {
    pub fn met(&self) -> bool {
        self.value >= self.threshold
    }
}

/// A training curve or any extra line chart (x, y) per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Everything the report shows. Empty sections are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub title: String,
    /// One line under the title (seed, device, wall time).
    pub subtitle: String,
    pub targets: Vec<Target>,
    pub methods: Vec<MethodRow>,
    pub reward_models: Vec<RewardModelRow>,
    pub annotators: Vec<AnnotatorRow>,
    pub overoptimization: Vec<OverOptCurve>,
    pub examples: Vec<Example>,
    pub curves: Vec<Curve>,
    /// Free remarks, one paragraph each.
    pub notes: Vec<String>,
    /// The resolved config, shown verbatim.
    pub config_toml: Option<String>,
}

/// Paths written by [`Report::write`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPaths {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// Renders and writes the report.
#[derive(Debug, Clone)]
pub struct Report {
    pub data: ReportData,
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{margin-bottom:.1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}.sub{color:#666;margin-top:0}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ddd;padding:.35em .7em;text-align:right}th{background:#f5f5f5}\
td:first-child,th:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{width:calc(50% - 8px);min-width:400px;height:auto;border:1px solid #eee}\
.ok{color:#0a7d32;font-weight:600}.miss{color:#b00020;font-weight:600}.ex{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.8em 0}\
.ex .p{font-weight:600}.ex .b{color:#8a3b00}.ex .a{color:#005a8a}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}\
.best{background:#eef7ee}";

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(f3).unwrap_or_else(|| "–".into())
}

/// Markdown table cell: no pipes or newlines.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

impl Report {
    pub fn new(data: ReportData) -> Self {
        Report { data }
    }

    /// The charts the report draws, in order.
    pub fn charts(&self) -> Vec<String> {
        let d = &self.data;
        let mut out = Vec::new();
        if !d.methods.is_empty() {
            out.push(
                BarChart {
                    title: "Mean gold score (test prompts)".into(),
                    y_label: "gold score".into(),
                    bars: d.methods.iter().map(|m| (m.name.clone(), m.mean_gold)).collect(),
                    reference: None,
                }
                .to_svg(),
            );
            out.push(
                BarChart {
                    title: "Gold win rate against SFT".into(),
                    y_label: "win rate".into(),
                    bars: d.methods.iter().map(|m| (m.name.clone(), m.gold_win_rate_vs_sft)).collect(),
                    reference: Some(("0.5".into(), 0.5)),
                }
                .to_svg(),
            );
        }
        if !d.reward_models.is_empty() {
            out.push(
                BarChart {
                    title: "Reward-model accuracy vs noiseless gold".into(),
                    y_label: "accuracy".into(),
                    bars: d.reward_models.iter().map(|r| (r.name.clone(), r.accuracy_vs_gold)).collect(),
                    reference: Some(("target 0.80".into(), 0.8)),
                }
                .to_svg(),
            );
        }
        if !d.overoptimization.is_empty() {
            let mut series = Vec::new();
            for (i, c) in d.overoptimization.iter().enumerate() {
                let gold = c.points.iter().map(|p| (p.kl, p.gold)).collect();
                let proxy = c.points.iter().map(|p| (p.kl, p.proxy)).collect();
                series.push(Series::new(format!("gold, {}", c.name), gold).color(i));
                series.push(Series::new(format!("proxy, {}", c.name), proxy).color(i).dashed());
            }
            out.push(
                LineChart {
                    title: "Over-optimization: reward against KL".into(),
                    x_label: "KL to reference (nats)".into(),
                    y_label: "reward (gold scale)".into(),
                    series,
                    hlines: vec![],
                }
                .to_svg(),
            );
        }
        for c in &d.curves {
            out.push(
                LineChart {
                    title: c.title.clone(),
                    x_label: c.x_label.clone(),
                    y_label: c.y_label.clone(),
                    series: c.series.iter().map(|(n, p)| Series::new(n.clone(), p.clone())).collect(),
                    hlines: vec![],
                }
                .to_svg(),
            );
        }
        out
    }

    /// The self-contained HTML page.
    pub fn render_html(&self) -> String {
        let d = &self.data;
        let charts = self.charts();
        let mut chart = charts.into_iter();
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{t}</title><style>{CSS}</style></head><body><h1>{t}</h1><p class=\"sub\">{s}</p>",
            t = escape(&d.title),
            s = escape(&d.subtitle)
        );
        if !d.targets.is_empty() {
            h.push_str("<h2>Targets</h2><table><tr><th>target</th><th>value</th><th>threshold</th><th></th></tr>");
            for t in &d.targets {
                let (cls, word) = if t.met() { ("ok", "met") } else { ("miss", "missed") };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>≥ {}</td><td class=\"{cls}\">{word}</td></tr>",
                    escape(&t.name),
                    f3(t.value),
                    f3(t.threshold)
                );
            }
            h.push_str("</table>");
        }
        if !d.methods.is_empty() {
            h.push_str("<h2>Methods</h2><p>Every policy answers the same test prompts (held out, read by no tuning choice); the hidden gold reward scores them.</p><table><tr><th>method</th><th>mean gold</th><th>gold win rate vs SFT</th><th>KL to reference</th><th>mean proxy</th><th>proxy − gold gap</th></tr>");
            let best = d.methods.iter().map(|m| m.gold_win_rate_vs_sft).fold(f64::NEG_INFINITY, f64::max);
            for m in &d.methods {
                let cls = if m.gold_win_rate_vs_sft == best { " class=\"best\"" } else { "" };
                let _ = write!(
                    h,
                    "<tr{cls}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&m.name),
                    f3(m.mean_gold),
                    f3(m.gold_win_rate_vs_sft),
                    f3(m.kl_to_ref),
                    opt(m.mean_proxy),
                    opt(m.proxy_gold_gap)
                );
            }
            h.push_str("</table><div class=\"charts\">");
            h.extend(chart.by_ref().take(2));
            h.push_str("</div>");
        }
        if !d.reward_models.is_empty() {
            h.push_str("<h2>Reward models</h2><table><tr><th>reward model</th><th>accuracy vs gold</th><th>accuracy vs labels</th><th>pairs</th></tr>");
            for r in &d.reward_models {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.name),
                    f3(r.accuracy_vs_gold),
                    opt(r.accuracy_vs_labels),
                    r.n_pairs
                );
            }
            h.push_str("</table><div class=\"charts\">");
            h.extend(chart.by_ref().take(1));
            h.push_str("</div>");
        }
        if !d.annotators.is_empty() {
            h.push_str("<h2>Simulated annotators</h2><p>Agreement of each annotator's A/B labels with noiseless gold preferences.</p><table><tr><th>annotator</th><th>labels</th><th>agreement with gold</th><th>ties</th><th>skips</th></tr>");
            for a in &d.annotators {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&a.id),
                    a.n_labels,
                    f3(a.agreement_with_gold),
                    f3(a.tie_rate),
                    f3(a.skip_rate)
                );
            }
            h.push_str("</table>");
        }
        if !d.overoptimization.is_empty() {
            h.push_str("<h2>Over-optimization</h2><p>Gold (solid) and calibrated proxy (dashed) reward as a policy optimizes each reward model. Where the lines part, the policy is exploiting the reward model.</p><div class=\"charts\">");
            h.extend(chart.by_ref().take(1));
            h.push_str("</div>");
        }
        if !d.curves.is_empty() {
            h.push_str("<h2>Training curves</h2><div class=\"charts\">");
            h.extend(chart.by_ref());
            h.push_str("</div>");
        }
        if !d.examples.is_empty() {
            h.push_str("<h2>Before and after</h2>");
            for e in &d.examples {
                let _ = write!(
                    h,
                    "<div class=\"ex\"><div class=\"p\">{}</div><div class=\"b\">SFT ({}): {}</div><div class=\"a\">{} ({}): {}</div></div>",
                    escape(&e.prompt),
                    f3(e.gold_before),
                    escape(&e.before),
                    escape(&e.method),
                    f3(e.gold_after),
                    escape(&e.after)
                );
            }
        }
        if !d.notes.is_empty() {
            h.push_str("<h2>Notes</h2>");
            for n in &d.notes {
                let _ = write!(h, "<p>{}</p>", escape(n));
            }
        }
        if let Some(c) = &d.config_toml {
            let _ = write!(h, "<h2>Config</h2><pre>{}</pre>", escape(c));
        }
        h.push_str("</body></html>\n");
        h
    }

    /// `summary.md`.
    pub fn render_markdown(&self) -> String {
        let d = &self.data;
        let mut m = String::new();
        let _ = writeln!(m, "# {}\n\n{}\n", md(&d.title), md(&d.subtitle));
        if !d.targets.is_empty() {
            m.push_str("## Targets\n\n| target | value | threshold | |\n|---|---:|---:|---|\n");
            for t in &d.targets {
                let _ = writeln!(
                    m,
                    "| {} | {} | ≥ {} | {} |",
                    md(&t.name),
                    f3(t.value),
                    f3(t.threshold),
                    if t.met() { "met" } else { "**missed**" }
                );
            }
            m.push('\n');
        }
        if !d.methods.is_empty() {
            m.push_str("## Methods (test prompts, gold reward)\n\n| method | mean gold | gold win rate vs SFT | KL to reference | mean proxy | proxy − gold gap |\n|---|---:|---:|---:|---:|---:|\n");
            for r in &d.methods {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} |",
                    md(&r.name),
                    f3(r.mean_gold),
                    f3(r.gold_win_rate_vs_sft),
                    f3(r.kl_to_ref),
                    opt(r.mean_proxy),
                    opt(r.proxy_gold_gap)
                );
            }
            m.push('\n');
        }
        if !d.reward_models.is_empty() {
            m.push_str("## Reward models\n\n| reward model | accuracy vs gold | accuracy vs labels | pairs |\n|---|---:|---:|---:|\n");
            for r in &d.reward_models {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} |",
                    md(&r.name),
                    f3(r.accuracy_vs_gold),
                    opt(r.accuracy_vs_labels),
                    r.n_pairs
                );
            }
            m.push('\n');
        }
        if !d.annotators.is_empty() {
            m.push_str("## Simulated annotators\n\n| annotator | labels | agreement with gold | ties | skips |\n|---|---:|---:|---:|---:|\n");
            for a in &d.annotators {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} |",
                    md(&a.id),
                    a.n_labels,
                    f3(a.agreement_with_gold),
                    f3(a.tie_rate),
                    f3(a.skip_rate)
                );
            }
            m.push('\n');
        }
        if !d.overoptimization.is_empty() {
            m.push_str("## Over-optimization\n\n| reward model | KL | gold | proxy |\n|---|---:|---:|---:|\n");
            for c in &d.overoptimization {
                for p in &c.points {
                    let _ = writeln!(m, "| {} | {} | {} | {} |", md(&c.name), f3(p.kl), f3(p.gold), f3(p.proxy));
                }
            }
            m.push('\n');
        }
        if !d.examples.is_empty() {
            m.push_str("## Before and after\n\n");
            for e in &d.examples {
                let _ = writeln!(
                    m,
                    "- **{}**\n  - SFT ({}): {}\n  - {} ({}): {}",
                    md(&e.prompt),
                    f3(e.gold_before),
                    md(&e.before),
                    md(&e.method),
                    f3(e.gold_after),
                    md(&e.after)
                );
            }
            m.push('\n');
        }
        for n in &d.notes {
            let _ = writeln!(m, "{}\n", md(n));
        }
        m.push_str("Charts: see `report.html`.\n");
        m
    }

    /// Writes `report.html`, `summary.md` and `report.json` (the data) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<ReportPaths, LabError> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
        let paths = ReportPaths {
            html: dir.join("report.html"),
            markdown: dir.join("summary.md"),
            json: dir.join("report.json"),
        };
        let json = serde_json::to_string_pretty(&self.data).expect("report data serializes");
        for (path, text) in
            [(&paths.html, self.render_html()), (&paths.markdown, self.render_markdown()), (&paths.json, json)]
        {
            std::fs::write(path, text).map_err(|e| LabError::io("writing", path, e))?;
        }
        Ok(paths)
    }
}

#[path = "report_demo.rs"]
mod demo;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_offline_escaped_and_has_one_svg_per_chart() {
        let mut r = Report::demo();
        r.data.examples.push(Example {
            prompt: "<script>alert('x')</script>".into(),
            method: "PPO".into(),
            before: "a & b".into(),
            after: "<img src=x onerror=alert(1)>".into(),
            gold_before: 0.0,
            gold_after: 0.0,
        });
        let html = r.render_html();
        assert!(!html.contains("<script"), "hostile text must be escaped");
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!html.to_lowercase().contains("http"), "no external reference of any kind");
        assert!(!html.contains("<link") && !html.contains("@import") && !html.contains("url("));
        // Bars: gold, win rate, RM accuracy; lines: over-optimization, one training curve.
        assert_eq!(r.charts().len(), 5);
        assert_eq!(html.matches("<svg").count(), 5);
        assert_eq!(html.matches("</svg>").count(), 5);
        let md = r.render_markdown();
        assert!(md.contains("| PPO | 3.900 | 0.810 |"));
        assert!(md.contains("## Over-optimization"));
    }

    #[test]
    fn empty_sections_are_left_out() {
        let r = Report::new(ReportData { title: "t".into(), ..Default::default() });
        let html = r.render_html();
        assert_eq!(html.matches("<svg").count(), 0);
        assert!(!html.contains("<h2>"));
    }

    #[test]
    fn writes_the_demo_report_to_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Report::demo().write(dir.path()).unwrap();
        let html = std::fs::read_to_string(&paths.html).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        let back: ReportData = serde_json::from_str(&std::fs::read_to_string(&paths.json).unwrap()).unwrap();
        let demo = Report::demo().data;
        assert_eq!((back.title, back.methods.len(), back.overoptimization.len()), (demo.title, demo.methods.len(), 2));
        assert!(std::fs::read_to_string(&paths.markdown).unwrap().starts_with("# reins quickstart"));
        if let Ok(out) = std::env::var("REINS_LAB_DEMO_REPORT") {
            Report::demo().write(Path::new(&out)).unwrap();
        }
    }
}
