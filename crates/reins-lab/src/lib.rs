//! reins-lab: the model-independent half of the quickstart lab.
//!
//! A deterministic synthetic world ([`world`]) of assistant prompts and responses whose quality
//! varies along hidden factors, a gold reward that re-derives those factors from any text
//! ([`gold`]), a population of simulated annotators with the failure modes of B-Pref
//! ([`annotators`]), a byte-level BPE trainer for the world's corpus ([`tokenizer_train`]), the
//! lab's configuration ([`config`]) and the report writer ([`report`], [`svg`]). The quickstart
//! ([`experiment`]) composes named stages ([`experiment::stages`]); `reins lab` ([`lab`]) composes
//! the same stages into registered experiments that check the field's claims.
//!
//! Everything is a pure function of a seed: the same config and seed give the same prompts,
//! responses, labels and tokenizer on every platform (ChaCha8 streams, FNV-1a hashes).
//!
//! # How the quickstart pipeline uses it
//! ```no_run
//! use reins_lab::{chat, metrics, tokenizer_train, Lab, LabConfig, Split};
//! # fn main() -> Result<(), reins_lab::LabError> {
//! let cfg = LabConfig::default();
//! let lab = Lab::new(&cfg)?; // world + gold reward + annotator population
//! // 1. tokenizer and corpus (cache both under cfg.cache_dir)
//! let tok = tokenizer_train::train_and_save(&lab.world, &cfg, std::path::Path::new(".reins/tok"))?;
//! let corpus = lab.world.corpus(cfg.pretrain.n_examples, cfg.sft.n_examples);
//! // pretrain on corpus.pretrain (chat texts), SFT on corpus.sft (prompt/completion).
//! // 2. pairs: two SFT samples per train prompt, conditioned on chat::prompt(&p.text),
//! //    cut with chat::extract_response; then labels, kept with their annotator ids
//! let prompts = lab.world.prompts(Split::Train, cfg.pairs.n_prompts);
//! # let pairs: Vec<(String, String, String)> = vec![];
//! let labels = lab.population.label_pairs(&pairs, &mut lab.world.rng("labels"));
//! let records: Vec<_> = pairs.iter().zip(&labels)
//!     .filter_map(|((p, a, b), l)| l.to_record(p, a, b, false))
//!     .map(|r| r.to_chat()) // TRL standard form: prompt + chosen is the training text
//!     .collect();
//! // 3. evaluation on the test prompts: lab.gold.score(&prompt, &response),
//! //    metrics::win_rate, metrics::gold_pair_accuracy, metrics::proxy_gold_gap,
//! //    then report::Report::new(data).write(out_dir)
//! let held = lab.world.prompts(Split::Test, cfg.eval.n_prompts);
//! # let _ = (tok, corpus, prompts, records, held);
//! # Ok(()) }
//! ```

pub mod annotators;
pub mod chat;
pub mod config;
pub mod contrast;
pub mod control_tags;
pub mod cyclic;
pub mod experiment;
pub mod gold;
pub mod judge_format;
pub mod lab;
pub mod metrics;
pub mod report;
pub mod rng;
pub mod seeds;
pub mod span_labels;
pub mod svg;
pub mod tasks;
pub mod tokenizer_train;
pub mod world;

pub use annotators::{Agreement, Label, Outcome, Population, PreferenceRecord, SimulatedAnnotator};
pub use config::{AnnotatorConfig, FactorWeights, LabConfig, PopulationConfig, QualityMix, WorldConfig};
pub use gold::{Evidence, Factor, GoldReward};
pub use report::{Report, ReportData};

pub use world::{Corpus, Factors, Prompt, Response, SftExample, Split, Task, World};

/// The lab's model-independent pieces, built from one config.
#[derive(Debug, Clone)]
pub struct Lab {
    pub world: World,
    pub gold: GoldReward,
    pub population: Population,
}

impl Lab {
    /// Validates `cfg` and builds the world, the gold reward and the annotators from `cfg.seed`.
    pub fn new(cfg: &LabConfig) -> Result<Self, LabError> {
        cfg.validate()?;
        Ok(Lab {
            world: World::new(cfg.seed, &cfg.world)?,
            gold: GoldReward::new(cfg.gold.clone()),
            population: Population::new(&cfg.annotators, &cfg.gold, cfg.seed),
        })
    }
}

/// Errors of the lab's library half. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A config value is out of range or inconsistent.
    #[error("invalid lab config: `{key}` {problem}")]
    Config { key: String, problem: String },
    /// The TOML could not be parsed (typo, unknown key, wrong type).
    #[error(
        "could not parse lab config {origin}: {error}\nhint: `reins quickstart --print-config` lists every key with its default"
    )]
    ConfigParse { origin: String, error: toml::de::Error },
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
    /// A stage of the experiment failed (model, data or trainer error).
    #[error("{stage}: {message}")]
    Stage { stage: &'static str, message: String },
}

impl LabError {
    pub(crate) fn config(key: &str, problem: impl Into<String>) -> Self {
        LabError::Config { key: key.to_string(), problem: problem.into() }
    }
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        LabError::Io { action, path: path.display().to_string(), source }
    }
}
