//! Exports derived from the raw submissions, in TRL's JSONL shapes. Every record carries
//! `item_id` and `annotator` (the username), so per-annotator models stay possible; `reins
//! data` reads them as the record's id and annotator. The last words of a row say how `reins
//! data` reads the file (docs/feedback.md, "Export formats"; the tests below read each back).
//!
//! | format | one record per | shape |
//! |---|---|---|
//! | `preference` | pairwise vote with a winner | `{"prompt","chosen","rejected","margin"?}` (margin = strength 1–3); preference records |
//! | `ranked` | ranking | `{"prompt","responses","ranks"}` (`ranks[i]` = 0 for the best); ranked lists |
//! | `kto` | thumbs per response | `{"prompt","completion","label": bool}`; unpaired preferences |
//! | `ratings` | Likert per response | `{"prompt","completion","ratings": {aspect: n}}`; a ranked list of one, with its ratings |
//! | `spans` | response with spans | `{"prompt","completion","spans": [{"start","end","tag","text"}]}` (offsets in characters); span records |
//! | `critiques` | non-empty critique or rewrite | `{"prompt","completion","critique"}` / `{"prompt","completion","rewrite"}`; no record type, skipped |
//! | `principles` | response × principles | `{"prompt","completion","principles": {text: bool}}`; read as `Record::Principles` (`reins principle-reward`) |
//! | `raw` | submission (labels and skips) | every stored column; skipped |
//! | `consensus` | item (see `review::consensus_records`) | `{"prompt","responses","answer","source","chosen"?,"rejected"?}`; preference records where there is a `chosen` |
use crate::db::{Item, Submission};
use crate::error::{bad, Result};
use crate::import::fnv1a;
use crate::tasks::{ProjectConfig, QuestionKind};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const FORMATS: &[&str] =
    &["preference", "ranked", "kto", "ratings", "spans", "critiques", "principles", "raw", "consensus"];

/// Which part of the train/validation split an item falls in: validation when its hash
/// falls under `split` (a fraction), so the split is by item and stable across exports.
pub fn is_validation(external_id: &str, split: f64) -> bool {
    (fnv1a(external_id.as_bytes()) % 10_000) < (split * 10_000.0).round() as u64
}

#[derive(Debug, Default)]
pub struct Exported {
    pub train: Vec<Value>,
    pub validation: Vec<Value>,
}

pub fn export(
    format: &str,
    cfg: &ProjectConfig,
    items: &[Item],
    subs: &[Submission],
    usernames: &HashMap<String, String>,
    split: f64,
) -> Result<Exported> {
    if !FORMATS.contains(&format) {
        return Err(bad(format!("unknown export format `{format}`; use one of {}", FORMATS.join(", "))));
    }
    if !(0.0..=1.0).contains(&split) {
        return Err(bad("split must be a fraction within 0..=1"));
    }
    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut out = Exported::default();
    for s in subs {
        let Some(item) = by_id.get(s.item_id.as_str()) else {
            continue;
        };
        let annotator = usernames.get(&s.user_id).cloned().unwrap_or_else(|| s.user_id.clone());
        let records = records(format, cfg, item, s);
        let part = if is_validation(&item.external_id, split) { &mut out.validation } else { &mut out.train };
        for mut r in records {
            if let Some(o) = r.as_object_mut() {
                o.insert("item_id".into(), json!(item.external_id));
                o.insert("annotator".into(), json!(annotator));
            }
            part.push(r);
        }
    }
    Ok(out)
}

fn records(format: &str, cfg: &ProjectConfig, item: &Item, s: &Submission) -> Vec<Value> {
    if format == "raw" {
        return vec![json!({
            "submission_id": s.id, "idempotency_key": s.idempotency_key, "kind": s.kind,
            "answer": s.answer, "display_order": s.display_order, "skip_reason": s.skip_reason,
            "time_ms": s.time_ms, "created_at": s.created_at, "gold": item.gold,
            "prompt": item.prompt, "responses": item.responses,
        })];
    }
    if s.kind != "label" {
        return vec![];
    }
    let prompt = &item.prompt;
    let resp = |i: usize| item.responses.get(i).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for q in &cfg.questions {
        let Some(a) = s.answer.get(&q.name) else {
            continue;
        };
        match (&q.kind, format) {
            (QuestionKind::Pairwise { .. }, "preference") if a["outcome"] == "win" => {
                let (Some(w), Some(l)) = (a["winner"].as_u64(), a["loser"].as_u64()) else {
                    continue;
                };
                let mut r = json!({"prompt": prompt, "chosen": resp(w as usize), "rejected": resp(l as usize)});
                if let Some(m) = a["strength"].as_i64() {
                    r["margin"] = json!(m as f64);
                }
                out.push(r);
            }
            (QuestionKind::Ranking, "ranked") => {
                let Some(ranking) = a["ranking"].as_array() else {
                    continue;
                };
                let mut ranks = vec![0usize; item.responses.len()];
                for (rank, idx) in ranking.iter().enumerate() {
                    if let Some(i) = idx.as_u64().filter(|i| (*i as usize) < ranks.len()) {
                        ranks[i as usize] = rank;
                    }
                }
                out.push(json!({"prompt": prompt, "responses": item.responses, "ranks": ranks}));
            }
            (QuestionKind::Thumbs, "kto") => {
                for (i, t) in a.as_array().into_iter().flatten().enumerate() {
                    out.push(json!({"prompt": prompt, "completion": resp(i), "label": t}));
                }
            }
            (QuestionKind::Likert { aspects, .. }, "ratings") => {
                for i in 0..item.responses.len() {
                    let ratings: Map<String, Value> =
                        aspects.iter().map(|asp| (asp.clone(), a[asp][i].clone())).collect();
                    out.push(json!({"prompt": prompt, "completion": resp(i), "ratings": ratings}));
                }
            }
            (QuestionKind::Spans { .. }, "spans") => {
                for (i, spans) in a.as_array().into_iter().flatten().enumerate() {
                    let text = resp(i);
                    let chars: Vec<char> = text.chars().collect();
                    let spans: Vec<Value> = spans
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|sp| {
                            let (st, en) =
                                (sp["start"].as_u64().unwrap_or(0) as usize, sp["end"].as_u64().unwrap_or(0) as usize);
                            let t: String =
                                chars.get(st.min(chars.len())..en.min(chars.len())).unwrap_or(&[]).iter().collect();
                            json!({"start": st, "end": en, "tag": sp["tag"], "text": t})
                        })
                        .collect();
                    if !spans.is_empty() {
                        out.push(json!({"prompt": prompt, "completion": text, "spans": spans}));
                    }
                }
            }
            (QuestionKind::Critique { rewrite }, "critiques") => {
                let key = if *rewrite { "rewrite" } else { "critique" };
                for (i, c) in a.as_array().into_iter().flatten().enumerate() {
                    if c.as_str().is_some_and(|c| !c.trim().is_empty()) {
                        let mut r = json!({"prompt": prompt, "completion": resp(i)});
                        r[key] = c.clone();
                        out.push(r);
                    }
                }
            }
            (QuestionKind::Principles { principles }, "principles") => {
                for (i, checks) in a.as_array().into_iter().flatten().enumerate() {
                    let m: Map<String, Value> = principles
                        .iter()
                        .zip(checks.as_array().into_iter().flatten())
                        .map(|(p, c)| (p.clone(), c.clone()))
                        .collect();
                    out.push(json!({"prompt": prompt, "completion": resp(i), "principles": m}));
                }
            }
            _ => {}
        }
    }
    out
}

/// JSONL text of records.
pub fn to_jsonl(records: &[Value]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&r.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_by_item_and_stable() {
        let ids: Vec<String> = (0..1000).map(|i| format!("item-{i}")).collect();
        let val = ids.iter().filter(|i| is_validation(i, 0.1)).count();
        assert!((60..140).contains(&val), "{val}");
        assert!(ids.iter().all(|i| !is_validation(i, 0.0)));
        assert!(ids.iter().all(|i| is_validation(i, 1.0)));
    }

    fn item(responses: &[&str]) -> Item {
        Item {
            id: "i".into(),
            project_id: "p".into(),
            external_id: "x".into(),
            prompt: "P".into(),
            responses: responses.iter().map(|r| r.to_string()).collect(),
            gold: None,
        }
    }

    fn label(answer: Value) -> Submission {
        Submission {
            id: "s".into(),
            idempotency_key: "k".into(),
            project_id: "p".into(),
            item_id: "i".into(),
            user_id: "u".into(),
            assignment_id: "a".into(),
            kind: "label".into(),
            answer,
            display_order: vec![1, 0],
            skip_reason: None,
            time_ms: 5,
            created_at: 0,
        }
    }

    #[test]
    fn preference_record_has_trl_shape_and_margin() {
        let cfg = ProjectConfig::parse(&json!({"questions": [{"name": "pref", "kind": "pairwise", "strength": true}]}))
            .unwrap();
        let sub = label(json!({"pref": {"outcome": "win", "winner": 1, "loser": 0, "strength": 3}}));
        let names = HashMap::from([("u".to_string(), "ann".to_string())]);
        let e = export("preference", &cfg, &[item(&["A", "B"])], &[sub], &names, 0.0).unwrap();
        assert_eq!(
            e.train,
            vec![
                json!({"prompt": "P", "chosen": "B", "rejected": "A", "margin": 3.0, "item_id": "x", "annotator": "ann"})
            ]
        );
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// The train part of an export written as its JSONL file and read by `reins data`'s reader.
    fn read_back(e: &Exported) -> std::result::Result<reins_data::Loaded, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, to_jsonl(&e.train))?;
        Ok(reins_data::formats::load(&path, None, &reins_data::formats::ConvertOptions::default())?)
    }

    /// The exports' meta as `reins data` reads it: `item_id` as the id, `annotator` as the
    /// annotator.
    fn read_meta() -> reins_data::Meta {
        reins_data::Meta { id: Some("x".into()), annotator_id: Some("ann".into()), ..Default::default() }
    }

    /// The `spans` export file is read by `reins data` as span records: the same character
    /// offsets, the tags as labels, the annotator kept.
    #[test]
    fn spans_export_reads_as_reins_data_span_records() -> TestResult {
        use reins_data::{Record, Span, Text};
        let cfg = ProjectConfig::parse(
            &json!({"questions": [{"name": "issues", "kind": "spans", "tags": ["wrong", "unsafe"]}]}),
        )?;
        // "5 €" is characters 9..12 (bytes 11..16).
        let response = "Ça coûte 5 €, non?";
        let sub = label(json!({"issues": [
            [{"start": 9, "end": 12, "tag": "wrong"}, {"start": 0, "end": 2, "tag": "unsafe"}],
            [{"start": 0, "end": 3, "tag": "wrong"}],
        ]}));
        let names = HashMap::from([("u".to_string(), "ann".to_string())]);
        let e = export("spans", &cfg, &[item(&[response, "👋 hi"])], &[sub], &names, 0.0)?;
        assert_eq!(e.train[0]["spans"][0], json!({"start": 9, "end": 12, "tag": "wrong", "text": "5 €"}));

        let loaded = read_back(&e)?;
        assert_eq!(loaded.report.skipped_total(), 0, "{}", loaded.report);
        let spans = |response: &str, spans: &[(usize, usize, &str)]| Record::Spans {
            prompt: Text::Plain("P".into()),
            response: response.into(),
            spans: spans.iter().map(|&(start, end, tag)| Span { start, end, label: tag.into() }).collect(),
            meta: read_meta(),
        };
        assert_eq!(
            loaded.records,
            vec![spans(response, &[(9, 12, "wrong"), (0, 2, "unsafe")]), spans("👋 hi", &[(0, 3, "wrong")])]
        );
        Ok(())
    }

    /// The `ranked` export file is read by `reins data` as ranked lists with the ranks as
    /// written (0 = best), so the listwise trainers and `convert --to preference` use it as is.
    #[test]
    fn ranked_export_reads_as_reins_data_ranked_lists() -> TestResult {
        use reins_data::{Ranked, Record, Text};
        let cfg = ProjectConfig::parse(&json!({"questions": [{"name": "rank", "kind": "ranking"}]}))?;
        // Best first: response 1 ("B"), then 2 ("C"), then 0 ("A").
        let sub = label(json!({"rank": {"ranking": [1, 2, 0]}}));
        let names = HashMap::from([("u".to_string(), "ann".to_string())]);
        let e = export("ranked", &cfg, &[item(&["A", "B", "C"])], &[sub], &names, 0.0)?;
        assert_eq!(e.train[0]["ranks"], json!([2, 0, 1]));

        let loaded = read_back(&e)?;
        assert_eq!(loaded.report.skipped_total(), 0, "{}", loaded.report);
        let ranked = |response: &str, rank: u32| Ranked {
            response: Text::Plain(response.into()),
            rank: Some(rank),
            score: None,
            ratings: Default::default(),
            annotator_id: None,
        };
        assert_eq!(
            loaded.records,
            vec![Record::RankedList {
                prompt: Text::Plain("P".into()),
                responses: vec![ranked("A", 2), ranked("B", 0), ranked("C", 1)],
                meta: read_meta(),
            }]
        );
        Ok(())
    }

    /// The `ratings` export file is read by `reins data` with its ratings: one rated
    /// response per row, as HelpSteer2's attribute rows are read.
    #[test]
    fn ratings_export_reads_as_reins_data_rated_responses() -> TestResult {
        use reins_data::{Ranked, Record, Text};
        let cfg = ProjectConfig::parse(
            &json!({"questions": [{"name": "likert", "kind": "likert", "aspects": ["helpfulness", "honesty"]}]}),
        )?;
        let sub = label(json!({"likert": {"helpfulness": [4, 2], "honesty": [5, 1]}}));
        let names = HashMap::from([("u".to_string(), "ann".to_string())]);
        let e = export("ratings", &cfg, &[item(&["A", "B"])], &[sub], &names, 0.0)?;

        let loaded = read_back(&e)?;
        assert_eq!(loaded.report.skipped_total(), 0, "{}", loaded.report);
        let rated = |response: &str, helpfulness: f64, honesty: f64| Record::RankedList {
            prompt: Text::Plain("P".into()),
            responses: vec![Ranked {
                response: Text::Plain(response.into()),
                rank: None,
                score: None,
                ratings: [("helpfulness".to_string(), helpfulness), ("honesty".to_string(), honesty)].into(),
                annotator_id: None,
            }],
            meta: read_meta(),
        };
        assert_eq!(loaded.records, vec![rated("A", 4.0, 5.0), rated("B", 2.0, 1.0)]);
        Ok(())
    }

    /// Every other per-vote export either reads as the record that carries its labels
    /// (`preference`, `kto`, `principles`) or is skipped with a reason (`critiques`, `raw`
    /// have no record type); none is read as plain prompt-completion.
    #[test]
    fn other_exports_read_to_their_records_or_are_skipped_with_a_reason() -> TestResult {
        let cfg = ProjectConfig::parse(&json!({"questions": [
            {"name": "pref", "kind": "pairwise", "strength": true},
            {"name": "thumbs", "kind": "thumbs"},
            {"name": "crit", "kind": "critique"},
            {"name": "rules", "kind": "principles", "principles": ["Is kind"]},
        ]}))?;
        let sub = label(json!({
            "pref": {"outcome": "win", "winner": 1, "loser": 0, "strength": 2},
            "thumbs": [false, true],
            "crit": ["Too short.", ""],
            "rules": [[true], [false]],
        }));
        let names = HashMap::from([("u".to_string(), "ann".to_string())]);
        let items = [item(&["A", "B"])];
        let read = |format: &str| -> std::result::Result<reins_data::Loaded, Box<dyn std::error::Error>> {
            read_back(&export(format, &cfg, &items, std::slice::from_ref(&sub), &names, 0.0)?)
        };
        let kinds = |l: &reins_data::Loaded| l.records.iter().map(|r| r.kind().name()).collect::<Vec<_>>();

        let l = read("preference")?;
        assert_eq!(kinds(&l), ["preference"], "{}", l.report);
        let reins_data::Record::Preference(p) = &l.records[0] else { unreachable!() };
        assert_eq!((p.margin, &p.meta), (Some(2.0), &read_meta()));
        let l = read("kto")?;
        assert_eq!(kinds(&l), ["unpaired_preference", "unpaired_preference"], "{}", l.report);
        assert_eq!(l.records[0].meta(), &read_meta());
        let l = read("principles")?;
        let checks = |r: &reins_data::Record| match r {
            reins_data::Record::Principles { response, principles, .. } => {
                (response.clone(), principles.iter().map(|(p, &y)| (p.clone(), y)).collect::<Vec<_>>())
            }
            other => panic!("principles export read as {}", other.kind().name()),
        };
        assert_eq!(
            l.records.iter().map(checks).collect::<Vec<_>>(),
            [
                ("A".to_string(), vec![("Is kind".to_string(), true)]),
                ("B".to_string(), vec![("Is kind".to_string(), false)])
            ],
            "{}",
            l.report
        );
        for (format, rows, reason) in
            [("critiques", 1, "feedback without a record type"), ("raw", 1, "unranked responses")]
        {
            let l = read(format)?;
            assert!(l.records.is_empty(), "{format}: {:?}", l.records);
            assert_eq!(l.report.skipped.get(reason), Some(&rows), "{format}: {}", l.report);
        }
        Ok(())
    }
}
