//! OpenAssistant: the tree export and the message-level export (the oasst1/oasst2
//! releases), which must convert to the same records; a bad message costs its subtree only.

use super::load_str;
use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::{Message, Record, Text};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn real(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real").join(name)
}

fn msg(id: &str, role: &str, text: Value, rank: Value, created: &str, replies: Vec<Value>) -> Value {
    json!({"message_id": id, "role": role, "text": text, "rank": rank, "created_date": created,
           "review_result": true, "deleted": false, "lang": "en", "replies": replies})
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| r.to_string() + "\n").collect()
}

/// Two trees in the export's own order: siblings by rank, then unranked ones by creation.
fn tree_export() -> Vec<Value> {
    let mut deleted = msg(
        "a6",
        "assistant",
        json!("deleted one"),
        json!(2),
        "2023-01-01T00:00:06+00:00",
        vec![msg("p3", "prompter", json!("orphan"), Value::Null, "2023-01-01T00:00:07+00:00", vec![])],
    );
    deleted["deleted"] = json!(true);
    let mut spam = msg("a5", "assistant", json!("spam"), Value::Null, "2023-01-01T00:00:05+00:00", vec![]);
    spam["review_result"] = json!(false);
    let mut a1 = msg(
        "a1",
        "assistant",
        json!("Learning from human feedback."),
        json!(0),
        "2023-01-01T00:00:01+00:00",
        vec![msg(
            "p2",
            "prompter",
            json!("Give an example."),
            Value::Null,
            "2023-01-01T00:00:03+00:00",
            vec![
                msg("a4", "assistant", json!("ChatGPT."), json!(0), "2023-01-01T00:00:08+00:00", vec![]),
                msg("a3", "assistant", json!("InstructGPT."), json!(1), "2023-01-01T00:00:04+00:00", vec![]),
                spam,
            ],
        )],
    );
    a1["labels"] = json!({"quality": {"value": 0.9, "count": 3}, "toxicity": {"value": 0.0, "count": 3}});
    let t1 = msg(
        "p1",
        "prompter",
        json!("What is RLHF?"),
        Value::Null,
        "2023-01-01T00:00:00+00:00",
        vec![a1, msg("a2", "assistant", json!("No idea."), json!(1), "2023-01-01T00:00:02+00:00", vec![]), deleted],
    );
    let t2 = msg(
        "q1",
        "prompter",
        json!("Second tree?"),
        Value::Null,
        "2023-01-02T00:00:00+00:00",
        vec![msg("b1", "assistant", json!("Yes."), Value::Null, "2023-01-02T00:00:01+00:00", vec![])],
    );
    vec![
        json!({"message_tree_id": "p1", "tree_state": "ready_for_export", "prompt": t1}),
        json!({"message_tree_id": "q1", "tree_state": "ready_for_export", "prompt": t2}),
    ]
}

/// The message-level layout of the same trees: one message per line, `replies` gone,
/// `parent_id` and `message_tree_id` on every message.
fn flatten(node: &Value, parent: Option<&str>, tree: &str, out: &mut Vec<Value>) {
    let mut m: Map<String, Value> = node.as_object().cloned().unwrap_or_default();
    let replies = m.remove("replies");
    m.insert("parent_id".into(), parent.map_or(Value::Null, |p| json!(p)));
    m.insert("message_tree_id".into(), json!(tree));
    let id = m["message_id"].as_str().unwrap_or_default().to_string();
    out.push(Value::Object(m));
    for r in replies.as_ref().and_then(Value::as_array).into_iter().flatten() {
        flatten(r, Some(&id), tree, out);
    }
}

/// A fixed permutation that moves every line (children before parents, trees interleaved).
fn shuffled(mut rows: Vec<Value>) -> Vec<Value> {
    rows.reverse();
    let n = rows.len();
    (0..n).map(|i| rows[(i * 7 + 3) % n].clone()).collect()
}

#[test]
fn oasst_message_level_export_converts_like_the_tree_export() {
    let trees = tree_export();
    let mut messages = Vec::new();
    for t in &trees {
        flatten(&t["prompt"], None, t["message_tree_id"].as_str().unwrap_or_default(), &mut messages);
    }
    assert_eq!(messages.len(), 11);
    let messages = shuffled(messages);
    assert_ne!(messages[0]["parent_id"], Value::Null, "the first line is not a root");

    let from_trees = load_str(&jsonl(&trees), None, &ConvertOptions::default());
    let from_messages = load_str(&jsonl(&messages), None, &ConvertOptions::default());
    assert_eq!(from_messages.format, Format::Oasst, "detected as OASST, not as TRL `text` rows");
    assert_eq!(from_trees.records.len(), 3);
    assert_eq!(from_messages.records, from_trees.records);
    assert_eq!(from_messages.report.dropped, from_trees.report.dropped);
    assert_eq!((from_messages.report.rows, from_messages.report.converted), (11, 11), "{}", from_messages.report);
}

#[test]
fn oasst_message_level_real_rows() {
    // tests/data/real/oasst1_messages_flat.jsonl: a prompter message and its rank-0 reply.
    let l = load(&real("oasst1_messages_flat.jsonl"), None, &ConvertOptions::default()).expect("load");
    assert_eq!(l.format, Format::Oasst, "{}", l.report);
    assert!(l.report.is_balanced());
    assert_eq!((l.report.rows, l.report.converted, l.records.len()), (2, 2, 1), "{}", l.report);
    let Record::RankedList { prompt, responses, meta } = &l.records[0] else { panic!("not a ranked list") };
    let Text::Chat(p) = prompt else { panic!("not conversational") };
    assert_eq!(p.len(), 1);
    assert!(p[0].content.starts_with("Can you write a short introduction about the relevance of the term"));
    assert_eq!(meta.id.as_deref(), Some("6ab24d72-0181-4594-a9cd-deaf170242fb"));
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].rank, Some(0));
    assert_eq!(responses[0].ratings.get("helpfulness"), Some(&0.75));
}

#[test]
fn oasst_message_level_orphans_duplicates_and_deep_chains_are_reported() {
    let root = json!({"message_id": "r", "parent_id": null, "message_tree_id": "r", "role": "prompter", "text": "hi", "rank": null});
    let reply = json!({"message_id": "x", "parent_id": "r", "message_tree_id": "r", "role": "assistant", "text": "hello", "rank": 0});
    let orphan = json!({"message_id": "o", "parent_id": "gone", "message_tree_id": "t9", "role": "assistant", "text": "?", "rank": 0});
    let mut rows = vec![root, reply.clone(), orphan, reply];
    // A chain far deeper than any real thread: its tree is skipped, nothing overflows. The
    // deepest chain that converts (257 prompter turns, 514 messages) converts.
    let chain = |rows: &mut Vec<Value>, name: &str, len: usize| {
        let mut parent = Value::Null;
        for i in 0..len {
            let role = if i % 2 == 0 { "prompter" } else { "assistant" };
            let id = format!("{name}{i}");
            rows.push(json!({"message_id": id, "parent_id": parent, "message_tree_id": name, "role": role, "text": "t", "rank": 0}));
            parent = json!(id);
        }
    };
    chain(&mut rows, "deep", 3000);
    chain(&mut rows, "ok", 514);
    let l = load_str(&jsonl(&rows), Some(Format::Oasst), &ConvertOptions::default());
    assert_eq!(l.records.len(), 1 + 257, "{}", l.report);
    assert_eq!(l.report.converted, 2 + 514, "{}", l.report);
    assert_eq!(l.report.skipped.get("parent message not in the file"), Some(&1), "{}", l.report);
    assert_eq!(l.report.skipped.get("duplicate message_id"), Some(&1), "{}", l.report);
    assert_eq!(l.report.skipped.get("tree too deep"), Some(&1), "{}", l.report);
    assert_eq!(l.report.skipped.get("message of a skipped tree"), Some(&2999), "{}", l.report);
}

#[test]
fn oasst_bad_message_drops_its_subtree_only() {
    // Tree 1: a2 has `text: null` (and a thread below it); p2 under a1 too.
    let bad_reply = msg(
        "a2",
        "assistant",
        Value::Null,
        json!(1),
        "t",
        vec![msg(
            "p3",
            "prompter",
            json!("more?"),
            Value::Null,
            "t",
            vec![msg("a4", "assistant", json!("x"), json!(0), "t", vec![])],
        )],
    );
    let t1 = msg(
        "p1",
        "prompter",
        json!("Q"),
        Value::Null,
        "t",
        vec![
            msg(
                "a1",
                "assistant",
                json!("A"),
                json!(0),
                "t",
                vec![msg(
                    "p2",
                    "prompter",
                    Value::Null,
                    Value::Null,
                    "t",
                    vec![msg("a3", "assistant", json!("y"), json!(0), "t", vec![])],
                )],
            ),
            bad_reply,
        ],
    );
    // Tree 2 gives no record: one deleted reply, one bad one. Its drops must not be counted.
    let mut deleted = msg("d1", "assistant", json!("gone"), json!(0), "t", vec![]);
    deleted["deleted"] = json!(true);
    let t2 = msg(
        "q1",
        "prompter",
        json!("Q2"),
        Value::Null,
        "t",
        vec![deleted, msg("e1", "assistant", Value::Null, json!(1), "t", vec![])],
    );
    let rows = [json!({"message_tree_id": "p1", "prompt": t1}), json!({"message_tree_id": "q1", "prompt": t2})];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    assert_eq!(l.report.converted, 1, "tree 1 keeps its good part: {}", l.report);
    assert_eq!(l.records.len(), 1);
    let Record::RankedList { prompt, responses, .. } = &l.records[0] else { panic!("not a ranked list") };
    assert_eq!(prompt, &Text::Chat(vec![Message::user("Q")]));
    assert_eq!(responses.len(), 1, "a2 is left out");
    assert_eq!(l.report.dropped.get("bad message"), Some(&2), "{}", l.report);
    assert_eq!(l.report.dropped.get("replies under a bad message"), Some(&3), "{}", l.report);
    assert_eq!(l.report.skipped.get("no usable record in row"), Some(&1), "{}", l.report);
    assert_eq!(
        l.report.dropped.get("deleted message"),
        None,
        "a skipped row's parts are not 'left out of converted rows'"
    );
}

#[test]
fn oasst_labels_in_hugging_face_column_form() {
    // The OpenAssistant/oasst1 parquet release stores `labels` as columns of lists.
    let rows = [
        json!({"message_id": "p", "parent_id": null, "message_tree_id": "p", "role": "prompter", "text": "hi", "rank": null}),
        json!({"message_id": "a", "parent_id": "p", "message_tree_id": "p", "role": "assistant", "text": "hello", "rank": 0,
               "labels": {"name": ["quality", "humor"], "value": [0.75, 0.25], "count": [3, 2]}}),
    ];
    let l = load_str(&jsonl(&rows), None, &ConvertOptions::default());
    let Record::RankedList { responses, .. } = &l.records[0] else { panic!("not a ranked list") };
    assert_eq!(responses[0].ratings.get("quality"), Some(&0.75));
    assert_eq!(responses[0].ratings.get("humor"), Some(&0.25));
}
