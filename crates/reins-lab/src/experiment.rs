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
//! This file tells that story top to bottom; how each model is trained and queried is in
//! `experiment/offline.rs` (base model, reward models, DPO, sampling, scoring, KL) and
//! `experiment/online.rs` (GRPO, PPO, online DPO and the over-optimization probe).

use std::path::{Path, PathBuf};

use candle_core::Device;
use reins_data::HfTokenizer;
use reins_model::Model;

use crate::metrics;
use crate::report::{Example, MethodRow, OverOptCurve, Report, ReportData, ReportPaths, Target};
use crate::{Lab, LabConfig, LabError, Prompt, Split};

mod evaluation;
mod offline;
mod online;
pub mod stages;

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
pub fn quickstart(cx: &mut Session, base_model: &stages::Base, started: std::time::Instant) -> Result<Outcome> {
    let cfg: &LabConfig = cx.cfg;
    let base = base_model.dir.clone();
    let sft = base_model.sft.clone();

    // Pairs from the SFT policy, labelled by the simulated population.
    let train_prompts = cx.lab.world.prompts(Split::Train, cfg.pairs.n_prompts);
    let stages::Labelled { pairs, labels, records } = cx.labelled_pairs(&sft, &train_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let annotators = cx.lab.population.agreement_rows(&cx.lab.gold, &pairs, &labels);

    // Reward models: member 0 on all labels, the others on bootstrap resamples.
    let members = cx.reward_models(base_model, &records, cfg.reward_model.ensemble_size)?;
    let rm_rows = cx.reward_model_accuracy(&sft, &members)?;
    let (acc1, acc_e) = (rm_rows[0].accuracy_vs_gold, rm_rows[1].accuracy_vs_gold);

    // Policies, evaluated on the test prompts.
    let eval_prompts = cx.lab.world.prompts(Split::Test, cfg.eval.n_prompts);
    let (t, n_new) = (cfg.eval.temperature, cfg.eval.max_new_tokens);
    cx.progress.stage("evaluating SFT", 1);
    let sft_out: Vec<String> =
        cx.sample(&sft, &eval_prompts, 1, t, n_new, 3)?.into_iter().map(|mut v| v.remove(0)).collect();
    cx.progress.tick("done");
    let gold_of = |cx: &Session, outs: &[String]| -> Vec<f64> {
        eval_prompts.iter().zip(outs).map(|(p, o)| cx.lab.gold.score(&p.text, o)).collect()
    };
    let sft_gold = gold_of(cx, &sft_out);
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
    // A policy's answers to the test prompts (one sample each) and its KL to SFT.
    let answer = |cx: &mut Session, name: &str, policy: &Model, seed: u64| -> Result<(Vec<String>, f64)> {
        cx.progress.stage(&format!("evaluating {name}"), 1);
        let out: Vec<String> =
            cx.sample(policy, &eval_prompts, 1, t, n_new, seed)?.into_iter().map(|mut v| v.remove(0)).collect();
        cx.progress.tick("done");
        let kl = cx.kl_to_reference(policy, &sft, &eval_prompts, &out)?;
        Ok((out, kl))
    };
    // A method's row: gold and proxy (ensemble mean) reward of its answers.
    let row_of = |cx: &Session, name: &str, out: &[String], kl: f64| -> Result<MethodRow> {
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
    let (dpo_out, kl) = answer(cx, &name, &dpo, 4)?;
    rows.push(row_of(cx, &name, &dpo_out, kl)?);
    outputs.push((name, dpo_out));

    // Best-of-n against the ensemble, with its over-optimization curves.
    let evaluation::BestOfN { n, picks: bon, curves: mut overopt } = cx.best_of_n(&sft, &members, &eval_prompts)?;
    let name = format!("best-of-{n} (ensemble)");
    rows.push(row_of(cx, &name, &bon, metrics::best_of_n_kl(n))?);
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
        let (out, kl) = answer(cx, &name, &policy, 6)?;
        rows.push(row_of(cx, &name, &out, kl)?);
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
            notes.push(metrics::collapse_verdict(what, s, e));
            collapse_targets.push(Target {
                name: format!("{what}: gold collapse of the single RM minus the ensemble's ({s:.3} − {e:.3})"),
                value: s - e,
                threshold: metrics::COLLAPSE_TOLERANCE,
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
