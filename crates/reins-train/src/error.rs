//! Error type of the crate.

/// Errors from losses and optimizers.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape mismatch, dtype, device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is invalid; the message says which key and how to fix it.
    #[error("invalid config: {0}")]
    Config(String),
    /// An input is missing or has the wrong shape for the requested computation.
    #[error("invalid input: {0}")]
    Input(String),
    /// Training diverged (non-finite loss, KL above `max_kl`); checkpoints so far are kept.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A reward source failed (a remote scorer's HTTP error, malformed reply).
    #[error("reward: {0}")]
    Reward(String),
    /// Reading or writing optimizer state failed.
    #[error("optimizer state: {0}")]
    State(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, TrainError>;
