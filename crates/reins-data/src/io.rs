//! Files: JSONL, JSON arrays, gzip of either, and Parquet, from a path or `-` (stdin);
//! plus the line-numbered [`Report`] of what was read, converted and skipped, by reason.
//!
//! [`input`] opens and sniffs a file once, [`rows`] reads it row by row, [`output`] writes
//! JSONL to a file (never over an input) or to stdout.

pub mod input;
pub mod output;
pub mod rows;

pub use input::{is_stdio, STDIO};
pub use output::{check_output, Output};
pub use rows::{read_rows, RowReader};

use crate::error::{io_err, DataError, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// At most this many problems are kept with their line numbers; counts stay exact.
pub const MAX_PROBLEMS_KEPT: usize = 1000;

/// One input row: a JSONL line, a JSON-array element or a Parquet row, 1-based.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: usize,
    pub value: Value,
}

/// Something wrong with one row (or part of it): where and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Problem {
    pub file: String,
    /// 1-based line (JSONL), element (JSON array) or row (Parquet).
    pub line: usize,
    /// Short category, also the key of the counts (e.g. `"invalid JSON"`).
    pub reason: String,
    /// The specifics: which key, what value.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// What a load did. Invariant: `rows == converted + skipped.values().sum()`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub file: String,
    pub format: Option<String>,
    /// Rows seen (lines, elements or Parquet rows).
    pub rows: usize,
    /// Rows that parsed as JSON objects.
    pub read: usize,
    /// Rows that gave at least one record.
    pub converted: usize,
    /// Records produced (one row can give several, e.g. an OASST tree).
    pub records: usize,
    /// Rows skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Parts of converted rows left out (a deleted OASST message, a tied pair), by reason.
    pub dropped: BTreeMap<String, usize>,
    /// The first [`MAX_PROBLEMS_KEPT`] skipped rows, with line numbers.
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn new(file: impl Into<String>) -> Self {
        Self { file: file.into(), ..Self::default() }
    }
    /// Count a skipped row and keep its problem.
    pub fn skip(&mut self, line: usize, reason: impl Into<String>, detail: impl Into<String>) {
        let reason = reason.into();
        *self.skipped.entry(reason.clone()).or_default() += 1;
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems.push(Problem { file: self.file.clone(), line, reason, detail: detail.into() });
        }
    }
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }
    /// True when every row is either converted or skipped with a reason.
    pub fn is_balanced(&self) -> bool {
        self.rows == self.converted + self.skipped_total()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} rows, {} read, {} converted into {} records, {} skipped",
            self.file,
            self.rows,
            self.read,
            self.converted,
            self.records,
            self.skipped_total()
        )?;
        if let Some(fmt_name) = &self.format {
            write!(f, " (format: {fmt_name})")?;
        }
        for (k, v) in &self.skipped {
            write!(f, "\n  skipped {v}: {k}")?;
        }
        for (k, v) in &self.dropped {
            write!(f, "\n  left out of converted rows {v}: {k}")?;
        }
        Ok(())
    }
}

/// How the bytes of a file are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Jsonl,
    JsonArray,
    Parquet,
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Write JSON values as JSONL; gzip when the path ends in `.gz`.
pub fn write_jsonl<'a>(path: &Path, values: impl IntoIterator<Item = &'a Value>) -> Result<usize> {
    let f = std::io::BufWriter::new(File::create(path).map_err(io_err(path))?);
    if path.extension().is_some_and(|e| e == "gz") {
        let mut w = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let n = write_values(path, &mut w, values)?;
        w.finish().map_err(io_err(path))?.flush().map_err(io_err(path))?;
        Ok(n)
    } else {
        let mut w = f;
        let n = write_values(path, &mut w, values)?;
        w.flush().map_err(io_err(path))?;
        Ok(n)
    }
}

fn write_values<'a>(path: &Path, w: &mut impl Write, values: impl IntoIterator<Item = &'a Value>) -> Result<usize> {
    let mut n = 0;
    for v in values {
        serde_json::to_writer(&mut *w, v).map_err(|e| DataError::Io { path: path.to_path_buf(), error: e.into() })?;
        w.write_all(b"\n").map_err(io_err(path))?;
        n += 1;
    }
    Ok(n)
}

/// The file name used in reports.
pub fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// The path as a `PathBuf` (for error construction).
pub fn owned(path: &Path) -> PathBuf {
    path.to_path_buf()
}
