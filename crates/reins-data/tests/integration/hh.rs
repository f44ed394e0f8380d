//! Anthropic HH-RLHF: detection, and the real sample in `../shared` with every line accounted for.

use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::testing::shared_dir;
use reins_data::tokenize::preference::{tokenize_preference_dataset, PreferenceOptions};
use reins_data::{HfTokenizer, Message, Record, Text};

#[test]
fn hh_single_turn_without_leading_blank_line_is_detected() {
    // Some HH exports drop the transcript's leading "\n\n" (one turn each side).
    let row =
        r#"{"chosen": "Human: What is 2+2?\n\nAssistant: 4.", "rejected": "Human: What is 2+2?\n\nAssistant: 5."}"#;
    let l = super::load_str(row, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Hh, "{}", l.report);
    let Record::Preference(p) = &l.records[0] else { panic!("not a preference") };
    assert_eq!(p.prompt, Text::Chat(vec![Message::user("What is 2+2?")]));
    assert_eq!(p.chosen, Text::Chat(vec![Message::assistant("4.")]));
}

#[test]
fn hh_harmless_every_line_accounted_for() {
    let Some(shared) = shared_dir() else {
        println!("skipped: ../shared not found");
        return;
    };
    let path = shared.join("data/hh-rlhf-harmless/train.jsonl.gz");
    if !path.exists() {
        println!("skipped: {} not found", path.display());
        return;
    }
    let loaded = load(&path, None, &ConvertOptions::default()).expect("load HH");
    let r = &loaded.report;
    println!("{r}");
    assert_eq!(loaded.format, Format::Hh);
    assert_eq!(r.rows, 1800, "the sample has 1,800 lines");
    assert!(r.is_balanced(), "read + skipped must equal total lines");
    assert_eq!(r.converted + r.skipped_total(), 1800);
    assert_eq!(r.records, r.converted);
    assert_eq!(r.problems.len(), r.skipped_total(), "every skip has a line and reason");
    // The known mess: 4 empty chosen replies, 2 pairs whose histories differ.
    assert_eq!(r.skipped.get("empty chosen reply"), Some(&4), "{r}");
    assert_eq!(r.skipped.get("histories differ"), Some(&2), "{r}");
    assert_eq!(r.converted, 1794);
    for p in &r.problems {
        assert!(p.line >= 1 && p.line <= 1800);
    }
    for rec in &loaded.records {
        let Record::Preference(p) = rec else { panic!("not a preference") };
        let (Text::Chat(prompt), Text::Chat(c), Text::Chat(rj)) = (&p.prompt, &p.chosen, &p.rejected) else {
            panic!("not conversational")
        };
        assert_eq!(prompt.last().map(|m| m.role.as_str()), Some("user"));
        assert_eq!((c.len(), rj.len()), (1, 1));
        assert_eq!(c[0].role, "assistant");
    }
    // Keeping empty replies accounts for those lines as records instead.
    let keep = load(&path, Some(Format::Hh), &ConvertOptions { keep_empty: true, ..Default::default() }).unwrap();
    assert_eq!(keep.report.converted, 1798);
    assert!(keep.report.is_balanced());

    // And the whole set tokenizes with the chat template.
    let tok = HfTokenizer::from_dir(reins_data::testing::fixtures_dir().join("tokenizer")).unwrap();
    let (ids, stats) =
        tokenize_preference_dataset(&tok, &loaded.records[..200], &PreferenceOptions::default()).unwrap();
    println!("tokenized {} pairs, dropped {:?}", stats.kept, stats.dropped);
    assert_eq!(stats.kept + stats.dropped_total(), 200);
    assert!(ids.iter().all(|e| !e.chosen_ids.is_empty() && !e.rejected_ids.is_empty()));
}
