//! One error type for loading and running models; every variant says what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{}config key `{key}`: {msg}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config { path: Option<PathBuf>, key: String, msg: String },
    #[error("{path}: tensor `{name}`: {msg}")]
    Weight { path: PathBuf, name: String, msg: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn config(key: &str, msg: impl Into<String>) -> Self {
        ModelError::Config { path: None, key: key.to_string(), msg: msg.into() }
    }

    pub(crate) fn with_path(self, p: &Path) -> Self {
        match self {
            ModelError::Config { path: None, key, msg } => ModelError::Config { path: Some(p.to_path_buf()), key, msg },
            e => e,
        }
    }
}
