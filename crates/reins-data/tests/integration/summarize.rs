//! summarize-from-feedback comparisons become the prompts of TRL's current
//! `examples/datasets/tldr_preference.py` (`to_preference`), Reddit and CNN/DM alike.

use super::load_str;
use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::{Record, Text};
use serde_json::Value;
use std::path::PathBuf;

fn real(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real").join(name)
}

fn plain(t: &Text) -> &str {
    match t {
        Text::Plain(s) => s,
        Text::Chat(_) => panic!("expected standard (plain-text) data"),
    }
}

#[test]
fn summarize_reddit_row_matches_trl_tldr_preference() -> Result<(), Box<dyn std::error::Error>> {
    let l = load(&real("summarize_comparisons_blog_example.jsonl"), None, &ConvertOptions::default())?;
    assert_eq!(l.format, Format::Summarize);
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(real("summarize_comparisons_blog_example.trl_expected.json"))?)?;
    let Record::Preference(p) = &l.records[0] else { panic!("not a preference") };
    // TRL collapses the post's blank lines: 1,880 characters (the old layout gave 1,887).
    assert_eq!(plain(&p.prompt).chars().count(), 1880);
    assert_eq!(plain(&p.prompt), want["prompt"].as_str().unwrap_or_default());
    assert_eq!(plain(&p.chosen), want["chosen"].as_str().unwrap_or_default());
    assert_eq!(plain(&p.rejected), want["rejected"].as_str().unwrap_or_default());
    Ok(())
}

/// No real CNN/DM comparison row could be found: this one is built from the published
/// schema of openai/summarize_from_feedback `comparisons` (`info.post` and `info.subreddit`
/// null, `info.article`, `info.site`; a CNN/DM `batch`).
const CNNDM: &str = r#"{"info": {"id": "dm-0a1b2c", "post": null, "title": "Storm closes coastal roads", "subreddit": null, "site": "dailymail", "article": "Heavy rain closed roads on Monday.\n\nOfficials said repairs would take a week.\n\n\nResidents were told to stay home."}, "split": "valid1", "summaries": [{"text": " Roads closed by rain for a week.", "policy": "ref", "note": null}, {"text": " Storm.", "policy": "sup4", "note": null}], "choice": 0, "worker": "w42", "batch": "cnndm0", "extra": {"confidence": 7}}"#;

#[test]
fn summarize_cnndm_row_matches_trl_tldr_preference() {
    let l = load_str(CNNDM, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Summarize);
    assert_eq!(l.report.converted, 1, "{}", l.report);
    let Record::Preference(p) = &l.records[0] else { panic!("not a preference") };
    // f"TITLE: {info['title']}\n\n{article}\n\nTL;DR:" with article.replace("\n\n", "\n").
    assert_eq!(
        plain(&p.prompt),
        "TITLE: Storm closes coastal roads\n\nHeavy rain closed roads on Monday.\nOfficials said repairs would take a week.\n\nResidents were told to stay home.\n\nTL;DR:"
    );
    assert_eq!(plain(&p.chosen), " Roads closed by rain for a week.");
    assert_eq!(plain(&p.rejected), " Storm.");
}
