//! Rows one at a time, so a JSONL or Parquet file is never held whole: a conversion keeps
//! one row in memory (a JSON array still has to be parsed whole).

use super::input::Input;
use super::{json_type, Container, Report, Row};
use crate::error::{io_err, DataError, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Reads the rows of one input; rows that are not JSON objects are counted in the
/// [`Report`] passed to [`RowReader::next_row`] and left out.
pub struct RowReader {
    path: PathBuf,
    source: Source,
    line: usize,
}

enum Source {
    Jsonl {
        reader: Box<dyn BufRead>,
        buf: Vec<u8>,
    },
    Array(std::vec::IntoIter<Value>),
    #[cfg(feature = "parquet")]
    Parquet(Box<parquet::record::reader::RowIter<'static>>),
}

impl RowReader {
    /// Open `path` (`-` is stdin): JSONL, a JSON array, gzip of either, or Parquet.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_input(path, Input::open(path)?)
    }

    /// Read from a stream that can only be read once (`name` is used in reports).
    pub fn from_reader(name: &Path, reader: Box<dyn std::io::Read>) -> Result<Self> {
        Self::from_input(name, Input::from_reader(name, reader)?)
    }

    fn from_input(path: &Path, input: Input) -> Result<Self> {
        let source = match input {
            Input::Text { container: Container::JsonArray, reader } => Source::Array(parse_array(path, reader)?),
            Input::Text { reader, .. } => Source::Jsonl { reader, buf: Vec::new() },
            Input::Parquet(file) => parquet_rows(path, file)?,
        };
        Ok(Self { path: path.to_path_buf(), source, line: 0 })
    }

    /// The next JSON-object row, or `None` at the end. Other rows are skipped into `report`.
    pub fn next_row(&mut self, report: &mut Report) -> Result<Option<Row>> {
        loop {
            let (line, value) = match &mut self.source {
                Source::Jsonl { reader, buf } => {
                    buf.clear();
                    if reader.read_until(b'\n', buf).map_err(io_err(&self.path))? == 0 {
                        return Ok(None);
                    }
                    self.line += 1;
                    report.rows += 1;
                    match parse_line(buf) {
                        Ok(value) => (self.line, value),
                        Err((reason, detail)) => {
                            report.skip(self.line, reason, detail);
                            continue;
                        }
                    }
                }
                Source::Array(items) => {
                    let Some(value) = items.next() else { return Ok(None) };
                    self.line += 1;
                    report.rows += 1;
                    if !value.is_object() {
                        report.skip(self.line, "not a JSON object", format!("array element is {}", json_type(&value)));
                        continue;
                    }
                    (self.line, value)
                }
                #[cfg(feature = "parquet")]
                Source::Parquet(rows) => {
                    let Some(row) = rows.next() else { return Ok(None) };
                    self.line += 1;
                    report.rows += 1;
                    match row {
                        Ok(row) => (self.line, row.to_json_value()),
                        Err(e) => {
                            report.skip(self.line, "unreadable Parquet row", e.to_string());
                            continue;
                        }
                    }
                }
            };
            report.read += 1;
            return Ok(Some(Row { line, value }));
        }
    }
}

/// One JSONL line as a JSON object, or the skip reason and detail.
fn parse_line(buf: &[u8]) -> std::result::Result<Value, (&'static str, String)> {
    let text = std::str::from_utf8(buf).map_err(|e| ("invalid UTF-8", e.to_string()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(("blank line", String::new()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(other) => Err(("not a JSON object", format!("found {}", json_type(&other)))),
        Err(e) => Err(("invalid JSON", e.to_string())),
    }
}

fn parse_array(path: &Path, mut r: Box<dyn BufRead>) -> Result<std::vec::IntoIter<Value>> {
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
    Ok(items.into_iter())
}

#[cfg(feature = "parquet")]
fn parquet_rows(path: &Path, file: std::fs::File) -> Result<Source> {
    use parquet::file::reader::SerializedFileReader;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| DataError::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(Source::Parquet(Box::new(reader.into_iter())))
}

#[cfg(not(feature = "parquet"))]
fn parquet_rows(path: &Path, _file: std::fs::File) -> Result<Source> {
    Err(DataError::Parquet {
        path: path.to_path_buf(),
        message: "this build of reins-data has no Parquet support; rebuild with the `parquet` feature".into(),
    })
}

/// Read every row (see [`RowReader`]); the rows that are not JSON objects are counted in
/// `report` and left out; the rest keep their 1-based line (or element / row) number.
pub fn read_rows(path: &Path, report: &mut Report) -> Result<Vec<Row>> {
    let mut reader = RowReader::open(path)?;
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row(report)? {
        rows.push(row);
    }
    Ok(rows)
}
