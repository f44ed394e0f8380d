//! No input panics the readers: random bytes as files, random JSON as rows, every format.

use proptest::prelude::*;
use reins_data::formats::{convert_row, load, ConvertOptions, Format, Out};
use serde_json::{Map, Value};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "(\n\nHuman: |\n\nAssistant: |N/A|[a-z ]{0,8}|.{0,6})".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("prompt".to_string()),
            Just("chosen".to_string()),
            Just("rejected".to_string()),
            Just("role".to_string()),
            Just("content".to_string()),
            Just("replies".to_string()),
            Just("text".to_string()),
            Just("rank".to_string()),
            Just("completions".to_string()),
            Just("labels".to_string()),
            Just("response".to_string()),
            Just("annotations".to_string()),
            Just("summaries".to_string()),
            Just("spans".to_string()),
            "[a-z_]{1,6}".prop_map(|s| s),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn random_rows_never_panic(v in json(), extra in json()) {
        let mut row: Map<String, Value> = match v { Value::Object(m) => m, other => {
            let mut m = Map::new();
            m.insert("prompt".into(), other);
            m
        }};
        row.insert("chosen".into(), extra.clone());
        for f in Format::ALL {
            let mut out = Out::default();
            let _ = convert_row(f, &row, 1, &ConvertOptions::default(), &mut out);
            let mut tree = Map::new();
            tree.insert("message_tree_id".into(), Value::from("t"));
            tree.insert("prompt".into(), Value::Object(row.clone()));
            let _ = convert_row(f, &tree, 1, &ConvertOptions::default(), &mut out);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), gz in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.jsonl");
        let mut data = bytes.clone();
        if gz {
            data = vec![0x1f, 0x8b];
            data.extend(&bytes);
        }
        std::fs::write(&p, &data).unwrap();
        for f in [None, Some(Format::Hh), Some(Format::Oasst), Some(Format::Trl)] {
            if let Ok(l) = load(&p, f, &ConvertOptions::default()) {
                prop_assert!(l.report.is_balanced());
            }
        }
    }

    #[test]
    fn random_oasst_message_files_never_panic(
        msgs in prop::collection::vec((0u8..6, prop::option::of(0u8..7), any::<bool>(), prop::option::of(0u8..3), any::<bool>()), 0..12)
    ) {
        // Few ids, so duplicates, orphans, cycles and bad messages all turn up.
        let text: String = msgs
            .iter()
            .map(|(id, parent, prompter, rank, has_text)| {
                let mut m = Map::new();
                m.insert("message_id".into(), Value::from(format!("m{id}")));
                m.insert("parent_id".into(), parent.map_or(Value::Null, |p| Value::from(format!("m{p}"))));
                m.insert("message_tree_id".into(), Value::from("t"));
                m.insert("role".into(), Value::from(if *prompter { "prompter" } else { "assistant" }));
                m.insert("text".into(), if *has_text { Value::from("x") } else { Value::Null });
                m.insert("rank".into(), rank.map_or(Value::Null, Value::from));
                Value::Object(m).to_string() + "\n"
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("messages.jsonl");
        std::fs::write(&p, text).unwrap();
        for f in [None, Some(Format::Oasst)] {
            if let Ok(l) = load(&p, f, &ConvertOptions::default()) {
                prop_assert!(l.report.is_balanced(), "{}", l.report);
            }
        }
    }

    #[test]
    fn random_hh_transcripts_never_panic(a in "(\n\nHuman: |\n\nAssistant: |Human:|Assistant:|x|é| ){0,12}", b in "(\n\nHuman: |\n\nAssistant: |x|é){0,12}") {
        let mut row = Map::new();
        row.insert("chosen".into(), Value::from(a));
        row.insert("rejected".into(), Value::from(b));
        let mut out = Out::default();
        let _ = convert_row(Format::Hh, &row, 1, &ConvertOptions::default(), &mut out);
    }
}
