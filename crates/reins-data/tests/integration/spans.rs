//! Span-labelled responses: the feedback app's `spans` export is read as it is written, with
//! offsets in characters (Unicode scalar values), and the writer writes that same layout.

use super::load_str;
use reins_data::formats::{ConvertOptions, Format};
use reins_data::{Message, Meta, Record, Span, Text};
use serde_json::json;

/// "5 €" is characters 9..12 of the response, bytes 11..16.
const RESPONSE: &str = "Ça coûte 5 €, non?";

fn span(start: usize, end: usize, label: &str) -> Span {
    Span { start, end, label: label.into() }
}

#[test]
fn the_feedback_spans_export_reads_as_spans_with_character_offsets() {
    // Exactly what `reins feedback export --format spans` writes for one response.
    let row = json!({
        "prompt": "Combien?",
        "completion": RESPONSE,
        "spans": [{"start": 9, "end": 12, "tag": "wrong", "text": "5 €"}, {"start": 0, "end": 2, "tag": "rude", "text": "Ça"}],
        "item_id": "x1",
        "annotator": "ann",
    });
    let l = load_str(&format!("{row}\n"), None, &ConvertOptions::default());
    assert_eq!(l.format, Format::Trl, "detected from the keys");
    assert_eq!(l.report.skipped_total(), 0, "{}", l.report);
    assert_eq!(
        l.records,
        vec![Record::Spans {
            prompt: Text::Plain("Combien?".into()),
            response: RESPONSE.into(),
            spans: vec![span(9, 12, "wrong"), span(0, 2, "rude")],
            meta: Meta { id: Some("x1".into()), annotator_id: Some("ann".into()), ..Meta::default() },
        }]
    );
    let Record::Spans { response, spans, .. } = &l.records[0] else { unreachable!() };
    assert_eq!(spans[0].text(response).as_deref(), Some("5 €"));
}

#[test]
fn reins_own_response_and_label_keys_still_read() {
    let row =
        r#"{"prompt": "Q", "response": "Paris is in Italy.", "spans": [{"start": 12, "end": 17, "label": "wrong"}]}"#;
    let l = load_str(&format!("{row}\n"), Some(Format::Trl), &ConvertOptions::default());
    match &l.records[..] {
        [Record::Spans { response, spans, .. }] => {
            assert_eq!(response, "Paris is in Italy.");
            assert_eq!(spans, &[span(12, 17, "wrong")]);
        }
        other => panic!("expected one spans record, got {other:?}"),
    }
}

#[test]
fn spans_outside_the_response_or_over_other_text_skip_the_row_with_a_reason() {
    let rows = [
        // Byte offsets of "5 €": the text check catches the mixup.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": 11, "end": 16, "tag": "wrong", "text": "5 €"}]}),
        // Past the end (18 characters, 22 bytes).
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": 9, "end": 22, "tag": "wrong"}]}),
        // Backwards.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": 12, "end": 9, "tag": "wrong"}]}),
        // No tag.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": 0, "end": 1}]}),
        // Negative offset.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": -1, "end": 1, "tag": "wrong"}]}),
        // `text` not a string.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": [{"start": 0, "end": 1, "tag": "wrong", "text": 3}]}),
        // `spans` not a list.
        json!({"prompt": "Q", "completion": RESPONSE, "spans": {"start": 0}}),
    ];
    let data: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let l = load_str(&data, Some(Format::Trl), &ConvertOptions::default());
    assert!(l.records.is_empty(), "no label is read from a bad row: {:?}", l.records);
    assert_eq!(l.report.skipped_total(), rows.len(), "{}", l.report);
    assert_eq!(l.report.skipped.get("bad spans"), Some(&5), "{}", l.report);
    assert_eq!(l.report.skipped.get("wrong type"), Some(&2), "{}", l.report);
    let detail =
        |line: usize| l.report.problems.iter().find(|p| p.line == line).map(|p| p.detail.clone()).unwrap_or_default();
    assert!(
        detail(1).contains(r#"`spans[0].text` is "5 €" but characters 11..16 of the response are "€, no""#),
        "{}",
        detail(1)
    );
    assert!(detail(1).contains("not bytes"), "{}", detail(1));
    assert!(detail(2).contains("9..22, outside the response (18 characters)"), "{}", detail(2));
    assert!(detail(3).contains("12..9: `start` is after `end`"), "{}", detail(3));
    assert!(detail(4).contains("missing field `label`"), "{}", detail(4));
}

#[test]
fn written_spans_read_back_identically() {
    let records = vec![
        Record::Spans {
            prompt: Text::Plain("Combien?".into()),
            response: RESPONSE.into(),
            spans: vec![span(9, 12, "wrong"), span(0, 2, "rude"), span(18, 18, "incomplete")],
            meta: Meta { annotator_id: Some("ann".into()), id: Some("r1".into()), ..Meta::default() },
        },
        Record::Spans {
            prompt: Text::Chat(vec![Message::user("Hi")]),
            // An emoji, "\r\n" and e + combining acute: 1, 2 and 2 characters.
            response: "👋\r\nCafe\u{301} ok".into(),
            spans: vec![span(0, 1, "irrelevant"), span(3, 8, "wrong")],
            meta: Meta::default(),
        },
        Record::Spans {
            prompt: Text::Plain("P".into()),
            response: String::new(),
            spans: vec![],
            meta: Meta::default(),
        },
    ];
    let written: Vec<_> = records.iter().map(Record::to_json).collect();
    assert_eq!(
        written[0],
        json!({
            "prompt": "Combien?",
            "completion": RESPONSE,
            "spans": [
                {"start": 9, "end": 12, "tag": "wrong", "text": "5 €"},
                {"start": 0, "end": 2, "tag": "rude", "text": "Ça"},
                {"start": 18, "end": 18, "tag": "incomplete", "text": ""},
            ],
            "id": "r1",
            "annotator_id": "ann",
        }),
        "the feedback app's export layout"
    );
    assert_eq!(written[1]["spans"][1]["text"], json!("Cafe\u{301}"));
    let data: String = written.iter().map(|r| format!("{r}\n")).collect();
    let l = load_str(&data, None, &ConvertOptions::default());
    assert_eq!(l.records, records, "{}", l.report);
}
