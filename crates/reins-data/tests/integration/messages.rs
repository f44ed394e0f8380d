//! Tool calls, tool results and reasoning survive reading, writing, conversion and
//! tokenization (they used to be dropped, leaving an empty assistant turn).

use super::{load_str, write_tmp};
use reins_data::convert::{convert, Target};
use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::testing::fixtures_dir;
use reins_data::tokenize::sft::tokenize_sft;
use reins_data::{HfTokenizer, Message, Record, Text};
use serde_json::{json, Value};

/// A tool-call conversation and a Qwen3-style reasoning turn, as TRL / OpenAI write them.
/// The call's `arguments` keys are out of alphabetical order on purpose.
const ROWS: &str = r#"{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}]}, {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22"}, {"role": "assistant", "content": "22 degrees."}]}
{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "reasoning_content": "Two and two.", "content": "4"}]}
{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "thinking": "Two and two.", "content": "4"}]}
"#;

fn chat(r: &Record) -> Vec<Message> {
    match r {
        Record::LanguageModeling { text: Text::Chat(m), .. } => m.clone(),
        Record::PromptCompletion { completion: Text::Chat(m), .. } => m.clone(),
        other => panic!("unexpected record {other:?}"),
    }
}

#[test]
fn trl_reader_keeps_tool_calls_tool_results_and_reasoning() {
    let l = load_str(ROWS, Some(Format::Trl), &ConvertOptions::default());
    let m = chat(&l.records[0]);
    assert!(m[1].content_is_null && m[1].tool_calls.len() == 1, "tool-call turn: {:?}", m[1]);
    assert_eq!(m[1].tool_calls[0]["function"]["arguments"], json!({"unit": "celsius", "city": "Paris"}));
    assert_eq!((m[2].tool_call_id.as_deref(), m[2].name.as_deref()), (Some("call12345"), Some("get_weather")));
    assert_eq!(chat(&l.records[1])[0].reasoning_content.as_deref(), Some("Two and two."));
    assert_eq!(chat(&l.records[2]), chat(&l.records[1]), "`thinking` is the same field");
    assert!(!Text::Chat(vec![m[1].clone()]).is_empty(), "a tool-call turn is not an empty text");
}

#[test]
fn written_rows_keep_tool_calls_in_order_and_read_back_unchanged() {
    let l = load_str(ROWS, Some(Format::Trl), &ConvertOptions::default());
    let written: Vec<String> = l.records.iter().map(|r| r.to_json().to_string()).collect();
    assert!(
        written[0].contains(r#"{"role":"assistant","content":null,"tool_calls":[{"id":"call12345","type":"function","function":{"name":"get_weather","arguments":{"unit":"celsius","city":"Paris"}}}]}"#),
        "{}",
        written[0]
    );
    assert!(written[0].contains(r#"{"role":"tool","content":"22","tool_call_id":"call12345","name":"get_weather"}"#));
    assert!(written[0].contains(r#"{"role":"user","content":"Weather in Paris?"}"#), "plain messages unchanged");
    let again = load_str(&(written.join("\n") + "\n"), Some(Format::Trl), &ConvertOptions::default());
    assert_eq!(again.records, l.records);
}

#[test]
fn conversions_keep_tool_calls() {
    // The preferred reply calls a tool; the other answers from memory.
    let row = r#"{"prompt": [{"role": "user", "content": "Weather in Paris?"}], "chosen": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}], "rejected": [{"role": "assistant", "content": "Sunny, probably."}]}
"#;
    let opts = ConvertOptions::default();
    let l = load_str(row, Some(Format::Trl), &opts);
    let Record::Preference(p) = &l.records[0] else { panic!("{:?}", l.records[0]) };
    let sft = convert(l.records.clone(), Target::Sft, &opts);
    assert!(
        matches!(&sft.records[..], [Record::PromptCompletion { completion, .. }] if *completion == p.chosen),
        "{:?}",
        sft.records
    );
    let ranked = convert(l.records.clone(), Target::Ranked, &opts);
    assert_eq!(convert(ranked.records, Target::Preference, &opts).records, l.records);
}

#[test]
fn malformed_tool_calls_skip_the_row_with_a_reason() {
    let rows = r#"{"messages": [{"role": "assistant", "content": null, "tool_calls": "get_weather(Paris)"}]}
{"messages": [{"role": "assistant", "content": "", "tool_calls": ["get_weather"]}]}
{"messages": [{"role": "tool", "content": "22", "tool_call_id": 7}]}
"#;
    let (_d, p) = write_tmp("bad.jsonl", rows);
    let l = load(&p, Some(Format::Trl), &ConvertOptions::default()).expect("a bad row does not stop the load");
    assert_eq!((l.records.len(), l.report.skipped_total()), (0, 3), "{}", l.report);
    let details: Vec<&str> = l.report.problems.iter().map(|p| p.detail.as_str()).collect();
    assert!(details[0].contains("`tool_calls` should be a list"), "{details:?}");
    assert!(details[1].contains("`tool_calls` should be a list of objects"), "{details:?}");
    assert!(details[2].contains("`tool_call_id` should be a string"), "{details:?}");
}

/// The tokenizer fixture with a real template from `tests/data/chat_templates/`.
fn tokenizer_with_template(name: &str) -> HfTokenizer {
    let mut tok = HfTokenizer::from_dir(fixtures_dir().join("tokenizer")).expect("fixture tokenizer");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates/templates").join(name);
    tok.set_chat_template(&std::fs::read_to_string(path).expect("template")).expect("compiles");
    tok
}

#[test]
fn sft_tokenization_sees_tool_calls_and_reasoning() {
    let l = load_str(ROWS, Some(Format::Trl), &ConvertOptions::default());
    let tok = tokenizer_with_template("trl_qwen2_5.jinja");
    let ids = tokenize_sft(&tok, &l.records[0], None).unwrap().expect("SFT data").input_ids;
    let text = tok.decode(&ids, false).unwrap();
    let call = r#"<tool_call>
{"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}
</tool_call>"#;
    assert!(text.contains(call), "{text}");
    assert!(text.contains("<tool_response>\n22\n</tool_response>"), "{text}");

    let tok = tokenizer_with_template("trl_qwen3.jinja");
    let ids = tokenize_sft(&tok, &l.records[1], None).unwrap().expect("SFT data");
    let text = tok.decode(&ids.input_ids, false).unwrap();
    assert!(text.contains("<think>\nTwo and two.\n</think>\n\n4"), "{text}");
    // The reasoning is part of the completion, so it is learned.
    let learned: Vec<u32> = ids.labels.iter().filter(|&&l| l >= 0).map(|&l| l as u32).collect();
    assert!(tok.decode(&learned, false).unwrap().contains("Two and two."));
}

#[test]
fn records_deserialize_from_their_serde_form_with_the_new_fields() {
    // `Record` derives serde (used for caches); the message fields go through it too.
    let l = load_str(ROWS, Some(Format::Trl), &ConvertOptions::default());
    let v: Value = serde_json::to_value(&l.records).unwrap();
    let back: Vec<Record> = serde_json::from_value(v).unwrap();
    assert_eq!(back, l.records);
}
