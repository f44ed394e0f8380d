//! Files: JSONL, JSON arrays, gzip of either, and Parquet; plus the line-numbered
//! [`Report`] of what was read, converted and skipped, by reason.

use crate::error::{io_err, DataError, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
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

fn is_gzip(path: &Path) -> Result<bool> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(path))?;
    Ok(n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
}

fn is_parquet(path: &Path) -> Result<bool> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(path))?;
    Ok(n == 4 && &magic == b"PAR1")
}

/// A buffered reader over the file, decompressing gzip (detected by its magic bytes).
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let gz = is_gzip(path)?;
    let f = File::open(path).map_err(io_err(path))?;
    Ok(if gz { Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f))) } else { Box::new(BufReader::new(f)) })
}

/// Read every row of a JSONL / JSON-array / Parquet file (gzip allowed for the JSON forms).
/// Rows that are not JSON objects are counted in `report` and left out; the rest are
/// returned with their 1-based line (or element / row) number.
pub fn read_rows(path: &Path, report: &mut Report) -> Result<Vec<Row>> {
    if is_parquet(path)? {
        return read_parquet(path, report);
    }
    let mut r = open(path)?;
    // Peek at the first non-whitespace byte: `[` means a JSON array.
    let first = loop {
        let buf = r.fill_buf().map_err(io_err(path))?;
        if buf.is_empty() {
            break None;
        }
        if let Some(pos) = buf.iter().position(|b| !b.is_ascii_whitespace()) {
            break Some(buf[pos]);
        }
        let n = buf.len();
        r.consume(n);
    };
    if first == Some(b'[') {
        read_json_array(path, r, report)
    } else {
        read_jsonl(path, r, report)
    }
}

fn read_jsonl(path: &Path, mut r: Box<dyn BufRead>, report: &mut Report) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        line += 1;
        report.rows += 1;
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t,
            Err(e) => {
                report.skip(line, "invalid UTF-8", e.to_string());
                continue;
            }
        };
        let text = text.trim();
        if text.is_empty() {
            report.skip(line, "blank line", "");
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => {
                report.read += 1;
                rows.push(Row { line, value });
            }
            Ok(other) => report.skip(line, "not a JSON object", format!("found {}", json_type(&other))),
            Err(e) => report.skip(line, "invalid JSON", e.to_string()),
        }
    }
    Ok(rows)
}

fn read_json_array(path: &Path, mut r: Box<dyn BufRead>, report: &mut Report) -> Result<Vec<Row>> {
    let mut text = String::new();
    r.read_to_string(&mut text).map_err(io_err(path))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| DataError::JsonArray {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Value::Array(items) = value else {
        return Err(DataError::Invalid(format!("{}: expected a JSON array", path.display())));
    };
    let mut rows = Vec::with_capacity(items.len());
    for (i, value) in items.into_iter().enumerate() {
        report.rows += 1;
        if value.is_object() {
            report.read += 1;
            rows.push(Row { line: i + 1, value });
        } else {
            report.skip(i + 1, "not a JSON object", format!("array element is {}", json_type(&value)));
        }
    }
    Ok(rows)
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path, report: &mut Report) -> Result<Vec<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let perr =
        |e: parquet::errors::ParquetError| DataError::Parquet { path: path.to_path_buf(), message: e.to_string() };
    let f = File::open(path).map_err(io_err(path))?;
    let reader = SerializedFileReader::new(f).map_err(perr)?;
    let mut rows = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(perr)?.enumerate() {
        report.rows += 1;
        match row {
            Ok(row) => {
                report.read += 1;
                rows.push(Row { line: i + 1, value: row.to_json_value() });
            }
            Err(e) => report.skip(i + 1, "unreadable Parquet row", e.to_string()),
        }
    }
    Ok(rows)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path, _report: &mut Report) -> Result<Vec<Row>> {
    Err(DataError::Parquet {
        path: path.to_path_buf(),
        message: "this build of reins-data has no Parquet support; rebuild with the `parquet` feature".into(),
    })
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
