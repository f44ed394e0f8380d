//! `reins seq2seq-reward --config FILE.toml`: a sequence-to-sequence reward model (Zhou et al.,
//! arXiv:2409.00162) from preference pairs: the causal LM learns to rewrite the rejected
//! response into the chosen one and to copy the chosen one (`prompt ++ response ++ separator →
//! chosen`), by SFT on the target tokens. Every checkpoint carries `seq2seq_reward.json`;
//! `reward = "seq2seq:<checkpoint>"` scores a policy's samples token by token (`±token_reward`
//! where the model would, or would not, have written the token) for `reins ppo` and the other
//! online commands.

use anyhow::{bail, Result};
use reins_data::collate::collate_sft;
use reins_data::tokenize::preference::{tokenize_preference_dataset, PreferenceOptions};
use reins_data::tokenize::sft::SftIds;
use reins_data::tokenize::TruncationMode;
use reins_model::Model;
use reins_train::config::resolved;
use reins_train::optim::optimizer::Optimizer;
use reins_train::rewards::seq2seq::{seq2seq_examples, Seq2SeqSpec};
use reins_train::run::{self, Progress, RunSummary};
use reins_train::trainers::sft::SftTrainer;

use super::reward::Setup;
use super::train::to_json;

/// The config part `reins seq2seq-reward` reads beside the training arguments and the optimizer.
pub fn parts() -> Vec<serde_json::Value> {
    vec![to_json(&Seq2SeqSpec::default())]
}

pub fn train(s: Setup, model: Model, progress: &mut dyn Progress) -> Result<RunSummary> {
    let Setup { flat, args, optim, tok, pad, train, eval, .. } = s;
    let spec: Seq2SeqSpec = flat.part()?;
    spec.validate()?;
    let sep = tok.encode(&spec.separator, false)?;
    if sep.is_empty() {
        bail!("separator {:?} tokenizes to nothing; choose a visible text", spec.separator);
    }
    let opts = PreferenceOptions { max_length: Some(args.max_length), truncation_mode: TruncationMode::KeepStart };
    let examples = |records, progress: &mut dyn Progress| -> Result<Vec<SftIds>> {
        let (pairs, stats) = tokenize_preference_dataset(tok, records, &opts)?;
        progress.log(&format!("tokenized: {} pairs kept, dropped {:?}", stats.kept, stats.dropped));
        Ok(pairs
            .iter()
            .flat_map(|p| seq2seq_examples(p, &sep))
            .filter(|e| e.input_ids.len() <= args.max_length)
            .collect())
    };
    let data = examples(train, progress)?;
    if data.is_empty() {
        bail!("no preference pairs to train on: the dataset needs prompt/chosen/rejected records no longer than max_length");
    }
    progress.log(&format!("{} examples (a correction and an identity per pair)", data.len()));
    let eval_data = match eval {
        Some(e) => examples(e, progress)?,
        None => Vec::new(),
    };
    let bs = args.per_device_train_batch_size;
    let eval_batches = eval_data.chunks(bs).map(|c| collate_sft(c, pad, None)).collect::<Vec<_>>();
    let total = run::total_steps(args, data.len());
    let opt = Optimizer::new(model.params(), optim, total)?;
    let mut trainer = SftTrainer::new(model, opt);
    trainer.model_files = vec![spec.to_file()?];
    let cfg = resolved(&[to_json(args), to_json(optim), to_json(&spec)]);
    let batch = |idx: &[usize]| Ok(collate_sft(&idx.iter().map(|&i| data[i].clone()).collect::<Vec<_>>(), pad, None));
    Ok(run::train(&mut trainer, args, &cfg, data.len(), &batch, &eval_batches, progress)?)
}
