//! A small server-side SVG line chart for the dashboard: no scripts, no external URLs, text in
//! `currentColor` so it follows the page's light or dark colours, and a viewBox so it
//! shrinks to a phone's width. One `<g class="series">` per annotator, named for screen
//! readers and for tests (`data-annotator`).
use std::fmt::Write;

/// Okabe–Ito colours (distinguishable with colour blindness), then greys.
const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C6D31", "#999999"];

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// (x, y) in data units, x ascending.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Fixed y range top (e.g. 100 for percentages); otherwise the largest value.
    pub y_max: Option<f64>,
    pub series: Vec<Series>,
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A tick label without trailing zeros: 12, 0.5, 1.25.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

const W: f64 = 600.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// The chart as a `<figure>`: title, the SVG and an HTML legend (which wraps on a phone).
pub fn line_chart(c: &Chart) -> String {
    let all = c.series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_data) = all.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let y_max = c.y_max.unwrap_or(if y_data > 0.0 { y_data } else { 1.0 });
    let sx = |x: f64| LEFT + x / x_max * (W - LEFT - RIGHT);
    let sy = |y: f64| TOP + (1.0 - y / y_max) * (H - TOP - BOTTOM);
    let title = escape(&c.title);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" font-size="12" fill="currentColor">"#
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{y1:.1}" y2="{y1:.1}" stroke="currentColor" stroke-opacity=".15"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            sy(y) + 4.0,
            num(y),
            y1 = sy(y)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}">0</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        H - BOTTOM + 16.0,
        W - RIGHT,
        H - BOTTOM + 16.0,
        num(x_max),
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        escape(&c.x_label),
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(12 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        escape(&c.y_label)
    );
    let mut legend = String::from(r#"<ul class="legend">"#);
    for (i, s) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let name = escape(&s.name);
        let pts: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(svg, r#"<g class="series" data-annotator="{name}"><title>{name}</title>"#);
        let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        if let Some(&(x, y)) = s.points.last() {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#, sx(x), sy(y));
        }
        svg.push_str("</g>");
        let last = s.points.last().map_or_else(|| "no data".to_string(), |p| num(p.1));
        let _ = write!(legend, r#"<li><span class="swatch" style="background:{color}"></span>{name}: {last}</li>"#);
    }
    svg.push_str("</svg>");
    legend.push_str("</ul>");
    format!(r#"<figure class="chart-box"><figcaption>{title}</figcaption>{svg}{legend}</figure>"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_named_series_per_entry_and_names_escaped() {
        let c = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_max: None,
            series: vec![
                Series { name: "<b>eve</b>".into(), points: vec![(0.0, 1.0), (2.0, 3.0)] },
                Series { name: "ann".into(), points: vec![] },
            ],
        };
        let html = line_chart(&c);
        assert_eq!(html.matches(r#"class="series""#).count(), 2);
        assert!(html.contains(r#"data-annotator="&lt;b&gt;eve&lt;/b&gt;""#), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("ann: no data"));
    }
}
