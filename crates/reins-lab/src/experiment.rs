//! `reins quickstart`: the whole RLHF loop on the synthetic world, judged by the hidden gold
//! reward.
//!
//! 1. a BPE tokenizer and a tiny Llama pretrained and SFT'd on the world's corpus (cached);
//! 2. pairs sampled from the SFT policy on train prompts, labelled by simulated annotators;
//! 3. reward models (one, and an ensemble of bootstrap resamples) trained on those labels,
//!    scored against noiseless gold preferences on pairs of test prompts;
//! 4. policies: offline DPO on the labelled pairs, best-of-n against the ensemble, GRPO against
//!    the single RM and the ensemble (with over-optimization curves), PPO and online DPO
//!    against the ensemble;
//! 5. evaluation of every policy on the test prompts by the gold reward (mean score, win rate
//!    against SFT, KL to the SFT reference, proxy − gold gap) and the report.
//!
//! This file tells that story top to bottom as named stages; how each model is trained and
//! queried is in `experiment/stages.rs` (world, base model, labels, reward models),
//! `experiment/offline.rs` (pretraining, SFT, reward models, DPO, sampling, scoring, KL),
//! `experiment/online.rs` (GRPO, PPO, online DPO and the over-optimization probe),
//! `experiment/evaluation.rs` (reward-model accuracy, best-of-n, the scoreboard of every
//! policy's answers) and `experiment/quickstart_report.rs` (the report). `reins lab`
//! experiments compose the same stages.

use std::path::PathBuf;

use candle_core::Device;
use reins_data::HfTokenizer;

use crate::metrics;
use crate::report::{ReportData, ReportPaths};
use crate::{Lab, LabConfig, LabError, Split};

mod evaluation;
pub(crate) mod offline;
mod online;
mod quickstart_report;
pub mod stages;

pub(crate) use offline::pair_batch;
pub(crate) use online::{OnlineMethod, Probe};

pub(crate) type Result<T> = std::result::Result<T, LabError>;

pub(crate) fn stage<E: std::fmt::Display>(stage: &'static str) -> impl Fn(E) -> LabError {
    move |e| LabError::Stage { stage, message: e.to_string() }
}

/// What the caller shows while the experiment runs.
pub trait Progress {
    /// A stage begins (`total` units of work, e.g. optimizer steps).
    fn stage(&mut self, name: &str, total: usize);
    /// One unit of the current stage is done.
    fn tick(&mut self, message: &str);
}

/// The outcome: where the report is and the headline numbers.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: ReportPaths,
    pub data: ReportData,
}

/// One opened lab: the config, the world, the tokenizer and the device, through which every
/// stage trains, samples and scores.
pub struct Session<'a> {
    pub(crate) cfg: &'a LabConfig,
    pub(crate) lab: Lab,
    pub(crate) tok: HfTokenizer,
    pub(crate) device: Device,
    pub(crate) end_id: u32,
    pub(crate) progress: &'a mut dyn Progress,
}

/// The folder caching the tokenizer and base model, keyed by everything that builds them (the
/// world, the seed, the tokenizer, model, pretraining and SFT settings), so a run with other
/// settings (`--reduced`, say) never reuses a base model it did not train.
pub fn base_cache_dir(cfg: &LabConfig, world: &crate::World) -> PathBuf {
    let key = format!(
        "{} {} {:?} {:?} {:?} {:?}",
        world.fingerprint(),
        cfg.seed,
        cfg.tokenizer,
        cfg.model,
        cfg.pretrain,
        cfg.sft
    );
    PathBuf::from(&cfg.cache_dir).join(format!("base-{:016x}", crate::rng::fnv1a(key.as_bytes())))
}

/// Runs the experiment end to end and writes the report into `cfg.output_dir`.
pub fn run(cfg: &LabConfig, progress: &mut dyn Progress) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let (mut cx, base_model) = stages::open(cfg, progress)?;
    quickstart(&mut cx, &base_model, started)
}

/// The quickstart's stages after *world* and *base model*: labels, reward models, every
/// policy method, evaluation on the test prompts, report (into `cfg.output_dir`).
pub fn quickstart(cx: &mut Session, base: &stages::Base, started: std::time::Instant) -> Result<Outcome> {
    let cfg: &LabConfig = cx.cfg;

    // Labels: pairs from the SFT policy on train prompts, labelled by the simulated population.
    let train_prompts = cx.lab.world.prompts(Split::Train, cfg.pairs.n_prompts);
    let stages::Labelled { pairs, labels, records } =
        cx.labelled_pairs(&base.sft, &train_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let annotators = cx.lab.population.agreement_rows(&cx.lab.gold, &pairs, &labels);

    // Reward models: member 0 on all labels, the others on bootstrap resamples; their accuracy
    // against noiseless gold on pairs of test prompts.
    let members = cx.reward_models(base, &records, cfg.reward_model.ensemble_size)?;
    let reward_models = cx.reward_model_accuracy(&base.sft, &members)?;

    // Policies, each evaluated on the test prompts as it is made.
    let mut board = cx.scoreboard(base, &members)?;
    let dpo = cx.train_dpo(&base.dir, &records)?;
    cx.score_policy(&mut board, base, &members, &format!("DPO ({})", cfg.dpo.loss_type), &dpo, 4)?;
    let evaluation::BestOfN { n, picks, curves: mut overoptimization } =
        cx.best_of_n(&base.sft, &members, &board.prompts)?;
    board.add(cx, &members, &format!("best-of-{n} (ensemble)"), picks, metrics::best_of_n_kl(n))?;
    overoptimization.extend(cx.online_methods(base, &members, &mut board)?);

    // Report.
    let results = quickstart_report::Results {
        board,
        reward_models,
        annotators,
        overoptimization,
        n_labels: records.len(),
        ensemble_size: members.len(),
    };
    quickstart_report::write(cx, results, started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_model_cache_is_keyed_by_what_builds_it() {
        let key = |cfg: &LabConfig| base_cache_dir(cfg, &Lab::new(cfg).unwrap().world);
        let full = LabConfig::default();
        assert_eq!(key(&full), key(&LabConfig::default()));
        assert_ne!(key(&full), key(&LabConfig::reduced()), "--reduced must not share the default's base model");
        let mut longer = LabConfig::default();
        longer.pretrain.max_steps += 1;
        assert_ne!(key(&full), key(&longer));
        // Later stages do not touch the base model.
        let mut other = LabConfig::default();
        other.grpo.max_steps += 1;
        other.output_dir = "elsewhere".into();
        assert_eq!(key(&full), key(&other));
    }
}
