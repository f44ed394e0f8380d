//! Chatbot Arena and MT-bench human judgments: the judged turn decides the completions.

use super::load_str;
use reins_data::formats::{ConvertOptions, Format};
use reins_data::{Message, Record, Text};

/// Built from the published schema of lmsys/mt_bench_human_judgments (`human` split): two
/// turns in every conversation, `turn` says which one the judge compared.
const MT_BENCH: &str = r#"{"question_id": 81, "model_a": "alpaca-13b", "model_b": "gpt-3.5-turbo", "winner": "model_b", "judge": "author_2", "conversation_a": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Now in French."}, {"role": "assistant", "content": "A2"}], "conversation_b": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "B1"}, {"role": "user", "content": "Now in French."}, {"role": "assistant", "content": "B2"}], "turn": 1}
{"question_id": 81, "model_a": "alpaca-13b", "model_b": "gpt-3.5-turbo", "winner": "model_a", "judge": "author_2", "conversation_a": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Now in French."}, {"role": "assistant", "content": "A2"}], "conversation_b": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "B1"}, {"role": "user", "content": "Now in French."}, {"role": "assistant", "content": "B2"}], "turn": 2}
{"question_id": 82, "winner": "model_a", "conversation_a": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}], "conversation_b": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "b"}], "turn": 3}"#;

#[test]
fn mt_bench_judgments_compare_the_judged_turn() {
    let l = load_str(MT_BENCH, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Arena);
    let pref = |i: usize| match &l.records[i] {
        Record::Preference(p) => p.clone(),
        other => panic!("not a preference: {other:?}"),
    };
    // Turn 1: the first answers only; the second turn was not judged.
    let p = pref(0);
    assert_eq!(p.prompt, Text::Chat(vec![Message::user("Write a haiku.")]));
    assert_eq!(p.chosen, Text::Chat(vec![Message::assistant("B1")]));
    assert_eq!(p.rejected, Text::Chat(vec![Message::assistant("A1")]));
    // Turn 2: the judge saw both turns.
    let p = pref(1);
    assert_eq!(
        p.chosen,
        Text::Chat(vec![Message::assistant("A1"), Message::user("Now in French."), Message::assistant("A2")])
    );
    // A turn the conversations do not have is reported, not guessed.
    assert_eq!(l.report.skipped.get("turn out of range"), Some(&1), "{}", l.report);
}
