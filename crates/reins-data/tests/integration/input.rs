//! Reading inputs: a byte-order mark, why detection failed, a git-LFS pointer.

use super::write_tmp;
use reins_data::formats::{load, ConvertOptions, Format};
use std::io::Write;

const GOOD: &str = r#"{"prompt": "a", "chosen": " b", "rejected": " c"}"#;
const BOM: &str = "\u{feff}";

#[test]
fn a_byte_order_mark_is_not_part_of_row_one() {
    let opts = ConvertOptions::default();
    let (_d, p) = write_tmp("bom.jsonl", &format!("{BOM}{GOOD}\n{GOOD}\n"));
    let l = load(&p, None, &opts).unwrap();
    assert_eq!((l.report.rows, l.report.converted), (2, 2), "{:?}", l.report.problems);

    // A JSON array is recognised by its `[`, which the mark hid.
    let (_d, p) = write_tmp("bom.json", &format!("{BOM}\n  [{GOOD}, {GOOD}]"));
    let l = load(&p, None, &opts).unwrap();
    assert_eq!((l.format, l.records.len()), (Format::Trl, 2));

    // Inside gzip too.
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("bom.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    writeln!(enc, "{BOM}{GOOD}").unwrap();
    enc.finish().unwrap();
    assert_eq!(load(&gz, None, &opts).unwrap().report.converted, 1);
}

#[test]
fn failed_detection_quotes_why_the_first_lines_were_skipped() {
    let (_d, p) = write_tmp("bad.jsonl", "prompt,chosen,rejected\n[1, 2]\n\n{\"prompt\": \n");
    let e = load(&p, None, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("no readable rows"), "{e}");
    assert!(e.contains("line 1: invalid JSON"), "{e}");
    assert!(e.contains("line 2: not a JSON object (found an array)"), "{e}");
    assert!(e.contains("line 3: blank line"), "{e}");
    assert!(!e.contains("line 4"), "at most three lines are quoted: {e}");

    let (_d, p) = write_tmp("empty.jsonl", "");
    let e = load(&p, None, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("the file is empty"), "{e}");
}

#[test]
fn a_git_lfs_pointer_is_named_as_such() {
    let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    let (_d, p) = write_tmp("train.jsonl", pointer);
    for format in [None, Some(Format::Hh)] {
        let e = load(&p, format, &ConvertOptions::default()).unwrap_err().to_string();
        assert!(e.contains("git-LFS pointer") && e.contains("git lfs pull"), "{e}");
        assert!(e.contains("train.jsonl"), "{e}");
    }
}

#[test]
fn a_utf16_file_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("utf16.jsonl");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(GOOD.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&p, bytes).unwrap();
    let e = load(&p, None, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("UTF-16") && e.contains("UTF-8"), "{e}");
}
