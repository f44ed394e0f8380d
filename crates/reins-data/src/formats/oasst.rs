//! OpenAssistant export trees: one JSON tree per line (`message_tree_id`, a `prompt` node
//! with `message_id`, `parent_id`, `role` prompter/assistant, `text`, `rank` on ranked
//! siblings, optional `labels`, `deleted`, `review_result`, nested `replies`).
//!
//! Every prompter message with at least one valid assistant reply becomes a
//! [`Record::RankedList`] whose prompt is the whole thread up to that message; the
//! replies carry their `rank` (0 = best) and their `labels` as ratings. From these,
//! [`crate::convert`] derives SFT threads (best reply) and pairs. Deleted messages and
//! messages that failed review are left out with their subtrees, and counted.

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

fn text(m: &Map<String, Value>) -> Result<&str, Skip> {
    m.get("text").and_then(Value::as_str).ok_or_else(|| {
        let id = m.get("message_id").and_then(Value::as_str).unwrap_or("?");
        Skip::new("bad message", format!("message {id} has no `text` string"))
    })
}

/// Depth guard: OASST threads are short; a pathological input must not blow the stack.
const MAX_DEPTH: usize = 256;

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
        if let Some(why) = excluded(reply) {
            out.drop_part(&format!("{why} message"));
            let below = subtree_size(reply) - 1;
            if below > 0 {
                *out.dropped.entry(format!("replies under a {why} message")).or_default() += below;
            }
            continue;
        }
        if role(reply) != Some("assistant") {
            out.drop_part("reply with unexpected role");
            continue;
        }
        let ratings: BTreeMap<String, f64> = reply
            .get("labels")
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| {
                        let x = v.get("value").unwrap_or(v);
                        super::as_f64(x).map(|x| (k.clone(), x))
                    })
                    .collect()
            })
            .unwrap_or_default();
        ranked.push(Ranked {
            response: Text::Chat(vec![Message::assistant(text(reply)?)]),
            rank: reply.get("rank").and_then(Value::as_u64).map(|r| r as u32),
            score: None,
            ratings,
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
                category: None,
            },
        });
    }
    for a in kept {
        thread.push(Message::assistant(text(a)?));
        for p in replies(a) {
            if let Some(why) = excluded(p) {
                out.drop_part(&format!("{why} message"));
                let below = subtree_size(p) - 1;
                if below > 0 {
                    *out.dropped.entry(format!("replies under a {why} message")).or_default() += below;
                }
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
