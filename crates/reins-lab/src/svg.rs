//! Dependency-free inline SVG charts: line charts (several series, legend, ticks, dashed
//! series, reference lines) and bar charts. Output is a standalone `<svg>` element with no
//! external references, all text escaped. (No `xmlns`: the charts are inlined in HTML, where
//! it is implied, and the report must not contain a single URL.)

use std::fmt::Write;

/// Okabe–Ito, readable by colour-blind readers.
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

const W: f64 = 680.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 470.0;
/// Right edge of a bar chart's plot (no legend column).
const BAR_RIGHT: f64 = 640.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 300.0;

/// Escapes text for HTML/SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "Nice" tick positions (1–2–5 steps) covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    (first..=last.max(first + 1))
        .take(50)
        .map(|i| {
            let t = i as f64 * step;
            if t.abs() < step * 1e-9 {
                0.0
            } else {
                t
            }
        })
        .collect()
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(0.01..1000.0).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if (v * 10.0 - (v * 10.0).round()).abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// (x, y); non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Palette index; `None` uses the series' position.
    pub color: Option<usize>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points, dashed: false, color: None }
    }
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
    pub fn color(mut self, i: usize) -> Self {
        self.color = Some(i);
        self
    }
}

/// A line chart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Horizontal reference lines (label, y).
    pub hlines: Vec<(String, f64)>,
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
    right: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (self.right - LEFT)
    }
    fn py(&self, y: f64) -> f64 {
        BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (BOTTOM - TOP)
    }
}

fn open_svg(out: &mut String, title: &str, right: f64) {
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" font-family="system-ui, sans-serif" font-size="12"><title>{t}</title><rect width="{W}" height="{H}" fill="white"/><text x="{cx}" y="22" text-anchor="middle" font-size="15" font-weight="600">{t}</text>"#,
        t = escape(title),
        cx = (LEFT + right) / 2.0,
    );
}

fn axes(out: &mut String, f: &Frame, xt: &[f64], yt: &[f64], x_label: &str, y_label: &str) {
    for &t in yt {
        let y = f.py(t);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{r}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(t),
            r = f.right
        );
    }
    for &t in xt {
        let x = f.px(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{BOTTOM}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            BOTTOM + 5.0,
            BOTTOM + 18.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        f.right - LEFT,
        BOTTOM - TOP,
        (LEFT + f.right) / 2.0,
        BOTTOM + 38.0,
        escape(x_label),
        (TOP + BOTTOM) / 2.0,
        escape(y_label)
    );
}

/// The legend right of the plot; long names wrap onto up to three lines.
fn legend(out: &mut String, items: &[(String, &str, bool)]) {
    const SIZE: f64 = 10.0;
    let width = ((W - RIGHT - 50.0) / (0.55 * SIZE)) as usize;
    let mut y = TOP + 8.0;
    for (name, color, dashed) in items {
        let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = write!(
            out,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{:.1}" font-size="{SIZE}">"#,
            RIGHT + 10.0,
            RIGHT + 36.0,
            RIGHT + 42.0,
            y + 3.5,
        );
        let lines = wrap_words(name, width);
        for (k, line) in lines.iter().enumerate() {
            let dy = if k == 0 { 0.0 } else { SIZE + 2.0 };
            let _ = write!(out, r#"<tspan x="{:.1}" dy="{dy}">{}</tspan>"#, RIGHT + 42.0, escape(line));
        }
        out.push_str("</text>");
        y += lines.len().max(1) as f64 * (SIZE + 2.0) + 8.0;
    }
}

fn bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    vals.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

impl LineChart {
    /// The chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let pts = || self.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (x0, x1) = bounds(pts().map(|p| p.0)).unwrap_or((0.0, 1.0));
        let (y0, y1) = bounds(pts().map(|p| p.1).chain(self.hlines.iter().map(|h| h.1))).unwrap_or((0.0, 1.0));
        let xt = nice_ticks(x0, x1, 6);
        let yt = nice_ticks(y0, y1, 5);
        let f = Frame { x: (xt[0], *xt.last().unwrap_or(&1.0)), y: (yt[0], *yt.last().unwrap_or(&1.0)), right: RIGHT };
        let mut out = String::new();
        open_svg(&mut out, &self.title, RIGHT);
        axes(&mut out, &f, &xt, &yt, &self.x_label, &self.y_label);
        for (label, y) in &self.hlines {
            let py = f.py(*y);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{py:.1}" y2="{py:.1}" stroke="#888" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                RIGHT - 4.0,
                py - 4.0,
                escape(label)
            );
        }
        let mut items = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[s.color.unwrap_or(i) % PALETTE.len()];
            let good: Vec<(f64, f64)> =
                s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
            let path: Vec<String> = good.iter().map(|(x, y)| format!("{:.1},{:.1}", f.px(*x), f.py(*y))).collect();
            let dash = if s.dashed { r#" stroke-dasharray="6 4""# } else { "" };
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2.5"{dash} points="{}"/>"#,
                path.join(" ")
            );
            if good.len() <= 40 {
                for (x, y) in &good {
                    let _ = write!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, f.px(*x), f.py(*y));
                }
            }
            items.push((s.name.clone(), color, s.dashed));
        }
        legend(&mut out, &items);
        out.push_str("</svg>");
        out
    }
}

/// A bar chart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    /// (label, value); a non-finite value draws no bar.
    pub bars: Vec<(String, f64)>,
    /// A horizontal reference line (label, y), e.g. a target.
    pub reference: Option<(String, f64)>,
}

impl BarChart {
    /// The chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let vals = self.bars.iter().map(|b| b.1).chain(self.reference.iter().map(|r| r.1)).chain([0.0]);
        let (y0, y1) = bounds(vals).unwrap_or((0.0, 1.0));
        // Headroom for the value labels above (and below) the bars.
        let pad = 0.08 * (y1 - y0).max(1e-9);
        let yt = nice_ticks(if y0 < 0.0 { y0 - pad } else { y0 }, if y1 > 0.0 { y1 + pad } else { y1 }, 5);
        let f = Frame { x: (0.0, 1.0), y: (yt[0], *yt.last().unwrap_or(&1.0)), right: BAR_RIGHT };
        let mut out = String::new();
        open_svg(&mut out, &self.title, BAR_RIGHT);
        axes(&mut out, &f, &[], &yt, "", &self.y_label);
        let n = self.bars.len().max(1) as f64;
        let slot = (BAR_RIGHT - LEFT) / n;
        let zero = f.py(0.0);
        for (i, (label, v)) in self.bars.iter().enumerate() {
            let cx = LEFT + slot * (i as f64 + 0.5);
            let color = PALETTE[i % PALETTE.len()];
            if v.is_finite() {
                let y = f.py(*v);
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {v:.3}</title></rect><text x="{cx:.1}" y="{:.1}" text-anchor="middle">{v:.2}</text>"#,
                    cx - slot * 0.35,
                    y.min(zero),
                    slot * 0.7,
                    (y - zero).abs(),
                    escape(label),
                    if *v >= 0.0 { y - 5.0 } else { y + 14.0 },
                );
            }
            // Long names ("online DPO (ensemble of 3)") wrap onto lines that fit the slot.
            // Narrow slots get a smaller font (a character is about 0.55 em wide).
            let size = if slot >= 100.0 { 12.0 } else { 10.0 };
            let _ =
                write!(out, r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="{size}">"#, BOTTOM + 18.0);
            for (k, line) in wrap_words(label, (slot * 0.85 / (0.55 * size)) as usize).iter().enumerate() {
                let dy = if k == 0 { 0.0 } else { size + 2.0 };
                let _ = write!(out, r#"<tspan x="{cx:.1}" dy="{dy}">{}</tspan>"#, escape(line));
            }
            out.push_str("</text>");
        }
        if f.y.0 < 0.0 {
            let _ =
                write!(out, r##"<line x1="{LEFT}" x2="{BAR_RIGHT}" y1="{zero:.1}" y2="{zero:.1}" stroke="#333"/>"##);
        }
        if let Some((label, y)) = &self.reference {
            let py = f.py(*y);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{BAR_RIGHT}" y1="{py:.1}" y2="{py:.1}" stroke="#c00" stroke-dasharray="5 4"/><text x="{:.1}" y="{:.1}" fill="#c00" text-anchor="end" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
                BAR_RIGHT - 4.0,
                py - 4.0,
                escape(label)
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// Splits `text` at spaces into at most three lines of about `width` characters (a word longer
/// than `width` keeps its own line; what does not fit in three lines joins the last).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let full = lines.len() == 3;
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width.max(1) || full => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 5).len(), 6);
        assert_eq!(*nice_ticks(0.0, 0.86, 5).last().unwrap(), 1.0);
        let t = nice_ticks(-3.2, 17.9, 5);
        assert!(t[0] <= -3.2 && *t.last().unwrap() >= 17.9);
        assert!(nice_ticks(2.0, 2.0, 5).len() >= 2);
    }

    #[test]
    fn charts_escape_text_and_survive_odd_data() {
        let c = LineChart {
            title: "<script>alert(1)</script>".into(),
            x_label: "KL & more".into(),
            y_label: "y".into(),
            series: vec![
                Series::new("a\"b", vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)]),
                Series::new("empty", vec![]).dashed(),
            ],
            hlines: vec![("target".into(), 2.0)],
        };
        let s = c.to_svg();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
        let b = BarChart {
            title: "t".into(),
            y_label: "v".into(),
            bars: vec![("neg".into(), -1.5), ("pos".into(), 2.0), ("nan".into(), f64::NAN)],
            reference: Some(("0.8".into(), 0.8)),
        };
        let s = b.to_svg();
        assert!(!s.contains("NaN"));
        assert_eq!(s.matches("<rect").count(), 4, "background, frame and two bars: {s}");
    }

    #[test]
    fn long_bar_labels_wrap_into_at_most_three_lines() {
        assert_eq!(wrap_words("online DPO (ensemble of 3)", 15), ["online DPO", "(ensemble of 3)"]);
        assert_eq!(wrap_words("online DPO (ensemble of 3)", 14), ["online DPO", "(ensemble of", "3)"]);
        assert_eq!(wrap_words("SFT", 14), ["SFT"]);
        assert_eq!(wrap_words("a b c d e f", 1), ["a", "b", "c d e f"]);
        assert!(wrap_words("", 10).is_empty());
    }
}
