//! OpenAI summarize-from-feedback comparisons: `info` (`post`, `title`, `subreddit` for
//! Reddit TL;DR; `article`, `title`, `site` for CNN/DM), `summaries` (two `{text, policy}`),
//! `choice` (index of the preferred one), `worker`, `batch`. Becomes a standard
//! (plain-text) preference exactly as TRL's current `examples/datasets/tldr_preference.py`
//! (`to_preference`, since TRL #2020, September 2024) writes it:
//! - Reddit: `"SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"`,
//! - CNN/DM: `"TITLE: {title}\n\n{article}\n\nTL;DR:"`,
//!
//! with every blank line of the post or article collapsed (`"\n\n"` → `"\n"`, as Python's
//! `str.replace`), and the summaries' texts as they are (they start with a space).
//!
//! TRL tells the two apart by `batch` (and fails on a batch it does not know); here a
//! missing or unknown batch falls back to whether `info` has a `post` or an `article`.
//! A missing title or subreddit is written as empty (Python would write `None`).

use super::{get, Out, Skip};
use crate::records::{Meta, Preference, Record, Text};
use serde_json::{Map, Value};

/// The comparisons' CNN/DM batches (TRL's list).
const CNNDM_BATCHES: [&str; 3] = ["batch0_cnndm", "cnndm0", "cnndm2"];

/// The comparisons' Reddit batches (TRL's list): `batch3` .. `batch22`, `edit_b2_eval_test`.
fn is_reddit_batch(b: &str) -> bool {
    b == "edit_b2_eval_test"
        || b.strip_prefix("batch").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| (3..=22).contains(&n))
}

/// The TL;DR prompt for one comparison's `info` and `batch`.
pub fn prompt(info: &Map<String, Value>, batch: Option<&str>) -> Result<String, Skip> {
    let s = |k: &str| info.get(k).and_then(Value::as_str);
    let cnndm = match batch {
        Some(b) if CNNDM_BATCHES.contains(&b) => true,
        Some(b) if is_reddit_batch(b) => false,
        _ => s("post").is_none() && s("article").is_some(),
    };
    if cnndm {
        let article = s("article").ok_or_else(|| Skip::missing("info.article"))?;
        Ok(format!("TITLE: {}\n\n{}\n\nTL;DR:", s("title").unwrap_or(""), article.replace("\n\n", "\n")))
    } else {
        let post = s("post").ok_or_else(|| Skip::missing("info.post"))?;
        Ok(format!(
            "SUBREDDIT: r/{}\n\nTITLE: {}\n\nPOST: {}\n\nTL;DR:",
            s("subreddit").unwrap_or(""),
            s("title").unwrap_or(""),
            post.replace("\n\n", "\n")
        ))
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
    let (chosen, rejected) = (texts[c], texts[1 - c]);
    if chosen.trim() == rejected.trim() {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt: Text::Plain(prompt(info, row.get("batch").and_then(Value::as_str))?),
        chosen: Text::Plain(chosen.to_string()),
        rejected: Text::Plain(rejected.to_string()),
        margin: None,
        strength: None,
        reference: None,
        meta: Meta {
            id: info.get("id").and_then(Value::as_str).map(str::to_string),
            annotator_id: super::opt_str(row, "worker"),
            source: Some("summarize".into()),
            ..Meta::default()
        },
    }));
    Ok(())
}
