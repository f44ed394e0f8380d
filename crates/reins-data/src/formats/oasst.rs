//! OpenAssistant export trees: one JSON tree per line (`message_tree_id`, a `prompt` node
//! with `message_id`, `parent_id`, `role` prompter/assistant, `text`, `rank` on ranked
//! siblings, optional `labels`, `deleted`, `review_result`, nested `replies`).
//!
//! Every prompter message with at least one valid assistant reply becomes a
//! [`Record::RankedList`] whose prompt is the whole thread up to that message; the
//! replies carry their `rank` (0 = best) and their `labels` as ratings. From these,
//! [`crate::convert`] derives SFT threads (best reply) and pairs. Deleted messages,
//! messages that failed review and bad messages (no `text` string) are left out with
//! their subtrees, and counted: one bad message costs its subtree, not the whole tree.
//!
//! The message-level export (one message per line) is rebuilt into these trees by
//! [`super::oasst_messages`] and converted here, so both layouts give the same records.

use super::{get, Out, Skip};
use crate::records::{Message, Meta, Ranked, Record, Text};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub fn convert(row: &Map<String, Value>, out: &mut Out) -> Result<(), Skip> {
    let root = get(row, "prompt")?;
    let Value::Object(root) = root else {
        return Err(Skip::wrong_type("prompt", "a message object", root));
    };
    if let Some(why) = excluded(root) {
        return Err(Skip::new(format!("root prompt {why}"), ""));
    }
    text(root)?;
    if role(root) != Some("prompter") {
        return Err(Skip::new("root is not a prompter message", ""));
    }
    let tree_id = row.get("message_tree_id").and_then(Value::as_str).map(str::to_string);
    walk(root, &mut Vec::new(), tree_id.as_deref(), out, 0)
}

fn role(m: &Map<String, Value>) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

/// Why a message is left out, if it is.
fn excluded(m: &Map<String, Value>) -> Option<&'static str> {
    if m.get("deleted").and_then(Value::as_bool) == Some(true) {
        Some("deleted")
    } else if m.get("review_result").and_then(Value::as_bool) == Some(false) {
        Some("failed review")
    } else {
        None
    }
}

fn replies(m: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    m.get("replies").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object)
}

fn subtree_size(m: &Map<String, Value>) -> usize {
    1 + replies(m).map(subtree_size).sum::<usize>()
}

/// Count a left-out message (`why`: deleted, failed review, bad) and the replies below it.
fn drop_subtree(m: &Map<String, Value>, why: &str, out: &mut Out) {
    out.drop_part(&format!("{why} message"));
    let below = subtree_size(m) - 1;
    if below > 0 {
        *out.dropped.entry(format!("replies under a {why} message")).or_default() += below;
    }
}

/// A message's `labels` as ratings: the export's `{"quality": {"value": 0.9, "count": 3}}`,
/// or the Hugging Face release's columns `{"name": [...], "value": [...], "count": [...]}`.
fn ratings(m: &Map<String, Value>) -> BTreeMap<String, f64> {
    let Some(labels) = m.get("labels").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    if let (Some(Value::Array(names)), Some(Value::Array(values))) = (labels.get("name"), labels.get("value")) {
        return names
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), super::as_f64(v)?)))
            .collect();
    }
    labels
        .iter()
        .filter_map(|(k, v)| {
            let x = v.get("value").unwrap_or(v);
            super::as_f64(x).map(|x| (k.clone(), x))
        })
        .collect()
}

fn text(m: &Map<String, Value>) -> Result<&str, Skip> {
    m.get("text").and_then(Value::as_str).ok_or_else(|| {
        let id = m.get("message_id").and_then(Value::as_str).unwrap_or("?");
        Skip::new("bad message", format!("message {id} has no `text` string"))
    })
}

/// Depth guard: OASST threads are short; a pathological input must not blow the stack.
pub(crate) const MAX_DEPTH: usize = 256;

/// `m` is a valid prompter message; `thread` the conversation before it.
fn walk(
    m: &Map<String, Value>,
    thread: &mut Vec<Message>,
    tree_id: Option<&str>,
    out: &mut Out,
    depth: usize,
) -> Result<(), Skip> {
    if depth > MAX_DEPTH {
        return Err(Skip::new("tree too deep", format!("more than {MAX_DEPTH} turns")));
    }
    thread.push(Message::user(text(m)?));
    let mut ranked = Vec::new();
    let mut kept = Vec::new();
    for reply in replies(m) {
        if let Some(why) = excluded(reply).or_else(|| text(reply).err().map(|_| "bad")) {
            drop_subtree(reply, why, out);
            continue;
        }
        if role(reply) != Some("assistant") {
            out.drop_part("reply with unexpected role");
            continue;
        }
        ranked.push(Ranked {
            response: Text::Chat(vec![Message::assistant(text(reply)?)]),
            rank: reply.get("rank").and_then(Value::as_u64).map(|r| r as u32),
            score: None,
            ratings: ratings(reply),
            annotator_id: None,
        });
        kept.push(reply);
    }
    if !ranked.is_empty() {
        out.push(Record::RankedList {
            prompt: Text::Chat(thread.clone()),
            responses: ranked,
            meta: Meta {
                id: m
                    .get("message_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| tree_id.map(str::to_string)),
                annotator_id: None,
                source: Some("oasst".into()),
                ..Meta::default()
            },
        });
    }
    for a in kept {
        thread.push(Message::assistant(text(a)?));
        for p in replies(a) {
            if let Some(why) = excluded(p).or_else(|| text(p).err().map(|_| "bad")) {
                drop_subtree(p, why, out);
            } else if role(p) != Some("prompter") {
                out.drop_part("reply with unexpected role");
            } else {
                walk(p, thread, tree_id, out, depth + 1)?;
            }
        }
        thread.pop();
    }
    thread.pop();
    Ok(())
}
