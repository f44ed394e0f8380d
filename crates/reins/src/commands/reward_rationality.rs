//! `reins reward --set annotator_rationality=true`: a Bradley–Terry (or Thurstone) reward model
//! that learns each annotator's rationality β jointly with the reward (arXiv:2512.03208;
//! [`reins_train::trainers::reward_rationality`]). Every training pair needs an `annotator_id`;
//! the learned β's are logged and written to `annotator_rationality.json` in the output folder
//! (and into every checkpoint).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use reins_data::collate::collate_reward;
use reins_data::tokenize::reward::RewardIds;
use reins_data::Record;
use reins_model::Model;
use reins_train::config::resolved;
use reins_train::losses::RewardLossConfig;
use reins_train::optim::optimizer::Optimizer;
use reins_train::run::{self, append_metrics, Progress, RunSummary};
use reins_train::trainers::reward::RewardTrainer;
use reins_train::trainers::reward_rationality::{
    AnnotatedRewardBatch, RationalityArgs, RationalityReport, RationalityRewardTrainer,
};
use reins_train::trainers::Metrics;

use super::reward::Setup;
use super::train::{to_json, Bars};

/// The annotator of each tokenized pair as an index into the returned ids (sorted), or an
/// error naming the first record without one.
pub fn annotator_index(records: &[Record], pairs: &[(usize, RewardIds)]) -> Result<(Vec<String>, Vec<usize>)> {
    let mut ids: Vec<String> = Vec::new();
    for (rec, _) in pairs {
        match records[*rec].meta().annotator_id.as_deref() {
            Some(a) if !a.is_empty() => ids.push(a.to_string()),
            _ => bail!(
                "record {} has no annotator_id: annotator_rationality = true learns one beta per annotator, so every \
                 training pair needs the `annotator_id` of whoever labelled it (a top-level `annotator_id` field, as the \
                 feedback app exports); remove annotator_rationality to train pooled Bradley-Terry",
                rec + 1
            ),
        }
    }
    ids.sort();
    ids.dedup();
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, a)| (a.as_str(), i)).collect();
    let of = pairs.iter().map(|(rec, _)| index[records[*rec].meta().annotator_id.as_deref().unwrap_or("")]).collect();
    Ok((ids, of))
}

/// Trains one reward model with per-annotator β on `train` (tokenized pairs with their record
/// index); `eval` pairs of an annotator not seen in training are scored at β = 1.
pub fn train(
    s: &Setup,
    args: &RationalityArgs,
    loss: RewardLossConfig,
    model: Model,
    train: &[(usize, RewardIds)],
    eval: Option<&[(usize, RewardIds)]>,
    progress: &mut Bars,
) -> Result<RunSummary> {
    args.validate()?;
    let (ids, who) = annotator_index(s.train, train)?;
    let mut counts = vec![0usize; ids.len()];
    who.iter().for_each(|&a| counts[a] += 1);
    progress.log(&format!("annotator rationality: {} annotators over {} pairs", ids.len(), who.len()));
    let bs = s.args.per_device_train_batch_size;
    let eval_batches: Vec<AnnotatedRewardBatch> = match (eval, s.eval) {
        (Some(e), Some(records)) => e
            .chunks(bs)
            .map(|c| {
                let annotators = c
                    .iter()
                    .map(|(rec, _)| {
                        let a = records[*rec].meta().annotator_id.as_deref();
                        a.and_then(|a| ids.iter().position(|x| x == a)).unwrap_or(usize::MAX)
                    })
                    .collect();
                let pairs: Vec<RewardIds> = c.iter().map(|(_, x)| x.clone()).collect();
                AnnotatedRewardBatch { batch: collate_reward(&pairs, s.pad, None), annotators }
            })
            .collect(),
        _ => Vec::new(),
    };
    let total = run::total_steps(s.args, train.len());
    let opt = Optimizer::new(model.params(), s.optim, total)?;
    let mut trainer = RationalityRewardTrainer::new(RewardTrainer::new(model, opt, loss), ids, counts, *args);
    let cfg = resolved(&[to_json(s.args), to_json(s.optim), to_json(&loss), to_json(args)]);
    let collate = |idx: &[usize]| {
        let pairs: Vec<RewardIds> = idx.iter().map(|&i| train[i].1.clone()).collect();
        Ok(AnnotatedRewardBatch {
            batch: collate_reward(&pairs, s.pad, None),
            annotators: idx.iter().map(|&i| who[i]).collect(),
        })
    };
    let mut summary = run::train(&mut trainer, s.args, &cfg, train.len(), &collate, &eval_batches, progress)?;
    let report = trainer.report();
    let out = &s.args.output_dir;
    let path = out.join(RationalityReport::FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&report)?).with_context(|| path.display().to_string())?;
    let mut m = Metrics::new();
    for a in &report.annotators {
        progress.log(&format!("  beta {:>8.4}  {} ({} pairs)", a.beta, a.annotator_id, a.pairs));
        m.insert(format!("rationality/beta/{}", a.annotator_id), a.beta);
    }
    progress.log(&format!("annotator rationality (largest first): {}", path.display()));
    append_metrics(out, summary.steps, &m)?;
    summary.last_metrics.extend(m);
    Ok(summary)
}
