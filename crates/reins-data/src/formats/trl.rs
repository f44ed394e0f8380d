//! TRL's own dataset columns, standard or conversational, plus reins' extensions
//! (`strength`, `reference`, `annotator_id`, ranked `responses`, `ratings`, `spans`) and the
//! layouts of the feedback app's exports (`ranks` beside a list of responses, `ratings` of one
//! `completion`, `item_id`, `annotator`).

use super::{as_f64, get, opt_str, Out, Skip};
use crate::records::{Message, Meta, Preference, Ranked, Record, Span, Text};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Keys of the feedback app's exports that no record type carries (critiques, rewrites). A
/// row with one is skipped rather than read as prompt-completion, which would make the judged
/// response a target and lose the judgment. (`reins data principles` turns critiques into
/// principle checks by a rule file.)
const UNREAD_FEEDBACK: [&str; 2] = ["critique", "rewrite"];

/// Parse a TRL text field: a string, or a list of `{role, content}` messages.
pub fn parse_text(key: &str, v: &Value) -> Result<Text, Skip> {
    match v {
        Value::String(s) => Ok(Text::Plain(s.clone())),
        Value::Array(items) => {
            let mut msgs = Vec::with_capacity(items.len());
            for (i, m) in items.iter().enumerate() {
                msgs.push(parse_message(m).map_err(|why| Skip::new("bad message", format!("`{key}[{i}]`: {why}")))?);
            }
            Ok(Text::Chat(msgs))
        }
        other => Err(Skip::wrong_type(key, "a string or a list of messages", other)),
    }
}

/// One `{role, content}` message. Content may be a string, null or absent (tool calls), or a
/// list of `{"type": "text", "text": ...}` parts (joined). The keys of tool use and
/// reasoning (`tool_calls`, `tool_call_id`, `name`, `reasoning_content` or its other
/// spellings `thinking` / `reasoning`) are kept, so templates render them; a null one counts
/// as absent, as in transformers.
pub fn parse_message(m: &Value) -> Result<Message, String> {
    let Value::Object(o) = m else {
        return Err(format!("expected an object, found {}", crate::io::json_type(m)));
    };
    // ShareGPT spells it from/value.
    let role = o.get("role").or_else(|| o.get("from")).and_then(Value::as_str).ok_or("missing `role`")?;
    let role = match role {
        "human" => "user",
        "gpt" => "assistant",
        r => r,
    };
    let content = match o.get("content").or_else(|| o.get("value")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(Value::Array(parts)) => {
            Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""))
        }
        Some(other) => return Err(format!("`content` should be a string, found {}", crate::io::json_type(other))),
    };
    let tool_calls = match o.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => {
            if let Some(bad) = calls.iter().find(|c| !c.is_object()) {
                return Err(format!(
                    "`tool_calls` should be a list of objects like {{\"type\": \"function\", \"function\": {{\"name\": ..., \"arguments\": ...}}}}, found an item that is {}",
                    crate::io::json_type(bad)
                ));
            }
            calls.clone()
        }
        Some(other) => {
            return Err(format!("`tool_calls` should be a list of call objects, found {}", crate::io::json_type(other)))
        }
    };
    let mut reasoning = None;
    for key in ["reasoning_content", "thinking", "reasoning"] {
        if let Some(r) = opt_string(o, key)? {
            reasoning = Some(r);
            break;
        }
    }
    Ok(Message {
        role: role.to_string(),
        content_is_null: content.is_none(),
        content: content.unwrap_or_default(),
        tool_calls,
        tool_call_id: opt_string(o, "tool_call_id")?,
        name: opt_string(o, "name")?,
        reasoning_content: reasoning,
    })
}

/// An optional string key of a message; null counts as absent.
fn opt_string(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` should be a string, found {}", crate::io::json_type(other))),
    }
}

fn text(row: &Map<String, Value>, key: &str) -> Result<Text, Skip> {
    parse_text(key, get(row, key)?)
}

fn meta(row: &Map<String, Value>) -> Meta {
    Meta {
        // The feedback app's exports call it `item_id` (the item's external id).
        id: opt_str(row, "id").or_else(|| opt_str(row, "item_id")),
        // The feedback app's exports call it `annotator`.
        annotator_id: opt_str(row, "annotator_id")
            .or_else(|| opt_str(row, "user_id"))
            .or_else(|| opt_str(row, "annotator")),
        source: opt_str(row, "source"),
        // RewardBench calls it `subset`.
        category: opt_str(row, "category").or_else(|| opt_str(row, "subset")),
        split: opt_str(row, "split"),
    }
}

fn opt_num(row: &Map<String, Value>, key: &str) -> Result<Option<f64>, Skip> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_f64(v).map(Some).ok_or_else(|| Skip::wrong_type(key, "a number", v)),
    }
}

/// The optional soft label: a probability that `chosen` is preferred.
fn strength(row: &Map<String, Value>) -> Result<Option<f64>, Skip> {
    match opt_num(row, "strength")? {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(Skip::new(
            "strength outside [0, 1]",
            format!("`strength` is the probability that chosen is preferred, in [0, 1]; got {p}"),
        )),
        p => Ok(p),
    }
}

/// TRL's `extract_prompt`: the longest common prefix of `chosen` and `rejected` (characters
/// for strings, whole messages for conversations) becomes the prompt; for strings a space
/// just before the divergence goes with the completions. Differs from TRL only where TRL
/// would fail or misbehave: identical or empty inputs, or a divergence at position 0.
pub fn extract_prompt(chosen: &Text, rejected: &Text) -> (Text, Text, Text) {
    match (chosen, rejected) {
        (Text::Plain(c), Text::Plain(r)) => {
            let cc: Vec<char> = c.chars().collect();
            let rc: Vec<char> = r.chars().collect();
            let n = cc.len().min(rc.len());
            let mut idx = (0..n).find(|&i| cc[i] != rc[i]).unwrap_or(n);
            if idx > 0 && idx < n && cc[idx - 1] == ' ' {
                idx -= 1;
            }
            let s = |v: &[char]| v.iter().collect::<String>();
            (Text::Plain(s(&cc[..idx])), Text::Plain(s(&cc[idx..])), Text::Plain(s(&rc[idx..])))
        }
        (Text::Chat(c), Text::Chat(r)) => {
            let n = c.len().min(r.len());
            let idx = (0..n).find(|&i| c[i] != r[i]).unwrap_or(n);
            (Text::Chat(c[..idx].to_vec()), Text::Chat(c[idx..].to_vec()), Text::Chat(r[idx..].to_vec()))
        }
        _ => (Text::Plain(String::new()), chosen.clone(), rejected.clone()),
    }
}

pub fn convert(row: &Map<String, Value>, out: &mut Out) -> Result<(), Skip> {
    let has = |k: &str| row.get(k).is_some_and(|v| !v.is_null());
    let meta = meta(row);
    if has("chosen") || has("rejected") {
        let chosen = text(row, "chosen")?;
        let rejected = text(row, "rejected")?;
        let (prompt, chosen, rejected) =
            if has("prompt") { (text(row, "prompt")?, chosen, rejected) } else { extract_prompt(&chosen, &rejected) };
        let reference = match row.get("reference") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_text("reference", v)?),
        };
        out.push(Record::Preference(Preference {
            prompt,
            chosen,
            rejected,
            margin: opt_num(row, "margin")?,
            strength: strength(row)?,
            reference,
            meta,
        }));
    } else if has("spans") {
        // Before `completion`: the feedback app's spans export keeps the response there.
        let key = if has("completion") { "completion" } else { "response" };
        let response = super::get_str(row, key)?.to_string();
        let spans = spans(row, &response)?;
        out.push(Record::Spans { prompt: text(row, "prompt")?, response, spans, meta });
    } else if has("principles") && (has("completion") || has("response")) {
        // The feedback app's `principles` export: yes/no checks of one response.
        let key = if has("completion") { "completion" } else { "response" };
        let response = super::get_str(row, key)?.to_string();
        let principles = principle_checks(get(row, "principles")?)?;
        out.push(Record::Principles { prompt: text(row, "prompt")?, response, principles, meta });
    } else if has("ratings") && has("completion") {
        // The feedback app's `ratings` export: one response rated per aspect, read as
        // HelpSteer2's attribute rows are (a ranked list of one, the ratings kept).
        let response = Ranked {
            response: text(row, "completion")?,
            rank: None,
            score: None,
            ratings: ratings("ratings", get(row, "ratings")?)?,
            annotator_id: None,
        };
        out.push(Record::RankedList { prompt: text(row, "prompt")?, responses: vec![response], meta });
    } else if let Some(key) = UNREAD_FEEDBACK.iter().find(|k| has(k) && has("completion")) {
        return Err(Skip::new(
            "feedback without a record type",
            format!(
                "`{key}` (the feedback app's `critiques` export) has no reins record type; the row is not \
                 read as prompt-completion, which would train on the judged response (`reins data principles \
                 --rules FILE.toml` turns critiques into principle checks)"
            ),
        ));
    } else if has("completions") && has("labels") {
        let prompt = super::get_str(row, "prompt")?.to_string();
        let completions = str_list(row, "completions")?;
        let labels = match get(row, "labels")? {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| Skip::wrong_type("labels[]", "a boolean", v)))
                .collect::<Result<Vec<_>, _>>()?,
            v => return Err(Skip::wrong_type("labels", "a list of booleans", v)),
        };
        if labels.len() != completions.len() {
            return Err(Skip::new(
                "length mismatch",
                format!("{} completions but {} labels", completions.len(), labels.len()),
            ));
        }
        out.push(Record::Stepwise { prompt, completions, labels, meta });
    } else if has("completion") && has("label") {
        let label = match get(row, "label")? {
            Value::Bool(b) => *b,
            v => return Err(Skip::wrong_type("label", "a boolean", v)),
        };
        out.push(Record::Unpaired { prompt: text(row, "prompt")?, completion: text(row, "completion")?, label, meta });
    } else if has("completion") {
        out.push(Record::PromptCompletion { prompt: text(row, "prompt")?, completion: text(row, "completion")?, meta });
    } else if has("responses") {
        out.push(Record::RankedList { prompt: text(row, "prompt")?, responses: ranked_list(row)?, meta });
    } else if has("messages") || has("conversations") {
        // `conversations` with from/value is ShareGPT's spelling (TRL converts it to ChatML).
        let key = if has("messages") { "messages" } else { "conversations" };
        out.push(Record::LanguageModeling { text: text(row, key)?, meta });
    } else if has("text") {
        out.push(Record::LanguageModeling { text: text(row, "text")?, meta });
    } else if has("prompt") {
        out.push(Record::PromptOnly { prompt: text(row, "prompt")?, meta });
    } else {
        return Err(Skip::new(
            "unrecognised row",
            "no TRL columns (prompt, chosen/rejected, completion, messages, text)",
        ));
    }
    Ok(())
}

/// Principle checks `{text: true|false|"yes"|"no"}`; a `null` check (not applicable) is left
/// out. A row with no check left is skipped.
fn principle_checks(v: &Value) -> Result<BTreeMap<String, bool>, Skip> {
    let Value::Object(m) = v else {
        return Err(Skip::wrong_type("principles", "an object {principle: true or false}", v));
    };
    let mut out = BTreeMap::new();
    for (p, c) in m {
        let yes = match c {
            Value::Null => continue,
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("yes") => true,
            Value::String(s) if s.eq_ignore_ascii_case("no") => false,
            other => return Err(Skip::wrong_type(&format!("principles.{p}"), "true, false, \"yes\" or \"no\"", other)),
        };
        if p.trim().is_empty() {
            return Err(Skip::new("bad principles", "a principle's text is empty"));
        }
        out.insert(p.clone(), yes);
    }
    if out.is_empty() {
        return Err(Skip::new("bad principles", "no principle is checked yes or no"));
    }
    Ok(out)
}

/// The `spans` of a response: `{"start", "end", "tag" or "label", "text"?}` with character
/// offsets (Unicode scalar values). A span outside the response, or whose `text` is not the
/// text it covers (offsets counted in bytes or UTF-16 units give that), skips the row.
fn spans(row: &Map<String, Value>, response: &str) -> Result<Vec<Span>, Skip> {
    let Value::Array(items) = get(row, "spans")? else {
        return Err(Skip::wrong_type("spans", "a list of {start, end, tag} objects", get(row, "spans")?));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let span = Span::deserialize(item).map_err(|e| Skip::new("bad spans", format!("`spans[{i}]`: {e}")))?;
        if span.start > span.end {
            return Err(Skip::new(
                "bad spans",
                format!("`spans[{i}]` is {}..{}: `start` is after `end`", span.start, span.end),
            ));
        }
        let Some(covered) = span.text(response) else {
            return Err(Skip::new(
                "bad spans",
                format!(
                    "`spans[{i}]` is {}..{}, outside the response ({} characters); offsets count characters (Unicode scalar values), not bytes",
                    span.start,
                    span.end,
                    response.chars().count()
                ),
            ));
        };
        match item.get("text") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if *t == covered => {}
            Some(Value::String(t)) => {
                return Err(Skip::new(
                    "bad spans",
                    format!(
                        "`spans[{i}].text` is {t:?} but characters {}..{} of the response are {covered:?}; offsets count characters (Unicode scalar values), not bytes or UTF-16 units",
                        span.start, span.end
                    ),
                ))
            }
            Some(other) => return Err(Skip::wrong_type(&format!("spans[{i}].text"), "a string", other)),
        }
        out.push(span);
    }
    Ok(out)
}

fn str_list(row: &Map<String, Value>, key: &str) -> Result<Vec<String>, Skip> {
    match get(row, key)? {
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| Skip::wrong_type(key, "a list of strings", v)))
            .collect(),
        v => Err(Skip::wrong_type(key, "a list of strings", v)),
    }
}

/// A ranked list, in one of two layouts:
/// - objects: `"responses": [{"response", "rank"?, "score"?, "ratings"?, "annotator_id"?}]`
///   (what [`Record::to_json`] writes; ties share a rank);
/// - texts with parallel lists: `"responses": [text]` with `"ranks": [int]` (0 = best, each
///   of `0..n` once: the feedback app's `ranked` export) and/or `"scores": [number]` (higher
///   is better).
///
/// A rank, score or rating that is not a number, and parallel lists that do not fit the
/// responses, skip the row.
fn ranked_list(row: &Map<String, Value>) -> Result<Vec<Ranked>, Skip> {
    let Value::Array(items) = get(row, "responses")? else {
        return Err(Skip::wrong_type("responses", "a list", get(row, "responses")?));
    };
    let parallel = |k: &str| row.get(k).is_some_and(|v| !v.is_null());
    if parallel("ranks") || parallel("scores") {
        return ranked_texts(row, items);
    }
    if !items.is_empty() && !items.iter().any(Value::is_object) {
        let mut why = "`responses` is a list of texts but the row has no `ranks` (0 = best) or `scores` to order \
                       them; add one, or give objects {response, rank}"
            .to_string();
        if row.contains_key("answer") {
            why.push_str("; `answer` (the feedback app's `raw` and `consensus` exports) is not read");
        }
        return Err(Skip::new("unranked responses", why));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("responses[{i}]");
        let Value::Object(o) = item else {
            return Err(Skip::wrong_type(&key, "an object {response, rank?, score?, ratings?}", item));
        };
        let response = parse_text(&key, o.get("response").unwrap_or(&Value::Null))?;
        let ratings = match o.get("ratings") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(r) => ratings(&format!("{key}.ratings"), r)?,
        };
        let rank = match o.get("rank") {
            None | Some(Value::Null) => None,
            Some(v) => Some(rank(&format!("{key}.rank"), v)?),
        };
        let score = match o.get("score") {
            None | Some(Value::Null) => None,
            Some(v) => Some(number(&format!("{key}.score"), v)?),
        };
        let annotator_id = match o.get("annotator_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.clone()),
            Some(Value::Number(a)) => Some(a.to_string()),
            Some(v) => return Err(Skip::wrong_type(&format!("{key}.annotator_id"), "a string", v)),
        };
        out.push(Ranked { response, rank, score, ratings, annotator_id });
    }
    Ok(out)
}

/// `responses` as texts, ordered by the parallel `ranks` and/or `scores` lists.
fn ranked_texts(row: &Map<String, Value>, items: &[Value]) -> Result<Vec<Ranked>, Skip> {
    let n = items.len();
    let column = |key: &str| -> Result<Option<&Vec<Value>>, Skip> {
        match row.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.len() == n => Ok(Some(a)),
            Some(Value::Array(a)) => {
                Err(Skip::new("length mismatch", format!("{n} responses but {} `{key}`", a.len())))
            }
            Some(v) => Err(Skip::wrong_type(key, "a list with one entry per response", v)),
        }
    };
    let ranks = match column("ranks")? {
        None => None,
        Some(a) => {
            let mut seen = vec![false; n];
            let mut ranks = Vec::with_capacity(n);
            for (i, v) in a.iter().enumerate() {
                let r = rank(&format!("ranks[{i}]"), v)?;
                match seen.get_mut(r as usize) {
                    None => {
                        return Err(Skip::new(
                            "bad ranks",
                            format!("`ranks[{i}]` is {r}, but {n} responses are ranked 0..{n} (0 = best)"),
                        ))
                    }
                    Some(true) => {
                        return Err(Skip::new(
                            "bad ranks",
                            format!(
                                "rank {r} is given twice (`ranks[{i}]`); `ranks` holds each of 0..{n} once (0 = best); \
                                 for ties give objects {{response, rank}}"
                            ),
                        ))
                    }
                    Some(s) => *s = true,
                }
                ranks.push(r);
            }
            Some(ranks)
        }
    };
    let scores = match column("scores")? {
        None => None,
        Some(a) => {
            Some(a.iter().enumerate().map(|(i, v)| number(&format!("scores[{i}]"), v)).collect::<Result<Vec<_>, _>>()?)
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Ok(Ranked {
                response: parse_text(&format!("responses[{i}]"), item)?,
                rank: ranks.as_ref().map(|r| r[i]),
                score: scores.as_ref().map(|s| s[i]),
                ratings: BTreeMap::new(),
                annotator_id: None,
            })
        })
        .collect()
}

/// A rank: an integer >= 0.
fn rank(key: &str, v: &Value) -> Result<u32, Skip> {
    v.as_u64().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| Skip::wrong_type(key, "an integer >= 0 (0 = best)", v))
}

/// A finite number, or a string holding one ("4"); not a boolean.
fn number(key: &str, v: &Value) -> Result<f64, Skip> {
    match v {
        Value::Bool(_) => None,
        v => as_f64(v),
    }
    .ok_or_else(|| Skip::wrong_type(key, "a number", v))
}

/// `{aspect: number}`, e.g. the feedback app's Likert answers `{"helpfulness": 4}`.
fn ratings(key: &str, v: &Value) -> Result<BTreeMap<String, f64>, Skip> {
    let Value::Object(o) = v else {
        return Err(Skip::wrong_type(key, "an object {aspect: number}", v));
    };
    o.iter().map(|(aspect, x)| Ok((aspect.clone(), number(&format!("{key}.{aspect}"), x)?))).collect()
}
