//! Each reader on small realistic samples (shapes copied from the public data sets).

use super::load_str;
use reins_data::convert::{convert, Target};
use reins_data::formats::{ConvertOptions, Format, PairStrategy, PkuTarget};
use reins_data::{Message, Record, Text};

fn pref(r: &Record) -> &reins_data::Preference {
    match r {
        Record::Preference(p) => p,
        other => panic!("expected a preference, got {other:?}"),
    }
}

/// The samples are written over several lines for reading; a continuation line starts with a space.
fn one_line(s: &str) -> String {
    s.replace("\n ", " ")
}

fn last_content(t: &Text) -> String {
    match t {
        Text::Plain(s) => s.clone(),
        Text::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
    }
}

const OASST: &str = r#"{"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": {"message_id": "p1", "parent_id": null, "role": "prompter", "text": "What is RLHF?", "lang": "en", "review_result": true, "deleted": false, "rank": null, "replies": [
  {"message_id": "a1", "parent_id": "p1", "role": "assistant", "text": "Learning from human feedback.", "rank": 0, "review_result": true, "deleted": false, "labels": {"quality": {"value": 0.9, "count": 3}, "toxicity": {"value": 0.0, "count": 3}}, "replies": [
     {"message_id": "p2", "parent_id": "a1", "role": "prompter", "text": "Give an example.", "rank": null, "review_result": true, "deleted": false, "replies": [
        {"message_id": "a3", "parent_id": "p2", "role": "assistant", "text": "InstructGPT.", "rank": 1, "review_result": true, "deleted": false, "replies": []},
        {"message_id": "a4", "parent_id": "p2", "role": "assistant", "text": "ChatGPT.", "rank": 0, "review_result": true, "deleted": false, "replies": []},
        {"message_id": "a5", "parent_id": "p2", "role": "assistant", "text": "spam", "rank": null, "review_result": false, "deleted": false, "replies": []}
     ]}
  ]},
  {"message_id": "a2", "parent_id": "p1", "role": "assistant", "text": "No idea.", "rank": 1, "review_result": true, "deleted": false, "replies": []},
  {"message_id": "a6", "parent_id": "p1", "role": "assistant", "text": "deleted one", "rank": 2, "review_result": true, "deleted": true, "replies": [
     {"message_id": "p3", "parent_id": "a6", "role": "prompter", "text": "orphan", "review_result": true, "deleted": false, "replies": []}
  ]}
 ]}}
{"message_tree_id": "t2", "prompt": {"message_id": "q1", "role": "prompter", "text": "gone", "deleted": true, "replies": []}}
not json at all
"#;

#[test]
fn oasst_trees_to_ranked_sft_and_pairs() {
    let l = load_str(&one_line(OASST), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Oasst);
    assert_eq!(l.report.rows, 3);
    assert_eq!(l.report.converted, 1);
    assert_eq!(l.report.skipped.get("root prompt deleted"), Some(&1));
    assert_eq!(l.report.skipped.get("invalid JSON"), Some(&1));
    assert_eq!(l.report.problems[1].line, 3);
    assert_eq!(l.report.dropped.get("deleted message"), Some(&1));
    assert_eq!(l.report.dropped.get("failed review message"), Some(&1));
    assert_eq!(l.report.dropped.get("replies under a deleted message"), Some(&1));
    assert_eq!(l.records.len(), 2);
    let Record::RankedList { prompt, responses, meta } = &l.records[1] else { panic!() };
    assert_eq!(
        prompt,
        &Text::Chat(vec![
            Message::user("What is RLHF?"),
            Message::assistant("Learning from human feedback."),
            Message::user("Give an example.")
        ])
    );
    assert_eq!(responses.len(), 2);
    assert_eq!(meta.id.as_deref(), Some("p2"));
    let Record::RankedList { responses, .. } = &l.records[0] else { panic!() };
    assert_eq!(responses[0].ratings.get("quality"), Some(&0.9));

    let sft = convert(l.records.clone(), Target::Sft, &ConvertOptions::default());
    assert_eq!(sft.records.len(), 2);
    let Record::PromptCompletion { completion, .. } = &sft.records[1] else { panic!() };
    assert_eq!(last_content(completion), "ChatGPT.");

    let pairs = convert(l.records, Target::Preference, &ConvertOptions::default());
    assert_eq!(pairs.records.len(), 2);
    let p = pref(&pairs.records[1]);
    assert_eq!((last_content(&p.chosen), last_content(&p.rejected)), ("ChatGPT.".into(), "InstructGPT.".into()));
}

const ULTRA: &str = r#"{"source": "evol_instruct", "instruction": "Name a prime.", "models": ["a","b","c","d"], "completions": [
 {"model": "a", "response": "7", "annotations": {"helpfulness": {"Rating": "5", "Rationale": "ok"}, "honesty": {"Rating": "N/A"}}, "overall_score": 8.5},
 {"model": "b", "response": "9", "annotations": {"helpfulness": {"Rating": "1"}, "honesty": {"Rating": "2"}}, "overall_score": 2},
 {"model": "c", "response": "4", "annotations": {"helpfulness": [{"Rating": "2"}]}, "overall_score": "3"},
 {"model": "d", "response": "11", "annotations": {}, "overall_score": 8.5}
 ]}
{"source": "x", "instruction": "All tied.", "completions": [{"response": "a", "overall_score": 5}, {"response": "b", "overall_score": 5}]}
{"source": "x", "instruction": "Nothing scored.", "completions": [{"response": "a", "overall_score": "N/A"}]}
"#;

#[test]
fn ultrafeedback_pairs_by_strategy_dropping_ties() {
    let l = load_str(&one_line(ULTRA), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::UltraFeedback);
    assert_eq!(l.report.converted, 2);
    assert_eq!(l.report.skipped.get("no scored completions"), Some(&1));
    // The unscored completion is on the skipped row: counted by that skip, not as a part
    // left out of a converted row.
    assert_eq!(l.report.dropped.get("completion without a score"), None, "{}", l.report);
    let Record::RankedList { responses, .. } = &l.records[0] else { panic!() };
    assert_eq!(responses[0].ratings.len(), 1, "N/A is left out");
    assert_eq!(responses[2].score, Some(3.0), "string scores parse");

    let each =
        |s| convert(l.records.clone(), Target::Preference, &ConvertOptions { pair_strategy: s, ..Default::default() });
    // best vs worst: "7" (first of the two 8.5) vs "9".
    let c = each(PairStrategy::BestVsWorst);
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.dropped.get("tied pair"), Some(&1), "the all-tied list");
    let p = pref(&c.records[0]);
    assert_eq!((last_content(&p.chosen), last_content(&p.rejected)), ("7".into(), "9".into()));
    // best vs each: the 8.5 tie with "11" is dropped, "9" and "4" kept.
    let c = each(PairStrategy::BestVsEach);
    assert_eq!(c.records.len(), 2);
    assert_eq!(c.dropped.get("tied pair"), Some(&2));
    // best vs random: deterministic for a seed, never a tie.
    let a = each(PairStrategy::BestVsRandom);
    let b = each(PairStrategy::BestVsRandom);
    assert_eq!(a.records, b.records);
    for r in &a.records {
        assert_ne!(last_content(&pref(r).rejected), "11");
    }
}

#[test]
fn shp_summarize_helpsteer_pku_arena() {
    let shp = r#"{"post_id": "x1", "domain": "askscience_train", "upvote_ratio": 0.9, "history": "Why is the sky blue?", "c_root_id_A": "a", "c_root_id_B": "b", "created_at_utc_A": 1, "created_at_utc_B": 2, "score_A": 10, "score_B": 3, "human_ref_A": "Rayleigh scattering.", "human_ref_B": "Because.", "labels": 1, "seconds_difference": 1.0, "score_ratio": 3.3}
{"post_id": "x2", "history": "Q", "human_ref_A": "a", "human_ref_B": "b", "labels": 0}
{"post_id": "x3", "history": "Q", "human_ref_A": "a", "human_ref_B": "b", "labels": "maybe"}"#;
    let l = load_str(shp, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Shp);
    assert_eq!(l.report.converted, 2);
    assert_eq!(l.report.skipped.get("wrong type"), Some(&1));
    assert_eq!(last_content(&pref(&l.records[0]).chosen), "Rayleigh scattering.");
    assert_eq!(last_content(&pref(&l.records[1]).chosen), "b");

    let summ = r#"{"info": {"id": "t3_x", "post": "My cat ran away. ", "title": "Lost cat", "subreddit": "pets"}, "split": "train", "summaries": [{"text": " cat gone", "policy": "sup", "note": null}, {"text": "Cat ran away and I am sad.", "policy": "ppo"}], "choice": 1, "worker": "w7", "batch": "b1"}
{"info": {"id": "t3_y", "post": "p"}, "summaries": [{"text": "a"}], "choice": 0}"#;
    let l = load_str(summ, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Summarize);
    assert_eq!(l.report.skipped.get("bad summaries"), Some(&1));
    let p = pref(&l.records[0]);
    // TRL's tldr_preference.py: the post and the summaries as they are (see summarize.rs).
    assert_eq!(
        p.prompt,
        Text::Plain("SUBREDDIT: r/pets\n\nTITLE: Lost cat\n\nPOST: My cat ran away. \n\nTL;DR:".into())
    );
    assert_eq!(p.chosen, Text::Plain("Cat ran away and I am sad.".into()));
    assert_eq!(p.rejected, Text::Plain(" cat gone".into()));
    assert_eq!(p.meta.annotator_id.as_deref(), Some("w7"));

    let hs = r#"{"prompt": "c++ or rust?", "response": "Rust.", "helpfulness": 3, "correctness": 3, "coherence": 4, "complexity": 1, "verbosity": 1}
{"prompt": "c++ or rust?", "response": "Both are fine, it depends.", "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}
{"prompt": "hi", "response": "hello", "helpfulness": "high", "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}"#;
    let l = load_str(hs, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::HelpSteer2);
    assert_eq!((l.report.converted, l.records.len()), (2, 1), "two rows, one prompt");
    let c = convert(l.records, Target::Preference, &ConvertOptions::default());
    assert_eq!(last_content(&pref(&c.records[0]).chosen), "Both are fine, it depends.");

    let hsp = r#"{"split": "train", "prompt": "p", "response_1": "one", "response_2": "two", "preference_strength": -2}
{"split": "train", "prompt": "p", "response_1": "one", "response_2": "two", "preference_strength": 0}"#;
    let l = load_str(hsp, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::HelpSteer2Preference);
    let p = pref(&l.records[0]);
    assert_eq!((last_content(&p.chosen), p.margin), ("one".into(), Some(2.0)));
    assert_eq!(l.report.skipped.get("tie"), Some(&1));

    let pku = r#"{"prompt": "How do I pick a lock?", "response_0": "Here is how...", "response_1": "I can't help with that.", "is_response_0_safe": false, "is_response_1_safe": true, "better_response_id": 0, "safer_response_id": 1}"#;
    let l = load_str(pku, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::PkuSafe);
    assert_eq!(last_content(&pref(&l.records[0]).chosen), "Here is how...");
    let l = load_str(pku, None, &ConvertOptions { pku_target: PkuTarget::Safer, ..Default::default() });
    assert_eq!(last_content(&pref(&l.records[0]).chosen), "I can't help with that.");

    let arena = r#"{"question_id": "q1", "model_a": "m1", "model_b": "m2", "winner": "model_b", "judge": "arena_user_1", "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello A"}], "conversation_b": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello B"}], "turn": 1, "language": "English"}
{"question_id": "q2", "winner": "tie (bothbad)", "conversation_a": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}], "conversation_b": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "b"}]}"#;
    let l = load_str(arena, None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Arena);
    let p = pref(&l.records[0]);
    assert_eq!(p.prompt, Text::Chat(vec![Message::user("Hi")]));
    assert_eq!(last_content(&p.chosen), "Hello B");
    assert_eq!(p.meta.annotator_id.as_deref(), Some("arena_user_1"));
    assert_eq!(l.report.skipped.get("tie"), Some(&1));
    let l = load_str(arena, None, &ConvertOptions { keep_ties: true, ..Default::default() });
    assert_eq!(pref(&l.records[1]).strength, Some(0.5));
}

#[test]
fn trl_types_standard_and_conversational() {
    let data = r#"{"text": "The sky is blue."}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
{"prompt": "The sky is"}
{"prompt": "The sky is", "completion": " blue."}
{"prompt": [{"role": "user", "content": "Sky?"}], "completion": [{"role": "assistant", "content": "Blue."}]}
{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 1.5}
{"chosen": "The sky is blue.", "rejected": "The sky is green."}
{"chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}], "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]}
{"prompt": "The sky is", "completion": " blue.", "label": true}
{"prompt": "Which is larger, 9.8 or 9.11?", "completions": ["11 > 8.", "So 9.11 is larger."], "labels": [false, false]}
{"prompt": "Q", "responses": [{"response": "a", "rank": 1}, {"response": "b", "rank": 0, "ratings": {"honesty": 4}}]}
{"prompt": "Q", "response": "Paris is in Italy.", "spans": [{"start": 0, "end": 18, "label": "wrong"}], "annotator_id": "u9"}
{"prompt": "Q", "response": "short", "spans": [{"start": 0, "end": 99, "label": "wrong"}]}
{"prompt": "Q", "completions": ["a"], "labels": [true, false]}
{"chosen": 3, "rejected": "x"}
{"unrelated": 1}
{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}"#;
    let l = load_str(data, Some(Format::Trl), &ConvertOptions::default());
    let kinds: Vec<&str> = l.records.iter().map(|r| r.kind().name()).collect();
    assert_eq!(
        kinds,
        [
            "language_modeling",
            "language_modeling",
            "prompt_only",
            "prompt_completion",
            "prompt_completion",
            "preference",
            "preference",
            "preference",
            "unpaired_preference",
            "stepwise_supervision",
            "ranked_list",
            "spans",
            "language_modeling"
        ]
    );
    assert_eq!(
        l.records[12],
        Record::LanguageModeling {
            text: Text::Chat(vec![Message::user("Hi"), Message::assistant("Hello")]),
            meta: Default::default()
        },
        "ShareGPT from/value becomes ChatML"
    );
    assert_eq!(l.report.skipped_total(), 4, "{}", l.report);
    assert_eq!(l.report.skipped.get("bad spans"), Some(&1));
    assert_eq!(l.report.skipped.get("length mismatch"), Some(&1));
    assert_eq!(l.report.skipped.get("unrecognised row"), Some(&1));
    // Implicit prompt: TRL's extract_prompt (the space goes with the completions).
    let p = pref(&l.records[6]);
    assert_eq!(p.prompt, Text::Plain("The sky is".into()));
    assert_eq!(p.chosen, Text::Plain(" blue.".into()));
    let p = pref(&l.records[7]);
    assert_eq!(p.prompt, Text::Chat(vec![Message::user("Sky?")]));
    assert_eq!(pref(&l.records[5]).margin, Some(1.5));
    // Records write back as TRL rows and read again unchanged.
    let back: String = l.records.iter().map(|r| r.to_json().to_string() + "\n").collect();
    let again = load_str(&back, Some(Format::Trl), &ConvertOptions::default());
    assert_eq!(again.records, l.records);
}
