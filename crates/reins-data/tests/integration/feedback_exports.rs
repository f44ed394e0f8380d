//! The feedback app's exports (`reins serve`, crates/reins-feedback/src/export.rs), each
//! row written exactly as the app writes it (`item_id` and `annotator` included): every
//! layout reads to the record that carries its labels, or is skipped with a reason; none is
//! read as something that quietly drops the labels.

use super::load_str;
use reins_data::convert::{convert, Target};
use reins_data::formats::{ConvertOptions, Format, PairStrategy};
use reins_data::io::Report;
use reins_data::{Message, Meta, Preference, Ranked, Record, Text};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// The exports' meta: `item_id` is the id, `annotator` the annotator id.
fn meta() -> Meta {
    Meta { id: Some("x1".into()), annotator_id: Some("ann".into()), ..Meta::default() }
}

fn ranked(response: &str, rank: Option<u32>, score: Option<f64>) -> Ranked {
    Ranked { response: Text::Plain(response.into()), rank, score, ratings: BTreeMap::new(), annotator_id: None }
}

fn rated(response: &str, ratings: &[(&str, f64)]) -> Ranked {
    Ranked { ratings: ratings.iter().map(|&(a, x)| (a.to_string(), x)).collect(), ..ranked(response, None, None) }
}

/// The detail of the problem reported for `line`.
fn detail(report: &Report, line: usize) -> String {
    report.problems.iter().find(|p| p.line == line).map(|p| p.detail.clone()).unwrap_or_default()
}

#[test]
fn the_ranked_export_reads_as_a_ranked_list_with_its_ranks() {
    // `ranks[i]` is the rank of `responses[i]`, 0 for the best: B, then C, then A.
    let row =
        json!({"prompt": "P", "responses": ["A", "B", "C"], "ranks": [2, 0, 1], "item_id": "x1", "annotator": "ann"});
    let l = load_str(&jsonl(&[row]), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Trl, "detected from the keys");
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    assert_eq!(
        l.records,
        vec![Record::RankedList {
            prompt: Text::Plain("P".into()),
            responses: vec![ranked("A", Some(2), None), ranked("B", Some(0), None), ranked("C", Some(1), None)],
            meta: meta(),
        }]
    );
    // The same meaning as the object form: rank 0 is the best, so it is chosen.
    let opts = ConvertOptions { pair_strategy: PairStrategy::BestVsWorst, ..ConvertOptions::default() };
    let pairs = convert(l.records, Target::Preference, &opts).records;
    assert_eq!(
        pairs,
        vec![Record::Preference(Preference {
            prompt: Text::Plain("P".into()),
            chosen: Text::Plain("B".into()),
            rejected: Text::Plain("A".into()),
            margin: None,
            strength: None,
            reference: None,
            meta: meta(),
        })]
    );
}

#[test]
fn texts_with_scores_or_as_conversations_read_too() {
    let rows = [
        json!({"prompt": "P", "responses": ["A", "B"], "scores": [0.5, "2"]}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": [1, 0], "scores": [0.5, 2]}),
        json!({"prompt": [{"role": "user", "content": "Hi"}],
               "responses": [[{"role": "assistant", "content": "Hello"}], [{"role": "assistant", "content": "Go away"}]],
               "ranks": [0, 1]}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    let lists: Vec<&Vec<Ranked>> = l
        .records
        .iter()
        .map(|r| match r {
            Record::RankedList { responses, .. } => responses,
            other => panic!("expected a ranked list, got {other:?}"),
        })
        .collect();
    assert_eq!(lists[0], &vec![ranked("A", None, Some(0.5)), ranked("B", None, Some(2.0))]);
    assert_eq!(lists[1], &vec![ranked("A", Some(1), Some(0.5)), ranked("B", Some(0), Some(2.0))]);
    assert_eq!(lists[2][1].response, Text::Chat(vec![Message::assistant("Go away")]));
    assert_eq!(lists[2][1].rank, Some(1));
}

#[test]
fn ranked_rows_whose_ranks_do_not_fit_are_skipped_with_a_reason() {
    let rows = [
        json!({"prompt": "P", "responses": ["A", "B", "C"], "ranks": [0, 1]}),
        json!({"prompt": "P", "responses": ["A", "B", "C"], "ranks": [0, 0, 1]}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": [0, 2]}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": [-1, 0]}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": [0.5, 1]}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": "0,1"}),
        json!({"prompt": "P", "responses": ["A", "B"], "scores": [1, "high"]}),
        json!({"prompt": "P", "responses": ["A", "B"], "scores": [1, true]}),
        json!({"prompt": "P", "responses": ["A", {"response": "B"}], "ranks": [0, 1]}),
        json!({"prompt": "P", "responses": ["A", "B"]}),
        json!({"prompt": "P", "responses": ["A", "B"], "scores": [1, 2, 3]}),
    ];
    let l = load_str(&jsonl(&rows), Some(Format::Trl), &ConvertOptions::default());
    assert!(l.records.is_empty(), "no ranking is read from a bad row: {:?}", l.records);
    assert_eq!(l.report.skipped_total(), rows.len(), "{}", l.report);
    let count = |reason: &str| l.report.skipped.get(reason).copied().unwrap_or(0);
    assert_eq!(count("length mismatch"), 2, "{}", l.report);
    assert_eq!(count("bad ranks"), 2, "{}", l.report);
    assert_eq!(count("wrong type"), 6, "{}", l.report);
    assert_eq!(count("unranked responses"), 1, "{}", l.report);
    let d = |line| detail(&l.report, line);
    assert_eq!(d(1), "3 responses but 2 `ranks`");
    assert!(d(2).contains("rank 0 is given twice (`ranks[1]`)"), "{}", d(2));
    assert!(d(3).contains("`ranks[1]` is 2, but 2 responses are ranked 0..2 (0 = best)"), "{}", d(3));
    assert!(d(4).contains("`ranks[0]` should be an integer >= 0"), "{}", d(4));
    assert!(d(5).contains("`ranks[0]` should be an integer >= 0"), "{}", d(5));
    assert!(d(7).contains("`scores[1]` should be a number, found a string"), "{}", d(7));
    assert!(d(8).contains("`scores[1]` should be a number, found a boolean"), "{}", d(8));
    assert!(d(9).contains("`responses[1]` should be a string or a list of messages"), "{}", d(9));
    assert!(d(10).contains("no `ranks` (0 = best) or `scores`"), "{}", d(10));
}

#[test]
fn the_ratings_export_reads_as_a_rated_response_with_its_ratings() {
    let row = json!({"prompt": "P", "completion": "A", "ratings": {"helpfulness": 4, "honesty": 5},
                     "item_id": "x1", "annotator": "ann"});
    let l = load_str(&jsonl(&[row]), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Trl);
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    // HelpSteer2's attribute rows read the same way: a ranked list of one, rated per aspect.
    assert_eq!(
        l.records,
        vec![Record::RankedList {
            prompt: Text::Plain("P".into()),
            responses: vec![rated("A", &[("helpfulness", 4.0), ("honesty", 5.0)])],
            meta: meta(),
        }]
    );
}

#[test]
fn ratings_that_are_not_numbers_skip_the_row_with_a_reason() {
    let rows = [
        json!({"prompt": "P", "completion": "A", "ratings": {"helpfulness": 4, "honesty": "good"}}),
        json!({"prompt": "P", "completion": "A", "ratings": {"helpfulness": null}}),
        json!({"prompt": "P", "completion": "A", "ratings": {"helpfulness": true}}),
        json!({"prompt": "P", "completion": "A", "ratings": [4, 5]}),
        // The object form is held to the same rule.
        json!({"prompt": "P", "responses": [{"response": "A", "ratings": {"helpfulness": "N/A"}}]}),
        json!({"prompt": "P", "responses": [{"response": "A", "rank": -1}]}),
        json!({"prompt": "P", "responses": [{"response": "A", "score": "high"}]}),
        json!({"prompt": "P", "responses": [{"response": "A", "annotator_id": ["u1"]}]}),
    ];
    let l = load_str(&jsonl(&rows), Some(Format::Trl), &ConvertOptions::default());
    assert!(l.records.is_empty(), "{:?}", l.records);
    assert_eq!(l.report.skipped.get("wrong type"), Some(&rows.len()), "{}", l.report);
    let d = |line| detail(&l.report, line);
    assert_eq!(d(1), "`ratings.honesty` should be a number, found a string");
    assert_eq!(d(2), "`ratings.helpfulness` should be a number, found null");
    assert_eq!(d(3), "`ratings.helpfulness` should be a number, found a boolean");
    assert_eq!(d(4), "`ratings` should be an object {aspect: number}, found an array");
    assert_eq!(d(5), "`responses[0].ratings.helpfulness` should be a number, found a string");
    assert!(d(6).starts_with("`responses[0].rank` should be an integer >= 0"), "{}", d(6));
    assert_eq!(d(7), "`responses[0].score` should be a number, found a string");
    assert_eq!(d(8), "`responses[0].annotator_id` should be a string, found an array");
}

#[test]
fn item_id_is_the_id_unless_the_row_has_one() {
    let rows = [
        json!({"prompt": "P", "completion": "A", "label": true, "item_id": "x1"}),
        json!({"prompt": "P", "completion": "A", "label": true, "item_id": 7}),
        json!({"prompt": "P", "completion": "A", "label": true, "item_id": "x1", "id": "own"}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    let ids: Vec<Option<&str>> = l.records.iter().map(|r| r.meta().id.as_deref()).collect();
    assert_eq!(ids, [Some("x1"), Some("7"), Some("own")]);
}

#[test]
fn the_preference_and_kto_exports_read_with_their_margin_and_label() {
    let rows = [
        json!({"prompt": "P", "chosen": "B", "rejected": "A", "margin": 3.0, "item_id": "x1", "annotator": "ann"}),
        json!({"prompt": "P", "completion": "A", "label": false, "item_id": "x1", "annotator": "ann"}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    assert_eq!(
        l.records,
        vec![
            Record::Preference(Preference {
                prompt: Text::Plain("P".into()),
                chosen: Text::Plain("B".into()),
                rejected: Text::Plain("A".into()),
                margin: Some(3.0),
                strength: None,
                reference: None,
                meta: meta(),
            }),
            Record::Unpaired {
                prompt: Text::Plain("P".into()),
                completion: Text::Plain("A".into()),
                label: false,
                meta: meta(),
            },
        ]
    );
}

#[test]
fn critiques_raw_and_unpaired_consensus_rows_are_skipped_with_a_reason() {
    let raw = json!({
        "submission_id": "s", "idempotency_key": "k", "kind": "label", "answer": {"rank": {"ranking": [1, 0]}},
        "display_order": [1, 0], "skip_reason": null, "time_ms": 5, "created_at": 0, "gold": null,
        "prompt": "P", "responses": ["A", "B"], "item_id": "x1", "annotator": "ann",
        "review": "pending", "edited": false, "effective_answer": {"rank": {"ranking": [1, 0]}},
    });
    let rows = [
        json!({"prompt": "P", "completion": "A", "critique": "Too long.", "item_id": "x1", "annotator": "ann"}),
        json!({"prompt": "P", "completion": "A", "rewrite": "A, shorter.", "item_id": "x1", "annotator": "ann"}),
        raw,
        json!({"prompt": "P", "responses": ["A", "B"], "answer": {"rank": {"ranking": [1, 0]}}, "source": "majority",
               "labels": 3, "item_id": "x1", "annotator": null}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Trl);
    assert!(l.records.is_empty(), "not read as prompt-completion or an unranked list: {:?}", l.records);
    assert_eq!(l.report.skipped.get("feedback without a record type"), Some(&2), "{}", l.report);
    assert_eq!(l.report.skipped.get("unranked responses"), Some(&2), "{}", l.report);
    assert!(detail(&l.report, 1).starts_with("`critique` (the feedback app's"), "{}", detail(&l.report, 1));
    assert!(detail(&l.report, 2).starts_with("`rewrite`"), "{}", detail(&l.report, 2));
    assert!(detail(&l.report, 3).contains("`answer` (the feedback app's `raw` and `consensus` exports) is not read"));
}

#[test]
fn principle_checks_read_as_principles_records_and_write_back() {
    let rows = [
        json!({"prompt": "P", "completion": "A", "principles": {"Is kind": true, "Cites sources": false},
               "item_id": "x1", "annotator": "ann"}),
        // RLBFF-style strings, a not-applicable check left out, `response` for `completion`
        json!({"prompt": "P", "response": "B", "principles": {"Is kind": "No", "Is short": "yes", "Cites sources": null}}),
        json!({"prompt": "P", "completion": "C", "principles": {"Is kind": "partially"}}),
        json!({"prompt": "P", "completion": "D", "principles": {"Is kind": null}}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    fn checks(r: &Record) -> (&str, Vec<(&str, bool)>) {
        match r {
            Record::Principles { response, principles, .. } => {
                (response.as_str(), principles.iter().map(|(p, &y)| (p.as_str(), y)).collect())
            }
            other => panic!("read as {}", other.kind().name()),
        }
    }
    assert_eq!(
        l.records.iter().map(checks).collect::<Vec<_>>(),
        [("A", vec![("Cites sources", false), ("Is kind", true)]), ("B", vec![("Is kind", false), ("Is short", true)])],
        "{}",
        l.report
    );
    assert_eq!(l.records[0].meta().id.as_deref(), Some("x1"));
    assert_eq!(l.report.skipped.get("wrong type"), Some(&1), "`partially` is not a yes/no check: {}", l.report);
    assert_eq!(l.report.skipped.get("bad principles"), Some(&1), "nothing checked: {}", l.report);
    // written back in the export's layout, read again to the same record
    let again = load_str(&jsonl(&[l.records[1].to_json()]), None, &ConvertOptions::default());
    assert_eq!(again.records, vec![l.records[1].clone()]);
}

#[test]
fn the_consensus_export_of_a_pairwise_win_reads_as_a_preference() {
    let row = json!({"prompt": "P", "responses": ["A", "B"],
                     "answer": {"pref": {"outcome": "win", "winner": 1, "loser": 0, "strength": null}},
                     "source": "adjudicated", "labels": 2, "item_id": "x1", "annotator": "rev",
                     "chosen": "B", "rejected": "A"});
    let l = load_str(&jsonl(&[row]), None, &ConvertOptions::default());
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    assert_eq!(
        l.records,
        vec![Record::Preference(Preference {
            prompt: Text::Plain("P".into()),
            chosen: Text::Plain("B".into()),
            rejected: Text::Plain("A".into()),
            margin: None,
            strength: None,
            reference: None,
            meta: Meta {
                id: Some("x1".into()),
                annotator_id: Some("rev".into()),
                source: Some("adjudicated".into()),
                ..Meta::default()
            },
        })]
    );
}

#[test]
fn ranked_and_rated_lists_read_from_the_exports_are_written_and_read_back_identically() {
    let rows = [
        json!({"prompt": "P", "responses": ["A", "B", "C"], "ranks": [2, 0, 1], "item_id": "x1", "annotator": "ann"}),
        json!({"prompt": "P", "responses": ["A", "B"], "ranks": [1, 0], "scores": [0.25, 3]}),
        json!({"prompt": "P", "completion": "A", "ratings": {"helpfulness": 4, "honesty": 2.5},
               "item_id": "x1", "annotator": "ann"}),
        json!({"prompt": "P", "completion": "A", "ratings": {}}),
    ];
    let opts = ConvertOptions::default();
    let read = load_str(&jsonl(&rows), None, &opts).records;
    assert_eq!(read.len(), rows.len());
    let written: Vec<Value> = read.iter().map(Record::to_json).collect();
    assert_eq!(
        written[2],
        json!({"prompt": "P", "responses": [{"response": "A", "ratings": {"helpfulness": 4.0, "honesty": 2.5}}],
               "id": "x1", "annotator_id": "ann"})
    );
    let again = load_str(&jsonl(&written), None, &opts);
    assert_eq!(again.records, read, "{}", again.report);
}
