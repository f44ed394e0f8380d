//! Files: JSONL with bad lines, JSON arrays, gzip, Parquet; writing JSONL(.gz).

use super::write_tmp;
use reins_data::formats::{load, ConvertOptions, Format};
use reins_data::io::{read_rows, write_jsonl, Report};
use std::io::Write;

const GOOD: &str = r#"{"prompt": "a", "chosen": " b", "rejected": " c"}"#;

#[test]
fn jsonl_bad_lines_are_reported_and_reading_goes_on() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(GOOD.as_bytes());
    bytes.extend_from_slice(b"\n{\"prompt\": \"a\", \"chosen\": \n\n[1, 2]\n\xff\xfe\n");
    bytes.extend_from_slice(GOOD.as_bytes());
    bytes.extend_from_slice(b"\n{\"prompt\": \"a\"");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.jsonl");
    std::fs::write(&p, &bytes).unwrap();
    let l = load(&p, None, &ConvertOptions::default()).unwrap();
    let r = &l.report;
    assert_eq!(l.format, Format::Trl);
    assert_eq!(r.rows, 7);
    assert_eq!(r.read, 2);
    assert_eq!(r.converted, 2);
    assert!(r.is_balanced());
    let lines: Vec<(usize, &str)> = r.problems.iter().map(|p| (p.line, p.reason.as_str())).collect();
    assert_eq!(
        lines,
        [(2, "invalid JSON"), (3, "blank line"), (4, "not a JSON object"), (5, "invalid UTF-8"), (7, "invalid JSON")]
    );
    let shown = r.problems[0].to_string();
    assert!(shown.starts_with(&format!("{}:2: invalid JSON", p.display())), "{shown}");
    let summary = r.to_string();
    assert!(summary.contains("2 converted") && summary.contains("skipped 2: invalid JSON"), "{summary}");
}

#[test]
fn json_array_and_gzip_and_roundtrip() {
    let arr = format!("[{GOOD}, 5, {GOOD}]");
    let (_d, p) = write_tmp("x.json", &arr);
    let mut report = Report::new("x");
    let rows = read_rows(&p, &mut report).unwrap();
    assert_eq!((rows.len(), rows[1].line, report.skipped_total()), (2, 3, 1));

    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("x.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    writeln!(enc, "{GOOD}\n{GOOD}").unwrap();
    enc.finish().unwrap();
    let l = load(&gz, None, &ConvertOptions::default()).unwrap();
    assert_eq!(l.records.len(), 2);

    let gz_arr = dir.path().join("arr.json.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz_arr).unwrap(), flate2::Compression::fast());
    enc.write_all(arr.as_bytes()).unwrap();
    enc.finish().unwrap();
    assert_eq!(load(&gz_arr, None, &ConvertOptions::default()).unwrap().records.len(), 2);

    let out = dir.path().join("out.jsonl.gz");
    let values: Vec<_> = l.records.iter().map(|r| r.to_json()).collect();
    assert_eq!(write_jsonl(&out, &values).unwrap(), 2);
    assert_eq!(load(&out, Some(Format::Trl), &ConvertOptions::default()).unwrap().records, l.records);

    let (_d, bad) = write_tmp("bad.json", "[{\"a\": 1},");
    let e = load(&bad, None, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("line 1"), "{e}");
    let (_d, unknown) = write_tmp("u.jsonl", "{\"foo\": 1}\n");
    let e = load(&unknown, None, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("could not detect") && e.contains("foo"), "{e}");
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_rows_read_like_jsonl() {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.parquet");
    let schema = Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY chosen (UTF8); REQUIRED BYTE_ARRAY rejected (UTF8); }",
        )
        .unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut w = SerializedFileWriter::new(std::fs::File::create(&path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for col in [["Q1", "Q2", "Q3"], [" yes", " sure", " ok"], [" no", " never", " nah"]] {
        let vals: Vec<ByteArray> = col.iter().map(|s| ByteArray::from(*s)).collect();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>().write_batch(&vals, None, None).unwrap();
        c.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();

    let l = load(&path, None, &ConvertOptions::default()).unwrap();
    assert_eq!(l.format, Format::Trl);
    assert_eq!(l.report.rows, 3);
    let reins_data::Record::Preference(p) = &l.records[1] else { panic!() };
    assert_eq!(p.prompt, reins_data::Text::Plain("Q2".into()));
    assert_eq!(p.chosen, reins_data::Text::Plain(" sure".into()));
}

/// HF Hub conversational data: `list<struct<role, content>>` columns.
#[cfg(feature = "parquet")]
#[test]
fn parquet_nested_message_lists() {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.parquet");
    let schema = Arc::new(
        parse_message_type(
            "message schema {
               REQUIRED group messages (LIST) {
                 REPEATED group list {
                   REQUIRED group element {
                     REQUIRED BYTE_ARRAY role (UTF8);
                     REQUIRED BYTE_ARRAY content (UTF8);
                   }
                 }
               }
             }",
        )
        .unwrap(),
    );
    let mut w = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        schema,
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut rg = w.next_row_group().unwrap();
    // Row 1: user + assistant; row 2: one user message.
    let rep = [0i16, 1, 0];
    let def = [1i16, 1, 1];
    for col in [["user", "assistant", "user"], ["Hi", "Hello", "Bye"]] {
        let vals: Vec<ByteArray> = col.iter().map(|s| ByteArray::from(*s)).collect();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>().write_batch(&vals, Some(&def), Some(&rep)).unwrap();
        c.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();

    let l = load(&path, None, &ConvertOptions::default()).unwrap();
    assert_eq!(l.report.rows, 2, "{}", l.report);
    assert_eq!(
        l.records[0],
        reins_data::Record::LanguageModeling {
            text: reins_data::Text::Chat(vec![
                reins_data::Message::user("Hi"),
                reins_data::Message::assistant("Hello")
            ]),
            meta: Default::default(),
        }
    );
}
