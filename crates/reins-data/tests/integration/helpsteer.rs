//! HelpSteer2: multi-turn prompts become conversations, the `split` column is kept.

use super::load_str;
use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::{Message, Record, Text};
use std::path::PathBuf;

fn real(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real").join(name)
}

/// No real multi-turn row could be found: these follow the layout the nvidia/HelpSteer2
/// card gives for multi-turn prompts (`{user turn 1}\n<extra_id_1>Assistant\n{assistant
/// turn 1}\n<extra_id_1>User\n{user turn 2}`; the response is the last assistant turn).
const MULTI_TURN: &str = r#"{"prompt": "Name a prime.\n<extra_id_1>Assistant\n7 is prime.\n<extra_id_1>User\nAnd an even one?", "response": "2 is the only even prime.", "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1}
{"prompt": "Name a prime.\n<extra_id_1>Assistant\n7 is prime.\n<extra_id_1>User\nAnd an even one?", "response": "4.", "helpfulness": 0, "correctness": 0, "coherence": 3, "complexity": 1, "verbosity": 1}
{"split": "val", "prompt": "Name a prime.\n<extra_id_1>Assistant\n7 is prime.\n<extra_id_1>User\nAnd an even one?", "response_1": "2.", "response_2": "4.", "preference_strength": -3}"#;

fn thread() -> Text {
    Text::Chat(vec![
        Message::user("Name a prime."),
        Message::assistant("7 is prime."),
        Message::user("And an even one?"),
    ])
}

#[test]
fn helpsteer2_multi_turn_prompts_become_conversations() {
    let mut lines = MULTI_TURN.lines();
    let attributes: String = lines.by_ref().take(2).collect::<Vec<_>>().join("\n");
    let l = load_str(&attributes, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::HelpSteer2);
    assert_eq!(l.records.len(), 1, "two responses to one prompt: {}", l.report);
    let Record::RankedList { prompt, responses, .. } = &l.records[0] else { panic!("not a ranked list") };
    assert_eq!(prompt, &thread());
    assert_eq!(responses.len(), 2);

    let l = load_str(lines.next().unwrap_or_default(), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::HelpSteer2Preference);
    let Record::Preference(p) = &l.records[0] else { panic!("not a preference") };
    assert_eq!(p.prompt, thread());
    assert_eq!(l.records[0].to_json().get("split").and_then(|s| s.as_str()), Some("val"));
}

#[test]
fn helpsteer2_preference_keeps_the_split_column() {
    // tests/data/real/helpsteer2_card_preference.jsonl: the card's row, `"split": "train"`.
    let l = load(&real("helpsteer2_card_preference.jsonl"), None, &ConvertOptions::default()).expect("load");
    assert_eq!(l.format, Format::HelpSteer2Preference);
    assert_eq!(l.records.len(), 1, "{}", l.report);
    let row = l.records[0].to_json();
    assert_eq!(row.get("split").and_then(|s| s.as_str()), Some("train"), "written rows keep `split`: {row}");
    // And reading the written row back keeps it too.
    let back = load_str(&row.to_string(), None, &ConvertOptions::default());
    assert_eq!(back.records[0].to_json().get("split"), row.get("split"));
}
