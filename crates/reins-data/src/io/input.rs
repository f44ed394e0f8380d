//! Opening an input exactly once: a file, `-` for stdin, a pipe or a FIFO.
//!
//! The layout (gzip, Parquet, JSON array, JSONL) is sniffed from the first bytes of the
//! one reader we open. A pipe cannot be read twice: reopening `/dev/stdin` to peek at it
//! consumes the peeked bytes, and reopening a FIFO waits forever for a second writer. So
//! the peeked bytes are kept and chained in front of the rest of the stream.

use super::Container;
use crate::error::{io_err, DataError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// The path that means stdin (as an input) or stdout (as an output).
pub const STDIO: &str = "-";

/// True for `-`, the path that means stdin or stdout.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == STDIO
}

/// Read buffer size: large enough that a gzip decoder and `read_until` rarely wait on it.
const BUF: usize = 64 * 1024;

/// First line of a git-LFS pointer file: the data was never fetched.
const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An opened input whose layout is known.
pub enum Input {
    /// JSONL or a JSON array, decompressed, positioned after any UTF-8 byte-order mark.
    Text { container: Container, reader: Box<dyn BufRead> },
    /// Parquet keeps its index at the end of the file, so it needs a file it can seek in.
    Parquet(File),
}

impl Input {
    /// Open `path` (`-` is stdin) and sniff its layout.
    pub fn open(path: &Path) -> Result<Input> {
        if is_stdio(path) {
            return Self::from_reader(path, Box::new(std::io::stdin().lock()));
        }
        let file = File::open(path).map_err(io_err(path))?;
        let mut file_for_parquet = file.try_clone().map_err(io_err(path))?;
        match Self::from_reader(path, Box::new(file)) {
            Err(DataError::Parquet { .. }) if file_for_parquet.seek(SeekFrom::Start(0)).is_ok() => {
                Ok(Input::Parquet(file_for_parquet))
            }
            other => other,
        }
    }

    /// Sniff the layout of a stream that can only be read once (`path` names it in errors).
    /// Parquet is refused here: it cannot be read front to back.
    pub fn from_reader(path: &Path, raw: Box<dyn Read>) -> Result<Input> {
        let mut raw = BufReader::with_capacity(BUF, raw);
        let head = read_prefix(&mut raw, 4, false).map_err(io_err(path))?;
        if head.starts_with(b"PAR1") {
            return Err(DataError::Parquet {
                path: path.to_path_buf(),
                message:
                    "Parquet can only be read from a file (its index is at the end); save the stream to a file first"
                        .into(),
            });
        }
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let raw: Box<dyn Read> = Box::new(Cursor::new(head).chain(raw));
        let text: Box<dyn Read> =
            if gzip { Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF, raw))) } else { raw };
        let mut text = BufReader::with_capacity(BUF, text);
        let mut head = read_prefix(&mut text, LFS_POINTER.len(), true).map_err(io_err(path))?;
        if head.starts_with(UTF8_BOM) {
            head.drain(..UTF8_BOM.len());
            if !head.iter().any(|b| !b.is_ascii_whitespace()) {
                head.extend(read_prefix(&mut text, 0, true).map_err(io_err(path))?);
            }
        } else if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
            return Err(DataError::Invalid(format!(
                "{}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)",
                path.display()
            )));
        }
        if head.starts_with(LFS_POINTER) {
            return Err(DataError::Invalid(format!(
                "{}: this is a git-LFS pointer file, not the data; fetch the data with `git lfs pull` (or download the file itself)",
                path.display()
            )));
        }
        let container = match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Container::JsonArray,
            _ => Container::Jsonl,
        };
        let reader = Box::new(BufReader::with_capacity(BUF, Cursor::new(head).chain(text)));
        Ok(Input::Text { container, reader })
    }
}

/// Read at least `min` bytes (fewer only at the end of the stream) and, with
/// `past_whitespace`, on until the first non-whitespace byte, so the layout can be told.
/// A pipe may hand over one byte at a time; `fill_buf` alone could show too little.
fn read_prefix(r: &mut impl BufRead, min: usize, past_whitespace: bool) -> std::io::Result<Vec<u8>> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let enough = head.len() >= min;
        let seen_text = head.iter().any(|b| !b.is_ascii_whitespace());
        if enough && (!past_whitespace || seen_text) {
            return Ok(head);
        }
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(head);
        }
        let n = if enough { buf.len() } else { buf.len().min(min - head.len()) };
        head.extend_from_slice(&buf[..n]);
        r.consume(n);
    }
}
