//! Model suggestions: answers a model (a reward model, a judge, an earlier labeller) proposes
//! per question. They arrive with the items (`"suggestions"` and `"suggestion_source"` on an
//! import line), are validated like answers, are shown pre-filled and marked on the label
//! page, and every submission records per question whether the person kept the suggested
//! answer unchanged. Exports hold only the person's answers.
use crate::db::Suggestions;
use crate::pages::Field;
use crate::tasks::{canonical_answer, ProjectConfig, Question, QuestionKind};
use serde_json::{json, Map, Value};

/// Longest `suggestion_source` accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 200;

/// Checks an import line's `suggestions` against the project's questions and returns them in
/// the stored form. They are written as the submit API takes answers, with positions in the
/// item's own order (`"a"` is the first response): `{"preference": {"choice": "a"}}`.
pub fn parse(
    cfg: &ProjectConfig,
    raw: &Value,
    source: Option<&Value>,
    responses: &[String],
) -> Result<Suggestions, String> {
    let obj = raw.as_object().filter(|o| !o.is_empty()).ok_or(
        "`suggestions` must be a non-empty object: {\"<question name>\": <answer as the submit API takes it>}",
    )?;
    let identity: Vec<usize> = (0..responses.len()).collect();
    let mut answers = Map::new();
    for (name, a) in obj {
        let Some(q) = cfg.questions.iter().find(|q| &q.name == name) else {
            let names: Vec<&str> = cfg.questions.iter().map(|q| q.name.as_str()).collect();
            return Err(format!(
                "suggestion for unknown question `{name}`; this project's questions: {}",
                names.join(", ")
            ));
        };
        let c = canonical_answer(q, a, &identity, responses).map_err(|e| format!("suggestion for `{name}`: {e}"))?;
        answers.insert(name.clone(), c);
    }
    let source = match source {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_SOURCE_BYTES => Some(s.clone()),
        Some(_) => return Err(format!("`suggestion_source` must be a name of 1-{MAX_SOURCE_BYTES} bytes")),
    };
    Ok(Suggestions { answers: Value::Object(answers), source })
}

/// Two stored answers to `q` say the same. A pairwise answer also records the position the
/// winner was shown at, which differs between people and is not part of the judgement.
fn same(q: &Question, a: &Value, b: &Value) -> bool {
    match q.kind {
        QuestionKind::Pairwise { .. } => {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("winner_position");
                }
                v
            };
            strip(a) == strip(b)
        }
        _ => a == b,
    }
}

/// `{question: kept unchanged?}` for each suggested question of a stored answer.
pub fn kept(cfg: &ProjectConfig, suggested: &Value, answer: &Value) -> Value {
    let mut out = Map::new();
    for q in &cfg.questions {
        if let Some(s) = suggested.get(&q.name) {
            out.insert(q.name.clone(), json!(answer.get(&q.name).is_some_and(|a| same(q, s, a))));
        }
    }
    Value::Object(out)
}

/// The suggested value of one label-page field, in display positions, as the page's script
/// reads it: an option's `data-value` for choices, display positions best first for a
/// ranking, a span list or a text for the others. None when it cannot be shown there.
fn field_value(q: &Question, stored: &Value, sub: &str, pos: Option<usize>, order: &[usize]) -> Option<Value> {
    let item_index = |pos: Option<usize>| pos.and_then(|p| order.get(p).copied());
    let flag = |v: &Value| v.as_bool().map(|b| json!(b.to_string()));
    match &q.kind {
        QuestionKind::Pairwise { .. } if sub == "choice" => match stored.get("outcome")?.as_str()? {
            "win" => {
                let winner = stored.get("winner")?.as_u64()? as usize;
                let loser = stored.get("loser")?.as_u64()? as usize;
                match (order.first(), order.get(1)) {
                    (Some(&a), Some(&b)) if (a, b) == (winner, loser) => Some(json!("a")),
                    (Some(&a), Some(&b)) if (a, b) == (loser, winner) => Some(json!("b")),
                    _ => None,
                }
            }
            other => Some(json!(other)),
        },
        QuestionKind::Pairwise { .. } => stored.get("strength")?.as_i64().map(|s| json!(s.to_string())),
        QuestionKind::Ranking => {
            let ranking = stored.get("ranking")?.as_array()?;
            let shown: Option<Vec<usize>> =
                ranking.iter().map(|i| i.as_u64().and_then(|i| order.iter().position(|&o| o == i as usize))).collect();
            shown.map(|s| json!(s))
        }
        QuestionKind::Likert { .. } => stored.get(sub)?.get(item_index(pos)?)?.as_i64().map(|v| json!(v.to_string())),
        QuestionKind::Thumbs => flag(stored.get(item_index(pos)?)?),
        QuestionKind::Spans { .. } | QuestionKind::Critique { .. } => stored.get(item_index(pos)?).cloned(),
        QuestionKind::Principles { .. } => {
            let i: usize = sub.parse().ok()?;
            flag(stored.get(item_index(pos)?)?.get(i)?)
        }
    }
}

/// The suggestions as the submit API takes answers, in this assignment's display positions
/// (what `GET /next` returns): submitting them unchanged keeps every suggestion. A pairwise
/// suggestion whose two responses are not the two shown first is left out.
pub fn in_display_positions(cfg: &ProjectConfig, s: &Suggestions, order: &[usize]) -> Value {
    let per = |v: &Value| -> Option<Value> {
        order.iter().map(|&i| v.get(i).cloned()).collect::<Option<Vec<_>>>().map(Value::from)
    };
    let mut out = Map::new();
    for q in &cfg.questions {
        let Some(stored) = s.answers.get(&q.name) else { continue };
        let shown = match &q.kind {
            QuestionKind::Pairwise { .. } => field_value(q, stored, "choice", None, order).map(|choice| {
                let mut a = json!({"choice": choice});
                if let Some(strength) = stored.get("strength").filter(|v| !v.is_null()) {
                    a["strength"] = strength.clone();
                }
                a
            }),
            QuestionKind::Ranking => field_value(q, stored, "", None, order).map(|o| json!({"order": o})),
            QuestionKind::Likert { aspects, .. } => aspects
                .iter()
                .map(|a| Some((a.clone(), per(stored.get(a)?)?)))
                .collect::<Option<Map<String, Value>>>()
                .map(Value::Object),
            _ => per(stored),
        };
        if let Some(v) = shown {
            out.insert(q.name.clone(), v);
        }
    }
    Value::Object(out)
}

/// Marks the fields that have a suggested answer (`Field::suggested`, JSON text).
pub fn annotate(fields: &mut [Field], cfg: &ProjectConfig, s: &Suggestions, order: &[usize]) {
    for f in fields {
        let Some(q) = cfg.questions.iter().find(|q| q.name == f.q) else { continue };
        if let Some(stored) = s.answers.get(&q.name) {
            f.suggested = field_value(q, stored, &f.sub, f.pos, order).map(|v| v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProjectConfig {
        ProjectConfig::parse(&json!({"questions": [
            {"name": "pref", "kind": "pairwise", "strength": true},
            {"name": "quality", "kind": "likert", "aspects": ["helpfulness"]},
            {"name": "ok", "kind": "thumbs"}
        ]}))
        .unwrap()
    }

    #[test]
    fn suggestions_are_checked_against_the_questions() {
        let r = vec!["x".to_string(), "y".to_string()];
        let e = parse(&cfg(), &json!({"prefernce": {"choice": "a"}}), None, &r).unwrap_err();
        assert!(e.contains("unknown question `prefernce`") && e.contains("pref, quality, ok"), "{e}");
        let e = parse(&cfg(), &json!({"quality": {"helpfulness": [9, 1]}}), None, &r).unwrap_err();
        assert!(e.contains("suggestion for `quality`") && e.contains("1..=5"), "{e}");
        let s = parse(&cfg(), &json!({"pref": {"choice": "b", "strength": 2}}), Some(&json!("rm-v1")), &r).unwrap();
        assert_eq!(s.answers["pref"]["winner"], 1);
        assert_eq!(s.source.as_deref(), Some("rm-v1"));
    }

    #[test]
    fn fields_are_prefilled_in_display_positions() {
        let cfg = ProjectConfig::parse(&json!({"questions": [
            {"name": "pref", "kind": "pairwise", "strength": true},
            {"name": "rank", "kind": "ranking"},
            {"name": "quality", "kind": "likert", "aspects": ["helpfulness"]},
            {"name": "ok", "kind": "thumbs"},
            {"name": "issues", "kind": "spans", "tags": ["wrong"]},
            {"name": "note", "kind": "critique"},
            {"name": "rules", "kind": "principles", "principles": ["honest"]}
        ]}))
        .unwrap();
        let r: Vec<String> = ["x", "yy", "zzz"].iter().map(|s| s.to_string()).collect();
        let s = parse(
            &cfg,
            &json!({"pref": {"choice": "a", "strength": 3}, "rank": {"order": [2, 0, 1]}, "quality": {"helpfulness": [1, 2, 3]},
                    "ok": [true, false, true], "issues": [[], [{"start": 0, "end": 1, "tag": "wrong"}], []],
                    "note": ["n0", "n1", "n2"], "rules": [[true], [false], [true]]}),
            None,
            &r,
        )
        .unwrap();
        // Shown: item 1 at A, item 0 at B, item 2 at C.
        let order = [1, 0, 2];
        let mut fields = crate::pages::fields::fields(&cfg, 3);
        annotate(&mut fields, &cfg, &s, &order);
        let first = |q: &str| {
            fields
                .iter()
                .find(|f| f.q == q && f.pos.unwrap_or(0) == 0)
                .and_then(|f| f.suggested.clone())
                .unwrap_or_default()
        };
        assert_eq!(first("pref"), "\"b\"", "item 0 won and is shown at B");
        assert_eq!(fields[1].suggested.as_deref(), Some("\"3\""), "strength");
        assert_eq!(first("rank"), "[2,1,0]");
        assert_eq!(first("quality"), "\"2\"");
        assert_eq!(first("ok"), "\"false\"");
        assert_eq!(first("issues"), json!([{"start": 0, "end": 1, "tag": "wrong"}]).to_string());
        assert_eq!(first("note"), "\"n1\"");
        assert_eq!(first("rules"), "\"false\"");
        // As the API shows them: submitted unchanged, every suggestion counts as kept.
        let shown = in_display_positions(&cfg, &s, &order);
        assert_eq!(shown["pref"], json!({"choice": "b", "strength": 3}));
        assert_eq!(shown["quality"], json!({"helpfulness": [2, 1, 3]}));
        let answer = cfg.canonicalize(&shown, &order, &r).unwrap();
        let all_kept = cfg.questions.iter().map(|q| (q.name.clone(), json!(true))).collect::<Map<_, _>>();
        assert_eq!(kept(&cfg, &s.answers, &answer), Value::Object(all_kept));
        // Shown with item 2 first, the pairwise suggestion (item 0 over item 1) has no place.
        let mut fields = crate::pages::fields::fields(&cfg, 3);
        annotate(&mut fields, &cfg, &s, &[2, 0, 1]);
        assert_eq!(fields[0].suggested, None);
    }

    #[test]
    fn a_kept_pairwise_suggestion_is_kept_whatever_the_display_order() {
        let cfg = cfg();
        let r = vec!["x".to_string(), "y".to_string()];
        let s = parse(&cfg, &json!({"pref": {"choice": "a", "strength": 2}, "ok": [true, false]}), None, &r).unwrap();
        // Shown swapped: the first response is at position B.
        let same =
            json!({"pref": {"choice": "b", "strength": 2}, "quality": {"helpfulness": [3, 3]}, "ok": [false, true]});
        let answer = cfg.canonicalize(&same, &[1, 0], &r).unwrap();
        assert_eq!(kept(&cfg, &s.answers, &answer), json!({"pref": true, "ok": true}));
        let other =
            json!({"pref": {"choice": "b", "strength": 3}, "quality": {"helpfulness": [3, 3]}, "ok": [true, true]});
        let answer = cfg.canonicalize(&other, &[1, 0], &r).unwrap();
        assert_eq!(kept(&cfg, &s.answers, &answer), json!({"pref": false, "ok": false}));
    }
}
