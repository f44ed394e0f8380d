//! Task types as data. A project's config lists questions; each question has a `kind`
//! that says how it is shown, which keys answer it, and how an answer is validated and
//! stored. New task types are new `QuestionKind` variants, not new pages.
//!
//! Answers arrive in *display* positions (the order the annotator saw, randomized per
//! assignment) and are stored in the item's own response order.
use crate::error::{bad, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A project's configuration (JSON or TOML in the CLI).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Markdown shown beside the task. Default: empty.
    #[serde(default)]
    pub guidelines: String,
    /// How many different people see each (non-gold) item. Default: 1.
    #[serde(default = "one")]
    pub overlap: u32,
    /// Probability that the next assignment is an unseen gold item. Default: 0.1.
    #[serde(default = "gold_rate")]
    pub gold_rate: f64,
    /// Minutes an opened task stays reserved for its annotator; after that the claim
    /// expires and someone else may take the item (a late answer is still kept). Default: 60.
    #[serde(default = "claim_timeout_minutes")]
    pub claim_timeout_minutes: u32,
    /// Show annotators, right after they answer a gold item, whether they matched and what
    /// the expected answer was. Default: false.
    #[serde(default)]
    pub gold_feedback: bool,
    /// Items whose majority (per question) holds a smaller share of the votes than this go
    /// to adjudication, as do ties. Default: 0.5 (ties and splits like 2-1-1).
    #[serde(default = "adjudicate_below")]
    pub adjudicate_below: f64,
    /// What annotators answer, in display order. At least one.
    pub questions: Vec<Question>,
}

fn one() -> u32 {
    1
}
fn gold_rate() -> f64 {
    0.1
}
fn claim_timeout_minutes() -> u32 {
    60
}
fn adjudicate_below() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}
fn likert_max() -> i64 {
    5
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Question {
    /// Key of this question's answer in submissions and exports.
    pub name: String,
    /// Text shown above the widget. Default: the name.
    #[serde(default)]
    pub label: Option<String>,
    /// Help shown under the question (what to look for, what the points mean). Default: none.
    #[serde(default)]
    pub help: Option<String>,
    #[serde(flatten)]
    pub kind: QuestionKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuestionKind {
    /// A / B / tie / both bad over the first two responses, with optional strength 1–3.
    Pairwise {
        #[serde(default = "yes")]
        allow_tie: bool,
        #[serde(default = "yes")]
        allow_both_bad: bool,
        #[serde(default)]
        strength: bool,
    },
    /// A full ranking of all responses, best first.
    Ranking,
    /// Likert ratings per response on each aspect, `min..=max`.
    Likert {
        aspects: Vec<String>,
        #[serde(default = "one_i64")]
        min: i64,
        #[serde(default = "likert_max")]
        max: i64,
        /// One label per scale point, `min` first ("" for none), shown on the options.
        /// Default: numbers only.
        #[serde(default)]
        scale_labels: Vec<String>,
    },
    /// Thumbs up / down per response.
    Thumbs,
    /// Character spans of a response tagged with one of `tags`.
    Spans { tags: Vec<String> },
    /// Free text per response: a critique or a rewrite.
    Critique {
        #[serde(default)]
        rewrite: bool,
    },
    /// Yes / no per response for each written principle.
    Principles { principles: Vec<String> },
}

fn one_i64() -> i64 {
    1
}

impl Question {
    /// `deny_unknown_fields` does not work through `#[serde(flatten)]`, so a typo such as
    /// `"optinal": true` would be dropped silently. The keys this question knows are the
    /// ones it serializes to (every field, defaults included), so the list cannot drift.
    fn refuse_unknown_keys(&self, raw: &Value) -> Result<()> {
        let known = serde_json::to_value(self)?;
        let known: Vec<&str> = known.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        for key in raw.as_object().map(|o| o.keys()).into_iter().flatten() {
            if !known.contains(&key.as_str()) {
                return Err(bad(format!(
                    "question `{}`: unknown key `{key}`; a {} question takes: {}",
                    self.name,
                    self.kind_name(),
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            QuestionKind::Pairwise { .. } => "pairwise",
            QuestionKind::Ranking => "ranking",
            QuestionKind::Likert { .. } => "likert",
            QuestionKind::Thumbs => "thumbs",
            QuestionKind::Spans { .. } => "spans",
            QuestionKind::Critique { .. } => "critique",
            QuestionKind::Principles { .. } => "principles",
        }
    }
}

/// Longest free-text answer accepted, in bytes.
pub const MAX_TEXT: usize = 20_000;

impl ProjectConfig {
    pub fn parse(v: &Value) -> Result<ProjectConfig> {
        let cfg: ProjectConfig =
            serde_json::from_value(v.clone()).map_err(|e| bad(format!("invalid project config: {e}")))?;
        if let Some(raw) = v.get("questions").and_then(Value::as_array) {
            for (raw, q) in raw.iter().zip(&cfg.questions) {
                q.refuse_unknown_keys(raw)?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.questions.is_empty() {
            return Err(bad("project config needs at least one question in `questions`"));
        }
        if self.overlap == 0 {
            return Err(bad("`overlap` must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.adjudicate_below) {
            return Err(bad("`adjudicate_below` must be within 0..=1"));
        }
        if !(0.0..=1.0).contains(&self.gold_rate) {
            return Err(bad("`gold_rate` must be within 0..=1"));
        }
        if self.claim_timeout_minutes == 0 {
            return Err(bad("`claim_timeout_minutes` must be at least 1 (default 60)"));
        }
        let mut names = std::collections::HashSet::new();
        for q in &self.questions {
            if q.name.is_empty() || !names.insert(q.name.clone()) {
                return Err(bad(format!("question names must be non-empty and unique (`{}`)", q.name)));
            }
            match &q.kind {
                QuestionKind::Likert { aspects, min, max, .. } if aspects.is_empty() || min >= max => {
                    return Err(bad(format!("likert question `{}` needs aspects and min < max", q.name)))
                }
                QuestionKind::Likert { min, max, scale_labels, .. }
                    if !scale_labels.is_empty() && scale_labels.len() as i64 != max - min + 1 =>
                {
                    return Err(bad(format!(
                        "likert question `{}`: scale_labels has {} labels but the scale {min}..{max} has {} points; give one per point (\"\" for none)",
                        q.name,
                        scale_labels.len(),
                        max - min + 1
                    )))
                }
                QuestionKind::Spans { tags } if tags.is_empty() => {
                    return Err(bad(format!("spans question `{}` needs at least one tag", q.name)))
                }
                QuestionKind::Principles { principles } if principles.is_empty() => {
                    return Err(bad(format!("principles question `{}` needs principles", q.name)))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Claims made after this time (unix ms) are still live at `now_ms`.
    pub fn claims_since(&self, now_ms: i64) -> i64 {
        now_ms - i64::from(self.claim_timeout_minutes) * 60_000
    }

    /// The fewest responses an item must have for this project's questions.
    pub fn min_responses(&self) -> usize {
        let pair =
            self.questions.iter().any(|q| matches!(q.kind, QuestionKind::Pairwise { .. } | QuestionKind::Ranking));
        if pair {
            2
        } else {
            1
        }
    }

    /// Checks an answer given in display positions and returns it in item order.
    pub fn canonicalize(&self, answers: &Value, order: &[usize], responses: &[String]) -> Result<Value> {
        let obj = answers.as_object().ok_or_else(|| bad("`answers` must be an object keyed by question name"))?;
        for key in obj.keys() {
            if !self.questions.iter().any(|q| &q.name == key) {
                return Err(bad(format!("unknown question `{key}`")));
            }
        }
        let mut out = Map::new();
        for q in &self.questions {
            let a = obj.get(&q.name).ok_or_else(|| bad(format!("missing answer to `{}`", q.name)))?;
            out.insert(
                q.name.clone(),
                canonical_answer(q, a, order, responses).map_err(|e| bad(format!("question `{}`: {e}", q.name)))?,
            );
        }
        Ok(Value::Object(out))
    }
}

/// Per-response array in display order → array in item order.
fn per_response<'a>(a: &'a Value, order: &[usize]) -> std::result::Result<Vec<&'a Value>, String> {
    let arr = a.as_array().ok_or("expected an array with one entry per response")?;
    if arr.len() != order.len() {
        return Err(format!("expected {} entries, one per response, got {}", order.len(), arr.len()));
    }
    let mut out = vec![&Value::Null; order.len()];
    for (pos, v) in arr.iter().enumerate() {
        out[order[pos]] = v;
    }
    Ok(out)
}

pub(crate) fn canonical_answer(
    q: &Question,
    a: &Value,
    order: &[usize],
    responses: &[String],
) -> std::result::Result<Value, String> {
    match &q.kind {
        QuestionKind::Pairwise { allow_tie, allow_both_bad, strength } => {
            let choice = a
                .get("choice")
                .and_then(Value::as_str)
                .ok_or("expected {\"choice\": \"a\"|\"b\"|\"tie\"|\"both_bad\"}")?;
            let s = match a.get("strength") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let s = v.as_i64().filter(|s| (1..=3).contains(s)).ok_or("strength must be 1, 2 or 3")?;
                    if !strength {
                        return Err("this question takes no strength".into());
                    }
                    Some(s)
                }
            };
            match choice {
                "a" | "b" => {
                    let pos = usize::from(choice == "b");
                    let winner = order[pos];
                    let loser = order[1 - pos];
                    Ok(
                        json!({"outcome": "win", "winner": winner, "loser": loser, "winner_position": pos, "strength": s}),
                    )
                }
                "tie" if *allow_tie => Ok(json!({"outcome": "tie", "strength": Value::Null})),
                "both_bad" if *allow_both_bad => Ok(json!({"outcome": "both_bad", "strength": Value::Null})),
                other => Err(format!("choice `{other}` is not allowed here")),
            }
        }
        QuestionKind::Ranking => {
            let arr = a
                .get("order")
                .and_then(Value::as_array)
                .ok_or("expected {\"order\": [display positions, best first]}")?;
            let mut seen = vec![false; order.len()];
            let mut ranking = Vec::with_capacity(order.len());
            for v in arr {
                let p = v.as_u64().map(|p| p as usize).filter(|p| *p < order.len()).ok_or("positions must be 0..n")?;
                if std::mem::replace(&mut seen[p], true) {
                    return Err("each position must appear once".into());
                }
                ranking.push(order[p]);
            }
            if ranking.len() != order.len() {
                return Err(format!("rank all {} responses", order.len()));
            }
            Ok(json!({ "ranking": ranking }))
        }
        QuestionKind::Likert { aspects, min, max, .. } => {
            let obj = a.as_object().ok_or("expected {aspect: [rating per response]}")?;
            let mut out = Map::new();
            for aspect in aspects {
                let per = per_response(obj.get(aspect).ok_or_else(|| format!("missing aspect `{aspect}`"))?, order)?;
                let vals = per
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .filter(|v| (*min..=*max).contains(v))
                            .ok_or(format!("`{aspect}` ratings must be integers in {min}..={max}"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                out.insert(aspect.clone(), json!(vals));
            }
            Ok(Value::Object(out))
        }
        QuestionKind::Thumbs => {
            let per = per_response(a, order)?;
            let vals = per
                .iter()
                .map(|v| v.as_bool().ok_or("thumbs are true (up) or false (down)"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(json!(vals))
        }
        QuestionKind::Spans { tags } => {
            let per = per_response(a, order)?;
            let mut out = Vec::new();
            for (idx, spans) in per.iter().enumerate() {
                let len = responses[idx].chars().count() as u64;
                let spans = spans.as_array().ok_or("expected a list of spans per response")?;
                if spans.len() > 200 {
                    return Err("at most 200 spans per response".into());
                }
                let mut list = Vec::new();
                for s in spans {
                    let start = s.get("start").and_then(Value::as_u64).ok_or("span needs integer `start`")?;
                    let end = s.get("end").and_then(Value::as_u64).ok_or("span needs integer `end`")?;
                    let tag = s.get("tag").and_then(Value::as_str).ok_or("span needs `tag`")?;
                    if start >= end || end > len {
                        return Err(format!("span {start}..{end} is outside the response (length {len} characters)"));
                    }
                    if !tags.iter().any(|t| t == tag) {
                        return Err(format!("unknown tag `{tag}`"));
                    }
                    list.push(json!({"start": start, "end": end, "tag": tag}));
                }
                out.push(Value::Array(list));
            }
            Ok(Value::Array(out))
        }
        QuestionKind::Critique { .. } => {
            let per = per_response(a, order)?;
            let vals = per
                .iter()
                .map(|v| match v.as_str() {
                    Some(s) if s.len() <= MAX_TEXT => Ok(s.to_string()),
                    Some(_) => Err(format!("text longer than {MAX_TEXT} bytes")),
                    None => Err("expected a string per response".to_string()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(json!(vals))
        }
        QuestionKind::Principles { principles } => {
            let per = per_response(a, order)?;
            let mut out = Vec::new();
            for v in per {
                let checks = v
                    .as_array()
                    .filter(|c| c.len() == principles.len())
                    .ok_or(format!("expected {} yes/no checks per response", principles.len()))?;
                out.push(
                    checks
                        .iter()
                        .map(|c| c.as_bool().ok_or("checks are true or false"))
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                );
            }
            Ok(json!(out))
        }
    }
}

/// A nominal value for agreement and majority: the outcome of a pairwise question, the
/// top choice of a ranking, or None for kinds without one label per item.
pub fn nominal_label(q: &Question, answer: &Value) -> Option<String> {
    match q.kind {
        QuestionKind::Pairwise { .. } => match answer.get("outcome")?.as_str()? {
            "win" => Some(answer.get("winner")?.to_string()),
            other => Some(other.to_string()),
        },
        QuestionKind::Ranking => Some(answer.get("ranking")?.to_string()),
        QuestionKind::Thumbs => Some(answer.to_string()),
        _ => None,
    }
}

/// Does a stored answer match the gold one? Gold gives, per question name, the expected
/// answer: a winner index or "tie"/"both_bad" (pairwise), a best-first index list (ranking),
/// or the canonical stored form (other kinds). Questions absent from gold are not checked.
pub fn matches_gold(cfg: &ProjectConfig, gold: &Value, answer: &Value) -> bool {
    let Some(gold) = gold.as_object() else {
        return false;
    };
    gold.iter().all(|(name, expected)| {
        let Some(q) = cfg.questions.iter().find(|q| &q.name == name) else {
            return true;
        };
        let Some(got) = answer.get(name) else {
            return false;
        };
        match q.kind {
            QuestionKind::Pairwise { .. } => match expected {
                Value::Number(n) => {
                    got.get("outcome") == Some(&json!("win")) && got.get("winner").and_then(Value::as_u64) == n.as_u64()
                }
                Value::String(s) => got.get("outcome").and_then(Value::as_str) == Some(s),
                _ => false,
            },
            QuestionKind::Ranking => got.get("ranking") == Some(expected),
            _ => got == expected,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProjectConfig {
        ProjectConfig::parse(&json!({"questions": [
            {"name": "pref", "kind": "pairwise", "strength": true},
            {"name": "rate", "kind": "likert", "aspects": ["helpfulness"]},
            {"name": "spans", "kind": "spans", "tags": ["wrong"]}
        ]}))
        .unwrap()
    }

    #[test]
    fn answers_are_mapped_from_display_to_item_order() {
        let order = [1, 0];
        let responses = vec!["abc".to_string(), "defgh".to_string()];
        let a = json!({"pref": {"choice": "a", "strength": 2}, "rate": {"helpfulness": [5, 1]}, "spans": [[{"start": 0, "end": 5, "tag": "wrong"}], []]});
        let c = cfg().canonicalize(&a, &order, &responses).unwrap();
        assert_eq!(c["pref"]["winner"], 1);
        assert_eq!(c["pref"]["winner_position"], 0);
        assert_eq!(c["rate"]["helpfulness"], json!([1, 5]));
        assert_eq!(c["spans"][1][0]["end"], 5);
    }

    #[test]
    fn bad_answers_are_rejected_with_the_question_named() {
        let responses = vec!["abc".to_string(), "de".to_string()];
        let cfg = cfg();
        let bad_span = json!({"pref": {"choice": "a"}, "rate": {"helpfulness": [5, 1]}, "spans": [[{"start": 0, "end": 9, "tag": "wrong"}], []]});
        let e = cfg.canonicalize(&bad_span, &[0, 1], &responses).unwrap_err().to_string();
        assert!(e.contains("spans") && e.contains("outside"), "{e}");
        let bad_rating = json!({"pref": {"choice": "a"}, "rate": {"helpfulness": [9, 1]}, "spans": [[], []]});
        assert!(cfg.canonicalize(&bad_rating, &[0, 1], &responses).is_err());
        assert!(ProjectConfig::parse(&json!({"questions": []})).is_err());
        assert!(ProjectConfig::parse(&json!({"questions": [{"name": "x", "kind": "nope"}]})).is_err());
    }

    #[test]
    fn gold_matching() {
        let cfg = cfg();
        let ans = json!({"pref": {"outcome": "win", "winner": 1}});
        assert!(matches_gold(&cfg, &json!({"pref": 1}), &ans));
        assert!(!matches_gold(&cfg, &json!({"pref": 0}), &ans));
        assert!(!matches_gold(&cfg, &json!({"pref": "tie"}), &ans));
    }

    #[test]
    fn unknown_question_keys_are_refused_with_the_known_ones() {
        let q = json!({"questions": [{"name": "pref", "kind": "pairwise", "optinal": true}]});
        let e = ProjectConfig::parse(&q).unwrap_err().to_string();
        assert!(e.contains("question `pref`: unknown key `optinal`"), "{e}");
        assert!(e.contains("allow_tie") && e.contains("strength") && e.contains("help"), "{e}");
        let q = json!({"questions": [{"name": "r", "kind": "ranking", "label": "Rank", "help": "h"},
                                     {"name": "t", "kind": "thumbs"},
                                     {"name": "l", "kind": "likert", "aspects": ["a"], "scale_labels": []}]});
        assert!(ProjectConfig::parse(&q).is_ok());
        let q = json!({"questions": [{"name": "t", "kind": "thumbs", "tags": ["x"]}]});
        let e = ProjectConfig::parse(&q).unwrap_err().to_string();
        assert!(e.contains("unknown key `tags`") && e.contains("a thumbs question takes: "), "{e}");
        let known = e.rsplit("takes: ").next().unwrap_or_default();
        let mut known: Vec<&str> = known.split(", ").collect();
        known.sort();
        assert_eq!(known, ["help", "kind", "label", "name"], "{e}");
    }

    #[test]
    fn scale_labels_need_one_label_per_point() {
        let q = json!({"questions": [{"name": "q", "kind": "likert", "aspects": ["a"], "min": 1, "max": 5, "scale_labels": ["bad", "good"]}]});
        let e = ProjectConfig::parse(&q).unwrap_err().to_string();
        assert!(e.contains("scale_labels has 2 labels but the scale 1..5 has 5 points"), "{e}");
    }
}
