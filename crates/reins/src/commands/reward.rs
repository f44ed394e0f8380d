//! `reins reward`: a Bradley–Terry reward model on pairs (TRL `RewardTrainer`; with
//! `convex_da = true`, on pairs augmented by ConvexDA, [`super::reward_convex_da`]), a
//! Plackett–Luce one on ranked lists, or an ensemble of k Bradley–Terry members with a
//! preference-strength report; accuracy per category when the eval records carry one.
//!
//! Output folder: a single model's run folder; or, with `ensemble_size = k > 1`,
//! `member-0 … member-(k−1)` run folders plus
//! - `ensemble.json` — the members' final checkpoints and the aggregation (a reward source
//!   loads the ensemble from it),
//! - `preference_strength.jsonl` — per scored pair: the members' mean and spread of
//!   `r(chosen) − r(rejected)` and a verdict (`clear`, `ambiguous`, `likely_mislabeled`),
//! - `metrics.jsonl` — the ensemble's accuracy under each aggregation and per category.
//!
//! With `strength_report` (such a `preference_strength.jsonl`), the training pairs are first
//! flipped, label-smoothed and given adaptive margins by their strength
//! ([`super::reward_denoise`]). With `annotator_rationality = true`, one model learns a
//! rationality β per annotator beside the reward ([`super::reward_rationality`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use reins_data::collate::collate_reward;
use reins_data::tokenize::reward::{tokenize_reward, RewardIds};
use reins_data::{HfTokenizer, Record};
use reins_model::{LoadOptions, Model};
use reins_train::config::{resolved, FlatConfig, TrainingArgs};
use reins_train::convex_da::ConvexDaArgs;
use reins_train::losses::{ContrastiveConfig, EnsembleAggregation, NoiseAwareConfig, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::run::{self, append_metrics, Progress, RunSummary};
use reins_train::trainers::metarm::MetaRmTrainer;
use reins_train::trainers::reward::{
    collate_ranked_reward, pair_scores, tokenize_ranked_reward_dataset, trainable_params, ListwiseRewardTrainer,
    RewardTrainer,
};
use reins_train::trainers::reward_ensemble::{
    bootstrap_indices, ensemble_accuracy, strengths, EnsembleArgs, EnsembleManifest, Verdict,
};
use reins_train::trainers::reward_rationality::RationalityArgs;
use reins_train::trainers::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::reward_denoise::StrengthReportArgs;
use super::reward_metarm::MetaRmArgs;
use super::train::{to_json, Bars};

/// Listwise settings of `reins reward`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListwiseArgs {
    /// Train with Plackett–Luce on ranked lists (default: yes when the training set holds
    /// ranked lists; pairs are lists of two).
    pub listwise: Option<bool>,
    /// Keep the best `max_list_size` responses of each list (0 = all).
    pub max_list_size: usize,
}

/// What the reward command needs from the shared `reins <method>` setup.
pub struct Setup<'a> {
    pub flat: &'a FlatConfig,
    pub args: &'a TrainingArgs,
    pub optim: &'a OptimConfig,
    pub tok: &'a HfTokenizer,
    pub pad: u32,
    pub device: &'a Device,
    /// How the first member was loaded; later members differ by seed.
    pub load: &'a LoadOptions,
    pub train: &'a [Record],
    pub eval: Option<&'a [Record]>,
}

pub fn train(s: Setup, model: Model, progress: &mut Bars) -> Result<RunSummary> {
    let loss: RewardLossConfig = s.flat.part()?;
    let ens: EnsembleArgs = s.flat.part()?;
    ens.validate()?;
    let lw: ListwiseArgs = s.flat.part()?;
    let report: StrengthReportArgs = s.flat.part()?;
    let noise: NoiseAwareConfig = s.flat.part()?;
    noise.validate()?;
    let contrastive: ContrastiveConfig = s.flat.part()?;
    contrastive.validate()?;
    let metarm: MetaRmArgs = s.flat.part()?;
    let meta = match &metarm.metarm_dataset {
        Some(path) => super::reward_metarm::meta_batches(&metarm, path, s.tok, s.pad)?,
        None => Vec::new(),
    };
    if !meta.is_empty() && s.args.gradient_accumulation_steps != 1 {
        bail!("MetaRM takes one batch per step: set gradient_accumulation_steps = 1");
    }
    if report.strength_report.is_none() && noise != NoiseAwareConfig::default() {
        bail!("the `strength_*` keys apply the rule of `strength_report`; set strength_report = \"RUN/preference_strength.jsonl\"");
    }
    let da: ConvexDaArgs = s.flat.part()?;
    da.validate()?;
    let residual: super::reward_residual::ResidualArgs = s.flat.part()?;
    let rationality: RationalityArgs = s.flat.part()?;
    rationality.validate()?;
    if rationality.annotator_rationality
        && (lw.listwise == Some(true)
            || ens.ensemble_size > 1
            || report.strength_report.is_some()
            || contrastive.enabled()
            || !meta.is_empty()
            || da.convex_da
            || residual.residual_of_features.is_some())
    {
        bail!(
            "`annotator_rationality` trains one pairwise reward model with a beta per annotator; it does not combine \
             with `listwise`, `ensemble_size` > 1, `strength_report`, `contrastive_coef`, `metarm_dataset`, `convex_da` or \
             `residual_of_features`"
        );
    }
    if da.convex_da && report.strength_report.is_some() {
        bail!("`convex_da` adds pairs that `strength_report` has no rows for; use one of the two per run");
    }
    let listwise = lw.listwise.unwrap_or_else(|| {
        !rationality.annotator_rationality && s.train.iter().any(|r| matches!(r, Record::RankedList { .. }))
    });
    if listwise {
        if report.strength_report.is_some()
            || contrastive.enabled()
            || !meta.is_empty()
            || da.convex_da
            || residual.residual_of_features.is_some()
        {
            bail!(
                "`strength_report`, `contrastive_coef`, `metarm_dataset`, `convex_da` and `residual_of_features` apply \
                 to Bradley-Terry pairs; set `listwise = false`"
            );
        }
        if ens.ensemble_size > 1 {
            bail!("`ensemble_size` > 1 trains Bradley–Terry members on pairs; set `listwise = false`");
        }
        if loss != RewardLossConfig::default() {
            bail!(
                "`center_rewards_coefficient`, `label_smoothing` and `link` apply to pairwise training; set `listwise = \
                 false`"
            );
        }
        return train_listwise(&s, &lw, model, progress);
    }
    let augmented;
    let s = if da.convex_da {
        let (records, added) = super::reward_convex_da::augment(s.train, &da, s.args.seed, s.tok, &model, s.pad)?;
        progress.log(&format!(
            "ConvexDA: {added} pairs added (convex-hull vertices of {} perturbations of each preferred response)",
            da.convex_da_variants
        ));
        augmented = records;
        Setup { train: &augmented, ..s }
    } else {
        s
    };
    let max_length = Some(s.args.max_length);
    let mut train = tokenized_pairs(s.tok, s.train, max_length)?;
    let mut eval = s.eval.map(|e| tokenized_pairs(s.tok, e, max_length)).transpose()?;
    progress.log(&format!("tokenized: {} pairs kept of {} records", train.len(), s.train.len()));
    let mut summary_metrics = Metrics::new();
    if let Some(path) = &report.strength_report {
        // The eval split keeps its labels: accuracy is measured against what annotators said.
        let d = super::reward_denoise::apply(path, &noise, s.train, &mut train, &s.args.output_dir)?;
        progress.log(&d.to_string());
        summary_metrics.extend(d.metrics());
    }
    let mut files = Vec::new();
    if let Some(dir) = &residual.residual_of_features {
        // After the strength report's margins: the offset adds to whatever margin a pair has.
        let (fm, file) = super::reward_residual::load(dir)?;
        super::reward_residual::add_offsets(&fm, s.train, &mut train)?;
        if let (Some(e), Some(records)) = (eval.as_mut(), s.eval) {
            super::reward_residual::add_offsets(&fm, records, e)?;
        }
        progress.log(&format!(
            "residual of the feature model in {} ({} features, train accuracy {:.3}): its score difference is each \
             pair's offset",
            dir.display(),
            fm.names.len(),
            fm.train_accuracy
        ));
        files.push(file);
    }
    if rationality.annotator_rationality {
        return super::reward_rationality::train(&s, &rationality, loss, model, &train, eval.as_deref(), progress);
    }
    let ids: Vec<RewardIds> = train.iter().map(|(_, x)| x.clone()).collect();
    let bs = s.args.per_device_train_batch_size;
    let eval_batches: Vec<_> = match &eval {
        Some(e) => e
            .iter()
            .map(|(_, x)| x.clone())
            .collect::<Vec<_>>()
            .chunks(bs)
            .map(|c| collate_reward(c, s.pad, None))
            .collect(),
        None => vec![],
    };
    let k = ens.ensemble_size;
    let mut first = Some(model);
    let mut members: Vec<(Model, RunSummary)> = Vec::with_capacity(k);
    for i in 0..k {
        let mut args = s.args.clone();
        if k > 1 {
            args.output_dir = s.args.output_dir.join(format!("member-{i}"));
            args.seed = s.args.seed + i as u64;
            progress.log(&format!("ensemble member {}/{k} (seed {})", i + 1, args.seed));
        }
        let model = match first.take() {
            Some(m) => m,
            None => {
                Model::load(&args.model_name_or_path, s.device, &LoadOptions { seed: args.seed, ..s.load.clone() })?
            }
        };
        // Member i trains on its own bootstrap resample (member 0 of a single model: all data).
        let sample: Vec<usize> = if k > 1 && ens.ensemble_bootstrap {
            bootstrap_indices(ids.len(), args.seed)
        } else {
            (0..ids.len()).collect()
        };
        let total = run::total_steps(&args, ids.len());
        let prototypes = contrastive.init_prototypes(model.config.hidden_size, args.seed, s.device)?;
        let opt = Optimizer::new(&trainable_params(&model, prototypes.as_ref()), s.optim, total)?;
        let mut trainer = RewardTrainer::new(model, opt, loss);
        trainer.contrastive = contrastive;
        trainer.prototypes = prototypes;
        trainer.files = files.clone();
        let cfg = resolved(&[
            to_json(&args),
            to_json(s.optim),
            to_json(&loss),
            to_json(&ens),
            to_json(&report),
            to_json(&noise),
            to_json(&contrastive),
            to_json(&metarm),
            to_json(&da),
            to_json(&residual),
        ]);
        let collate = |idx: &[usize]| {
            Ok(collate_reward(&idx.iter().map(|&j| ids[sample[j]].clone()).collect::<Vec<_>>(), s.pad, None))
        };
        let (model, summary) = if meta.is_empty() {
            let summary = run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, progress)?;
            (trainer.model, summary)
        } else {
            let mut t = MetaRmTrainer { inner: trainer, meta: meta.clone(), eta: metarm.metarm_eta };
            let summary = run::train(&mut t, &args, &cfg, ids.len(), &collate, &eval_batches, progress)?;
            (t.inner.model, summary)
        };
        members.push((model, summary));
    }
    let out = &s.args.output_dir;
    // Scores of every member on the report set: the eval split, else the training set.
    let report_set = eval.as_ref().unwrap_or(&train);
    let report_records = s.eval.unwrap_or(s.train);
    let pairs: Vec<RewardIds> = report_set.iter().map(|(_, x)| x.clone()).collect();
    let mut chosen = Vec::with_capacity(k);
    let mut rejected = Vec::with_capacity(k);
    for (m, _) in &members {
        let (c, r) = pair_scores(m, &pairs, s.pad, bs)?;
        chosen.push(c);
        rejected.push(r);
    }
    let step = members[0].1.steps;
    if k > 1 {
        let manifest = EnsembleManifest {
            members: members
                .iter()
                .map(|(_, r)| r.final_checkpoint.strip_prefix(out).unwrap_or(&r.final_checkpoint).to_path_buf())
                .collect(),
            aggregation: ens.aggregation(),
        };
        manifest.write(out)?;
        for (name, how) in [
            ("mean", EnsembleAggregation::Mean),
            ("min", EnsembleAggregation::Min),
            ("mean_minus_var", EnsembleAggregation::MeanMinusVar { lambda: ens.ensemble_uncertainty_penalty }),
        ] {
            summary_metrics.insert(format!("ensemble_accuracy/{name}"), ensemble_accuracy(&chosen, &rejected, how)?);
        }
        for (i, (c, r)) in chosen.iter().zip(&rejected).enumerate() {
            let acc = c.iter().zip(r).filter(|(a, b)| a > b).count() as f64 / c.len().max(1) as f64;
            summary_metrics.insert(format!("member_accuracy/{i}"), acc);
        }
        let counts = write_strength_report(out, report_set, report_records, &chosen, &rejected)?;
        for (verdict, n) in counts {
            summary_metrics.insert(format!("pairs/{verdict}"), n as f64);
        }
        progress.log(&format!(
            "preference strength of {} pairs: {}",
            pairs.len(),
            out.join("preference_strength.jsonl").display()
        ));
    }
    // Accuracy per category (ties count as wrong, as in RewardBench), of the single model or
    // of the aggregated ensemble.
    let mut by_cat: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (pos, (rec, _)) in report_set.iter().enumerate() {
        if let Some(c) = report_records[*rec].meta().category.as_deref() {
            by_cat.entry(c).or_default().push(pos);
        }
    }
    let prefix = if s.eval.is_some() { "eval_accuracy" } else { "train_accuracy" };
    for (cat, pos) in &by_cat {
        let pick =
            |rows: &[Vec<f64>]| -> Vec<Vec<f64>> { rows.iter().map(|r| pos.iter().map(|&p| r[p]).collect()).collect() };
        let acc = ensemble_accuracy(&pick(&chosen), &pick(&rejected), ens.aggregation())?;
        summary_metrics.insert(format!("{prefix}/{cat}"), acc);
    }
    if !summary_metrics.is_empty() {
        append_metrics(out, step, &summary_metrics)?;
    }
    let (_, first_summary) = members.swap_remove(0);
    let mut summary = first_summary;
    if k > 1 {
        summary.final_checkpoint = out.join(EnsembleManifest::FILE);
        summary.eval = Metrics::new();
    }
    summary.last_metrics.extend(summary_metrics);
    Ok(summary)
}

/// Plackett–Luce on ranked lists (pairs become lists of two).
fn train_listwise(s: &Setup, lw: &ListwiseArgs, model: Model, progress: &mut Bars) -> Result<RunSummary> {
    let max_length = Some(s.args.max_length);
    let (ids, stats) = tokenize_ranked_reward_dataset(s.tok, s.train, max_length, lw.max_list_size)?;
    progress.log(&format!("tokenized: {} lists kept, dropped {:?}", stats.kept, stats.dropped));
    if ids.is_empty() {
        bail!("no ranked lists or pairs in {}", s.args.dataset.display());
    }
    let bs = s.args.per_device_train_batch_size;
    let eval_batches = match s.eval {
        Some(e) => tokenize_ranked_reward_dataset(s.tok, e, max_length, lw.max_list_size)?
            .0
            .chunks(bs)
            .map(|c| collate_ranked_reward(c, s.pad))
            .collect(),
        None => vec![],
    };
    let total = run::total_steps(s.args, ids.len());
    let opt = Optimizer::new(model.params(), s.optim, total)?;
    let mut trainer = ListwiseRewardTrainer::new(model, opt);
    let cfg = resolved(&[to_json(s.args), to_json(s.optim), to_json(lw)]);
    let collate =
        |idx: &[usize]| Ok(collate_ranked_reward(&idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>(), s.pad));
    Ok(run::train(&mut trainer, s.args, &cfg, ids.len(), &collate, &eval_batches, progress)?)
}

/// The preference records that tokenize within `max_length`, with their record index.
fn tokenized_pairs(
    tok: &HfTokenizer,
    records: &[Record],
    max_length: Option<usize>,
) -> Result<Vec<(usize, RewardIds)>> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Record::Preference(p) = r else { continue };
        let ids = tokenize_reward(tok, p).with_context(|| format!("tokenizing record {}", i + 1))?;
        if max_length.is_some_and(|m| ids.chosen_ids.len() > m || ids.rejected_ids.len() > m) {
            continue;
        }
        out.push((i, ids));
    }
    if out.is_empty() {
        bail!("no preference pairs (prompt/chosen/rejected) within max_length in the reward data");
    }
    Ok(out)
}

/// Writes `preference_strength.jsonl` (weakest pairs first) and returns the verdict counts.
fn write_strength_report(
    out: &Path,
    set: &[(usize, RewardIds)],
    records: &[Record],
    chosen: &[Vec<f64>],
    rejected: &[Vec<f64>],
) -> Result<BTreeMap<&'static str, usize>> {
    let mut pairs = strengths(chosen, rejected)?;
    pairs.sort_by(|a, b| a.mean.total_cmp(&b.mean));
    let path = out.join("preference_strength.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| path.display().to_string())?);
    let mut counts = BTreeMap::from([("clear", 0), ("ambiguous", 0), ("likely_mislabeled", 0)]);
    for p in &pairs {
        let rec = set[p.index].0;
        let verdict = match p.verdict {
            Verdict::Clear => "clear",
            Verdict::Ambiguous => "ambiguous",
            Verdict::LikelyMislabeled => "likely_mislabeled",
        };
        *counts.entry(verdict).or_default() += 1;
        let Record::Preference(pref) = &records[rec] else { continue };
        let line = json!({
            "record": rec + 1,
            "id": pref.meta.id,
            "verdict": verdict,
            "mean": p.mean,
            "std": p.std,
            "members": p.members,
            "prompt": pref.prompt,
            "chosen": pref.chosen,
            "rejected": pref.rejected,
        });
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    Ok(counts)
}
