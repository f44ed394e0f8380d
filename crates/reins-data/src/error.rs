//! Errors that stop a whole operation (a file that can't be opened, a tokenizer folder
//! without a template). A bad *line* is not an error: it is a [`crate::io::Problem`] in the
//! [`crate::io::Report`], and reading goes on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not valid JSON at line {line}, column {column}: {message}. A JSON-array file must parse as a whole; JSONL files may have bad lines, which are skipped and reported")]
    JsonArray { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: could not detect the data format ({why}). Pass it explicitly (e.g. `--format hh`); known formats: {known}")]
    UnknownFormat { path: PathBuf, why: String, known: String },
    #[error("unknown format name `{0}`; known formats: {1}")]
    UnknownFormatName(String, String),
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("{dir}: no chat template found (looked for `chat_template.jinja` and a `chat_template` key in `tokenizer_config.json`). Conversational data needs one: copy the model's `chat_template.jinja` into that folder, or use standard (plain-text) data")]
    MissingChatTemplate { dir: PathBuf },
    #[error("chat template: {0}")]
    Template(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |error| DataError::Io { path, error }
}
