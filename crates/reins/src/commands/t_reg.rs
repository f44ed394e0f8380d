//! `reins t-reg --config FILE.toml`: DPO with T-REG's token-level regularizer. Before training,
//! the starting model scores every chosen and rejected completion token by token under the
//! better and the worse prompt (`better_prompt` / `worse_prompt` put before the user's last
//! message); those token rewards weight the regularizer ([`reins_train::trainers::t_reg`]).

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_data::collate::collate_preference;
use reins_data::tokenize::preference::{tokenize_preference, PreferenceIds};
use reins_data::tokenize::TruncationMode;
use reins_data::{HfTokenizer, Preference, Record, Text};
use reins_model::{LoadOptions, Model};
use reins_train::config::{resolved, TrainingArgs};
use reins_train::losses::{DpoConfig, TRegConfig};
use reins_train::optim::optimizer::Optimizer;
use reins_train::run::{self, Progress, RunSummary};
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::t_reg::{
    contrastive_token_rewards, TRegBatch, TRegTrainer, TokenRewardConfig, TokenRewardSource,
};

use super::reward::Setup;
use super::train::to_json;

/// The config parts `reins t-reg` reads beside the training arguments and the optimizer.
pub fn parts() -> Vec<serde_json::Value> {
    vec![to_json(&DpoConfig::default()), to_json(&TRegConfig::default()), to_json(&TokenRewardConfig::default())]
}

/// One example: its token ids and each completion's token rewards.
struct Example {
    ids: PreferenceIds,
    chosen_rewards: Vec<f32>,
    rejected_rewards: Vec<f32>,
}

/// `prompt` with `prefix` before its text (plain) or before its last user message (chat).
fn prefixed(prompt: &Text, prefix: &str) -> Result<Text> {
    Ok(match prompt {
        Text::Plain(s) => Text::Plain(format!("{prefix}{s}")),
        Text::Chat(messages) => {
            let mut m = messages.clone();
            let Some(last) = m.iter_mut().rev().find(|x| x.role == "user") else {
                bail!("a chat prompt without a user message: T-REG puts its better/worse prompts before the user's message");
            };
            last.content = format!("{prefix}{}", last.content);
            Text::Chat(m)
        }
    })
}

/// The preference records' token ids (dropping pairs whose prompt fills `max_length`, as DPO)
/// with their token rewards from `model` (the starting model, frozen).
fn examples(
    tok: &HfTokenizer,
    model: &Model,
    records: &[Record],
    cfg: &TokenRewardConfig,
    args: &TrainingArgs,
    progress: &mut dyn Progress,
) -> Result<Vec<Example>> {
    let (max_length, batch_size, seed) = (args.max_length, args.per_device_train_batch_size, args.seed);
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for r in records {
        let Record::Preference(p) = r else { continue };
        let x = tokenize_preference(tok, p)?;
        if x.prompt_ids.len() >= max_length {
            continue;
        }
        let with = |prefix: &str| -> Result<Vec<u32>> {
            let q = Preference { prompt: prefixed(&p.prompt, prefix)?, ..p.clone() };
            Ok(tokenize_preference(tok, &q)?.prompt_ids)
        };
        let (better, worse) = (with(&cfg.better_prompt)?, with(&cfg.worse_prompt)?);
        rows.push((better.clone(), worse.clone(), x.chosen_ids.clone()));
        rows.push((better, worse, x.rejected_ids.clone()));
        ids.push(x);
    }
    if ids.is_empty() {
        bail!("no preference pairs to train on (T-REG needs prompt/chosen/rejected records)");
    }
    let rewards = match cfg.token_reward {
        TokenRewardSource::Uniform => rows.iter().map(|r| vec![0.0; r.2.len()]).collect(),
        TokenRewardSource::Contrastive | TokenRewardSource::Shuffled => {
            progress.log(&format!("scoring token rewards of {} completions (better vs worse prompt)", rows.len()));
            let mut r = contrastive_token_rewards(model, &rows, batch_size)?;
            if cfg.token_reward == TokenRewardSource::Shuffled {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5348_5546);
                for row in &mut r {
                    row.shuffle(&mut rng);
                }
            }
            r
        }
    };
    let mut it = rewards.into_iter();
    Ok(ids
        .into_iter()
        .map(|ids| Example {
            ids,
            chosen_rewards: it.next().unwrap_or_default(),
            rejected_rewards: it.next().unwrap_or_default(),
        })
        .collect())
}

/// A batch of examples: the DPO collation and each row's token rewards.
fn collate(examples: &[&Example], pad: u32, max_length: usize) -> TRegBatch {
    let ids: Vec<PreferenceIds> = examples.iter().map(|e| e.ids.clone()).collect();
    let pairs = collate_preference(&ids, pad, Some(max_length), TruncationMode::KeepStart, None);
    let token_rewards = examples
        .iter()
        .map(|e| e.chosen_rewards.clone())
        .chain(examples.iter().map(|e| e.rejected_rewards.clone()))
        .collect();
    TRegBatch { pairs, token_rewards }
}

pub fn train(s: Setup, model: Model, progress: &mut dyn Progress) -> Result<RunSummary> {
    let Setup { flat, args, optim, tok, pad, device, train, eval, .. } = s;
    let loss: DpoConfig = flat.part()?;
    let cfg: TRegConfig = flat.part()?;
    let rewards: TokenRewardConfig = flat.part()?;
    cfg.validate()?;
    let reference = if args.lora().is_some() {
        Reference::AdaptersOff
    } else {
        Reference::Model(Box::new(Model::load(&args.model_name_or_path, device, &LoadOptions::default())?))
    };
    let start = reference.model(&model)?;
    let bs = args.per_device_train_batch_size;
    let data = examples(tok, &start, train, &rewards, args, progress)?;
    let eval_data = match eval {
        Some(e) => examples(tok, &start, e, &rewards, args, progress)?,
        None => Vec::new(),
    };
    let eval_batches: Vec<TRegBatch> =
        eval_data.iter().collect::<Vec<_>>().chunks(bs).map(|c| collate(c, pad, args.max_length)).collect();
    let total = run::total_steps(args, data.len());
    let opt = Optimizer::new(model.params(), optim, total)?;
    let mut trainer = TRegTrainer::new(model, reference, loss.clone(), cfg.clone(), opt)?;
    let resolved = resolved(&[to_json(args), to_json(optim), to_json(&loss), to_json(&cfg), to_json(&rewards)]);
    let batch = |idx: &[usize]| Ok(collate(&idx.iter().map(|&i| &data[i]).collect::<Vec<_>>(), pad, args.max_length));
    Ok(run::train(&mut trainer, args, &resolved, data.len(), &batch, &eval_batches, progress)?)
}
