//! reins-data integration tests (one binary, to keep link time down).

mod arena;
mod convert_targets;
mod feedback_exports;
mod formats;
mod helpsteer;
mod hh;
mod input;
mod io;
mod messages;
mod no_panic;
mod oasst;
mod real_templates;
mod spans;
mod summarize;
mod templates;
mod tokenize;
mod tools;
mod trl_fixtures;

use reins_data::formats::{load, ConvertOptions, Format, Loaded};
use std::path::PathBuf;

/// Write `lines` to a fresh file named `name` in a temp dir (kept alive by the returned guard).
pub fn write_tmp(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join(name);
    std::fs::write(&p, content).expect("write");
    (dir, p)
}

/// Load JSONL text as `format` (or detected).
pub fn load_str(content: &str, format: Option<Format>, opts: &ConvertOptions) -> Loaded {
    let (_d, p) = write_tmp("data.jsonl", content);
    let l = load(&p, format, opts).expect("load");
    assert!(l.report.is_balanced(), "{}", l.report);
    l
}
