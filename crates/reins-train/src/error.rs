//! Error type of the crate.

/// Errors from losses, trainers and optimizers.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape mismatch, dtype, device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Loading or running a model failed (a missing file, a config key, a weight); its message
    /// and its source (the I/O error under a missing file) are kept as they are.
    #[error(transparent)]
    Model(#[from] reins_model::ModelError),
    /// Tokenizing or decoding failed (a judge's template, a reward's text).
    #[error(transparent)]
    Data(#[from] reins_data::DataError),
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
    /// Joining the other ranks of a data-parallel run, or a collective call, failed; the
    /// message names the address, rank or call and what to check, the source is the cause.
    #[error("{message}")]
    Parallel {
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, TrainError>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_model_error_keeps_its_message_and_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let model = reins_model::ModelError::Io { path: "tiny/config.json".into(), source: io };
        let want = model.to_string();
        let e = TrainError::from(model);
        assert!(matches!(e, TrainError::Model(_)), "{e:?}");
        assert_eq!(e.to_string(), want);
        assert_eq!(e.to_string(), "tiny/config.json: no such file");
        let source = e.source().expect("the I/O error is kept as the source");
        assert_eq!(source.to_string(), "no such file");
        let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn loading_a_missing_model_through_the_crate_keeps_the_path_and_the_cause() -> std::result::Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let missing = dir.path().join("no-model");
        let load = || -> Result<reins_model::Model> {
            Ok(reins_model::Model::load(&missing, &candle_core::Device::Cpu, &reins_model::LoadOptions::default())?)
        };
        let Err(e) = load() else { return Err("a missing model folder loaded".into()) };
        assert!(matches!(e, TrainError::Model(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("no-model") && !text.starts_with("invalid input"), "{text}");
        let source = std::error::Error::source(&e).ok_or("the I/O error was dropped")?;
        assert!(source.downcast_ref::<std::io::Error>().is_some(), "{source:?}");
        Ok(())
    }
}
