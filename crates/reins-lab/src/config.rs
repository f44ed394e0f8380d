//! `LabConfig`: every knob of the quickstart lab, with its default, in one TOML file.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo never silently falls back to a
//! default. Stage budgets use TRL's field names where TRL has the concept.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::LabError;

mod stages;
pub use stages::*;

/// The whole lab. `LabConfig::default()` is the quickstart; [`LabConfig::reduced`] is for CI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    /// Master seed; every stage derives its own stream from it. Default 0.
    pub seed: u64,
    /// Folder where the tokenizer and the pretrained/SFT base model are cached. Default `".reins/quickstart"`.
    pub cache_dir: String,
    /// Folder for `report.html`, `summary.md`, labels and metrics. Default `"quickstart-out"`.
    pub output_dir: String,
    /// The synthetic world.
    pub world: WorldConfig,
    /// The gold reward's factor weights.
    pub gold: FactorWeights,
    /// The simulated annotators.
    pub annotators: PopulationConfig,
    /// Tokenizer training.
    pub tokenizer: TokenizerConfig,
    /// The tiny Llama.
    pub model: ModelConfig,
    /// Pretraining on the world's corpus.
    pub pretrain: TrainBudget,
    /// Supervised fine-tuning on prompt/response pairs.
    pub sft: TrainBudget,
    /// Sampling the pairs the annotators label.
    pub pairs: PairsConfig,
    /// Reward models (single and ensemble).
    pub reward_model: RewardModelConfig,
    /// PPO.
    pub ppo: PpoConfig,
    /// GRPO.
    pub grpo: GrpoConfig,
    /// Offline DPO on the labelled pairs.
    pub dpo: DpoConfig,
    /// Online / iterative DPO.
    pub online_dpo: OnlineDpoConfig,
    /// Best-of-n sampling against the reward model.
    pub best_of_n: BestOfNConfig,
    /// Evaluation on held-out prompts.
    pub eval: EvalConfig,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            seed: 0,
            cache_dir: ".reins/quickstart".into(),
            output_dir: "quickstart-out".into(),
            world: WorldConfig::default(),
            gold: FactorWeights::default(),
            annotators: PopulationConfig::default(),
            tokenizer: TokenizerConfig::default(),
            model: ModelConfig::default(),
            pretrain: TrainBudget {
                n_examples: 20_000,
                max_steps: 300,
                per_device_train_batch_size: 32,
                learning_rate: 3e-3,
                warmup_steps: 30,
            },
            sft: TrainBudget {
                n_examples: 4_000,
                max_steps: 150,
                per_device_train_batch_size: 32,
                learning_rate: 1e-3,
                warmup_steps: 20,
            },
            pairs: PairsConfig::default(),
            reward_model: RewardModelConfig::default(),
            ppo: PpoConfig::default(),
            grpo: GrpoConfig::default(),
            dpo: DpoConfig::default(),
            online_dpo: OnlineDpoConfig::default(),
            best_of_n: BestOfNConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl LabConfig {
    /// A preset small enough for CI (seconds per stage): same world and annotators, tiny budgets.
    pub fn reduced() -> Self {
        let mut c = LabConfig::default();
        c.tokenizer.vocab_size = 512;
        c.tokenizer.n_texts = 2_000;
        c.model.num_hidden_layers = 2;
        c.model.hidden_size = 64;
        c.model.intermediate_size = 128;
        c.pretrain.n_examples = 1_000;
        c.pretrain.max_steps = 40;
        c.pretrain.per_device_train_batch_size = 16;
        c.sft.n_examples = 300;
        c.sft.max_steps = 20;
        c.sft.per_device_train_batch_size = 16;
        c.pairs.n_prompts = 96;
        c.reward_model.max_steps = 30;
        c.reward_model.ensemble_size = 2;
        c.reward_model.n_eval_pairs = 48;
        c.ppo.max_steps = 4;
        c.ppo.per_device_train_batch_size = 8;
        c.grpo.max_steps = 4;
        c.grpo.per_device_train_batch_size = 4;
        c.grpo.num_generations = 4;
        c.grpo.max_completion_length = 24;
        c.dpo.max_steps = 15;
        c.ppo.max_new_tokens = 24;
        c.ppo.num_ppo_epochs = 2;
        c.online_dpo.max_steps = 4;
        c.online_dpo.per_device_train_batch_size = 8;
        c.online_dpo.max_new_tokens = 24;
        c.best_of_n.n = 4;
        c.eval.n_prompts = 24;
        c.eval.overoptimization_points = 2;
        c
    }

    /// Parses TOML; unknown keys and bad values are errors naming the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, LabError> {
        let cfg: LabConfig =
            toml::from_str(text).map_err(|error| LabError::ConfigParse { origin: origin.to_string(), error })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|e| LabError::io("reading", path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The resolved config as TOML (written next to every output).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("LabConfig is always representable in TOML")
    }

    /// Checks ranges; the error names the key and the allowed range.
    pub fn validate(&self) -> Result<(), LabError> {
        self.world.validate()?;
        self.gold.validate("gold")?;
        self.annotators.validate()?;
        if !(64..=65_536).contains(&self.tokenizer.vocab_size) {
            return Err(LabError::config("tokenizer.vocab_size", "must be in 64..=65536"));
        }
        if self.model.num_attention_heads == 0 || !self.model.hidden_size.is_multiple_of(self.model.num_attention_heads)
        {
            return Err(LabError::config("model.hidden_size", "must be a multiple of model.num_attention_heads"));
        }
        if self.reward_model.ensemble_size == 0 {
            return Err(LabError::config("reward_model.ensemble_size", "must be at least 1"));
        }
        if self.best_of_n.n == 0 {
            return Err(LabError::config("best_of_n.n", "must be at least 1"));
        }
        if self.grpo.num_generations < 2 {
            return Err(LabError::config("grpo.num_generations", "must be at least 2 (advantages are group-relative)"));
        }
        Ok(())
    }
}

fn check_prob(key: &str, p: f64) -> Result<(), LabError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(LabError::config(key, format!("is {p}; a probability must be in [0, 1]")))
    }
}

/// The synthetic world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Fraction of all prompts held out for evaluation (never in the corpus). Default 0.2.
    pub heldout_fraction: f64,
    /// Relative frequency of each task kind when sampling prompts.
    pub task_weights: TaskWeights,
    /// Quality of the pretraining texts' responses. Default: broad (good and bad).
    pub corpus_mix: QualityMix,
    /// Quality of the SFT responses: mostly good, but bad enough often that the SFT policy
    /// samples both (there must be something for RLHF to fix). Default: see `QualityMix::sft`.
    pub sft_mix: QualityMix,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            heldout_fraction: 0.2,
            task_weights: TaskWeights::default(),
            corpus_mix: QualityMix::default(),
            sft_mix: QualityMix::sft(),
        }
    }
}

impl WorldConfig {
    fn validate(&self) -> Result<(), LabError> {
        if !(0.05..=0.5).contains(&self.heldout_fraction) {
            return Err(LabError::config("world.heldout_fraction", "must be in [0.05, 0.5]"));
        }
        self.corpus_mix.validate("world.corpus_mix")?;
        self.sft_mix.validate("world.sft_mix")?;
        let w = &self.task_weights;
        let all = [w.arithmetic, w.capital, w.opposite, w.animal_sound, w.list, w.greeting];
        if all.iter().any(|x| *x < 0.0 || !x.is_finite()) || all.iter().sum::<f64>() <= 0.0 {
            return Err(LabError::config("world.task_weights", "must be finite, non-negative, and not all zero"));
        }
        Ok(())
    }
}

/// Relative frequency of each task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskWeights {
    /// "What is 7 + 5?". Default 1.
    pub arithmetic: f64,
    /// "What is the capital of Peru?". Default 1.
    pub capital: f64,
    /// "What is the opposite of hot?". Default 1.
    pub opposite: f64,
    /// "What sound does a cow make?". Default 1.
    pub animal_sound: f64,
    /// "List three colors.". Default 1.
    pub list: f64,
    /// "Say hello to Anna.". Default 1.
    pub greeting: f64,
}

impl Default for TaskWeights {
    fn default() -> Self {
        TaskWeights { arithmetic: 1.0, capital: 1.0, opposite: 1.0, animal_sound: 1.0, list: 1.0, greeting: 1.0 }
    }
}

/// How often each hidden quality factor is good when the world writes a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityMix {
    /// Probability the response answers the asked question (else it answers a question of
    /// another kind). Default 0.75.
    pub p_relevant: f64,
    /// Probability a relevant answer is correct (right number, fact, items, name). Default 0.6.
    pub p_correct: f64,
    /// Probability of a polite opener and/or closer. Default 0.35.
    pub p_polite: f64,
    /// Probability of a rude remark (only when not polite). Default 0.25.
    pub p_rude: f64,
    /// Probability of one or two filler sentences (padding). Default 0.3.
    pub p_padded: f64,
    /// Probability the answer sentence is repeated once or twice. Default 0.2.
    pub p_repeated: f64,
}

impl Default for QualityMix {
    fn default() -> Self {
        QualityMix { p_relevant: 0.75, p_correct: 0.6, p_polite: 0.35, p_rude: 0.25, p_padded: 0.3, p_repeated: 0.2 }
    }
}

impl QualityMix {
    /// Every factor good: relevant, correct, polite, concise, no repetition.
    pub fn good() -> Self {
        QualityMix { p_relevant: 1.0, p_correct: 1.0, p_polite: 1.0, p_rude: 0.0, p_padded: 0.0, p_repeated: 0.0 }
    }
    /// Every factor bad: off-topic, rude, padded, repetitive.
    pub fn bad() -> Self {
        QualityMix { p_relevant: 0.0, p_correct: 0.0, p_polite: 0.0, p_rude: 1.0, p_padded: 1.0, p_repeated: 1.0 }
    }
    /// The default SFT mix: mostly good, each factor bad often enough to be sampled.
    pub fn sft() -> Self {
        QualityMix { p_relevant: 0.85, p_correct: 0.75, p_polite: 0.4, p_rude: 0.25, p_padded: 0.3, p_repeated: 0.2 }
    }
    fn validate(&self, key: &str) -> Result<(), LabError> {
        check_prob(&format!("{key}.p_relevant"), self.p_relevant)?;
        check_prob(&format!("{key}.p_correct"), self.p_correct)?;
        check_prob(&format!("{key}.p_polite"), self.p_polite)?;
        check_prob(&format!("{key}.p_rude"), self.p_rude)?;
        check_prob(&format!("{key}.p_padded"), self.p_padded)?;
        check_prob(&format!("{key}.p_repeated"), self.p_repeated)
    }
}

/// Weights of the quality factors: the gold reward's, and (perturbed) each annotator's.
/// A response's score is the weighted sum of the evidence the gold parser finds
/// (see `gold::Factor` for the scale of each factor's evidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactorWeights {
    /// Answers what was asked (evidence 0 or 1). Default 1.5.
    pub relevance: f64,
    /// States the right answer (evidence 0 or 1, only when relevant). Default 3.0.
    pub correctness: f64,
    /// +0.5 per polite sentence (at most two count), −1 per rude sentence. Default 1.0.
    pub politeness: f64,
    /// −1 per filler sentence, −0.1 per word beyond `length_budget`. Default 0.75.
    pub brevity: f64,
    /// −1 per repeated sentence, −0.5 per immediately repeated word. Default 1.0.
    pub repetition: f64,
    /// −1 when the response is empty or does not end with `.`, `!` or `?`. Default 1.0.
    pub well_formed: f64,
    /// Words a response may use before the brevity length penalty starts. Default 16.
    pub length_budget: usize,
}

impl Default for FactorWeights {
    fn default() -> Self {
        FactorWeights {
            relevance: 1.5,
            correctness: 3.0,
            politeness: 1.0,
            brevity: 0.75,
            repetition: 1.0,
            well_formed: 1.0,
            length_budget: 16,
        }
    }
}

impl FactorWeights {
    fn validate(&self, key: &str) -> Result<(), LabError> {
        let all = [
            ("relevance", self.relevance),
            ("correctness", self.correctness),
            ("politeness", self.politeness),
            ("brevity", self.brevity),
            ("repetition", self.repetition),
            ("well_formed", self.well_formed),
        ];
        for (name, w) in all {
            if !w.is_finite() || w < 0.0 {
                return Err(LabError::config(&format!("{key}.{name}"), format!("is {w}; must be finite and >= 0")));
            }
        }
        Ok(())
    }
}

/// One simulated annotator's knobs, named as in B-Pref (Lee et al., 2021, §3.2 "SimTeacher").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnotatorConfig {
    /// Stochastic β: Bradley–Terry inverse temperature, P(A ≻ B) = σ(β (U_A − U_B)).
    /// `0` means perfectly rational (always the higher utility), as `teacher_beta <= 0` in
    /// B-Pref. Default 1.5.
    pub beta: f64,
    /// Mistake ε: probability of flipping the label after choosing. Default 0.05.
    pub p_mistake: f64,
    /// Skip threshold δ_skip: skip the query when both responses' utilities are below it
    /// ("both bad"). `-inf` never skips. Default 0.0.
    pub skip_threshold: f64,
    /// Equal threshold δ_equal: answer "equal" when |U_A − U_B| < δ_equal. `0` disables.
    /// Default 0.25.
    pub equal_threshold: f64,
    /// Myopic γ: evidence in sentence k of K is discounted by γ^(K−1−k), so the end of a
    /// response weighs more. `1` is not myopic. Default 0.9.
    pub gamma: f64,
    /// Spurious length preference: `length_bias · words` is added to the annotator's utility of
    /// every answer, whatever its quality (the research note's spurious-correlate knob for the
    /// length-bias experiments). Default 0; left out of the config file, and so of the config
    /// hash, while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub length_bias: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for AnnotatorConfig {
    fn default() -> Self {
        AnnotatorConfig {
            beta: 1.5,
            p_mistake: 0.05,
            skip_threshold: 0.0,
            equal_threshold: 0.25,
            gamma: 0.9,
            length_bias: 0.0,
        }
    }
}

impl AnnotatorConfig {
    /// The B-Pref "Oracle": rational, no mistakes, no skips, no ties, not myopic.
    pub fn oracle() -> Self {
        AnnotatorConfig {
            beta: 0.0,
            p_mistake: 0.0,
            skip_threshold: f64::NEG_INFINITY,
            equal_threshold: 0.0,
            gamma: 1.0,
            length_bias: 0.0,
        }
    }
    fn validate(&self, key: &str) -> Result<(), LabError> {
        if !self.beta.is_finite() || self.beta < 0.0 {
            return Err(LabError::config(&format!("{key}.beta"), "must be >= 0 (0 = rational)"));
        }
        check_prob(&format!("{key}.p_mistake"), self.p_mistake)?;
        if self.skip_threshold.is_nan() || self.skip_threshold == f64::INFINITY {
            return Err(LabError::config(&format!("{key}.skip_threshold"), "must be a number or -inf (never skip)"));
        }
        if self.equal_threshold.is_nan() || self.equal_threshold < 0.0 {
            return Err(LabError::config(&format!("{key}.equal_threshold"), "must be >= 0 (0 = never equal)"));
        }
        if !self.length_bias.is_finite() {
            return Err(LabError::config(&format!("{key}.length_bias"), "must be a finite number (0 = none)"));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(LabError::config(&format!("{key}.gamma"), "must be in (0, 1] (1 = not myopic)"));
        }
        Ok(())
    }
}

/// The annotator population: `n_annotators` annotators built from `base`, each with its own
/// factor weights (gold weights × log-normal jitter), so they really disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopulationConfig {
    /// Number of annotators; ids are `sim-00`, `sim-01`, …. Default 8.
    pub n_annotators: usize,
    /// Every annotator's noise knobs.
    pub base: AnnotatorConfig,
    /// σ of the log-normal multiplier on each factor weight, per annotator. Default 0.3.
    pub weight_jitter: f64,
    /// σ of the log-normal multiplier on β, per annotator. Default 0.2.
    pub beta_jitter: f64,
}

impl Default for PopulationConfig {
    fn default() -> Self {
        PopulationConfig { n_annotators: 8, base: AnnotatorConfig::default(), weight_jitter: 0.3, beta_jitter: 0.2 }
    }
}

impl PopulationConfig {
    fn validate(&self) -> Result<(), LabError> {
        if self.n_annotators == 0 {
            return Err(LabError::config("annotators.n_annotators", "must be at least 1"));
        }
        if !(self.weight_jitter >= 0.0 && self.beta_jitter >= 0.0) {
            return Err(LabError::config("annotators.weight_jitter", "jitters must be >= 0"));
        }
        self.base.validate("annotators.base")
    }
}

/// Byte-level BPE training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Vocabulary size including the 5 special tokens and the 256 byte symbols. Default 1024.
    pub vocab_size: usize,
    /// Minimum pair frequency for a merge. Default 2.
    pub min_frequency: u64,
    /// Texts of the corpus to train on. Default 20000.
    pub n_texts: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig { vocab_size: 1024, min_frequency: 2, n_texts: 20_000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let c = LabConfig::default();
        let back = LabConfig::from_toml_str(&c.to_toml(), "test").unwrap();
        assert_eq!(c, back);
        let r = LabConfig::reduced();
        assert_eq!(r, LabConfig::from_toml_str(&r.to_toml(), "test").unwrap());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = LabConfig::from_toml_str("[annotators.base]\nbetta = 2.0\n", "lab.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("betta"), "{msg}");
        assert!(msg.contains("lab.toml"), "{msg}");
    }

    #[test]
    fn skipping_can_be_disabled_from_toml() {
        let c = LabConfig::from_toml_str("[annotators.base]\nskip_threshold = -inf\n", "t").unwrap();
        assert_eq!(c.annotators.base.skip_threshold, f64::NEG_INFINITY);
        assert_eq!(c, LabConfig::from_toml_str(&c.to_toml(), "t").unwrap());
    }

    #[test]
    fn partial_toml_keeps_defaults_and_bad_values_name_the_key() {
        let c = LabConfig::from_toml_str("seed = 3\n[annotators.base]\np_mistake = 0.2\n", "t").unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(c.annotators.base.p_mistake, 0.2);
        assert_eq!(c.annotators.base.beta, AnnotatorConfig::default().beta);
        let err = LabConfig::from_toml_str("[annotators.base]\np_mistake = 1.5\n", "t").unwrap_err();
        assert!(err.to_string().contains("annotators.base.p_mistake"), "{err}");
    }
}
