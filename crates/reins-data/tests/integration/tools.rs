//! Conversions, splits and inspection.

use super::{load_str, write_tmp};
use reins_data::convert::{convert, Target};
use reins_data::formats::{ConvertOptions, Format};
use reins_data::inspect::inspect;
use reins_data::split::split;
use reins_data::Record;

const PAIRS: &str = r#"{"prompt": "p1", "chosen": " a", "rejected": " b"}
{"prompt": "p1", "chosen": " c", "rejected": " d"}
{"prompt": "p2", "chosen": " e", "rejected": " f"}
{"prompt": "p3", "chosen": " g", "rejected": " g"}
{"prompt": "p4", "chosen": " h", "rejected": " i"}
{"prompt": "p5", "chosen": " j", "rejected": " k"}
bad line
"#;

#[test]
fn split_keeps_prompts_together_and_is_deterministic() {
    let l = load_str(PAIRS, None, &ConvertOptions::default());
    let (tr, te) = split(l.records.clone(), 0.4, 7);
    assert_eq!(tr.len() + te.len(), 6);
    assert_eq!(split(l.records.clone(), 0.4, 7), (tr.clone(), te.clone()));
    let prompt = |r: &Record| match r {
        Record::Preference(p) => p.prompt.clone(),
        _ => unreachable!(),
    };
    for r in &te {
        assert!(tr.iter().all(|x| prompt(x) != prompt(r)), "prompt leaked across the split");
    }
    let groups: std::collections::HashSet<_> = te.iter().map(|r| format!("{:?}", prompt(r))).collect();
    assert_eq!(groups.len(), 2, "round(0.4 * 5 prompts)");
    let (tr, te) = split(l.records, 0.0, 7);
    assert_eq!((tr.len(), te.len()), (6, 0));
}

#[test]
fn convert_targets_and_inspect() {
    let l = load_str(PAIRS, None, &ConvertOptions::default());
    let ranked = convert(l.records.clone(), Target::Ranked, &ConvertOptions::default());
    assert_eq!(ranked.records.len(), 6);
    let back = convert(ranked.records, Target::Preference, &ConvertOptions::default());
    assert_eq!(back.records, l.records, "pair -> ranked -> pair is the identity");
    let sft = convert(l.records, Target::Sft, &ConvertOptions::default());
    assert!(matches!(&sft.records[0], Record::PromptCompletion { .. }));

    let (_d, p) = write_tmp("pairs.jsonl", PAIRS);
    let ins = inspect(&p, None, &ConvertOptions::default(), None).unwrap();
    assert_eq!(ins.format, "trl");
    assert_eq!(ins.kinds.get("preference"), Some(&6));
    assert_eq!(ins.findings.get("chosen equals rejected"), Some(&1));
    assert_eq!(ins.lengths["prompt"].values.len(), 6);
    let text = ins.to_string();
    assert!(text.contains("format: trl") && text.contains("pairs.jsonl:7: invalid JSON"), "{text}");
    let tok = reins_data::HfTokenizer::from_dir(reins_data::testing::fixtures_dir().join("tokenizer")).unwrap();
    let ins = inspect(&p, Some(Format::Trl), &ConvertOptions::default(), Some(&tok)).unwrap();
    assert_eq!(ins.unit, "tokens");
}
