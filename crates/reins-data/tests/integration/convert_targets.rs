//! `convert --to`: every record kind is converted or counted, and records stream through.

use super::load_str;
use reins_data::convert::{convert, convert_stream, Target};
use reins_data::formats::ConvertOptions;
use reins_data::records::Kind;
use reins_data::stream::RecordStream;
use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

/// One TRL row of each record kind.
const EVERY_KIND: &str = r#"{"text": "plain text"}
{"prompt": "Q0"}
{"prompt": "Q1", "completion": " A"}
{"prompt": "Q2", "chosen": " good", "rejected": " bad"}
{"prompt": "Q3", "completion": " A", "label": true}
{"prompt": "Q4", "completions": ["s1", "s2"], "labels": [true, false]}
{"prompt": "Q5", "responses": [{"response": " x", "rank": 0}, {"response": " y", "rank": 1}]}
{"prompt": "Q6", "response": "Paris is in Italy.", "spans": [{"start": 0, "end": 18, "label": "wrong"}]}
"#;

fn kinds_of(target: Target) -> &'static [Kind] {
    match target {
        Target::Preference => &[Kind::Preference],
        Target::Sft => &[Kind::PromptCompletion, Kind::LanguageModeling],
        Target::Ranked => &[Kind::RankedList],
        Target::Unpaired => &[Kind::Unpaired],
    }
}

#[test]
fn every_kind_is_converted_or_counted_with_a_reason() {
    let opts = ConvertOptions::default();
    let records = load_str(EVERY_KIND, None, &opts).records;
    assert_eq!(records.len(), 8);
    for target in [Target::Preference, Target::Sft, Target::Ranked, Target::Unpaired] {
        for r in &records {
            let kind = r.kind().name();
            let c = convert(vec![r.clone()], target, &opts);
            for out in &c.records {
                assert!(
                    kinds_of(target).contains(&out.kind()),
                    "--to {target:?}: a {kind} record came out as {} (passed through unconverted)",
                    out.kind().name()
                );
            }
            let dropped: usize = c.dropped.values().sum();
            assert!(!c.records.is_empty() || dropped > 0, "--to {target:?}: a {kind} record vanished without a reason");
        }
    }
    // The KTO file gets both halves of the pair, and says why the rest is missing.
    let c = convert(records, Target::Unpaired, &opts);
    assert_eq!(c.records.len(), 3, "2 from the pair, 1 unpaired: {:?}", c.records);
    assert!(c.dropped.keys().any(|k| k.contains("ranked list") && k.contains("--to preference")), "{:?}", c.dropped);
}

/// Counts the lines handed to the reader, i.e. an upper bound of what has been parsed.
struct CountingReader {
    data: std::io::Cursor<Vec<u8>>,
    lines_read: Rc<Cell<usize>>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        self.lines_read.set(self.lines_read.get() + buf[..n].iter().filter(|&&b| b == b'\n').count());
        Ok(n)
    }
}

#[test]
fn convert_writes_the_first_record_before_reading_the_last_line() -> reins_data::Result<()> {
    const LINES: usize = 20_000;
    let mut data = String::new();
    for i in 0..LINES {
        data.push_str(&format!("{{\"prompt\": \"question {i}\", \"chosen\": \" yes\", \"rejected\": \" no\"}}\n"));
    }
    let lines_read = Rc::new(Cell::new(0));
    let reader = CountingReader { data: std::io::Cursor::new(data.into_bytes()), lines_read: lines_read.clone() };
    let opts = ConvertOptions::default();
    let mut stream = RecordStream::from_reader(Path::new("<pipe>"), Box::new(reader), None, &opts)?;
    let mut at_first_write = None;
    let mut written = 0;
    convert_stream(&mut stream, Target::Sft, &opts, &mut |_| {
        at_first_write.get_or_insert(lines_read.get());
        written += 1;
        Ok(())
    })?;
    assert_eq!(written, LINES);
    let at_first_write = at_first_write.unwrap_or(LINES);
    assert!(
        at_first_write < LINES / 4,
        "the first record was written after {at_first_write} of {LINES} lines were read: the input is held whole"
    );
    let report = stream.finish();
    assert_eq!((report.rows, report.converted, report.records), (LINES, LINES, LINES));
    Ok(())
}
