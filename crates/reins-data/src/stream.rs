//! Records one input row at a time: what `reins data convert` reads, so that it holds one
//! row (plus the first rows read to detect the format) instead of the whole file. [`load`]
//! collects the same stream when every record is needed at once.
//!
//! [`load`]: crate::formats::load

use crate::detect::{detect_rows, DETECT_ROWS};
use crate::error::{DataError, Result};
use crate::formats::{convert_row_counted, convert_rows, ConvertOptions, Format, Out};
use crate::io::{display_name, Report, Row, RowReader};
use crate::records::Record;
use std::collections::VecDeque;
use std::path::Path;

/// The records of one input, converted row by row, with the [`Report`] of what was read.
pub struct RecordStream {
    rows: RowReader,
    /// Rows read ahead to detect the format, not converted yet.
    ahead: VecDeque<Row>,
    format: Format,
    opts: ConvertOptions,
    out: Out,
    /// Records of the rows converted so far, not handed out yet.
    pending: VecDeque<Record>,
    report: Report,
    done: bool,
}

impl RecordStream {
    /// Open `path` (`-` is stdin) and detect its format unless given.
    pub fn open(path: &Path, format: Option<Format>, opts: &ConvertOptions) -> Result<Self> {
        Self::new(path, RowReader::open(path)?, format, opts)
    }

    /// Read a stream that can only be read once; `name` is used in reports and errors.
    pub fn from_reader(
        name: &Path,
        reader: Box<dyn std::io::Read>,
        format: Option<Format>,
        opts: &ConvertOptions,
    ) -> Result<Self> {
        Self::new(name, RowReader::from_reader(name, reader)?, format, opts)
    }

    fn new(path: &Path, mut rows: RowReader, format: Option<Format>, opts: &ConvertOptions) -> Result<Self> {
        let mut report = Report::new(display_name(path));
        let mut ahead = VecDeque::new();
        let format = match format {
            Some(f) => f,
            None => {
                while ahead.len() < DETECT_ROWS {
                    match rows.next_row(&mut report)? {
                        Some(row) => ahead.push_back(row),
                        None => break,
                    }
                }
                detect_rows(ahead.make_contiguous(), &report).map_err(|why| DataError::UnknownFormat {
                    path: path.to_path_buf(),
                    why,
                    known: Format::known_names(),
                })?
            }
        };
        report.format = Some(format.name().to_string());
        Ok(Self {
            rows,
            ahead,
            format,
            opts: opts.clone(),
            out: Out::default(),
            pending: VecDeque::new(),
            report,
            done: false,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The counts so far; complete once [`RecordStream::next_record`] returned `None`.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                self.report.records += 1;
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            // HelpSteer2 gives one response per row and a prompt's list needs all of its rows;
            // Open-Assistant's message-level export builds trees from messages in any order.
            // Both read the whole file before the first record.
            if matches!(self.format, Format::HelpSteer2 | Format::Oasst) {
                let mut rows = Vec::new();
                while let Some(row) = self.next_row()? {
                    rows.push(row);
                }
                self.done = true;
                let records = convert_rows(self.format, &rows, &self.opts, &mut self.report);
                // `convert_rows` counts the records it returns; here they count as they leave.
                self.report.records -= records.len();
                self.pending.extend(records);
                continue;
            }
            match self.next_row()? {
                Some(row) => convert_row_counted(self.format, &row, &self.opts, &mut self.out, &mut self.report),
                None => self.done = true,
            }
            self.pending.extend(std::mem::take(&mut self.out.records));
        }
    }

    fn next_row(&mut self) -> Result<Option<Row>> {
        match self.ahead.pop_front() {
            Some(row) => Ok(Some(row)),
            None => self.rows.next_row(&mut self.report),
        }
    }

    /// The complete report: problems in line order, parts of rows left out added.
    pub fn finish(mut self) -> Report {
        for (k, v) in std::mem::take(&mut self.out.dropped) {
            *self.report.dropped.entry(k).or_default() += v;
        }
        self.report.problems.sort_by_key(|p| p.line);
        self.report
    }
}
