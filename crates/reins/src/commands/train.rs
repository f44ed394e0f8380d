//! `reins sft|reward|dpo|kto|orpo|simpo|cpo|lipo|cpl|t-reg --config FILE.toml [--set key=value ...]`: TRL's trainers with TRL's
//! config keys, writing a run folder that resumes exactly.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reins_data::collate::{collate_preference, collate_sft, collate_unpaired};
use reins_data::convert::unpair;
use reins_data::formats::{load, ConvertOptions};
use reins_data::tokenize::preference::{tokenize_preference_dataset, PreferenceOptions};
use reins_data::tokenize::sft::{tokenize_sft_dataset, SftOptions};
use reins_data::tokenize::unpaired::{kl_completion_ids, tokenize_unpaired_dataset};
use reins_data::tokenize::TruncationMode;
use reins_data::HfTokenizer;
use reins_model::{LoadOptions, Model};
use reins_train::config::{resolved, FlatConfig, TrainingArgs};
use reins_train::losses::{CplConfig, CpoConfig, DpoConfig, KtoConfig, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::run::{self, Progress, RunSummary};
use reins_train::trainers::cpl::CplTrainer;
use reins_train::trainers::cpo::CpoTrainer;
use reins_train::trainers::dpo::{attach_reference_logps, DpoTrainer, DpoTrainerArgs, Reference};
use reins_train::trainers::kto::KtoTrainer;
use reins_train::trainers::lipo::{collate_ranked, tokenize_ranked_dataset, LipoConfig, LipoTrainer};
use reins_train::trainers::orpo::{OrpoConfig, OrpoTrainer};
use reins_train::trainers::reward_ensemble::EnsembleArgs;
use reins_train::trainers::sft::SftTrainer;
use reins_train::trainers::simpo::simpo_trainer;
use reins_train::trainers::Metrics;
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A TOML file of TRL-named settings (`model_name_or_path`, `dataset`, `learning_rate`, …).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set beta=0.2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// SFT-only settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftArgs {
    /// Pack examples into `max_length` rows (TRL `packing`, default false).
    pub packing: bool,
    /// Loss on completions only (default: yes for prompt/completion data).
    pub completion_only_loss: Option<bool>,
}

#[derive(Clone, Copy)]
pub enum Method {
    Sft,
    Reward,
    Dpo,
    Kto,
    Orpo,
    Simpo,
    Cpo,
    Lipo,
    Cpl,
    TReg,
    SegmentReward,
    PrincipleReward,
    Seq2SeqReward,
}

/// TRL's default learning rate of each trainer.
fn default_lr(m: Method) -> f64 {
    match m {
        Method::Sft | Method::Seq2SeqReward => 2e-5,
        Method::Reward | Method::SegmentReward | Method::PrincipleReward => 1e-4,
        Method::Dpo | Method::Kto | Method::Orpo | Method::Simpo | Method::Cpo | Method::Lipo | Method::TReg => 1e-6,
        // TRL has no CPL; its DPO default, as CPL on a language model is a reference-free DPO.
        Method::Cpl => 1e-6,
    }
}

/// Defaults that depend on the method, as TRL's per-trainer configs set them
/// (`learning_rate`; SimPO's loss), put into `flat` unless the user set them.
pub(crate) fn apply_presets(method: Method, flat: &mut FlatConfig) {
    flat.table.entry("learning_rate").or_insert(default_lr(method).into());
    if matches!(method, Method::Simpo) {
        // SimPO is CPO's `loss_type = "simpo"` without the NLL term (arXiv:2405.14734).
        flat.table.entry("loss_type").or_insert("simpo".into());
        flat.table.entry("cpo_alpha").or_insert(0.0.into());
    }
}

/// The default value of every config part `method` reads: their keys are the known keys.
pub(crate) fn default_parts(method: Method) -> Vec<serde_json::Value> {
    let mut parts = vec![to_json(&TrainingArgs::default()), to_json(&OptimConfig::default())];
    match method {
        Method::Sft => parts.push(to_json(&SftArgs::default())),
        Method::Reward => {
            parts.push(to_json(&RewardLossConfig::default()));
            parts.push(to_json(&EnsembleArgs::default()));
            parts.push(to_json(&super::reward::ListwiseArgs::default()));
            parts.push(to_json(&super::reward_denoise::StrengthReportArgs::default()));
            parts.push(to_json(&reins_train::losses::NoiseAwareConfig::default()));
            parts.push(to_json(&reins_train::losses::ContrastiveConfig::default()));
            parts.push(to_json(&super::reward_metarm::MetaRmArgs::default()));
            parts.push(to_json(&reins_train::convex_da::ConvexDaArgs::default()));
            parts.push(to_json(&super::reward_residual::ResidualArgs::default()));
            parts.push(to_json(&reins_train::trainers::reward_rationality::RationalityArgs::default()));
        }
        Method::Dpo => {
            parts.push(to_json(&DpoConfig::default()));
            parts.push(to_json(&DpoTrainerArgs::default()));
        }
        Method::Kto => parts.push(to_json(&KtoConfig::default())),
        Method::Orpo => parts.push(to_json(&OrpoConfig::default())),
        Method::Simpo | Method::Cpo => parts.push(to_json(&CpoConfig::default())),
        Method::Lipo => parts.push(to_json(&LipoConfig::default())),
        Method::Cpl => parts.push(to_json(&CplConfig::default())),
        Method::TReg => parts.extend(super::t_reg::parts()),
        Method::SegmentReward => parts.extend(super::segment_reward::parts()),
        Method::PrincipleReward => parts.extend(super::principle_reward::parts()),
        Method::Seq2SeqReward => parts.extend(super::seq2seq_reward::parts()),
    }
    parts
}

pub fn run(method: Method, a: TrainArgs) -> Result<()> {
    let device = reins_model::default_device()?;
    let flat =
        super::resolve_config(a.config.as_deref(), &a.set, |f| apply_presets(method, f), &default_parts(method))?;
    let args: TrainingArgs = flat.part()?;
    args.validate()?;
    super::note_bf16(&args, &device);
    let optim: OptimConfig = flat.part()?;
    let tok = HfTokenizer::from_dir(&args.model_name_or_path)?;
    let pad = tok.pad_id_or_eos().context("the tokenizer has neither a pad nor an EOS token")?;
    let mut progress = Bars::new();
    let lora = args.lora();
    let opts = LoadOptions {
        trainable: true,
        lora: lora.clone(),
        score_head: matches!(method, Method::Reward | Method::SegmentReward | Method::PrincipleReward).then_some(1),
        seed: args.seed,
        autocast: args.autocast(),
        ..Default::default()
    };
    let model = Model::load(&args.model_name_or_path, &device, &opts)?;
    let mut records = |path: &PathBuf| -> Result<Vec<reins_data::Record>> {
        let loaded = load(path, None, &ConvertOptions::default())?;
        progress.log(&loaded.report.to_string());
        Ok(loaded.records)
    };
    let train = records(&args.dataset)?;
    let eval = args.eval_dataset.as_ref().map(&mut records).transpose()?;
    let max_length = Some(args.max_length);
    let bs = args.per_device_train_batch_size;
    // What the reward and T-REG trainers take (they live in their own files).
    let setup = || super::reward::Setup {
        flat: &flat,
        args: &args,
        optim: &optim,
        tok: &tok,
        pad,
        device: &device,
        load: &opts,
        train: &train,
        eval: eval.as_deref(),
    };
    let summary: RunSummary = match method {
        Method::Sft => {
            let extra: SftArgs = flat.part()?;
            let o = SftOptions {
                max_length,
                truncation_mode: TruncationMode::KeepStart,
                completion_only_loss: extra.completion_only_loss,
            };
            let (ids, stats) = tokenize_sft_dataset(&tok, &train, &o, extra.packing)?;
            progress.log(&format!("tokenized: {} kept, dropped {:?}", stats.kept, stats.dropped));
            let eval_batches = match &eval {
                Some(e) => tokenize_sft_dataset(&tok, e, &o, extra.packing)?
                    .0
                    .chunks(bs)
                    .map(|c| collate_sft(c, pad, None))
                    .collect(),
                None => vec![],
            };
            let total = run::total_steps(&args, ids.len());
            let opt = Optimizer::new(model.params(), &optim, total)?;
            let mut trainer = SftTrainer::new(model, opt);
            let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&extra)]);
            let collate =
                |idx: &[usize]| Ok(collate_sft(&idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>(), pad, None));
            run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
        }
        Method::Reward => super::reward::train(setup(), model, &mut progress)?,
        Method::Dpo => {
            let loss: DpoConfig = flat.part()?;
            loss.validate()?;
            let extra: DpoTrainerArgs = flat.part()?;
            extra.validate(lora.is_some())?;
            let o = PreferenceOptions { max_length, truncation_mode: TruncationMode::KeepStart };
            let (ids, stats) = tokenize_preference_dataset(&tok, &train, &o)?;
            progress.log(&format!("tokenized: {} kept, dropped {:?}", stats.kept, stats.dropped));
            let col = |c: &[reins_data::tokenize::preference::PreferenceIds]| {
                collate_preference(c, pad, max_length, TruncationMode::KeepStart, None)
            };
            let eval_ids = match &eval {
                Some(e) => tokenize_preference_dataset(&tok, e, &o)?.0,
                None => vec![],
            };
            let total = run::total_steps(&args, ids.len());
            let opt = Optimizer::new(model.params(), &optim, total)?;
            let reference = if lora.is_some() {
                Reference::AdaptersOff
            } else {
                // TR-DPO moves the reference, so it is loaded as parameters it can update.
                let o =
                    LoadOptions { trainable: extra.sync_ref_model, autocast: args.autocast(), ..Default::default() };
                Reference::Model(Box::new(Model::load(&args.model_name_or_path, &device, &o)?))
            };
            let mut trainer = DpoTrainer::new(model, reference, loss.clone(), opt)?;
            if extra.sync_ref_model {
                trainer = trainer.with_reference_sync(extra.ref_model_mixup_alpha, extra.ref_model_sync_steps)?;
            }
            let plain = |idx: &[usize]| Ok(col(&idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>()));
            let eval_plain = |idx: &[usize]| Ok(col(&idx.iter().map(|&i| eval_ids[i].clone()).collect::<Vec<_>>()));
            let chunks = |n: usize| (0..n).collect::<Vec<_>>().chunks(bs).map(<[usize]>::to_vec).collect::<Vec<_>>();
            let (refs, eval_refs) = if extra.precompute_ref_log_probs {
                progress.log(&format!("precomputing reference log-probs of {} examples", ids.len() + eval_ids.len()));
                let refs = trainer.precompute_reference_logps(ids.len(), &plain, bs)?;
                let eval_refs = trainer.precompute_reference_logps(eval_ids.len(), &eval_plain, bs)?;
                trainer.reference = Reference::Precomputed;
                (Some(refs), Some(eval_refs))
            } else {
                (None, None)
            };
            let mut eval_batches = Vec::new();
            for idx in chunks(eval_ids.len()) {
                let mut b = eval_plain(&idx)?;
                if let Some(r) = &eval_refs {
                    attach_reference_logps(&mut b, &idx, r);
                }
                eval_batches.push(b);
            }
            let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss), to_json(&extra)]);
            let collate = |idx: &[usize]| {
                let mut b = plain(idx)?;
                if let Some(r) = &refs {
                    attach_reference_logps(&mut b, idx, r);
                }
                Ok(b)
            };
            run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
        }
        Method::TReg => super::t_reg::train(setup(), model, &mut progress)?,
        Method::SegmentReward => super::segment_reward::train(setup(), model, &mut progress)?,
        Method::PrincipleReward => super::principle_reward::train(setup(), model, &mut progress)?,
        Method::Seq2SeqReward => super::seq2seq_reward::train(setup(), model, &mut progress)?,
        Method::Orpo | Method::Simpo | Method::Cpo | Method::Cpl => {
            let o = PreferenceOptions { max_length, truncation_mode: TruncationMode::KeepStart };
            let (ids, stats) = tokenize_preference_dataset(&tok, &train, &o)?;
            progress.log(&format!("tokenized: {} kept, dropped {:?}", stats.kept, stats.dropped));
            let col = |c: &[reins_data::tokenize::preference::PreferenceIds]| {
                collate_preference(c, pad, max_length, TruncationMode::KeepStart, None)
            };
            let eval_batches = match &eval {
                Some(e) => tokenize_preference_dataset(&tok, e, &o)?.0.chunks(bs).map(col).collect(),
                None => vec![],
            };
            let total = run::total_steps(&args, ids.len());
            let opt = Optimizer::new(model.params(), &optim, total)?;
            let collate = |idx: &[usize]| Ok(col(&idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>()));
            if let Method::Orpo = method {
                let loss: OrpoConfig = flat.part()?;
                let mut trainer = OrpoTrainer::new(model, loss, opt)?;
                let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss)]);
                run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
            } else if let Method::Cpl = method {
                let loss: CplConfig = flat.part()?;
                let mut trainer = CplTrainer::new(model, loss.clone(), opt)?;
                let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss)]);
                run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
            } else {
                let loss: CpoConfig = flat.part()?;
                let mut trainer = match method {
                    Method::Simpo => simpo_trainer(model, loss, opt)?,
                    _ => CpoTrainer::new(model, loss, opt)?,
                };
                let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss)]);
                run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
            }
        }
        Method::Kto => {
            let loss: KtoConfig = flat.part()?;
            reins_train::trainers::kto::validate(&loss, bs)?;
            // Paired data is unpaired first, as TRL's `unpair_preference_dataset`.
            let (ids, stats) = tokenize_unpaired_dataset(&tok, &unpair(train), max_length)?;
            progress.log(&format!("tokenized: {} kept, dropped {:?}", stats.kept, stats.dropped));
            if ids.is_empty() {
                bail!("no unpaired examples in {} (KTO needs prompt/completion/label records)", args.dataset.display());
            }
            // Each example's mismatched KL completion, fixed once (TRL pairs neighbours in
            // chunks of `per_device_train_batch_size`).
            let kl = kl_completion_ids(&ids, bs);
            let eval_batches = match &eval {
                Some(e) => {
                    let eids = tokenize_unpaired_dataset(&tok, &unpair(e.clone()), max_length)?.0;
                    let ekl = kl_completion_ids(&eids, bs);
                    eids.chunks(bs)
                        .zip(ekl.chunks(bs))
                        .map(|(c, k)| collate_unpaired(c, Some(k), pad, max_length, None))
                        .collect()
                }
                None => vec![],
            };
            let total = run::total_steps(&args, ids.len());
            let opt = Optimizer::new(model.params(), &optim, total)?;
            let reference = if lora.is_some() {
                Reference::AdaptersOff
            } else {
                Reference::Model(Box::new(Model::load(
                    &args.model_name_or_path,
                    &device,
                    &LoadOptions { autocast: args.autocast(), ..Default::default() },
                )?))
            };
            let mut trainer = KtoTrainer::new(model, reference, loss, opt)?;
            let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss)]);
            let collate = |idx: &[usize]| {
                let ex: Vec<_> = idx.iter().map(|&i| ids[i].clone()).collect();
                let k: Vec<_> = idx.iter().map(|&i| kl[i].clone()).collect();
                Ok(collate_unpaired(&ex, Some(&k), pad, max_length, None))
            };
            run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
        }
        Method::Lipo => {
            let loss: LipoConfig = flat.part()?;
            loss.validate()?;
            let (ids, stats) = tokenize_ranked_dataset(&tok, &train, loss.max_list_size)?;
            progress.log(&format!("tokenized: {} lists kept, dropped {:?}", stats.kept, stats.dropped));
            if ids.is_empty() {
                bail!("no ranked lists or pairs in {}", args.dataset.display());
            }
            let eval_batches = match &eval {
                Some(e) => tokenize_ranked_dataset(&tok, e, loss.max_list_size)?
                    .0
                    .chunks(bs)
                    .map(|c| collate_ranked(c, pad, max_length))
                    .collect(),
                None => vec![],
            };
            let total = run::total_steps(&args, ids.len());
            let opt = Optimizer::new(model.params(), &optim, total)?;
            let reference = if lora.is_some() {
                Reference::AdaptersOff
            } else {
                Reference::Model(Box::new(Model::load(
                    &args.model_name_or_path,
                    &device,
                    &LoadOptions { autocast: args.autocast(), ..Default::default() },
                )?))
            };
            let mut trainer = LipoTrainer::new(model, reference, loss, opt)?;
            let cfg = resolved(&[to_json(&args), to_json(&optim), to_json(&loss)]);
            let collate = |idx: &[usize]| {
                Ok(collate_ranked(&idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>(), pad, max_length))
            };
            run::train(&mut trainer, &args, &cfg, ids.len(), &collate, &eval_batches, &mut progress)?
        }
    };
    progress.finish();
    println!("trained {} steps; final checkpoint: {}", summary.steps, summary.final_checkpoint.display());
    println!("metrics: {}", args.output_dir.join("metrics.jsonl").display());
    for (k, v) in summary.eval.iter().chain(summary.last_metrics.iter()) {
        println!("  {k:<24} {v:.6}");
    }
    if summary.steps == 0 {
        bail!("no training step ran");
    }
    Ok(())
}

pub fn to_json<T: Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// A progress bar on a terminal, plain log lines otherwise.
pub struct Bars {
    bar: Option<ProgressBar>,
    tty: bool,
}

impl Bars {
    pub fn new() -> Self {
        Bars { bar: None, tty: std::io::stderr().is_terminal() }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

impl Progress for Bars {
    fn start(&mut self, total: usize, first: usize) {
        if self.tty {
            let b = ProgressBar::new(total as u64).with_position(first as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(b);
        } else {
            eprintln!("training {total} steps (from step {first})");
        }
    }

    fn step(&mut self, step: usize, m: &Metrics) {
        let loss = m.get("loss").copied().unwrap_or(f64::NAN);
        match &self.bar {
            Some(b) => {
                b.set_position(step as u64);
                b.set_message(format!("loss {loss:.4}"));
            }
            None => eprintln!("step {step}: loss {loss:.4}"),
        }
    }

    fn log(&mut self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}
