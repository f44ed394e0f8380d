//! OpenAI summarize-from-feedback comparisons: `info` (`post`, `title`, `subreddit`, or
//! `article`), `summaries` (two `{text, policy}`), `choice` (index of the preferred one),
//! `worker`. Becomes a standard (plain-text) preference with TRL's TL;DR prompt:
//! `"SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"` and completions
//! `" {summary}"`.

use super::{get, Out, Skip};
use crate::records::{Meta, Preference, Record, Text};
use serde_json::{Map, Value};

pub fn prompt(info: &Map<String, Value>) -> Result<String, Skip> {
    let s = |k: &str| info.get(k).and_then(Value::as_str);
    if let Some(post) = s("post") {
        Ok(format!(
            "SUBREDDIT: r/{}\n\nTITLE: {}\n\nPOST: {}\n\nTL;DR:",
            s("subreddit").unwrap_or(""),
            s("title").unwrap_or(""),
            post.trim()
        ))
    } else if let Some(article) = s("article") {
        Ok(format!("ARTICLE: {}\n\nTL;DR:", article.trim()))
    } else {
        Err(Skip::missing("info.post"))
    }
}

pub fn convert(row: &Map<String, Value>, out: &mut Out) -> Result<(), Skip> {
    let info = get(row, "info")?;
    let Value::Object(info) = info else {
        return Err(Skip::wrong_type("info", "an object", info));
    };
    let Value::Array(summaries) = get(row, "summaries")? else {
        return Err(Skip::wrong_type("summaries", "a list", get(row, "summaries")?));
    };
    let texts: Vec<&str> = summaries.iter().filter_map(|s| s.get("text").and_then(Value::as_str)).collect();
    if texts.len() != 2 || summaries.len() != 2 {
        return Err(Skip::new("bad summaries", format!("expected 2 summaries with `text`, found {}", texts.len())));
    }
    let choice = get(row, "choice")?;
    let c = match choice.as_u64() {
        Some(c @ 0..=1) => c as usize,
        _ => return Err(Skip::wrong_type("choice", "0 or 1", choice)),
    };
    let (chosen, rejected) = (texts[c].trim(), texts[1 - c].trim());
    if chosen == rejected {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt: Text::Plain(prompt(info)?),
        chosen: Text::Plain(format!(" {chosen}")),
        rejected: Text::Plain(format!(" {rejected}")),
        margin: None,
        strength: None,
        reference: None,
        meta: Meta {
            id: info.get("id").and_then(Value::as_str).map(str::to_string),
            annotator_id: super::opt_str(row, "worker"),
            source: Some("summarize".into()),
            category: None,
        },
    }));
    Ok(())
}
