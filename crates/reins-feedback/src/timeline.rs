//! The dashboard's charts over time, one series per annotator: labels done (progress),
//! seconds per label (speed, a running median of the last 5) and agreement with the
//! final per-item majority (cumulative share, nominal questions on items with ≥ 2 labels).
use crate::chart::{Chart, Series};
use crate::consensus::majority;
use crate::db::Submission;
use crate::tasks::{nominal_label, ProjectConfig, QuestionKind};
use std::collections::{BTreeMap, HashMap};

/// Running-median window for the speed chart, in labels.
const SPEED_WINDOW: usize = 5;

fn median(v: &[i64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0) as f64
}

/// The three charts; annotators in name order, so colours stay put between reloads.
pub fn charts(cfg: &ProjectConfig, subs: &[Submission], names: &HashMap<String, String>) -> Vec<Chart> {
    let mut labels: Vec<&Submission> = subs.iter().filter(|s| s.kind == "label").collect();
    labels.sort_by_key(|s| s.created_at);
    let t0 = labels.first().map_or(0, |s| s.created_at);
    let mut by_user: BTreeMap<String, Vec<&Submission>> = BTreeMap::new();
    for s in &labels {
        let name = names.get(&s.user_id).cloned().unwrap_or_else(|| s.user_id.clone());
        by_user.entry(name).or_default().push(s);
    }

    // (question, item) → the majority label among items with two or more labels.
    let nominal: Vec<_> = cfg.questions.iter().filter(|q| !matches!(q.kind, QuestionKind::Likert { .. })).collect();
    let mut votes: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for s in &labels {
        for q in &nominal {
            if let Some(l) = nominal_label(q, &s.answer[&q.name]) {
                votes.entry((q.name.as_str(), s.item_id.as_str())).or_default().push(l);
            }
        }
    }
    let majorities: HashMap<(&str, &str), String> =
        votes.into_iter().filter(|(_, v)| v.len() >= 2).filter_map(|(k, v)| Some((k, majority(&v)?.0))).collect();

    // The time axis in the unit that makes its numbers readable.
    let span = labels.last().map_or(0, |s| s.created_at - t0);
    let (unit_ms, unit) = match span {
        s if s < 120_000 => (1_000.0, "seconds"),
        s if s < 2 * 3_600_000 => (60_000.0, "minutes"),
        _ => (3_600_000.0, "hours"),
    };
    let (mut done, mut speed, mut agree) = (vec![], vec![], vec![]);
    for (name, subs) in &by_user {
        let since = |s: &Submission| (s.created_at - t0) as f64 / unit_ms;
        done.push(Series {
            name: name.clone(),
            points: subs.iter().enumerate().map(|(i, s)| (since(s), (i + 1) as f64)).collect(),
        });
        let times: Vec<i64> = subs.iter().map(|s| s.time_ms).collect();
        speed.push(Series {
            name: name.clone(),
            points: (0..times.len())
                .map(|i| ((i + 1) as f64, median(&times[(i + 1).saturating_sub(SPEED_WINDOW)..=i]) / 1000.0))
                .collect(),
        });
        let (mut hit, mut seen, mut points) = (0usize, 0usize, vec![]);
        for (i, s) in subs.iter().enumerate() {
            for q in &nominal {
                let Some(maj) = majorities.get(&(q.name.as_str(), s.item_id.as_str())) else { continue };
                if let Some(l) = nominal_label(q, &s.answer[&q.name]) {
                    hit += usize::from(&l == maj);
                    seen += 1;
                }
            }
            if seen > 0 {
                points.push(((i + 1) as f64, 100.0 * hit as f64 / seen as f64));
            }
        }
        agree.push(Series { name: name.clone(), points });
    }
    let chart = |title: &str, x: &str, y: &str, y_max, series| Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        y_max,
        series,
    };
    vec![
        chart("Labels done", &format!("{unit} since the first label"), "labels", None, done),
        chart("Seconds per label (median of the last 5)", "label number", "seconds", None, speed),
        chart("Agreement with the majority (%)", "label number", "% agree", Some(100.0), agree),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(user: &str, item: &str, winner: u64, time_ms: i64, at: i64) -> Submission {
        Submission {
            id: format!("{user}{item}"),
            idempotency_key: String::new(),
            project_id: "p".into(),
            item_id: item.into(),
            user_id: user.into(),
            assignment_id: String::new(),
            kind: "label".into(),
            answer: json!({"preference": {"outcome": "win", "winner": winner, "loser": 1 - winner, "winner_position": 0}}),
            display_order: vec![0, 1],
            skip_reason: None,
            time_ms,
            created_at: at,
        }
    }

    #[test]
    fn one_series_per_annotator_with_progress_speed_and_agreement() {
        let cfg = ProjectConfig::parse(&json!({"questions": [{"name": "preference", "kind": "pairwise"}]})).unwrap();
        let names = HashMap::from([("u1".to_string(), "ann".to_string()), ("u2".to_string(), "bob".to_string())]);
        let h = 3_600_000;
        // Items x, y: ann and a third voter agree; bob disagrees on y.
        let subs = vec![
            sub("u1", "x", 0, 2000, 0),
            sub("u2", "x", 0, 4000, h),
            sub("u1", "y", 0, 1000, 2 * h),
            sub("u2", "y", 1, 6000, 3 * h),
            sub("u3", "y", 0, 1000, 4 * h),
        ];
        let charts = charts(&cfg, &subs, &names);
        assert_eq!(charts.len(), 3);
        for c in &charts {
            let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["ann", "bob", "u3"], "{}", c.title);
        }
        assert_eq!(charts[0].series[0].points, [(0.0, 1.0), (2.0, 2.0)]);
        assert_eq!(charts[1].series[1].points, [(1.0, 4.0), (2.0, 6.0)]);
        assert_eq!(charts[2].series[0].points, [(1.0, 100.0), (2.0, 100.0)]);
        assert_eq!(charts[2].series[1].points, [(1.0, 100.0), (2.0, 50.0)]);
    }
}
