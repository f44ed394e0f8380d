//! Annotators fix their own labels; reviewers check them. The rules, as functions over the
//! stored rows (`submissions` stay append-only; edits and verdicts are `revisions`):
//!
//! - A label's effective answer is its latest `edit` or the reviewer's `correct`ion; the
//!   first verdict (`accept`, `correct`, `reject`) ends editing. A rejected label is left
//!   out of every reader (exports, stats, agreement, consensus) and its slot is freed.
//! - An annotator may edit their [`EDITABLE_RECENT`] most recent labels while unreviewed.
//! - Items whose effective labels disagree (a tie, or a majority share below the project's
//!   `adjudicate_below`) go to adjudication; the reviewer's final answer wins in the
//!   `consensus` export.
use crate::consensus::majority;
use crate::db::{Adjudication, Db, Item, Revision, Submission};
use crate::error::Result;
use crate::export::{self, is_validation, Exported};
use crate::tasks::{matches_gold, nominal_label, ProjectConfig, QuestionKind};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// How many of their most recent labels an annotator can go back to and change.
pub const EDITABLE_RECENT: i64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pending,
    Accepted,
    Corrected,
    Rejected,
}

/// What the revisions made of one submission.
#[derive(Clone, Debug, Serialize)]
pub struct LabelState {
    /// The effective answer (item order).
    pub answer: Value,
    pub edited: bool,
    pub verdict: Verdict,
    pub reviewer: Option<String>,
    pub reason: Option<String>,
}

/// The state of every submission after its revisions (applied oldest first).
pub fn states(subs: &[Submission], revs: &[Revision]) -> HashMap<String, LabelState> {
    let mut out: HashMap<String, LabelState> = subs
        .iter()
        .map(|s| {
            let st = LabelState {
                answer: s.answer.clone(),
                edited: false,
                verdict: Verdict::Pending,
                reviewer: None,
                reason: None,
            };
            (s.id.clone(), st)
        })
        .collect();
    for r in revs {
        let Some(st) = out.get_mut(&r.submission_id) else { continue };
        if st.verdict != Verdict::Pending {
            continue;
        }
        match r.action.as_str() {
            "edit" => {
                if let Some(a) = &r.answer {
                    st.answer = a.clone();
                    st.edited = true;
                }
            }
            "accept" | "correct" | "reject" => {
                st.reviewer = Some(r.user_id.clone());
                st.verdict = match r.action.as_str() {
                    "accept" => Verdict::Accepted,
                    "correct" => Verdict::Corrected,
                    _ => Verdict::Rejected,
                };
                if let (Verdict::Corrected, Some(a)) = (st.verdict, &r.answer) {
                    st.answer = a.clone();
                }
                st.reason.clone_from(&r.note);
            }
            _ => {}
        }
    }
    out
}

/// The submissions every reader uses: effective answers, rejected labels left out.
pub fn effective(subs: Vec<Submission>, revs: &[Revision]) -> Vec<Submission> {
    let st = states(&subs, revs);
    subs.into_iter()
        .filter_map(|mut s| {
            let state = st.get(&s.id)?;
            if state.verdict == Verdict::Rejected {
                return None;
            }
            s.answer = state.answer.clone();
            Some(s)
        })
        .collect()
}

pub async fn effective_submissions(db: &Db, project_id: &str) -> Result<Vec<Submission>> {
    Ok(effective(db.submissions(project_id).await?, &db.revisions(project_id).await?))
}

/// A stored answer (item order) as the label form takes it (display positions `order`):
/// the inverse of `ProjectConfig::canonicalize`, used to pre-fill the form.
pub fn to_display(cfg: &ProjectConfig, answer: &Value, order: &[usize]) -> Value {
    let pos_of = |idx: &Value| idx.as_u64().and_then(|i| order.iter().position(|&o| o as u64 == i));
    let per = |a: &Value| -> Value {
        let arr = a.as_array().cloned().unwrap_or_default();
        Value::Array(order.iter().map(|&i| arr.get(i).cloned().unwrap_or(Value::Null)).collect())
    };
    let mut out = Map::new();
    for q in &cfg.questions {
        let Some(a) = answer.get(&q.name) else { continue };
        let v = match &q.kind {
            QuestionKind::Pairwise { .. } => {
                let choice = match a["outcome"].as_str() {
                    Some("win") => match pos_of(&a["winner"]) {
                        Some(0) => json!("a"),
                        Some(_) => json!("b"),
                        None => Value::Null,
                    },
                    Some(other) => json!(other),
                    None => Value::Null,
                };
                json!({"choice": choice, "strength": a.get("strength").cloned().unwrap_or(Value::Null)})
            }
            QuestionKind::Ranking => {
                let ranking = a["ranking"].as_array().cloned().unwrap_or_default();
                json!({"order": ranking.iter().filter_map(pos_of).collect::<Vec<_>>()})
            }
            QuestionKind::Likert { aspects, .. } => {
                Value::Object(aspects.iter().map(|asp| (asp.clone(), per(&a[asp]))).collect())
            }
            _ => per(a),
        };
        out.insert(q.name.clone(), v);
    }
    Value::Object(out)
}

/// A gold answer (see `matches_gold`: a winner index or "tie"/"both_bad" for pairwise, a
/// best-first list for ranking, the stored form otherwise) in the stored form.
pub fn gold_answer(cfg: &ProjectConfig, gold: &Value) -> Value {
    let mut out = Map::new();
    for q in &cfg.questions {
        let Some(g) = gold.get(&q.name) else { continue };
        let v = match &q.kind {
            QuestionKind::Pairwise { .. } => match g {
                Value::Number(n) => {
                    let w = n.as_u64().unwrap_or(0);
                    json!({"outcome": "win", "winner": w, "loser": u64::from(w == 0), "strength": null})
                }
                other => json!({"outcome": other, "strength": null}),
            },
            QuestionKind::Ranking => json!({ "ranking": g }),
            _ => g.clone(),
        };
        out.insert(q.name.clone(), v);
    }
    Value::Object(out)
}

fn letter(p: usize) -> char {
    char::from(b'A' + (p % 26) as u8)
}

/// A display-form answer in words, per question: "preference: A better (strength 2)".
pub fn describe(cfg: &ProjectConfig, display: &Value) -> String {
    let mut parts = Vec::new();
    for q in &cfg.questions {
        let Some(a) = display.get(&q.name) else { continue };
        let list = |a: &Value, f: &dyn Fn(&Value) -> String| -> String {
            let items: Vec<String> = a
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(p, v)| format!("{} {}", letter(p), f(v)))
                .collect();
            items.join(", ")
        };
        let text = match &q.kind {
            QuestionKind::Pairwise { .. } => {
                let base = match a["choice"].as_str() {
                    Some("a") => "A better".to_string(),
                    Some("b") => "B better".to_string(),
                    Some("both_bad") => "both bad".to_string(),
                    Some(other) => other.to_string(),
                    None => "-".to_string(),
                };
                match a["strength"].as_i64() {
                    Some(s) => format!("{base} (strength {s})"),
                    None => base,
                }
            }
            QuestionKind::Ranking => {
                let order: Vec<String> = a["order"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_u64().map(|p| letter(p as usize).to_string()))
                    .collect();
                order.join(" > ")
            }
            QuestionKind::Likert { aspects, .. } => {
                let per: Vec<String> =
                    aspects.iter().map(|asp| format!("{asp} {}", list(&a[asp], &|v| v.to_string()))).collect();
                per.join("; ")
            }
            QuestionKind::Thumbs => list(a, &|v| if v == &json!(true) { "up".into() } else { "down".into() }),
            QuestionKind::Spans { .. } => list(a, &|v| format!("{} span(s)", v.as_array().map_or(0, Vec::len))),
            QuestionKind::Critique { .. } => list(a, &|v| {
                let t = v.as_str().unwrap_or_default();
                let short: String = t.chars().take(60).collect();
                if short.len() < t.len() {
                    format!("\"{short}...\"")
                } else {
                    format!("\"{short}\"")
                }
            }),
            QuestionKind::Principles { .. } => list(a, &|v| {
                let yes = v.as_array().into_iter().flatten().filter(|c| c == &&json!(true)).count();
                format!("{yes}/{} yes", v.as_array().map_or(0, Vec::len))
            }),
        };
        parts.push(format!("{}: {text}", q.label()));
    }
    parts.join("; ")
}

/// Gold feedback for one label: did it match, and the expected answer in the positions
/// the annotator saw. None for items without gold.
pub fn gold_check(cfg: &ProjectConfig, item: &Item, s: &Submission, answer: &Value) -> Option<Value> {
    let gold = item.gold.as_ref()?;
    let expected = to_display(cfg, &gold_answer(cfg, gold), &s.display_order);
    Some(json!({"matched": matches_gold(cfg, gold, answer), "expected": describe(cfg, &expected)}))
}

/// An item whose effective labels disagree, with the questions that do.
pub struct Disagreement<'a> {
    pub item: &'a Item,
    pub labels: Vec<&'a Submission>,
    pub questions: Vec<String>,
}

/// Items with two or more effective labels where a question's vote is a tie or its
/// majority share is below `adjudicate_below`, not yet adjudicated; import order.
pub fn disagreements<'a>(
    cfg: &ProjectConfig,
    items: &'a [Item],
    subs: &'a [Submission],
    adjudicated: &HashMap<&str, &Adjudication>,
) -> Vec<Disagreement<'a>> {
    let mut by_item: HashMap<&str, Vec<&Submission>> = HashMap::new();
    for s in subs.iter().filter(|s| s.kind == "label") {
        by_item.entry(s.item_id.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    for item in items {
        let Some(labels) = by_item.remove(item.id.as_str()) else { continue };
        if labels.len() < 2 || adjudicated.contains_key(item.id.as_str()) {
            continue;
        }
        let questions: Vec<String> = cfg
            .questions
            .iter()
            .filter(|q| {
                let votes: Vec<String> = labels.iter().filter_map(|s| nominal_label(q, &s.answer[&q.name])).collect();
                votes.len() >= 2 && majority(&votes).is_none_or(|(_, share)| share < cfg.adjudicate_below)
            })
            .map(|q| q.name.clone())
            .collect();
        if !questions.is_empty() {
            out.push(Disagreement { item, labels, questions });
        }
    }
    out
}

/// The latest adjudication per item id.
pub fn latest_adjudications(adj: &[Adjudication]) -> HashMap<&str, &Adjudication> {
    adj.iter().map(|a| (a.item_id.as_str(), a)).collect()
}

/// One record per item with effective labels: the reviewer's adjudicated answer, else the
/// majority answer of each question that has one label per item (pairwise, ranking,
/// thumbs). Items with a tied question wait for adjudication and are left out; other kinds
/// (likert, spans, critiques, principles) are in the per-vote formats only. A pairwise win
/// also gives `chosen`/`rejected`, so the file trains `reins dpo` as is.
pub fn consensus_records(
    cfg: &ProjectConfig,
    items: &[Item],
    subs: &[Submission],
    adj: &[Adjudication],
    usernames: &HashMap<String, String>,
) -> Vec<(String, Value)> {
    let adjudicated = latest_adjudications(adj);
    let mut by_item: HashMap<&str, Vec<&Submission>> = HashMap::new();
    for s in subs.iter().filter(|s| s.kind == "label") {
        by_item.entry(s.item_id.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    for item in items {
        let labels = by_item.get(item.id.as_str()).cloned().unwrap_or_default();
        let (answer, source, decided_by) = if let Some(a) = adjudicated.get(item.id.as_str()) {
            let who = usernames.get(&a.user_id).cloned().unwrap_or_else(|| a.user_id.clone());
            (a.answer.clone(), "adjudicated", Some(who))
        } else {
            if labels.is_empty() {
                continue;
            }
            let mut answer = Map::new();
            let mut tied = false;
            for q in &cfg.questions {
                let votes: Vec<(String, &Value)> = labels
                    .iter()
                    .filter_map(|s| Some((nominal_label(q, &s.answer[&q.name])?, &s.answer[&q.name])))
                    .collect();
                if votes.is_empty() {
                    continue;
                }
                let names: Vec<String> = votes.iter().map(|v| v.0.clone()).collect();
                match majority(&names) {
                    Some((m, _)) => {
                        if let Some((_, v)) = votes.iter().find(|v| v.0 == m) {
                            answer.insert(q.name.clone(), (*v).clone());
                        }
                    }
                    None => tied = true,
                }
            }
            if tied || answer.is_empty() {
                continue;
            }
            (Value::Object(answer), "majority", None)
        };
        let mut r = json!({"prompt": item.prompt, "responses": item.responses, "answer": answer,
                           "source": source, "labels": labels.len(), "item_id": item.external_id,
                           "annotator": decided_by});
        let win = cfg.questions.iter().find_map(|q| {
            let a = &r["answer"][&q.name];
            matches!(q.kind, QuestionKind::Pairwise { .. } if a["outcome"] == "win")
                .then(|| (a["winner"].as_u64(), a["loser"].as_u64()))
        });
        if let Some((Some(w), Some(l))) = win {
            r["chosen"] = json!(item.responses.get(w as usize));
            r["rejected"] = json!(item.responses.get(l as usize));
        }
        out.push((item.external_id.clone(), r));
    }
    out
}

/// Every export through the review rules: per-vote formats read the effective labels
/// (edits and corrections applied, rejected labels left out); `consensus` is one record per
/// item (see [`consensus_records`]); `raw` keeps every stored submission as it was sent and
/// adds its `review` verdict and `effective_answer` (null when rejected).
pub async fn export(db: &Db, project_id: &str, format: &str, split: f64) -> Result<Exported> {
    let p = db.project(project_id).await?;
    let cfg = ProjectConfig::parse(&p.config)?;
    let items = db.items(project_id).await?;
    let subs = db.submissions(project_id).await?;
    let revs = db.revisions(project_id).await?;
    let names = db.usernames().await?;
    if format == "consensus" {
        if !(0.0..=1.0).contains(&split) {
            return Err(crate::error::bad("split must be a fraction within 0..=1"));
        }
        let eff = effective(subs, &revs);
        let adj = db.adjudications(project_id).await?;
        let mut out = Exported::default();
        for (id, r) in consensus_records(&cfg, &items, &eff, &adj, &names) {
            if is_validation(&id, split) {
                out.validation.push(r)
            } else {
                out.train.push(r)
            }
        }
        return Ok(out);
    }
    if format == "raw" {
        let st = states(&subs, &revs);
        let mut e = export::export(format, &cfg, &items, &subs, &names, split)?;
        for r in e.train.iter_mut().chain(e.validation.iter_mut()) {
            if let Some(s) = r["submission_id"].as_str().and_then(|id| st.get(id)) {
                r["review"] = json!(s.verdict);
                r["edited"] = json!(s.edited);
                r["effective_answer"] = if s.verdict == Verdict::Rejected { Value::Null } else { s.answer.clone() };
            }
        }
        return Ok(e);
    }
    export::export(format, &cfg, &items, &effective(subs, &revs), &names, split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, answer: Value) -> Submission {
        Submission {
            id: id.into(),
            idempotency_key: id.into(),
            project_id: "p".into(),
            item_id: "i".into(),
            user_id: "u".into(),
            assignment_id: id.into(),
            kind: "label".into(),
            answer,
            display_order: vec![1, 0],
            skip_reason: None,
            time_ms: 0,
            created_at: 0,
        }
    }

    fn rev(sid: &str, action: &str, answer: Option<Value>, t: i64) -> Revision {
        Revision {
            id: format!("{sid}-{t}"),
            project_id: "p".into(),
            submission_id: sid.into(),
            user_id: "r".into(),
            action: action.into(),
            answer,
            note: None,
            created_at: t,
        }
    }

    /// The latest edit counts until a verdict; a correction replaces the answer; a rejected
    /// label is left out; revisions after the verdict change nothing.
    #[test]
    fn effective_answers_follow_edits_and_verdicts() {
        let subs = vec![sub("s1", json!(1)), sub("s2", json!(1)), sub("s3", json!(1))];
        let revs = vec![
            rev("s1", "edit", Some(json!(2)), 1),
            rev("s1", "edit", Some(json!(3)), 2),
            rev("s2", "correct", Some(json!(5)), 3),
            rev("s2", "edit", Some(json!(6)), 4),
            rev("s3", "reject", None, 5),
        ];
        let eff = effective(subs, &revs);
        let answers: Vec<(&str, &Value)> = eff.iter().map(|s| (s.id.as_str(), &s.answer)).collect();
        assert_eq!(answers, vec![("s1", &json!(3)), ("s2", &json!(5))]);
    }

    /// The form's positions come back from the stored item order, for every kind.
    #[test]
    fn display_form_inverts_canonicalize() {
        let cfg = ProjectConfig::parse(&json!({"questions": [
            {"name": "pref", "kind": "pairwise", "strength": true},
            {"name": "rank", "kind": "ranking"},
            {"name": "q", "kind": "likert", "aspects": ["h"]},
            {"name": "t", "kind": "thumbs"}]}))
        .unwrap();
        let order = [2, 0, 1];
        let shown = json!({"pref": {"choice": "b", "strength": 2}, "rank": {"order": [2, 0, 1]},
                           "q": {"h": [5, 4, 3]}, "t": [true, false, false]});
        let responses = vec!["x".to_string(), "y".into(), "z".into()];
        let stored = cfg.canonicalize(&shown, &order, &responses).unwrap();
        assert_eq!(to_display(&cfg, &stored, &order), shown);
        assert_eq!(describe(&cfg, &shown).split("; ").next(), Some("pref: B better (strength 2)"));
    }

    #[test]
    fn gold_expected_answer_is_in_the_annotators_positions() {
        let cfg = ProjectConfig::parse(&json!({"questions": [{"name": "pref", "kind": "pairwise"}]})).unwrap();
        let g = gold_answer(&cfg, &json!({"pref": 0}));
        // Response 0 was shown second (B).
        assert_eq!(describe(&cfg, &to_display(&cfg, &g, &[1, 0])), "pref: B better");
        assert!(matches_gold(&cfg, &json!({"pref": 0}), &g));
    }
}
