//! `reins lab`: the field's claims, checked against the lab's gold reward.
//!
//! An [`Experiment`] is a registration: the claim in one sentence, the paper it comes from, the
//! metric, and the verdict rule ([`verdict::Rule`]) that turns the per-seed statistic into
//! `reproduced`, `not shown` or `contradicted`. Its body composes the named stages of
//! [`crate::experiment::stages`] (world, base model, labels, reward models, policies,
//! evaluation) and returns, per seed, each arm's value on the held-out test prompts and the
//! rule's statistic. [`run`] repeats it over seeds `0..N` and writes `result.json`,
//! `summary.md` and `report.html` ([`result`]).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::experiment::stages::{self, Base};
use crate::experiment::{Progress, Session};
use crate::report::Curve;
use crate::seeds::Row;
use crate::{LabConfig, LabError};

mod checkpoint;
pub mod experiments;
pub mod registry;
pub mod result;
pub mod stats;
pub mod verdict;

pub use registry::{find, registry};
pub use result::LabResult;
pub use verdict::{Decision, Direction, Rule, Verdict};

/// The paper a claim comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Paper {
    pub title: &'static str,
    pub arxiv: &'static str,
}

/// What one seed of an experiment measured (on the test prompts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeedOutcome {
    /// Each arm's value of the claim's metric.
    pub arms: Vec<(String, f64)>,
    /// The verdict rule's statistic on this seed.
    pub statistic: f64,
    /// Further numbers worth reporting (fitted coefficients, KL reached), not used by the rule.
    pub extras: Vec<(String, f64)>,
    /// Charts of this seed for the report.
    pub curves: Vec<Curve>,
}

/// The knobs experiments set beyond [`LabConfig`]; each experiment reads the ones it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Fraction of decided labels flipped on purpose, with the mask kept (preference strength).
    /// Default 0.2.
    pub flip_rate: f64,
    /// Samples per prompt in the best-of-n pool (over-optimization; the unbiased estimator
    /// reaches KL = ln N − (N−1)/N). Default 1200 (KL 6.09).
    pub pool_size: usize,
    /// Test prompts the best-of-n pool is drawn for. Default 32.
    pub pool_prompts: usize,
    /// Iterative DPO: rounds (the offline arm does one round over all their prompts). Default 4.
    pub dpo_rounds: usize,
    /// Iterative DPO: train prompts per round. Default 64.
    pub dpo_prompts_per_round: usize,
    /// Iterative DPO: responses sampled per prompt; the reward model's best and worst form the
    /// pair. Default 4.
    pub dpo_generations: usize,
    /// LiPO vs DPO: responses per ranked list. Default 4.
    pub list_size: usize,
    /// LiPO vs DPO: train prompts whose lists the annotators rank. Default 1024.
    pub n_lists: usize,
    /// PPO-max vs vanilla PPO: both run at this multiple of `ppo.learning_rate`. Default 10.
    pub lr_scale: f64,
    /// Over-optimization: the small-budget proxy reward model trains on this fraction of the
    /// labelled pairs (Gao et al. vary the proxy's data; a weaker proxy is over-optimized
    /// sooner). Default 0.25.
    pub proxy_label_fraction: f64,
    /// Pessimistic best-of-n: λ of the lower confidence bound `r − λ·σ`. Default 1.0.
    pub lcb_lambda: f64,
    /// INPO vs iterative DPO: the grid of INPO's η (τ = η/3) that the dev prompts choose from.
    /// Default [0.005, 0.05, 0.5] (the paper's choice and one and two decades above it).
    pub inpo_etas: Vec<f64>,
    /// Feature RM vs neural RM: the label budgets (the first labelled train pairs) both train on.
    /// Default [50, 100, 200, 500, 1000].
    pub label_budgets: Vec<usize>,
    /// Feature RM vs neural RM: the budget the verdict rule reads (one of `label_budgets`).
    /// Default 200.
    pub rule_budget: usize,
    /// OSP: responses sampled per prompt, every pair of them self-judged. Default 8 (the
    /// research note's K).
    pub osp_generations: usize,
    /// OSP: optimizer steps of the judge-format fine-tuning that teaches the SFT model to judge.
    /// Default 600.
    pub judge_sft_steps: usize,
    /// T-REG: optimizer steps of the control-tag fine-tuning that teaches the SFT model what
    /// "answer well" and "answer badly" mean. Default 400.
    pub control_sft_steps: usize,
    /// T-REG: the grid of the regularizer's weight α that the dev prompts choose from.
    /// Default [0.3, 1.0].
    pub t_reg_alphas: Vec<f64>,
    /// PIT: optimizer steps of the fine-tuning that teaches the SFT model to rewrite a worse
    /// answer into a better one. Default 400.
    pub pit_sft_steps: usize,
    /// PIT: improvement rounds after the SFT policy's answer. Default 3.
    pub pit_rounds: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            flip_rate: 0.2,
            pool_size: 1200,
            pool_prompts: 32,
            dpo_rounds: 4,
            dpo_prompts_per_round: 64,
            dpo_generations: 4,
            list_size: 4,
            n_lists: 1024,
            lr_scale: 10.0,
            proxy_label_fraction: 0.25,
            lcb_lambda: 1.0,
            inpo_etas: vec![0.005, 0.05, 0.5],
            label_budgets: vec![50, 100, 200, 500, 1000],
            rule_budget: 200,
            osp_generations: 8,
            judge_sft_steps: 600,
            control_sft_steps: 400,
            t_reg_alphas: vec![0.3, 1.0],
            pit_sft_steps: 400,
            pit_rounds: 3,
        }
    }
}

impl Knobs {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), LabError> {
        if !(0.0..0.5).contains(&self.flip_rate) {
            return Err(LabError::config("knobs.flip_rate", "must be in [0, 0.5) (at 0.5 labels carry no signal)"));
        }
        if self.pool_size < 2 || self.pool_prompts == 0 {
            return Err(LabError::config("knobs.pool_size", "needs pool_size >= 2 and pool_prompts >= 1"));
        }
        if self.dpo_rounds < 2 || self.dpo_prompts_per_round == 0 || self.dpo_generations < 2 {
            return Err(LabError::config(
                "knobs.dpo_rounds",
                "iterative DPO needs dpo_rounds >= 2, dpo_prompts_per_round >= 1 and dpo_generations >= 2",
            ));
        }
        if !(self.lr_scale.is_finite() && self.lr_scale > 0.0) {
            return Err(LabError::config("knobs.lr_scale", "must be a positive number (default 10)"));
        }
        if !(self.proxy_label_fraction > 0.0 && self.proxy_label_fraction <= 1.0) {
            return Err(LabError::config("knobs.proxy_label_fraction", "must be in (0, 1] (default 0.25)"));
        }
        if !(self.lcb_lambda.is_finite() && self.lcb_lambda >= 0.0) {
            return Err(LabError::config(
                "knobs.lcb_lambda",
                "must be a number >= 0 (0 is plain best-of-n; default 1)",
            ));
        }
        if self.inpo_etas.is_empty() || !self.inpo_etas.iter().all(|e| e.is_finite() && *e > 0.0) {
            return Err(LabError::config(
                "knobs.inpo_etas",
                "needs at least one eta, each > 0 (default [0.005, 0.05, 0.5])",
            ));
        }
        if !self.label_budgets.contains(&self.rule_budget) || self.label_budgets.iter().any(|&b| b < 2) {
            return Err(LabError::config(
                "knobs.rule_budget",
                "must be one of knobs.label_budgets, each of which needs at least 2 labels",
            ));
        }
        if !(2..=16).contains(&self.osp_generations) || self.judge_sft_steps == 0 {
            return Err(LabError::config(
                "knobs.osp_generations",
                "needs osp_generations in 2..=16 and judge_sft_steps >= 1 (defaults 8 and 600)",
            ));
        }
        if self.control_sft_steps == 0
            || self.t_reg_alphas.is_empty()
            || !self.t_reg_alphas.iter().all(|a| a.is_finite() && *a > 0.0)
        {
            return Err(LabError::config(
                "knobs.t_reg_alphas",
                "needs at least one alpha, each > 0, and control_sft_steps >= 1 (defaults [0.3, 1.0] and 400)",
            ));
        }
        if self.pit_sft_steps == 0 || self.pit_rounds < 2 {
            return Err(LabError::config(
                "knobs.pit_rounds",
                "needs pit_rounds >= 2 (the rule compares rounds 2 and 1) and pit_sft_steps >= 1",
            ));
        }
        if !(2..=16).contains(&self.list_size) || self.n_lists < 4 {
            return Err(LabError::config("knobs.list_size", "needs list_size in 2..=16 and n_lists >= 4"));
        }
        Ok(())
    }
}

/// A resolved run config: the lab's settings and the experiment knobs, as one TOML file
/// (`[lab]` and `[knobs]` tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub lab: LabConfig,
    #[serde(default)]
    pub knobs: Knobs,
}

impl RunConfig {
    /// Parses and validates a `[lab]` / `[knobs]` TOML file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, LabError> {
        let cfg: RunConfig =
            toml::from_str(text).map_err(|error| LabError::ConfigParse { origin: origin.to_string(), error })?;
        cfg.lab.validate()?;
        cfg.knobs.validate()?;
        Ok(cfg)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|e| LabError::io("reading", path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// `self` with the keys of a `[lab]` / `[knobs]` TOML text laid over it: a key the text
    /// sets replaces this config's value, every other key keeps it (an experiment's registered
    /// settings stay unless the file names them). Unknown keys are refused as in
    /// [`RunConfig::from_toml_str`].
    pub fn layered(&self, text: &str, origin: &str) -> Result<Self, LabError> {
        let parse = |error| LabError::ConfigParse { origin: origin.to_string(), error };
        let over: toml::Table = toml::from_str(text).map_err(parse)?;
        let mut base = toml::Table::try_from(self).expect("RunConfig is always representable in TOML");
        merge(&mut base, over);
        let cfg: RunConfig = toml::Value::Table(base).try_into().map_err(parse)?;
        cfg.lab.validate()?;
        cfg.knobs.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("RunConfig is always representable in TOML")
    }

    /// FNV-1a of the resolved TOML: two runs with the same hash ran the same settings.
    pub fn hash(&self) -> String {
        format!("{:016x}", crate::rng::fnv1a(self.to_toml().as_bytes()))
    }
}

/// Lays `over` onto `base`, table by table; any other value replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// One registered experiment.
pub struct Experiment {
    /// Short id, named for the claim (`reins lab run ID`).
    pub id: &'static str,
    /// The claim in one sentence.
    pub claim: &'static str,
    pub paper: Paper,
    /// The metric each arm reports.
    pub metric: &'static str,
    /// What the metric is measured on: `"test"` (held-out test prompts, read by no tuning
    /// choice) or, where the claim is about training data, `"train labels"`.
    pub split: &'static str,
    /// The verdict rule, fixed here before any full run.
    pub rule: Rule,
    /// The settings of a full run (`reduced == false`) or a CI run.
    pub config: fn(reduced: bool) -> RunConfig,
    /// One seed: the stages composed, from an opened session and its base model.
    pub run: fn(&mut Session, &Base, &Knobs) -> Result<SeedOutcome, LabError>,
}

impl Experiment {
    /// The direction the paper expects, from the rule.
    pub fn direction(&self) -> Direction {
        self.rule.reference_and_direction().1
    }
}

/// Where a run goes and what it records about itself.
pub struct RunOptions<'a> {
    pub seeds: u64,
    pub reduced: bool,
    pub out_dir: &'a Path,
    /// The commit the binary was built from (stamped by `crates/reins/build.rs`), or `"unknown"`.
    pub commit: String,
}

/// Runs `exp` over seeds `0..opts.seeds` under `cfg` and writes its outputs into
/// `opts.out_dir`. Each seed opens its own world and base model (cached and shared with the
/// quickstart and the other experiments that use the same settings) and saves its outcome in
/// `seed-N/outcome.json`; a rerun with the same experiment and config hash reuses finished
/// seeds, so a full run that is stopped (a full seed takes tens of minutes on 2 cores) goes on
/// where it stopped.
pub fn run(
    exp: &Experiment,
    cfg: &RunConfig,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<LabResult, LabError> {
    cfg.lab.validate()?;
    cfg.knobs.validate()?;
    let started = std::time::Instant::now();
    let mut outcomes = Vec::new();
    for seed in 0..opts.seeds {
        let mut lab = cfg.lab.clone();
        lab.seed = seed;
        lab.output_dir = opts.out_dir.join(format!("seed-{seed}")).display().to_string();
        let saved = opts.out_dir.join(format!("seed-{seed}")).join("outcome.json");
        if let Some(outcome) = checkpoint::load(&saved, exp.id, &cfg.hash()) {
            progress.stage(&format!("{} seed {seed}: reusing {}", exp.id, saved.display()), 0);
            outcomes.push((seed, outcome));
            continue;
        }
        progress.stage(&format!("{} seed {seed}", exp.id), 1);
        let (mut session, base) = stages::open(&lab, &mut *progress)?;
        let outcome = (exp.run)(&mut session, &base, &cfg.knobs)?;
        checkpoint::save(&saved, exp.id, &cfg.hash(), &outcome)?;
        outcomes.push((seed, outcome));
    }
    let seeds: Vec<u64> = outcomes.iter().map(|(s, _)| *s).collect();
    let rows = |f: &dyn Fn(&SeedOutcome) -> &[(String, f64)]| -> Vec<Row> {
        let mut names: Vec<String> = Vec::new();
        for (_, o) in &outcomes {
            for (n, _) in f(o) {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let xs: Vec<f64> = outcomes
                    .iter()
                    .map(|(_, o)| f(o).iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or(f64::NAN))
                    .collect();
                let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
                Row { interval: crate::seeds::Interval::of(&finite), name, per_seed: xs }
            })
            .collect()
    };
    let arms = rows(&|o| &o.arms);
    let extras = rows(&|o| &o.extras);
    let decision = exp.rule.decide(&outcomes.iter().map(|(_, o)| o.statistic).collect::<Vec<_>>());
    let result = LabResult {
        id: exp.id.to_string(),
        claim: exp.claim.to_string(),
        paper: exp.paper,
        metric: exp.metric.to_string(),
        expected_direction: decision.direction,
        verdict: decision.verdict,
        rule: decision.rule.clone(),
        decision,
        arms,
        extras,
        seeds,
        reduced: opts.reduced,
        split: exp.split.into(),
        commit: opts.commit.clone(),
        config_hash: cfg.hash(),
        wall_s: started.elapsed().as_secs_f64(),
    };
    let curves: Vec<(u64, Vec<Curve>)> = outcomes.into_iter().map(|(s, o)| (s, o.curves)).collect();
    result.write(opts.out_dir, &cfg.to_toml(), &curves)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_rejects_unknown_keys_and_bad_knobs() {
        let ok = RunConfig::from_toml_str("[knobs]\nflip_rate = 0.1\n[lab]\nseed = 3\n", "t").unwrap();
        assert_eq!((ok.knobs.flip_rate, ok.lab.seed), (0.1, 3));
        let typo = RunConfig::from_toml_str("[knobs]\nflip_rat = 0.1\n", "t").unwrap_err().to_string();
        assert!(typo.contains("flip_rat"), "{typo}");
        let bad = RunConfig::from_toml_str("[knobs]\nflip_rate = 0.7\n", "t").unwrap_err().to_string();
        assert!(bad.contains("knobs.flip_rate"), "{bad}");
        // The hash follows the settings.
        let mut other = ok.clone();
        other.knobs.pool_size += 1;
        assert_ne!(ok.hash(), other.hash());
        assert_eq!(ok.hash(), RunConfig::from_toml_str(&ok.to_toml(), "t").unwrap().hash());
    }

    #[test]
    fn a_config_file_is_laid_over_the_registered_settings() {
        let mut registered = RunConfig { lab: LabConfig::reduced(), knobs: Knobs::default() };
        registered.lab.grpo.beta = 0.0;
        registered.knobs.pool_size = 40;
        let text = "[lab.grpo]\nmax_steps = 9\n[knobs]\nflip_rate = 0.3\n";
        let cfg = registered.layered(text, "t").unwrap();
        // What the file names changes; everything else (same table or not) stays registered.
        assert_eq!((cfg.lab.grpo.max_steps, cfg.knobs.flip_rate), (9, 0.3));
        assert_eq!((cfg.lab.grpo.beta, cfg.knobs.pool_size), (0.0, 40));
        assert_eq!(cfg.lab.pretrain, LabConfig::reduced().pretrain);
        let typo = registered.layered("[lab.grpo]\nmax_step = 9\n", "t").unwrap_err().to_string();
        assert!(typo.contains("max_step"), "{typo}");
        let bad = registered.layered("[knobs]\nflip_rate = 0.7\n", "t").unwrap_err().to_string();
        assert!(bad.contains("knobs.flip_rate"), "{bad}");
    }
}
