//! `reins segment-reward --config FILE.toml`: a segment reward model for Fine-Grained RLHF
//! (Wu et al., arXiv:2306.01693) from span-labelled responses — the feedback app's `spans`
//! export, or any `{"prompt", "response"|"completion", "spans": [{"start", "end", "tag"}]}`
//! rows. `granularity` (`sub_sentence`, `sentence` or `response`) says where it reads its
//! verdicts, `tags` which span tags are its errors (default: all). Every checkpoint carries
//! `segment_reward.json`; list one in a fine-grained reward file for `reins ppo`
//! (`reward = "fine_grained:<file.toml>"`).

use anyhow::{bail, Result};
use reins_model::Model;
use reins_train::config::resolved;
use reins_train::config::TrainingArgs;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::run::{self, Progress, RunSummary};
use reins_train::trainers::segment_reward::{
    collate_segments, tokenize_segment_dataset, SegmentExample, SegmentRewardSpec, SegmentRewardTrainer,
};

use super::reward::Setup;
use super::train::to_json;

/// The config part `reins segment-reward` reads beside the training arguments and the optimizer.
pub fn parts() -> Vec<serde_json::Value> {
    vec![to_json(&SegmentRewardSpec::default())]
}

pub fn train(s: Setup, model: Model, progress: &mut dyn Progress) -> Result<RunSummary> {
    let Setup { flat, args, optim, tok, pad, train, eval, .. } = s;
    let spec: SegmentRewardSpec = flat.part()?;
    let tokenize = |records, progress: &mut dyn Progress| -> Result<_> {
        let (ids, stats) = tokenize_segment_dataset(tok, records, &spec, Some(args.max_length))?;
        progress.log(&format!("tokenized: {} kept, dropped {:?}", stats.kept, stats.dropped));
        Ok(ids)
    };
    let data = tokenize(train, progress)?;
    if data.is_empty() {
        bail!(
            "no span-labelled responses to train on: the dataset needs rows with `prompt`, `response` (or \
             `completion`) and `spans` ([{{\"start\", \"end\", \"tag\"}}], character offsets), as the feedback app's \
             spans export writes"
        );
    }
    let labels = data.iter().flat_map(|e| &e.targets).count();
    let errors = data.iter().flat_map(|e| &e.targets).filter(|t| t.1 < 0.5).count();
    progress.log(&format!(
        "{} responses, {labels} {:?} segments, {errors} of them errors (tags: {})",
        data.len(),
        spec.granularity,
        if spec.tags.is_empty() { "all".to_string() } else { spec.tags.join(", ") }
    ));
    let eval_data = match eval {
        Some(e) => tokenize(e, progress)?,
        None => Vec::new(),
    };
    let files = vec![spec.to_file()?];
    train_examples(model, args, optim, pad, data, eval_data, files, to_json(&spec), progress)
}

/// The binary cross-entropy run shared with `reins principle-reward`: `data` and `eval_data`
/// tokenized, `files` written into every checkpoint, `spec` (the command's own settings) into
/// the run's `config.toml`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_examples(
    model: Model,
    args: &TrainingArgs,
    optim: &OptimConfig,
    pad: u32,
    data: Vec<SegmentExample>,
    eval_data: Vec<SegmentExample>,
    files: Vec<(String, String)>,
    spec: serde_json::Value,
    progress: &mut dyn Progress,
) -> Result<RunSummary> {
    let bs = args.per_device_train_batch_size;
    let eval_batches = eval_data.chunks(bs).map(|c| collate_segments(c, pad)).collect::<Vec<_>>();
    let total = run::total_steps(args, data.len());
    let opt = Optimizer::new(model.params(), optim, total)?;
    let mut trainer = SegmentRewardTrainer::new(model, opt, files)?;
    let cfg = resolved(&[to_json(args), to_json(optim), spec]);
    let batch = |idx: &[usize]| Ok(collate_segments(&idx.iter().map(|&i| data[i].clone()).collect::<Vec<_>>(), pad));
    Ok(run::train(&mut trainer, args, &cfg, data.len(), &batch, &eval_batches, progress)?)
}
