//! PPO as the lab's experiments run it: one arm = the lab's `[ppo]` settings with the changes
//! an experiment studies (learning-rate scale, KL penalty, value clipping, gradient clipping,
//! reward normalisation, PF-PPO's sample filter, MA-RLHF's macro actions).

use std::cell::RefCell;

use reins_model::{LoadOptions, Model};
use reins_train::losses::running::RunningMoments;
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::rewards::fine_grained::HolisticReward;
use reins_train::rewards::{ModelReward, RewardSource};
use reins_train::rl::filter::{FilterChoice, PolicyFilter};
use reins_train::rl::macro_actions::Termination;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::ppo::{PpoConfig as TrlPpo, PpoTrainer};

use super::token_text::GoldSource;
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::PreferenceRecord;
use crate::{LabError, Split};

/// What one PPO arm changes from the lab's `[ppo]` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PpoArm {
    pub name: &'static str,
    /// Multiplies `ppo.learning_rate`.
    pub lr_scale: f64,
    /// Replaces `ppo.kl_coef` when set.
    pub kl_coef: Option<f64>,
    /// Replaces `ppo.cliprange_value` when set (a huge value turns value clipping off).
    pub cliprange_value: Option<f64>,
    /// Global gradient-norm clip; 0 disables.
    pub max_grad_norm: f64,
    /// Normalise rewards by their running mean and deviation, then clip to ± this.
    pub reward_clip: Option<f64>,
    /// PF-PPO: samples per prompt (1 = plain PPO); the filter is chosen by R².
    pub pf_num_samples: usize,
    /// MA-RLHF: macro actions of this many tokens (fixed n-gram termination); 1 = plain PPO.
    pub ngram: usize,
}

impl PpoArm {
    /// The lab's PPO as configured.
    pub fn lab(name: &'static str) -> PpoArm {
        PpoArm {
            name,
            lr_scale: 1.0,
            kl_coef: None,
            cliprange_value: None,
            max_grad_norm: 1.0,
            reward_clip: None,
            pf_num_samples: 1,
            ngram: 1,
        }
    }
}

/// PPO from SFT against `rm`; with `choose` (dev prompts and the actual-score judge) and
/// `pf_num_samples ≥ 2`, PF-PPO with its filter chosen before training. Returns the policy
/// and the R² of each candidate filter (empty without a choice).
pub(crate) fn train_ppo(
    s: &mut Session,
    base: &Base,
    rm: &[Model],
    arm: &PpoArm,
    choose: Option<(&[Vec<u32>], &GoldSource)>,
) -> Result<(Model, Vec<(PolicyFilter, f64)>), LabError> {
    let reward = s.reward_source(rm)?;
    train_ppo_with(s, base, reward, arm, choose)
}

/// [`train_ppo`] against any reward source (Fine-Grained RLHF's dense rewards).
pub(crate) fn train_ppo_with(
    s: &mut Session,
    base: &Base,
    mut reward: Box<dyn RewardSource>,
    arm: &PpoArm,
    choose: Option<(&[Vec<u32>], &GoldSource)>,
) -> Result<(Model, Vec<(PolicyFilter, f64)>), LabError> {
    let cfg = s.cfg().clone();
    let p = &cfg.ppo;
    let seed = cfg.seed + 11;
    let policy = s.load(&base.dir, LoadOptions { trainable: true, value_head: true, seed, ..Default::default() })?;
    let opt = OptimConfig {
        learning_rate: p.learning_rate * arm.lr_scale,
        lr_scheduler_type: SchedulerType::Constant,
        max_grad_norm: arm.max_grad_norm,
        ..Default::default()
    };
    let optimizer =
        Optimizer::new(policy.params(), &opt, p.max_steps * p.num_ppo_epochs).map_err(stage("optimizer"))?;
    let filtered = choose.is_some() && arm.pf_num_samples >= 2;
    let c = TrlPpo {
        num_ppo_epochs: p.num_ppo_epochs,
        kl_coef: arm.kl_coef.unwrap_or(p.kl_coef),
        cliprange: p.cliprange,
        cliprange_value: arm.cliprange_value.unwrap_or(p.cliprange_value),
        vf_coef: p.vf_coef,
        gamma: p.gamma,
        lam: p.lam,
        response_length: p.max_new_tokens,
        temperature: p.temperature,
        seed,
        pf_filter: if filtered { PolicyFilter::Auto } else { PolicyFilter::None },
        pf_num_samples: if filtered { arm.pf_num_samples } else { 1 },
        termination_condition: if arm.ngram > 1 { Termination::Fixed } else { Termination::None },
        ngram: arm.ngram.max(1),
        ..Default::default()
    };
    if let Some(clip) = arm.reward_clip {
        reward = Box::new(NormalizedReward { inner: reward, moments: RefCell::new(RunningMoments::default()), clip });
    }
    let reference = Reference::Model(Box::new(base.sft.clone()));
    let mut trainer = PpoTrainer::new(policy, None, reference, reward, c, optimizer).map_err(stage("ppo"))?;
    let mut r2 = Vec::new();
    if let (true, Some((dev, judge))) = (filtered, choose) {
        let choice: FilterChoice = trainer.choose_filter(dev, judge).map_err(stage("pf-ppo filter choice"))?;
        r2 = choice.r2;
    }
    let bs = p.per_device_train_batch_size;
    let train = s.lab().world.prompts(Split::Train, p.max_steps * bs);
    let ids: Vec<Vec<u32>> = train.iter().map(|q| s.encode(&q.chat())).collect::<Result<_, _>>()?;
    s.progress.stage(arm.name, p.max_steps);
    for step in 0..p.max_steps {
        let batch: Vec<Vec<u32>> = ids.iter().cycle().skip(step * bs).take(bs).cloned().collect();
        let m = trainer.train_step(&batch).map_err(stage("ppo"))?;
        s.progress.tick(&format!("reward {:.3}", m.get("reward").copied().unwrap_or(f64::NAN)));
    }
    Ok((trainer.policy.detached(), r2))
}

/// The mean and deviation of `rm`'s scores on the responses of its training pairs.
pub(crate) fn training_moments(s: &Session, rm: &Model, records: &[PreferenceRecord]) -> Result<(f32, f32), LabError> {
    let (mut prompts, mut completions) = (Vec::new(), Vec::new());
    for r in records {
        for resp in [&r.chosen, &r.rejected] {
            let (p, c) = s.pair_ids(&r.prompt, resp)?;
            prompts.push(p);
            completions.push(c);
        }
    }
    let source = ModelReward::new(rm.clone()).map_err(stage("reward"))?;
    let scores: Vec<f64> =
        source.score(&prompts, &completions).map_err(stage("reward"))?.into_iter().map(f64::from).collect();
    Ok((crate::metrics::mean(&scores) as f32, crate::metrics::std(&scores).max(1e-6) as f32))
}

/// `w·(s − μ)/σ` of `rm`, with `(μ, σ)` from [`training_moments`].
pub(crate) fn standardised_reward(
    rm: &Model,
    (mean, std): (f32, f32),
    weight: f32,
) -> Result<HolisticReward, LabError> {
    let source = Box::new(ModelReward::new(rm.clone()).map_err(stage("reward"))?);
    Ok(HolisticReward { source, weight, mean, std })
}

/// Reward normalisation and clipping of PPO-max (Zheng et al., "Secrets of RLHF in Large
/// Language Models Part I: PPO", arXiv:2307.04964, §5.3.1): each batch's scores update running
/// moments, then `clip((r − mean) / std, −c, c)`.
struct NormalizedReward {
    inner: Box<dyn RewardSource>,
    moments: RefCell<RunningMoments>,
    clip: f64,
}

impl RewardSource for NormalizedReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> reins_train::Result<Vec<f32>> {
        let raw = self.inner.score(prompts, completions)?;
        let xs: Vec<f64> = raw.iter().map(|&x| x as f64).collect();
        let m = self.moments.borrow().update(&xs);
        *self.moments.borrow_mut() = m;
        let sd = m.std.max(1e-8);
        Ok(xs.iter().map(|x| ((x - m.mean) / sd).clamp(-self.clip, self.clip) as f32).collect())
    }

    fn name(&self) -> &str {
        "normalized"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<f32>);
    impl RewardSource for Fixed {
        fn score(&self, _: &[Vec<u32>], _: &[Vec<u32>]) -> reins_train::Result<Vec<f32>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn normalized_rewards_are_centred_and_clipped() {
        let r = NormalizedReward {
            inner: Box::new(Fixed(vec![0.0, 10.0, 20.0, 1000.0])),
            moments: RefCell::new(RunningMoments::default()),
            clip: 1.0,
        };
        let empty = vec![Vec::new(); 4];
        let out = r.score(&empty, &empty).unwrap();
        assert!(out.iter().all(|x| (-1.0..=1.0).contains(x)), "{out:?}");
        assert_eq!(out[3], 1.0);
        assert!(out[0] < 0.0);
    }
}
