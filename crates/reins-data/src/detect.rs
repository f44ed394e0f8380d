//! Format detection from the keys of the first rows.

use crate::formats::Format;
use crate::io::{Report, Row};
use serde_json::{Map, Value};

/// The format of one row, from its keys; `None` when it fits none.
pub fn detect_row(row: &Map<String, Value>) -> Option<Format> {
    let has = |k: &str| row.contains_key(k);
    if has("message_tree_id") && row.get("prompt").is_some_and(Value::is_object) {
        return Some(Format::Oasst);
    }
    // The message-level export (oasst1/oasst2 releases): it also has `text`, which would
    // otherwise read as TRL language-modeling rows.
    if has("message_id") && has("parent_id") && has("message_tree_id") && has("role") {
        return Some(Format::Oasst);
    }
    if has("instruction") && has("completions") {
        return Some(Format::UltraFeedback);
    }
    if has("human_ref_A") && has("human_ref_B") {
        return Some(Format::Shp);
    }
    if has("summaries") && has("choice") && has("info") {
        return Some(Format::Summarize);
    }
    if has("response_1") && has("preference_strength") {
        return Some(Format::HelpSteer2Preference);
    }
    if has("response") && has("helpfulness") && has("correctness") {
        return Some(Format::HelpSteer2);
    }
    if has("response_0") && (has("better_response_id") || has("safer_response_id")) {
        return Some(Format::PkuSafe);
    }
    if has("winner") && has("conversation_a") && has("conversation_b") {
        return Some(Format::Arena);
    }
    if !has("prompt") {
        if let (Some(Value::String(c)), Some(Value::String(_))) = (row.get("chosen"), row.get("rejected")) {
            if crate::formats::hh::looks_like_transcript(c) {
                return Some(Format::Hh);
            }
        }
    }
    let trl_keys = [
        "prompt",
        "chosen",
        "rejected",
        "completion",
        "messages",
        "conversations",
        "text",
        "completions",
        "responses",
        "spans",
    ];
    if trl_keys.iter().any(|k| has(k)) {
        return Some(Format::Trl);
    }
    None
}

/// How many readable rows detection looks at.
pub const DETECT_ROWS: usize = 100;

/// How many skipped lines a failed detection quotes.
const QUOTED_PROBLEMS: usize = 3;

/// The format of a file: the most common detection over its first [`DETECT_ROWS`] rows.
/// When there is no readable row, the error quotes why the first lines were skipped (from
/// `report`), since that is what the user has to fix.
pub fn detect_rows(rows: &[Row], report: &Report) -> Result<Format, String> {
    let mut votes: Vec<(Format, usize)> = Vec::new();
    for row in rows.iter().take(DETECT_ROWS) {
        if let Some(f) = row.value.as_object().and_then(detect_row) {
            match votes.iter_mut().find(|(g, _)| *g == f) {
                Some((_, n)) => *n += 1,
                None => votes.push((f, 1)),
            }
        }
    }
    if rows.is_empty() {
        return Err(no_readable_rows(report));
    }
    votes.into_iter().max_by_key(|&(_, n)| n).map(|(f, _)| f).ok_or_else(|| {
        let keys: Vec<&str> =
            rows[0].value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        format!("no known keys in the first rows; the first row has keys {keys:?}")
    })
}

fn no_readable_rows(report: &Report) -> String {
    if report.rows == 0 {
        return "the file is empty".into();
    }
    let mut why = format!("the file has no readable rows: all {} lines were skipped", report.rows);
    let mut first: Vec<_> = report.problems.iter().collect();
    first.sort_by_key(|p| p.line);
    for p in first.iter().take(QUOTED_PROBLEMS) {
        why.push_str(&format!("; line {}: {}", p.line, p.reason));
        if !p.detail.is_empty() {
            why.push_str(&format!(" ({})", p.detail));
        }
    }
    why
}
