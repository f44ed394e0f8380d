//! The OpenAssistant message-level export — one message per line with `message_id`,
//! `parent_id` (null on the root), `message_tree_id`, `role`, `text`, `rank`, ... — the
//! layout of the published oasst1/oasst2 releases. Lines may come in any order: the trees
//! are rebuilt here and converted by [`super::oasst`] exactly as the tree export is.
//!
//! Siblings are ordered as Open-Assistant's own tree export orders `replies` (by `rank`,
//! unranked last; then by `created_date`, then by line), and trees by their root's
//! `created_date`, then line, so a shuffled file converts to the same records.
//!
//! Accounting is per line: every line of a converted tree is converted (its left-out
//! messages are counted in `dropped`, as for a tree row); a skipped tree reports its reason
//! on the root's line and "message of a skipped tree" on the others; lines that belong to
//! no tree (a missing parent, a duplicate id) are skipped with their own reason.

use super::oasst::MAX_DEPTH;
use super::Skip;
use crate::io::Row;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Deeper chains than this cannot convert (the tree reader stops after [`MAX_DEPTH`]
/// prompter turns); they are refused before any recursion over them.
const MAX_MESSAGES_DEEP: usize = 2 * (MAX_DEPTH + 1);

/// Whether a row is one message of the message-level export (not a whole tree).
pub fn is_message_row(row: &Map<String, Value>) -> bool {
    row.contains_key("message_id") && !row.get("prompt").is_some_and(Value::is_object)
}

/// One rebuilt tree: a row in the tree export's shape, or why the tree cannot convert.
#[derive(Debug)]
pub struct Tree {
    pub row: Result<Map<String, Value>, Skip>,
    /// The root message's line, first, then the lines of the other messages.
    pub lines: Vec<usize>,
}

/// The rows split into rebuilt trees, rows that are not messages, and message lines
/// that belong to no tree.
#[derive(Debug, Default)]
pub struct Rebuilt<'a> {
    pub trees: Vec<Tree>,
    pub rest: Vec<&'a Row>,
    pub skipped: Vec<(usize, Skip)>,
}

struct Msg<'a> {
    line: usize,
    id: &'a str,
    obj: &'a Map<String, Value>,
    parent: Option<&'a str>,
}

/// Gather the message rows of `rows` into trees; other rows are passed through in `rest`.
pub fn rebuild(rows: &[Row]) -> Rebuilt<'_> {
    let mut out = Rebuilt::default();
    let mut msgs: Vec<Msg> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for row in rows {
        let Some(obj) = row.value.as_object().filter(|o| is_message_row(o)) else {
            out.rest.push(row);
            continue;
        };
        match message(obj) {
            Err(skip) => out.skipped.push((row.line, skip)),
            Ok((id, parent)) => {
                if let Some(&first) = by_id.get(id) {
                    let detail = format!("message {id} is also on line {}", msgs[first].line);
                    out.skipped.push((row.line, Skip::new("duplicate message_id", detail)));
                } else {
                    by_id.insert(id, msgs.len());
                    msgs.push(Msg { line: row.line, id, obj, parent });
                }
            }
        }
    }

    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        match m.parent {
            None => roots.push(i),
            Some(p) => children.entry(p).or_default().push(i),
        }
    }
    for list in children.values_mut() {
        list.sort_by(|&a, &b| sibling_order(&msgs[a], &msgs[b]));
    }
    roots.sort_by(|&a, &b| sibling_order(&msgs[a], &msgs[b]));

    let mut in_tree = vec![false; msgs.len()];
    for root in roots {
        // Depth-first without recursion: a chain of any length is only walked here.
        let (mut lines, mut deepest, mut stack) = (Vec::new(), 0, vec![(root, 1usize)]);
        while let Some((i, depth)) = stack.pop() {
            in_tree[i] = true;
            lines.push(msgs[i].line);
            deepest = deepest.max(depth);
            stack.extend(children.get(msgs[i].id).into_iter().flatten().rev().map(|&c| (c, depth + 1)));
        }
        let row = if deepest > MAX_MESSAGES_DEEP {
            Err(Skip::new(
                "tree too deep",
                format!("a thread of {deepest} messages; at most {MAX_MESSAGES_DEEP} convert"),
            ))
        } else {
            let tree_id = msgs[root].obj.get("message_tree_id").cloned().unwrap_or_else(|| msgs[root].id.into());
            let mut row = Map::new();
            row.insert("message_tree_id".into(), tree_id);
            row.insert("prompt".into(), nest(root, &msgs, &children));
            Ok(row)
        };
        out.trees.push(Tree { row, lines });
    }

    for m in msgs.iter().zip(&in_tree).filter(|(_, &seen)| !seen).map(|(m, _)| m) {
        let id = m.id;
        let parent = m.parent.unwrap_or_default();
        out.skipped.push(if by_id.contains_key(parent) {
            let detail = format!(
                "message {id} replies to {parent}, which has no root message either (a missing ancestor or a cycle)"
            );
            (m.line, Skip::new("under a message with no root", detail))
        } else {
            let detail =
                format!("message {id} replies to {parent}, which is not in the file (a split or filtered export?)");
            (m.line, Skip::new("parent message not in the file", detail))
        });
    }
    out
}

/// A message's id and parent id, or why the line is not usable.
fn message(obj: &Map<String, Value>) -> Result<(&str, Option<&str>), Skip> {
    let id = super::get_str(obj, "message_id")?;
    let parent = match obj.get("parent_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.as_str()),
        Some(other) => return Err(Skip::wrong_type("parent_id", "a message id string or null", other)),
    };
    Ok((id, parent))
}

/// Open-Assistant's export sorts `replies` by `rank` (unranked last); ties keep creation order.
fn sibling_order(a: &Msg, b: &Msg) -> Ordering {
    fn rank(m: &Msg) -> u64 {
        m.obj.get("rank").and_then(Value::as_u64).unwrap_or(u64::MAX)
    }
    fn created<'a>(m: &Msg<'a>) -> &'a str {
        m.obj.get("created_date").and_then(Value::as_str).unwrap_or_default()
    }
    rank(a).cmp(&rank(b)).then_with(|| created(a).cmp(created(b))).then(a.line.cmp(&b.line))
}

/// The message with its `replies` nested, as in the tree export. Depth is bounded by the
/// caller ([`MAX_MESSAGES_DEEP`]).
fn nest(i: usize, msgs: &[Msg], children: &HashMap<&str, Vec<usize>>) -> Value {
    let mut m = msgs[i].obj.clone();
    let replies = children.get(msgs[i].id).into_iter().flatten().map(|&c| nest(c, msgs, children)).collect();
    m.insert("replies".into(), Value::Array(replies));
    Value::Object(m)
}
