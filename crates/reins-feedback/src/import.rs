//! Item import from JSONL. Accepted line shapes (one JSON object per line, blank lines
//! ignored):
//!
//! 1. `{"prompt": "...", "responses": ["...", ...], "id"?: "..." | 7, "gold"?: {...}}`
//! 2. `reins generate` output with all samples on one line: `{"prompt": "...", "completions": ["...", ...]}`
//! 3. `reins generate` output with one sample per line: `{"prompt": "...", "completion": "..."}`;
//!    lines with the same prompt are grouped into one item, in first-seen order.
//!
//! Other keys are ignored. Items without `id` get a content hash as id, so importing the
//! same file twice adds nothing. Bad lines are reported by line number; good lines are kept.
use crate::db::Db;
use crate::error::Result;
use crate::tasks::ProjectConfig;
use serde::Serialize;
use serde_json::Value;

pub const MAX_PROMPT_BYTES: usize = 100_000;
pub const MAX_RESPONSE_BYTES: usize = 100_000;
pub const MAX_RESPONSES: usize = 16;
pub const MAX_ID_BYTES: usize = 200;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ImportReport {
    pub imported: usize,
    pub duplicates: usize,
    pub errors: Vec<LineError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub line: usize,
    pub external_id: String,
    pub prompt: String,
    pub responses: Vec<String>,
    pub gold: Option<Value>,
    /// `suggestions` and `suggestion_source` as given; checked against the project's
    /// questions by `import_jsonl` (see `suggestions`).
    pub suggestions: Option<(Value, Option<Value>)>,
}

/// FNV-1a, 64 bit: a stable content id and split hash (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

fn string_list(v: &Value, key: &str) -> std::result::Result<Vec<String>, String> {
    let arr = v.as_array().ok_or(format!("`{key}` must be a list of strings"))?;
    arr.iter().map(|s| s.as_str().map(str::to_string).ok_or(format!("`{key}` must be a list of strings"))).collect()
}

/// Parses JSONL text into items, with errors by (1-based) line.
pub fn parse_jsonl(text: &str, min_responses: usize) -> (Vec<NewItem>, Vec<LineError>) {
    let mut items: Vec<NewItem> = Vec::new();
    let mut errors = Vec::new();
    // Shape 3: prompt → index into `items`.
    let mut singles: std::collections::HashMap<String, usize> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut err = |m: String| errors.push(LineError { line: line_no, message: m });
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                err(format!("not valid JSON: {e}"));
                continue;
            }
        };
        let Some(prompt) = v.get("prompt").and_then(Value::as_str) else {
            err("missing string field `prompt`".into());
            continue;
        };
        if prompt.len() > MAX_PROMPT_BYTES {
            err(format!("prompt is {} bytes; the limit is {MAX_PROMPT_BYTES}", prompt.len()));
            continue;
        }
        let responses = if let Some(r) = v.get("responses") {
            string_list(r, "responses")
        } else if let Some(r) = v.get("completions") {
            string_list(r, "completions")
        } else if let Some(c) = v.get("completion") {
            if v.get("suggestions").is_some() {
                err("`suggestions` need all responses on one line (`responses` or `completions`), not `completion`"
                    .into());
                continue;
            }
            match c.as_str() {
                Some(c) if c.len() > MAX_RESPONSE_BYTES => {
                    Err(format!("completion is {} bytes; the limit is {MAX_RESPONSE_BYTES}", c.len()))
                }
                Some(c) => {
                    if let Some(&idx) = singles.get(prompt) {
                        if items[idx].responses.len() >= MAX_RESPONSES {
                            err(format!("more than {MAX_RESPONSES} completions for this prompt"));
                        } else {
                            items[idx].responses.push(c.to_string());
                        }
                    } else {
                        singles.insert(prompt.to_string(), items.len());
                        items.push(NewItem {
                            line: line_no,
                            external_id: String::new(),
                            prompt: prompt.into(),
                            responses: vec![c.into()],
                            gold: None,
                            suggestions: None,
                        });
                    }
                    continue;
                }
                None => Err("`completion` must be a string".to_string()),
            }
        } else {
            Err("missing `responses` (or `completions` / `completion`)".to_string())
        };
        let responses = match responses {
            Ok(r) => r,
            Err(m) => {
                err(m);
                continue;
            }
        };
        if let Some(r) = responses.iter().find(|r| r.len() > MAX_RESPONSE_BYTES) {
            err(format!("a response is {} bytes; the limit is {MAX_RESPONSE_BYTES}", r.len()));
            continue;
        }
        if responses.len() > MAX_RESPONSES || responses.len() < min_responses {
            err(format!("{} responses; this project needs {min_responses} to {MAX_RESPONSES}", responses.len()));
            continue;
        }
        let external_id = match v.get("id") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                err(format!("`id` must be a non-empty string (at most {MAX_ID_BYTES} bytes) or a number"));
                continue;
            }
        };
        let gold = match v.get("gold") {
            None | Some(Value::Null) => None,
            Some(g @ Value::Object(_)) => Some(g.clone()),
            Some(_) => {
                err("`gold` must be an object: {\"<question>\": <expected answer>}".into());
                continue;
            }
        };
        let suggestions = match v.get("suggestions") {
            None | Some(Value::Null) if v.get("suggestion_source").is_some_and(|s| !s.is_null()) => {
                err("`suggestion_source` without `suggestions`: add the suggested answers or drop it".into());
                continue;
            }
            None | Some(Value::Null) => None,
            Some(s) => Some((s.clone(), v.get("suggestion_source").cloned())),
        };
        items.push(NewItem { line: line_no, external_id, prompt: prompt.into(), responses, gold, suggestions });
    }
    items.retain(|it| {
        if it.responses.len() < min_responses {
            errors.push(LineError {
                line: it.line,
                message: format!(
                    "prompt has {} completion(s); this project needs at least {min_responses}",
                    it.responses.len()
                ),
            });
            false
        } else {
            true
        }
    });
    for it in &mut items {
        if it.external_id.is_empty() {
            let mut key = it.prompt.clone();
            for r in &it.responses {
                key.push('\u{1f}');
                key.push_str(r);
            }
            it.external_id = format!("h{:016x}", fnv1a(key.as_bytes()));
        }
    }
    errors.sort_by_key(|e| e.line);
    (items, errors)
}

/// Parses and stores; duplicates (same id in the project) are counted, not re-added.
pub async fn import_jsonl(db: &Db, project_id: &str, text: &str) -> Result<ImportReport> {
    let project = db.project(project_id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let (items, errors) = parse_jsonl(text, cfg.min_responses());
    let mut report = ImportReport { errors, ..Default::default() };
    for it in items {
        let suggestions = match &it.suggestions {
            None => None,
            Some((raw, source)) => match crate::suggestions::parse(&cfg, raw, source.as_ref(), &it.responses) {
                Ok(s) => Some(s),
                Err(message) => {
                    report.errors.push(LineError { line: it.line, message });
                    continue;
                }
            },
        };
        if db.insert_item(project_id, &it.external_id, &it.prompt, &it.responses, it.gold.as_ref()).await? {
            report.imported += 1;
        } else {
            report.duplicates += 1;
        }
        // Also for a duplicate: an item imported before without suggestions (or whose import
        // stopped between the two writes) gets them; one that has some keeps its own.
        if let Some(s) = &suggestions {
            db.set_item_suggestions(project_id, &it.external_id, s).await?;
        }
    }
    report.errors.sort_by_key(|e| e.line);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_three_shapes_and_groups_single_completions() {
        let text = r#"{"prompt": "p1", "responses": ["a", "b"], "id": "x"}
{"prompt": "p2", "completions": ["c", "d"]}
{"prompt": "p3", "completion": "e"}

{"prompt": "p3", "completion": "f"}"#;
        let (items, errors) = parse_jsonl(text, 2);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].external_id, "x");
        assert_eq!(items[2].responses, vec!["e", "f"]);
    }

    #[test]
    fn bad_lines_are_reported_by_line() {
        let big = "x".repeat(MAX_RESPONSE_BYTES + 1);
        let text = format!(
            "{{\"prompt\": \"ok\", \"responses\": [\"a\", \"b\"]}}\nnot json\n{{\"responses\": [\"a\"]}}\n{{\"prompt\": \"p\", \"responses\": [\"{big}\", \"b\"]}}\n{{\"prompt\": \"p\", \"responses\": [\"only one\"]}}\n{{\"prompt\": 3}}"
        );
        let (items, errors) = parse_jsonl(&text, 2);
        assert_eq!(items.len(), 1);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(errors[2].message.contains("limit"), "{:?}", errors[2]);
    }
}
