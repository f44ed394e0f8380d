//! The online stage of the experiment: GRPO, PPO and online DPO trained against the lab's
//! reward models (one trainer loop for all three), with the over-optimization probe that
//! measures gold, proxy and KL along the way.

use std::path::Path;

use reins_model::{LoadOptions, Model};
use reins_train::judges::PairwiseJudge;
use reins_train::losses::ppo::GrpoLossConfig;
use reins_train::losses::DpoConfig;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::rewards::{EnsembleReward, ModelReward, RewardSource};
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::grpo::{GrpoConfig as TrlGrpo, GrpoTrainer};
use reins_train::trainers::nash_md::{NashMdConfig, NashMdTrainer, Preferences};
use reins_train::trainers::online_dpo::{OnlineDpoConfig as TrlOnlineDpo, OnlineDpoTrainer};
use reins_train::trainers::ppo::{PpoConfig as TrlPpo, PpoTrainer};
use reins_train::trainers::rloo::{RlooConfig, RlooTrainer};

use crate::metrics;
use crate::report::{OverOptCurve, OverOptPoint};
use crate::{LabConfig, Prompt, Split};

use super::evaluation::Scoreboard;
use super::stages::Base;
use super::{stage, Result, Session};

/// Where an RL run is measured: a fixed set of test prompts with the SFT policy's
/// samples' proxy and gold scores (the calibration anchor).
pub(crate) struct Probe<'a> {
    pub(crate) prompts: &'a [Prompt],
    pub(crate) ref_proxy: &'a [f64],
    pub(crate) ref_gold: &'a [f64],
    pub(crate) members: &'a [Model],
}

impl Session<'_> {
    /// Stage *online methods*: GRPO against the single RM and against the ensemble, each with
    /// its over-optimization curve (gold, proxy and KL along the way on the first 64 test
    /// prompts; Gao et al., arXiv:2210.10760, Fig. 1), then PPO and online DPO against the
    /// ensemble. Each policy joins the scoreboard; a method with `max_steps = 0` is skipped.
    pub(crate) fn online_methods(
        &mut self,
        base: &Base,
        members: &[Model],
        board: &mut Scoreboard,
    ) -> Result<Vec<OverOptCurve>> {
        let cfg = self.cfg;
        let curve_prompts: Vec<Prompt> = board.prompts.iter().take(64).cloned().collect();
        let ref_out: Vec<String> = board.sft.outs.iter().take(curve_prompts.len()).cloned().collect();
        let ref_gold: Vec<f64> = board.sft.gold.iter().take(curve_prompts.len()).copied().collect();
        let mut curves = Vec::new();
        for (method, ensemble) in [
            (OnlineMethod::Grpo, false),
            (OnlineMethod::Grpo, true),
            (OnlineMethod::Ppo, true),
            (OnlineMethod::OnlineDpo, true),
        ] {
            if method.max_steps(cfg) == 0 {
                continue;
            }
            let used: &[Model] = if ensemble { members } else { &members[..1] };
            let name = if ensemble {
                format!("{} (ensemble of {})", method.label(), used.len())
            } else {
                format!("{} (single RM)", method.label())
            };
            let ref_proxy = self.score_aggregated(used, &curve_prompts, &ref_out)?;
            let probe = Probe { prompts: &curve_prompts, ref_proxy: &ref_proxy, ref_gold: &ref_gold, members: used };
            let curve = method == OnlineMethod::Grpo;
            let (policy, points) =
                self.train_online(method, &base.dir, &base.sft, &name, used, curve.then_some(&probe))?;
            if curve {
                curves.push(OverOptCurve { name: name.clone(), points });
            }
            self.score_policy(board, base, members, &name, &policy, 6)?;
        }
        Ok(curves)
    }

    /// The ensemble's `mean − λ·var` score (the plain score for one member) of responses.
    pub(crate) fn score_aggregated(&self, members: &[Model], prompts: &[Prompt], outs: &[String]) -> Result<Vec<f64>> {
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
    pub(crate) fn reward_source(&self, members: &[Model]) -> Result<Box<dyn RewardSource>> {
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
    pub(crate) fn train_online(
        &mut self,
        method: OnlineMethod,
        base: &Path,
        sft: &Model,
        name: &str,
        members: &[Model],
        probe: Option<&Probe>,
    ) -> Result<(Model, Vec<OverOptPoint>)> {
        self.train_online_with(method, base, sft, name, members, probe, None)
    }

    /// [`Session::train_online`], with Nash-MD's preferences from `judge` (a pairwise judge of
    /// token ids) instead of the reward models' Bradley–Terry probability.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_online_with(
        &mut self,
        method: OnlineMethod,
        base: &Path,
        sft: &Model,
        name: &str,
        members: &[Model],
        probe: Option<&Probe>,
        judge: Option<Box<dyn PairwiseJudge<[u32]>>>,
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
            OnlineMethod::OnlineDpo | OnlineMethod::NashMd { .. } | OnlineMethod::Rloo => {
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
            OnlineMethod::NashMd { mixture_coef } => {
                // Online DPO's budget and β (TRL's NashMDConfig extends OnlineDPOConfig).
                let o = &cfg.online_dpo;
                let c = NashMdConfig { beta: o.beta, mixture_coef, ..Default::default() };
                let sampling = TrlOnlineDpo {
                    max_new_tokens: o.max_new_tokens,
                    temperature: o.temperature,
                    seed,
                    ..Default::default()
                };
                let preferences = match judge {
                    Some(j) => Preferences::Judge(j),
                    None => Preferences::Reward(reward),
                };
                OnlineTrainer::NashMd(Box::new(
                    NashMdTrainer::new(policy, reference, preferences, c, sampling, optimizer)
                        .map_err(stage("nash-md"))?,
                ))
            }
            OnlineMethod::Rloo => {
                // REINFORCE with the leave-one-out baseline on two samples per prompt and a KL
                // penalty β: RLHF at online DPO's budget.
                let o = &cfg.online_dpo;
                let c = RlooConfig {
                    num_generations: 2,
                    beta: o.beta,
                    max_completion_length: o.max_new_tokens,
                    temperature: o.temperature,
                    seed,
                    ..Default::default()
                };
                OnlineTrainer::Rloo(Box::new(
                    RlooTrainer::new(policy, Some(reference), reward, c, optimizer).map_err(stage("rloo"))?,
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
            let kl = m.get("kl").or_else(|| m.get("objective/kl")).or_else(|| m.get("loss/kl")).copied().unwrap_or(0.0);
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
    pub(crate) fn probe(&self, policy: &Model, sft: &Model, p: &Probe) -> Result<OverOptPoint> {
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
}

/// The online methods the lab trains against its reward models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OnlineMethod {
    Grpo,
    Ppo,
    OnlineDpo,
    /// Nash-MD at online DPO's budget, with the opponent's mixture coefficient.
    NashMd {
        mixture_coef: f64,
    },
    /// RLOO (two samples per prompt) at online DPO's budget.
    Rloo,
}

impl OnlineMethod {
    pub(crate) fn label(self) -> &'static str {
        match self {
            OnlineMethod::Grpo => "GRPO",
            OnlineMethod::Ppo => "PPO",
            OnlineMethod::OnlineDpo => "online DPO",
            OnlineMethod::NashMd { .. } => "Nash-MD",
            OnlineMethod::Rloo => "RLOO",
        }
    }

    pub(crate) fn max_steps(self, cfg: &LabConfig) -> usize {
        match self {
            OnlineMethod::Grpo => cfg.grpo.max_steps,
            OnlineMethod::Ppo => cfg.ppo.max_steps,
            OnlineMethod::OnlineDpo | OnlineMethod::NashMd { .. } | OnlineMethod::Rloo => cfg.online_dpo.max_steps,
        }
    }
}

/// One step on a batch of prompts, whichever trainer runs.
pub(crate) enum OnlineTrainer {
    Grpo(Box<GrpoTrainer>),
    Ppo(Box<PpoTrainer>),
    OnlineDpo(Box<OnlineDpoTrainer>),
    NashMd(Box<NashMdTrainer>),
    Rloo(Box<RlooTrainer>),
}

impl OnlineTrainer {
    pub(crate) fn step(&mut self, prompts: Vec<Vec<u32>>) -> reins_train::Result<reins_train::trainers::Metrics> {
        match self {
            OnlineTrainer::Grpo(t) => t.train_step(&[prompts]),
            OnlineTrainer::Ppo(t) => t.train_step(&prompts),
            OnlineTrainer::OnlineDpo(t) => t.train_step(&[prompts]),
            OnlineTrainer::NashMd(t) => t.train_step(&[prompts]),
            OnlineTrainer::Rloo(t) => t.train_step(&[prompts]),
        }
    }

    pub(crate) fn policy(&self) -> &Model {
        match self {
            OnlineTrainer::Grpo(t) => &t.policy,
            OnlineTrainer::Ppo(t) => &t.policy,
            OnlineTrainer::OnlineDpo(t) => &t.policy,
            OnlineTrainer::NashMd(t) => &t.policy,
            OnlineTrainer::Rloo(t) => &t.policy,
        }
    }
}
