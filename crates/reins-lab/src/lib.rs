//! reins-lab: the model-independent half of the quickstart lab.
//!
//! A deterministic synthetic world ([`world`]) of assistant prompts and responses whose quality
//! varies along hidden factors, a gold reward that re-derives those factors from any text
//! ([`gold`]), a population of simulated annotators with the failure modes of B-Pref
//! ([`annotators`]), a byte-level BPE trainer for the world's corpus ([`tokenizer_train`]), the
//! lab's configuration ([`config`]) and the report writer ([`report`], [`svg`]).
//!
//! Everything is a pure function of a seed: the same config and seed give the same prompts,
//! responses, labels and tokenizer on every platform (ChaCha8 streams, FNV-1a hashes).

pub mod annotators;
pub mod chat;
pub mod config;
pub mod gold;
pub mod metrics;
pub mod report;
pub mod rng;
pub mod svg;
pub mod tasks;
pub mod tokenizer_train;
pub mod world;

pub use annotators::{
    Agreement, Label, Outcome, PairwiseJudge, Population, PreferenceRecord, SimulatedAnnotator,
};
pub use config::{
    AnnotatorConfig, FactorWeights, LabConfig, PopulationConfig, QualityMix, WorldConfig,
};
pub use gold::{Evidence, Factor, GoldReward};
pub use report::{Report, ReportData};

pub use world::{Corpus, Factors, Prompt, Response, SftExample, Split, Task, World};

/// Errors of the lab's library half. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A config value is out of range or inconsistent.
    #[error("invalid lab config: `{key}` {problem}")]
    Config { key: String, problem: String },
    /// The TOML could not be parsed (typo, unknown key, wrong type).
    #[error("could not parse lab config {origin}: {source}\nhint: every key is listed with its default in `LabConfig::default().to_toml()`")]
    ConfigParse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The tokenizers crate failed to train or save.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl LabError {
    pub(crate) fn config(key: &str, problem: impl Into<String>) -> Self {
        LabError::Config {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        LabError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
