//! `reins quickstart`: the whole RLHF loop on the synthetic world, judged by the hidden gold
//! reward.
//!
//! 1. a BPE tokenizer and a tiny Llama pretrained and SFT'd on the world's corpus (cached);
//! 2. pairs sampled from the SFT policy on train prompts, labelled by simulated annotators;
//! 3. reward models (one, and an ensemble of bootstrap resamples) trained on those labels,
//!    scored against noiseless gold preferences on held-out pairs;
//! 4. policies: offline DPO on the labelled pairs, best-of-n against the ensemble, GRPO against
//!    the single RM and the ensemble (with over-optimization curves), PPO and online DPO
//!    against the ensemble;
//! 5. evaluation of every policy on held-out prompts by the gold reward (mean score, win rate
//!    against SFT, KL to the SFT reference, proxy − gold gap) and the report.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_data::collate::{PreferenceBatch, RewardBatch, SftBatch};
use reins_data::HfTokenizer;
use reins_model::generate::{generate, Hooks};
use reins_model::init::{llama_config, random_weights};
use reins_model::{Batch, LoadOptions, Model, ModelConfig, SamplingConfig};
use reins_train::losses::ppo::GrpoLossConfig;
use reins_train::losses::{DpoConfig, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::rewards::{EnsembleReward, ModelReward, RewardSource};
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::grpo::{GrpoConfig as TrlGrpo, GrpoTrainer};
use reins_train::trainers::online_dpo::{OnlineDpoConfig as TrlOnlineDpo, OnlineDpoTrainer};
use reins_train::trainers::ppo::{PpoConfig as TrlPpo, PpoTrainer};
use reins_train::trainers::reward::RewardTrainer;
use reins_train::trainers::sft::SftTrainer;

use crate::annotators::Outcome as LabelOutcome;
use crate::config::TrainBudget;
use crate::metrics;
use crate::report::{
    Example, MethodRow, OverOptCurve, OverOptPoint, Report, ReportData, ReportPaths, RewardModelRow, Target,
};
use crate::{chat, Lab, LabConfig, LabError, Prompt, Split};

type Result<T> = std::result::Result<T, LabError>;

fn stage<E: std::fmt::Display>(stage: &'static str) -> impl Fn(E) -> LabError {
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

struct Ctx<'a> {
    cfg: &'a LabConfig,
    lab: Lab,
    tok: HfTokenizer,
    device: Device,
    end_id: u32,
    progress: &'a mut dyn Progress,
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
    let lab = Lab::new(cfg)?;
    let cache = base_cache_dir(cfg, &lab.world);
    let tok_dir = cache.join("model");
    if !tok_dir.join("tokenizer.json").exists() {
        progress.stage("tokenizer", 1);
        crate::tokenizer_train::train_and_save(&lab.world, cfg, &tok_dir)?;
        progress.tick("trained");
    }
    // A cache left broken (an interrupted run, a disk that filled up) is named, with the fix.
    let stale = |e: &dyn std::fmt::Display| LabError::Stage {
        stage: "cache",
        message: format!("{e}\nhint: delete {} to rebuild the cached base model", cache.display()),
    };
    let tok = HfTokenizer::from_dir(&tok_dir).map_err(|e| stale(&e))?;
    let end_id = tok.token_to_id(chat::END).ok_or_else(|| LabError::Tokenizer("no <|end|> token".into()))?;
    let mut cx = Ctx { cfg, lab, tok, device: Device::Cpu, end_id, progress };

    let base = cache.join("model");
    if !base.join("model.safetensors").exists() {
        cx.pretrain_and_sft(&base)?;
    }
    let sft = cx.load(&base, LoadOptions::default()).map_err(|e| stale(&e))?;

    // Pairs from the SFT policy, labelled by the simulated population.
    let train_prompts = cx.lab.world.prompts(Split::Train, cfg.pairs.n_prompts);
    cx.progress.stage("sampling pairs", 1);
    let samples = cx.sample(&sft, &train_prompts, 2, cfg.pairs.temperature, cfg.pairs.max_new_tokens, 1)?;
    cx.progress.tick("done");
    let pairs: Vec<(String, String, String)> =
        train_prompts.iter().zip(&samples).map(|(p, s)| (p.text.clone(), s[0].clone(), s[1].clone())).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x1abe1);
    let labels = cx.lab.population.label_pairs(&pairs, &mut rng);
    let records: Vec<crate::PreferenceRecord> =
        pairs.iter().zip(&labels).filter_map(|((p, a, b), l)| l.to_record(p, a, b, false)).collect();
    let annotators = cx.lab.population.agreement_rows(&cx.lab.gold, &pairs, &labels);
    if records.len() < 4 {
        return Err(LabError::Stage {
            stage: "labels",
            message: format!("only {} usable pairs; raise pairs.n_prompts", records.len()),
        });
    }

    // Reward models: member 0 on all labels, the others on bootstrap resamples.
    let mut members = Vec::new();
    for k in 0..cfg.reward_model.ensemble_size.max(1) {
        let data = if k == 0 { records.clone() } else { bootstrap(&records, cfg.seed + k as u64) };
        members.push(cx.train_reward_model(&base, &data, k as u64)?);
    }
    // Held-out pairs for accuracy against noiseless gold.
    let held = cx.lab.world.prompts(Split::Heldout, cfg.reward_model.n_eval_pairs);
    cx.progress.stage("held-out pairs", 1);
    let held_samples = cx.sample(&sft, &held, 2, cfg.pairs.temperature, cfg.pairs.max_new_tokens, 2)?;
    cx.progress.tick("done");
    let held_pairs: Vec<(String, String, String)> =
        held.iter().zip(&held_samples).map(|(p, s)| (p.text.clone(), s[0].clone(), s[1].clone())).collect();
    let mut rm_rows = Vec::new();
    let score_pairs = |cx: &Ctx, ms: &[Model]| -> Result<(Vec<f64>, Vec<f64>)> {
        let a: Vec<(String, String)> = held_pairs.iter().map(|(p, a, _)| (p.clone(), a.clone())).collect();
        let b: Vec<(String, String)> = held_pairs.iter().map(|(p, _, b)| (p.clone(), b.clone())).collect();
        Ok((cx.score_mean(ms, &a)?, cx.score_mean(ms, &b)?))
    };
    // The same held-out pairs labelled by the simulated population: the noisy accuracy a
    // practitioner without gold would see.
    let held_labels: Vec<LabelOutcome> = cx
        .lab
        .population
        .label_pairs(&held_pairs, &mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x4e1d))
        .into_iter()
        .map(|l| l.outcome)
        .collect();
    let (sa, sb) = score_pairs(&cx, &members[..1])?;
    let (acc1, n_acc) = metrics::gold_pair_accuracy(&cx.lab.gold, &held_pairs, &sa, &sb);
    rm_rows.push(RewardModelRow {
        name: "single RM".into(),
        accuracy_vs_gold: acc1,
        accuracy_vs_labels: Some(metrics::label_pair_accuracy(&held_labels, &sa, &sb).0),
        n_pairs: n_acc,
    });
    let (ea, eb) = score_pairs(&cx, &members)?;
    let (acc_e, _) = metrics::gold_pair_accuracy(&cx.lab.gold, &held_pairs, &ea, &eb);
    rm_rows.push(RewardModelRow {
        name: format!("ensemble of {} (mean)", members.len()),
        accuracy_vs_gold: acc_e,
        accuracy_vs_labels: Some(metrics::label_pair_accuracy(&held_labels, &ea, &eb).0),
        n_pairs: n_acc,
    });

    // Policies, evaluated on held-out prompts.
    let eval_prompts = cx.lab.world.prompts(Split::Heldout, cfg.eval.n_prompts);
    let (t, n_new) = (cfg.eval.temperature, cfg.eval.max_new_tokens);
    cx.progress.stage("evaluating SFT", 1);
    let sft_out: Vec<String> =
        cx.sample(&sft, &eval_prompts, 1, t, n_new, 3)?.into_iter().map(|mut v| v.remove(0)).collect();
    cx.progress.tick("done");
    let gold_of = |cx: &Ctx, outs: &[String]| -> Vec<f64> {
        eval_prompts.iter().zip(outs).map(|(p, o)| cx.lab.gold.score(&p.text, o)).collect()
    };
    let sft_gold = gold_of(&cx, &sft_out);
    let pairs_of = |outs: &[String]| -> Vec<(String, String)> {
        eval_prompts.iter().zip(outs).map(|(p, o)| (p.text.clone(), o.clone())).collect()
    };
    let sft_proxy = cx.score_mean(&members, &pairs_of(&sft_out))?;
    let mut rows = vec![MethodRow {
        name: "SFT".into(),
        mean_gold: metrics::mean(&sft_gold),
        gold_win_rate_vs_sft: 0.5,
        kl_to_ref: 0.0,
        mean_proxy: Some(metrics::mean(&sft_proxy)),
        proxy_gold_gap: Some(0.0),
    }];
    let mut outputs: Vec<(String, Vec<String>)> = Vec::new();
    // A policy's answers to the held-out prompts (one sample each) and its KL to SFT.
    let answer = |cx: &mut Ctx, name: &str, policy: &Model, seed: u64| -> Result<(Vec<String>, f64)> {
        cx.progress.stage(&format!("evaluating {name}"), 1);
        let out: Vec<String> =
            cx.sample(policy, &eval_prompts, 1, t, n_new, seed)?.into_iter().map(|mut v| v.remove(0)).collect();
        cx.progress.tick("done");
        let kl = cx.kl_to_reference(policy, &sft, &eval_prompts, &out)?;
        Ok((out, kl))
    };
    // A method's row: gold and proxy (ensemble mean) reward of its answers.
    let row_of = |cx: &Ctx, name: &str, out: &[String], kl: f64| -> Result<MethodRow> {
        let g = gold_of(cx, out);
        let px = cx.score_mean(&members, &pairs_of(out))?;
        Ok(MethodRow {
            name: name.to_string(),
            mean_gold: metrics::mean(&g),
            gold_win_rate_vs_sft: metrics::win_rate(&g, &sft_gold),
            kl_to_ref: kl,
            mean_proxy: Some(metrics::mean(&px)),
            proxy_gold_gap: Some(metrics::proxy_gold_gap(&px, &g, &sft_proxy, &sft_gold)),
        })
    };

    // Offline DPO on the labelled pairs.
    let dpo = cx.train_dpo(&base, &records)?;
    let name = format!("DPO ({})", cfg.dpo.loss_type);
    let (dpo_out, kl) = answer(&mut cx, &name, &dpo, 4)?;
    rows.push(row_of(&cx, &name, &dpo_out, kl)?);
    outputs.push((name, dpo_out));

    // Best-of-n against the ensemble (mean − λ·var over members), and the over-optimization
    // curves of best-of-n under the single RM and under the ensemble: gold and (calibrated)
    // proxy reward of the pick against KL = log n − (n−1)/n, for n = 1, 2, 4, … (Gao et al.,
    // arXiv:2210.10760, §3.1; Coste et al., arXiv:2310.02743, Fig. 1).
    let n = cfg.best_of_n.n.max(1);
    cx.progress.stage("best-of-n", 1);
    let cands = cx.sample(&sft, &eval_prompts, n, t, n_new, 5)?;
    cx.progress.tick("done");
    let flat: Vec<(String, String)> =
        eval_prompts.iter().zip(&cands).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
    let per_member = cx.score_members(&members, &flat)?; // [M][P·n]
    let lambda = cfg.reward_model.uncertainty_penalty;
    let single: Vec<f64> = per_member[0].clone();
    let ensemble: Vec<f64> = (0..flat.len())
        .map(|j| {
            let xs: Vec<f64> = per_member.iter().map(|m| m[j]).collect();
            metrics::mean(&xs) - lambda * metrics::std(&xs).powi(2)
        })
        .collect();
    let cand_gold: Vec<f64> = flat.iter().map(|(p, r)| cx.lab.gold.score(p, r)).collect();
    // The index (into `flat`) of the best of the first `k` candidates of each prompt.
    let picks = |scores: &[f64], k: usize| -> Vec<usize> {
        (0..eval_prompts.len())
            .map(|i| (i * n..i * n + k).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(i * n))
            .collect()
    };
    // Proxy scores of the SFT samples (candidate 0 of each prompt) anchor the calibration.
    let first: Vec<usize> = (0..eval_prompts.len()).map(|i| i * n).collect();
    let mut overopt = Vec::new();
    for (name, scores) in
        [("single RM", &single), (&*format!("ensemble of {} (mean − {lambda}·var)", members.len()), &ensemble)]
    {
        let ref_proxy: Vec<f64> = first.iter().map(|&j| scores[j]).collect();
        let ref_gold: Vec<f64> = first.iter().map(|&j| cand_gold[j]).collect();
        let mut points = Vec::new();
        let mut k = 1;
        while k <= n {
            let pk = picks(scores, k);
            let g: Vec<f64> = pk.iter().map(|&j| cand_gold[j]).collect();
            let px: Vec<f64> = pk.iter().map(|&j| scores[j]).collect();
            points.push(OverOptPoint {
                kl: metrics::best_of_n_kl(k),
                gold: metrics::mean(&g),
                proxy: metrics::mean(&metrics::calibrate(&px, &ref_proxy, &ref_gold)),
            });
            k *= 2;
        }
        overopt.push(OverOptCurve { name: format!("best-of-n, {name}"), points });
    }
    let bon: Vec<String> = picks(&ensemble, n).into_iter().map(|j| flat[j].1.clone()).collect();
    let name = format!("best-of-{n} (ensemble)");
    rows.push(row_of(&cx, &name, &bon, metrics::best_of_n_kl(n))?);
    outputs.push((name, bon));

    // Online RL against the reward models: GRPO against the single RM and against the
    // ensemble, with gold, proxy and KL measured along the way (the over-optimization curves
    // of RL, Gao et al., arXiv:2210.10760, Fig. 1), then PPO and online DPO against the
    // ensemble.
    let curve_prompts: Vec<Prompt> = eval_prompts.iter().take(64).cloned().collect();
    let ref_out: Vec<String> = sft_out.iter().take(curve_prompts.len()).cloned().collect();
    let ref_gold: Vec<f64> = sft_gold.iter().take(curve_prompts.len()).copied().collect();
    for (method, ensemble) in [
        (OnlineMethod::Grpo, false),
        (OnlineMethod::Grpo, true),
        (OnlineMethod::Ppo, true),
        (OnlineMethod::OnlineDpo, true),
    ] {
        if method.max_steps(cfg) == 0 {
            continue;
        }
        let used: &[Model] = if ensemble { &members } else { &members[..1] };
        let name = if ensemble {
            format!("{} (ensemble of {})", method.label(), used.len())
        } else {
            format!("{} (single RM)", method.label())
        };
        let ref_proxy = cx.score_aggregated(used, &curve_prompts, &ref_out)?;
        let probe = Probe { prompts: &curve_prompts, ref_proxy: &ref_proxy, ref_gold: &ref_gold, members: used };
        let curve = method == OnlineMethod::Grpo;
        let (policy, points) = cx.train_online(method, &base, &sft, &name, used, curve.then_some(&probe))?;
        if curve {
            overopt.push(OverOptCurve { name: name.clone(), points });
        }
        let (out, kl) = answer(&mut cx, &name, &policy, 6)?;
        rows.push(row_of(&cx, &name, &out, kl)?);
        outputs.push((name, out));
    }

    // Report.
    let best = rows.iter().skip(1).max_by(|a, b| a.gold_win_rate_vs_sft.total_cmp(&b.gold_win_rate_vs_sft)).cloned();
    let mut examples = Vec::new();
    if let Some(b) = &best {
        if let Some((_, outs)) = outputs.iter().find(|(name, _)| *name == b.name) {
            for (i, p) in eval_prompts.iter().enumerate().take(cfg.eval.n_examples) {
                examples.push(Example {
                    prompt: p.text.clone(),
                    method: b.name.clone(),
                    before: sft_out[i].clone(),
                    after: outs[i].clone(),
                    gold_before: sft_gold[i],
                    gold_after: cx.lab.gold.score(&p.text, &outs[i]),
                });
            }
        }
    }
    // Does the ensemble resist over-optimization here? Compare each single-RM curve with its
    // ensemble twin (curves come in that order: best-of-n, then GRPO).
    let mut notes = vec![
        "Over-optimization curves: best-of-n under each reward model (KL = log n − (n−1)/n, an upper bound) and GRPO against each (exact KL of the policy's samples to SFT). Proxy rewards are mapped onto the gold scale by matching mean and spread on SFT samples."
            .to_string(),
    ];
    let mut collapse_targets = Vec::new();
    for (what, pair) in ["best-of-n", "GRPO"].iter().zip(overopt.chunks(2)) {
        if let [single, ensemble] = pair {
            let gold = |c: &OverOptCurve| c.points.iter().map(|p| p.gold).collect::<Vec<f64>>();
            let (s, e) = (metrics::gold_collapse(&gold(single)), metrics::gold_collapse(&gold(ensemble)));
            notes.push(metrics::collapse_verdict(what, &gold(single), &gold(ensemble), 0.05));
            collapse_targets.push(Target {
                name: format!("{what}: gold collapse of the single RM minus the ensemble's ({s:.3} − {e:.3})"),
                value: s - e,
                threshold: 0.05,
            });
        }
    }
    let mut targets = vec![
        Target {
            name: format!(
                "reward-model accuracy vs noiseless gold (ensemble of {}; single RM {acc1:.3})",
                members.len()
            ),
            value: acc_e,
            threshold: 0.80,
        },
        Target {
            name: format!(
                "best method's gold win rate vs SFT ({})",
                best.as_ref().map(|b| b.name.as_str()).unwrap_or("-")
            ),
            value: best.as_ref().map(|b| b.gold_win_rate_vs_sft).unwrap_or(0.0),
            threshold: 0.70,
        },
    ];
    targets.extend(collapse_targets);
    let data = ReportData {
        title: "reins quickstart".into(),
        subtitle: format!(
            "seed {}, {} labelled pairs, {:.0} s on CPU",
            cfg.seed,
            records.len(),
            started.elapsed().as_secs_f64()
        ),
        targets,
        methods: rows,
        reward_models: rm_rows,
        annotators,
        overoptimization: overopt,
        examples,
        curves: Vec::new(),
        notes,
        config_toml: Some(cfg.to_toml()),
    };
    let report = Report { data: data.clone() }.write(Path::new(&cfg.output_dir))?;
    Ok(Outcome { report, data })
}

/// Where an RL run is measured: a fixed set of held-out prompts with the SFT policy's
/// samples' proxy and gold scores (the calibration anchor).
struct Probe<'a> {
    prompts: &'a [Prompt],
    ref_proxy: &'a [f64],
    ref_gold: &'a [f64],
    members: &'a [Model],
}

impl Ctx<'_> {
    /// The ensemble's `mean − λ·var` score (the plain score for one member) of responses.
    fn score_aggregated(&self, members: &[Model], prompts: &[Prompt], outs: &[String]) -> Result<Vec<f64>> {
        let items: Vec<(String, String)> = prompts.iter().zip(outs).map(|(p, o)| (p.text.clone(), o.clone())).collect();
        let all = self.score_members(members, &items)?;
        let lambda = self.cfg.reward_model.uncertainty_penalty;
        Ok((0..items.len())
            .map(|j| {
                let xs: Vec<f64> = all.iter().map(|m| m[j]).collect();
                metrics::mean(&xs) - lambda * metrics::std(&xs).powi(2)
            })
            .collect())
    }

    /// The reward a policy optimizes: one model's score, or the ensemble's `mean − λ·var`.
    fn reward_source(&self, members: &[Model]) -> Result<Box<dyn RewardSource>> {
        let mut sources: Vec<Box<dyn RewardSource>> = Vec::new();
        for m in members {
            sources.push(Box::new(ModelReward::new(m.clone()).map_err(stage("reward"))?));
        }
        if sources.len() == 1 {
            return Ok(sources.remove(0));
        }
        Ok(Box::new(EnsembleReward {
            members: sources,
            aggregation: reins_train::losses::EnsembleAggregation::MeanMinusVar {
                lambda: self.cfg.reward_model.uncertainty_penalty,
            },
        }))
    }

    /// Trains `method` from the SFT model against the reward models `members`, with the SFT
    /// policy as the KL reference (TRL semantics for each method). With a probe, every
    /// `max_steps / overoptimization_points` steps the policy is sampled on the probe
    /// prompts for gold, calibrated proxy and exact KL.
    fn train_online(
        &mut self,
        method: OnlineMethod,
        base: &Path,
        sft: &Model,
        name: &str,
        members: &[Model],
        probe: Option<&Probe>,
    ) -> Result<(Model, Vec<OverOptPoint>)> {
        let cfg = self.cfg;
        let steps = method.max_steps(cfg);
        let seed = cfg.seed + 11;
        let value_head = method == OnlineMethod::Ppo;
        let policy = self.load(base, LoadOptions { trainable: true, value_head, seed, ..Default::default() })?;
        let reward = self.reward_source(members)?;
        let reference = Reference::Model(Box::new(sft.clone()));
        let (learning_rate, batch_size, optimizer_steps) = match method {
            OnlineMethod::Grpo => (cfg.grpo.learning_rate, cfg.grpo.per_device_train_batch_size, steps),
            OnlineMethod::Ppo => {
                (cfg.ppo.learning_rate, cfg.ppo.per_device_train_batch_size, steps * cfg.ppo.num_ppo_epochs)
            }
            OnlineMethod::OnlineDpo => {
                (cfg.online_dpo.learning_rate, cfg.online_dpo.per_device_train_batch_size, steps)
            }
        };
        let opt = OptimConfig { learning_rate, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
        let optimizer = Optimizer::new(policy.params(), &opt, optimizer_steps).map_err(stage("optimizer"))?;
        let mut trainer = match method {
            OnlineMethod::Grpo => {
                let g = &cfg.grpo;
                let c = TrlGrpo {
                    num_generations: g.num_generations,
                    temperature: g.temperature,
                    seed,
                    ..Default::default()
                };
                let loss = GrpoLossConfig {
                    beta: g.beta,
                    max_completion_length: g.max_completion_length,
                    ..Default::default()
                };
                OnlineTrainer::Grpo(Box::new(
                    GrpoTrainer::new(policy, Some(reference), reward, c, loss, optimizer).map_err(stage("grpo"))?,
                ))
            }
            OnlineMethod::Ppo => {
                let p = &cfg.ppo;
                let c = TrlPpo {
                    num_ppo_epochs: p.num_ppo_epochs,
                    kl_coef: p.kl_coef,
                    cliprange: p.cliprange,
                    cliprange_value: p.cliprange_value,
                    vf_coef: p.vf_coef,
                    gamma: p.gamma,
                    lam: p.lam,
                    response_length: p.max_new_tokens,
                    temperature: p.temperature,
                    seed,
                    ..Default::default()
                };
                OnlineTrainer::Ppo(Box::new(
                    PpoTrainer::new(policy, None, reference, reward, c, optimizer).map_err(stage("ppo"))?,
                ))
            }
            OnlineMethod::OnlineDpo => {
                let o = &cfg.online_dpo;
                let c = TrlOnlineDpo {
                    max_new_tokens: o.max_new_tokens,
                    temperature: o.temperature,
                    seed,
                    ..Default::default()
                };
                let loss: DpoConfig =
                    serde_json::from_value(serde_json::json!({"beta": o.beta})).map_err(stage("online dpo config"))?;
                OnlineTrainer::OnlineDpo(Box::new(
                    OnlineDpoTrainer::new(policy, reference, reward, c, loss, optimizer)
                        .map_err(stage("online dpo"))?,
                ))
            }
        };
        let train_prompts = self.lab.world.prompts(Split::Train, steps * batch_size);
        let ids: Vec<Vec<u32>> = train_prompts.iter().map(|p| self.encode(&p.chat())).collect::<Result<_>>()?;
        let every = (steps / cfg.eval.overoptimization_points.max(1)).max(1);
        let mut points = Vec::new();
        if let Some(p) = probe {
            points.push(self.probe(sft, sft, p)?);
        }
        self.progress.stage(name, steps);
        for step in 0..steps {
            let batch: Vec<Vec<u32>> = ids.iter().cycle().skip(step * batch_size).take(batch_size).cloned().collect();
            let m = trainer.step(batch).map_err(stage("online RL"))?;
            let kl = m.get("kl").or_else(|| m.get("objective/kl")).copied().unwrap_or(0.0);
            self.progress.tick(&format!("reward {:.3} kl {kl:.3}", m.get("reward").copied().unwrap_or(f64::NAN)));
            if let Some(p) = probe {
                if (step + 1) % every == 0 || step + 1 == steps {
                    points.push(self.probe(&trainer.policy().detached(), sft, p)?);
                }
            }
        }
        Ok((trainer.policy().detached(), points))
    }

    /// Gold, calibrated proxy and exact KL of `policy`'s samples on the probe prompts.
    fn probe(&self, policy: &Model, sft: &Model, p: &Probe) -> Result<OverOptPoint> {
        let t = self.cfg.eval.temperature;
        let outs: Vec<String> = self
            .sample(policy, p.prompts, 1, t, self.cfg.eval.max_new_tokens, 7)?
            .into_iter()
            .map(|mut v| v.remove(0))
            .collect();
        let gold: Vec<f64> = p.prompts.iter().zip(&outs).map(|(q, o)| self.lab.gold.score(&q.text, o)).collect();
        let proxy = self.score_aggregated(p.members, p.prompts, &outs)?;
        Ok(OverOptPoint {
            kl: self.kl_to_reference(policy, sft, p.prompts, &outs)?,
            gold: metrics::mean(&gold),
            proxy: metrics::mean(&metrics::calibrate(&proxy, p.ref_proxy, p.ref_gold)),
        })
    }
    fn load(&self, dir: &Path, opts: LoadOptions) -> Result<Model> {
        Model::load(dir, &self.device, &opts).map_err(stage("model"))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tok.encode(text, false).map_err(stage("tokenize"))
    }

    /// Pretrains a fresh Llama on the corpus, then SFTs it; saves an HF folder at `dir`.
    fn pretrain_and_sft(&mut self, dir: &Path) -> Result<()> {
        let c = &self.cfg.model;
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let mut raw = llama_config(
            self.tok.vocab_size(),
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
            c.max_position_embeddings,
        );
        raw["rope_parameters"]["rope_theta"] = c.rope_theta.into();
        raw["eos_token_id"] = self.end_id.into();
        raw["pad_token_id"] = pad.into();
        let mcfg = ModelConfig::from_value(raw).map_err(stage("model config"))?;
        let mut w = random_weights(&mcfg, self.cfg.seed, &self.device).map_err(stage("model init"))?;
        let model =
            Model::from_weights(mcfg, &mut w, &self.device, &LoadOptions { trainable: true, ..Default::default() })
                .map_err(stage("model init"))?;
        let corpus = self.lab.world.corpus(self.cfg.pretrain.n_examples, self.cfg.sft.n_examples);
        let max = c.max_position_embeddings;
        let texts: Vec<(Vec<u32>, usize)> = corpus
            .pretrain
            .iter()
            .map(|t| Ok((self.encode(t)?.into_iter().take(max).collect(), 0)))
            .collect::<Result<_>>()?;
        let model = self.train_lm("pretrain", model, &texts, &self.cfg.pretrain.clone())?;
        let sft: Vec<(Vec<u32>, usize)> = corpus
            .sft
            .iter()
            .map(|e| {
                let (p, r) = e.chat_prompt_completion();
                let pi = self.encode(&p)?;
                let n = pi.len();
                let ids: Vec<u32> = pi.into_iter().chain(self.encode(&r)?).take(max).collect();
                Ok((ids, n))
            })
            .collect::<Result<_>>()?;
        let model = self.train_lm("sft", model, &sft, &self.cfg.sft.clone())?;
        // The tokenizer stage already wrote its files into `dir`.
        model.save_pretrained(dir).map_err(stage("save"))?;
        Ok(())
    }

    /// Next-token training on `(ids, prompt_len)`; the loss skips the first `prompt_len` targets.
    fn train_lm(&mut self, name: &str, model: Model, data: &[(Vec<u32>, usize)], b: &TrainBudget) -> Result<Model> {
        let opt = OptimConfig {
            learning_rate: b.learning_rate,
            warmup_steps: b.warmup_steps,
            lr_scheduler_type: SchedulerType::Cosine,
            ..Default::default()
        };
        let optimizer = Optimizer::new(model.params(), &opt, b.max_steps).map_err(stage("optimizer"))?;
        let mut trainer = SftTrainer::new(model, optimizer);
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ name.len() as u64);
        self.progress.stage(name, b.max_steps);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut cursor = data.len();
        for _ in 0..b.max_steps {
            let mut idx = Vec::new();
            while idx.len() < b.per_device_train_batch_size {
                if cursor == order.len() {
                    order.shuffle(&mut rng);
                    cursor = 0;
                }
                idx.push(order[cursor]);
                cursor += 1;
            }
            let rows: Vec<&(Vec<u32>, usize)> = idx.iter().map(|&i| &data[i]).collect();
            let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(1);
            let batch = SftBatch {
                input_ids: rows.iter().map(|r| pad_to(&r.0, t, pad)).collect(),
                attention_mask: Some(rows.iter().map(|r| pad_to(&vec![1u8; r.0.len()], t, 0)).collect()),
                labels: rows
                    .iter()
                    .map(|r| (0..t).map(|j| if j < r.1 || j >= r.0.len() { -100 } else { r.0[j] as i64 }).collect())
                    .collect(),
                position_ids: None,
            };
            let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("train"))?;
            self.progress.tick(&format!("loss {:.3}", m.get("loss").copied().unwrap_or(f64::NAN)));
        }
        Ok(trainer.model)
    }

    /// `n` completions per prompt (plain response texts).
    fn sample(
        &self,
        m: &Model,
        prompts: &[Prompt],
        n: usize,
        temperature: f64,
        max_new: usize,
        salt: u64,
    ) -> Result<Vec<Vec<String>>> {
        let mut ids = Vec::new();
        for p in prompts {
            let e = self.encode(&p.chat())?;
            for _ in 0..n {
                ids.push(e.clone());
            }
        }
        let cfg = SamplingConfig {
            max_new_tokens: max_new,
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            seed: self.cfg.seed.wrapping_mul(31).wrapping_add(salt),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(prompts.len());
        let mut texts = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(64) {
            let g = generate(m, chunk, &cfg, Hooks::default()).map_err(stage("generate"))?;
            for t in &g.tokens {
                let raw = self.tok.decode(t, false).map_err(stage("decode"))?;
                texts.push(chat::extract_response(&raw).0);
            }
        }
        for c in texts.chunks(n) {
            out.push(c.to_vec());
        }
        Ok(out)
    }

    /// Token ids of `prompt + completion` and the prompt length.
    fn pair_ids(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        Ok((self.encode(&chat::prompt(prompt))?, self.encode(&chat::completion(response))?))
    }

    fn train_reward_model(&mut self, base: &Path, data: &[crate::PreferenceRecord], member: u64) -> Result<Model> {
        let rm = &self.cfg.reward_model;
        let model = self.load(
            base,
            LoadOptions { trainable: true, score_head: Some(1), seed: self.cfg.seed + member, ..Default::default() },
        )?;
        let opt = OptimConfig {
            learning_rate: rm.learning_rate,
            lr_scheduler_type: SchedulerType::Linear,
            ..Default::default()
        };
        let optimizer = Optimizer::new(model.params(), &opt, rm.max_steps).map_err(stage("optimizer"))?;
        let mut trainer = RewardTrainer::new(model, optimizer, RewardLossConfig::default());
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let rows: Vec<(Vec<u32>, Vec<u32>)> = data
            .iter()
            .map(|r| {
                let (p, c) = self.pair_ids(&r.prompt, &r.chosen)?;
                let (_, x) = self.pair_ids(&r.prompt, &r.rejected)?;
                Ok(([p.clone(), c].concat(), [p, x].concat()))
            })
            .collect::<Result<_>>()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed + 100 + member);
        self.progress.stage(&format!("reward model {member}"), rm.max_steps);
        for _ in 0..rm.max_steps {
            let idx: Vec<usize> =
                (0..rm.per_device_train_batch_size).map(|_| rand::Rng::random_range(&mut rng, 0..rows.len())).collect();
            let seqs: Vec<&Vec<u32>> = idx.iter().map(|&i| &rows[i].0).chain(idx.iter().map(|&i| &rows[i].1)).collect();
            let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
            let batch = RewardBatch {
                input_ids: seqs.iter().map(|s| pad_to(s, t, pad)).collect(),
                attention_mask: seqs.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
                margin: None,
            };
            let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("reward model"))?;
            self.progress.tick(&format!("loss {:.3} acc {:.2}", m["loss"], m.get("accuracy").copied().unwrap_or(0.0)));
        }
        Ok(trainer.model.detached())
    }

    /// Mean ensemble score of `(prompt, response)` pairs.
    fn score_mean(&self, members: &[Model], items: &[(String, String)]) -> Result<Vec<f64>> {
        let all = self.score_members(members, items)?;
        Ok((0..items.len()).map(|j| all.iter().map(|m| m[j]).sum::<f64>() / all.len().max(1) as f64).collect())
    }

    /// Each member's score of `(prompt, response)` pairs: `[M][N]`.
    fn score_members(&self, members: &[Model], items: &[(String, String)]) -> Result<Vec<Vec<f64>>> {
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let seqs: Vec<Vec<u32>> = items
            .iter()
            .map(|(p, r)| {
                let (a, b) = self.pair_ids(p, r)?;
                Ok([a, b].concat())
            })
            .collect::<Result<_>>()?;
        let mut all = Vec::with_capacity(members.len());
        for m in members {
            let mut scores = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks(64) {
                let t = chunk.iter().map(Vec::len).max().unwrap_or(1);
                let batch = Batch::new(
                    chunk.iter().map(|s| pad_to(s, t, pad)).collect(),
                    chunk.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
                )
                .map_err(stage("score"))?;
                let s: Vec<f32> =
                    m.scores(&batch).and_then(|x| Ok(x.flatten_all()?.to_vec1()?)).map_err(stage("score"))?;
                scores.extend(s.iter().map(|&v| v as f64));
            }
            all.push(scores);
        }
        Ok(all)
    }

    fn train_dpo(&mut self, base: &Path, data: &[crate::PreferenceRecord]) -> Result<Model> {
        let d = &self.cfg.dpo;
        let policy = self.load(base, LoadOptions { trainable: true, ..Default::default() })?;
        let reference = self.load(base, LoadOptions::default())?;
        let opt = OptimConfig {
            learning_rate: d.learning_rate,
            lr_scheduler_type: SchedulerType::Linear,
            ..Default::default()
        };
        let optimizer = Optimizer::new(policy.params(), &opt, d.max_steps).map_err(stage("optimizer"))?;
        let loss: DpoConfig = serde_json::from_value(serde_json::json!({"beta": d.beta, "loss_type": d.loss_type}))
            .map_err(stage("dpo config"))?;
        let mut trainer =
            DpoTrainer::new(policy, Reference::Model(Box::new(reference)), loss, optimizer).map_err(stage("dpo"))?;
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let rows: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = data
            .iter()
            .map(|r| {
                let (p, c) = self.pair_ids(&r.prompt, &r.chosen)?;
                let (_, x) = self.pair_ids(&r.prompt, &r.rejected)?;
                Ok((p, c, x))
            })
            .collect::<Result<_>>()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed + 7);
        self.progress.stage("DPO", d.max_steps);
        for _ in 0..d.max_steps {
            let idx: Vec<usize> =
                (0..d.per_device_train_batch_size).map(|_| rand::Rng::random_range(&mut rng, 0..rows.len())).collect();
            let mut ids = Vec::new();
            let mut cm = Vec::new();
            for pick in [1, 2] {
                for &i in &idx {
                    let (p, c, x) = &rows[i];
                    let comp = if pick == 1 { c } else { x };
                    ids.push([p.clone(), comp.clone()].concat());
                    cm.push([vec![0u8; p.len()], vec![1u8; comp.len()]].concat());
                }
            }
            let t = ids.iter().map(Vec::len).max().unwrap_or(1);
            let batch = PreferenceBatch {
                attention_mask: ids.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
                input_ids: ids.iter().map(|s| pad_to(s, t, pad)).collect(),
                completion_mask: cm.iter().map(|s| pad_to(s, t, 0)).collect(),
                margin: None,
                strength: None,
                ref_logps: None,
            };
            let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("dpo"))?;
            self.progress.tick(&format!(
                "loss {:.3} margin {:.2}",
                m["loss"],
                m.get("rewards/margins").copied().unwrap_or(0.0)
            ));
        }
        Ok(trainer.policy.detached())
    }

    /// Mean over prompts of `Σ_t KL(π(·|y<t) ‖ π_ref(·|y<t))` along the policy's own
    /// completions: the exact per-token KL over the vocabulary, never negative.
    fn kl_to_reference(&self, policy: &Model, reference: &Model, prompts: &[Prompt], outs: &[String]) -> Result<f64> {
        let mut total = 0.0;
        for (p, o) in prompts.iter().zip(outs) {
            let (a, b) = self.pair_ids(&p.text, o)?;
            let n = a.len() + b.len();
            let batch = Batch::new(vec![[a.clone(), b].concat()], vec![vec![1u8; n]]).map_err(stage("kl"))?;
            let kl = (|| -> reins_model::Result<Vec<f32>> {
                let lp = reins_model::nn::log_softmax_last(&policy.detached().logits(&batch)?)?;
                let lq = reins_model::nn::log_softmax_last(&reference.detached().logits(&batch)?)?;
                let per_pos: Tensor = (lp.exp()? * (&lp - &lq)?)?.sum(candle_core::D::Minus1)?;
                Ok(per_pos.flatten_all()?.to_vec1()?)
            })()
            .map_err(stage("kl"))?;
            // Positions a.len()-1 .. n-2 predict the completion tokens.
            total += kl[a.len() - 1..n - 1].iter().map(|&x| x as f64).sum::<f64>();
        }
        Ok(total / prompts.len().max(1) as f64)
    }
}

/// The online methods the lab trains against its reward models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnlineMethod {
    Grpo,
    Ppo,
    OnlineDpo,
}

impl OnlineMethod {
    fn label(self) -> &'static str {
        match self {
            OnlineMethod::Grpo => "GRPO",
            OnlineMethod::Ppo => "PPO",
            OnlineMethod::OnlineDpo => "online DPO",
        }
    }

    fn max_steps(self, cfg: &LabConfig) -> usize {
        match self {
            OnlineMethod::Grpo => cfg.grpo.max_steps,
            OnlineMethod::Ppo => cfg.ppo.max_steps,
            OnlineMethod::OnlineDpo => cfg.online_dpo.max_steps,
        }
    }
}

/// One step on a batch of prompts, whichever trainer runs.
enum OnlineTrainer {
    Grpo(Box<GrpoTrainer>),
    Ppo(Box<PpoTrainer>),
    OnlineDpo(Box<OnlineDpoTrainer>),
}

impl OnlineTrainer {
    fn step(&mut self, prompts: Vec<Vec<u32>>) -> reins_train::Result<reins_train::trainers::Metrics> {
        match self {
            OnlineTrainer::Grpo(t) => t.train_step(&[prompts]),
            OnlineTrainer::Ppo(t) => t.train_step(&prompts),
            OnlineTrainer::OnlineDpo(t) => t.train_step(&[prompts]),
        }
    }

    fn policy(&self) -> &Model {
        match self {
            OnlineTrainer::Grpo(t) => &t.policy,
            OnlineTrainer::Ppo(t) => &t.policy,
            OnlineTrainer::OnlineDpo(t) => &t.policy,
        }
    }
}

fn pad_to<T: Clone>(row: &[T], t: usize, value: T) -> Vec<T> {
    let mut r = row.to_vec();
    r.resize(t, value);
    r
}

fn bootstrap(records: &[crate::PreferenceRecord], seed: u64) -> Vec<crate::PreferenceRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..records.len()).map(|_| records[rand::Rng::random_range(&mut rng, 0..records.len())].clone()).collect()
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
