//! Where a command writes JSONL: stdout for `-`, else a file that appears only when the
//! command succeeds.
//!
//! A file is written under a temporary name beside its target and renamed over it by
//! [`Output::commit`], so a failed or empty conversion leaves no half-written file. Before
//! anything is written, [`check_output`] refuses a target that is one of the inputs (even
//! with `--force`: an input is never written over) or that already exists (unless
//! `--force`).

use super::input::is_stdio;
use crate::error::{io_err, DataError, Result};
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Refuse to write `output` over one of `inputs`, or over an existing file without `force`.
pub fn check_output(output: &Path, inputs: &[&Path], force: bool) -> Result<()> {
    if is_stdio(output) {
        return Ok(());
    }
    for input in inputs {
        if same_file(output, input) {
            return Err(DataError::Invalid(format!(
                "{} is the input file; choose another output path (an input is never written over, even with --force)",
                output.display()
            )));
        }
    }
    if output.exists() && !force {
        return Err(DataError::Invalid(format!(
            "{} already exists; pass --force to replace it, or choose another output path",
            output.display()
        )));
    }
    Ok(())
}

/// True when `a` and `b` name the same existing file (also through links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if is_stdio(a) || is_stdio(b) {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

enum Sink {
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
    Plain(BufWriter<File>),
    Gzip(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

/// A JSONL destination: `-` is stdout; a path ending in `.gz` is gzipped.
pub struct Output {
    path: PathBuf,
    /// The temporary file being written, renamed to `path` on commit (`None` for stdout).
    tmp: Option<PathBuf>,
    sink: Option<Sink>,
    written: usize,
}

impl Output {
    /// Start writing `path` (check it first with [`check_output`]).
    pub fn create(path: &Path) -> Result<Self> {
        if is_stdio(path) {
            let sink = Sink::Stdout(BufWriter::new(std::io::stdout().lock()));
            return Ok(Self { path: path.to_path_buf(), tmp: None, sink: Some(sink), written: 0 });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let f = BufWriter::new(File::create(&tmp).map_err(io_err(path))?);
        let sink = if path.extension().is_some_and(|e| e == "gz") {
            Sink::Gzip(Box::new(flate2::write::GzEncoder::new(f, flate2::Compression::default())))
        } else {
            Sink::Plain(f)
        };
        Ok(Self { path: path.to_path_buf(), tmp: Some(tmp), sink: Some(sink), written: 0 })
    }

    /// Append one JSONL line.
    pub fn write(&mut self, value: &Value) -> Result<()> {
        let w: &mut dyn Write = match self.sink.as_mut() {
            Some(Sink::Stdout(w)) => w,
            Some(Sink::Plain(w)) => w,
            Some(Sink::Gzip(w)) => w.as_mut(),
            None => return Ok(()),
        };
        let path = &self.path;
        serde_json::to_writer(&mut *w, value).map_err(|e| DataError::Io { path: path.clone(), error: e.into() })?;
        w.write_all(b"\n").map_err(io_err(path))?;
        self.written += 1;
        Ok(())
    }

    /// Lines written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The path being written (`-` for stdout).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finish the file and put it in place (replacing what was there).
    pub fn commit(mut self) -> Result<usize> {
        let path = self.path.clone();
        match self.sink.take() {
            Some(Sink::Stdout(mut w)) => w.flush().map_err(io_err(&path))?,
            Some(Sink::Plain(w)) => finish_file(&path, w)?,
            Some(Sink::Gzip(w)) => finish_file(&path, w.finish().map_err(io_err(&path))?)?,
            None => {}
        }
        if let Some(tmp) = self.tmp.take() {
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        Ok(self.written)
    }
}

fn finish_file(path: &Path, w: BufWriter<File>) -> Result<()> {
    let f = w.into_inner().map_err(|e| DataError::Io { path: path.to_path_buf(), error: e.into_error() })?;
    f.sync_all().map_err(io_err(path))
}

impl Drop for Output {
    /// Not committed: the temporary file goes away and the target is left as it was.
    fn drop(&mut self) {
        self.sink = None;
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
