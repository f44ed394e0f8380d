//! The update step every trainer shares: gradient accumulation, the mean over data-parallel
//! ranks ([`crate::parallel`]), global-norm clipping, the LR schedule and AdamW — HF
//! `Trainer`'s order of operations.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::adamw::{AdamW, AdamWConfig};
use super::clip::clip_grad_norm;
use super::schedule::{warmup_steps, LrSchedule, SchedulerType};
use crate::Result;

/// Optimizer fields of HF `TrainingArguments` (same names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate (default 5e-5; TRL's DPO/SFT/reward configs override it).
    pub learning_rate: f64,
    /// Decoupled weight decay (default 0.0).
    pub weight_decay: f64,
    /// AdamW β₁ (default 0.9).
    pub adam_beta1: f64,
    /// AdamW β₂ (default 0.999).
    pub adam_beta2: f64,
    /// AdamW ε (default 1e-8).
    pub adam_epsilon: f64,
    /// Global gradient-norm clip; 0 disables (default 1.0).
    pub max_grad_norm: f64,
    /// `linear` (default), `cosine`, `constant` or `constant_with_warmup`.
    pub lr_scheduler_type: SchedulerType,
    /// Warm-up steps; overrides `warmup_ratio` when > 0 (default 0).
    pub warmup_steps: usize,
    /// Warm-up as a fraction of the training steps (default 0.0).
    pub warmup_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            learning_rate: 5e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            lr_scheduler_type: SchedulerType::Linear,
            warmup_steps: 0,
            warmup_ratio: 0.0,
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Global gradient norm before clipping (TRL's `grad_norm`).
    pub grad_norm: f64,
    /// Learning rate used for this step (TRL's `learning_rate`).
    pub learning_rate: f64,
}

/// AdamW + clipping + schedule over a fixed set of parameters.
pub struct Optimizer {
    pub adamw: AdamW,
    pub schedule: LrSchedule,
    vars: Vec<Var>,
    max_grad_norm: f64,
    /// Scheduler steps taken: the schedule position, saved in every checkpoint. One per
    /// optimizer step, or one per update for a trainer that takes several optimizer steps at
    /// one learning rate ([`Optimizer::step_within_update`]).
    pub step: usize,
    pending: Option<GradStore>,
}

impl Optimizer {
    pub fn new(params: &[(String, Var)], cfg: &OptimConfig, num_training_steps: usize) -> Result<Self> {
        let adamw = AdamW::new(
            params.to_vec(),
            AdamWConfig {
                lr: cfg.learning_rate,
                beta1: cfg.adam_beta1,
                beta2: cfg.adam_beta2,
                eps: cfg.adam_epsilon,
                weight_decay: cfg.weight_decay,
            },
        )?;
        let warmup = warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, num_training_steps);
        Ok(Optimizer {
            adamw,
            schedule: LrSchedule::new(cfg.lr_scheduler_type, cfg.learning_rate, warmup, num_training_steps),
            vars: params.iter().map(|(_, v)| v.clone()).collect(),
            max_grad_norm: cfg.max_grad_norm,
            step: 0,
            pending: None,
        })
    }

    /// Adds a micro-batch's gradients (of a loss already divided by the accumulation count).
    pub fn accumulate(&mut self, grads: GradStore) -> Result<()> {
        match &mut self.pending {
            None => self.pending = Some(grads),
            Some(acc) => {
                for v in &self.vars {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        let sum = match acc.get(v.as_tensor()) {
                            Some(a) => (a + g)?,
                            None => g.clone(),
                        };
                        acc.insert(v.as_tensor(), sum);
                    }
                }
            }
        }
        Ok(())
    }

    /// Clips the accumulated gradients, applies AdamW at the scheduled rate and clears them;
    /// then advances the schedule.
    pub fn step(&mut self) -> Result<StepStats> {
        let s = self.step_within_update()?;
        self.advance_schedule();
        Ok(s)
    }

    /// As [`Optimizer::step`], without advancing the schedule: the optimizer steps of one
    /// update share its learning rate, and the schedule counts updates. PPO does this for its
    /// epochs x mini-batches (TRL's `PPOTrainer` steps its scheduler once per rollout batch).
    /// Call [`Optimizer::advance_schedule`] once the update is done.
    pub fn step_within_update(&mut self) -> Result<StepStats> {
        let grads =
            self.pending.take().ok_or_else(|| crate::TrainError::Input("optimizer step without gradients".into()))?;
        let grads = self.mean_over_ranks(grads)?;
        let (grad_norm, coef) = if self.max_grad_norm > 0.0 {
            clip_grad_norm(&self.vars, &grads, self.max_grad_norm)?
        } else {
            (super::clip::global_grad_norm(&self.vars, &grads)?, 1.0)
        };
        let learning_rate = self.schedule.lr(self.step);
        self.adamw.step(&grads, learning_rate, coef)?;
        Ok(StepStats { grad_norm, learning_rate })
    }

    /// The accumulated gradients averaged over the data-parallel ranks, in one all-reduce of all
    /// of them (a parameter without a gradient on some rank counts as zero there).
    fn mean_over_ranks(&self, mut grads: GradStore) -> Result<GradStore> {
        if crate::parallel::world().world_size() == 1 {
            return Ok(grads);
        }
        let mut flat: Vec<f32> = Vec::new();
        for v in &self.vars {
            match grads.get(v.as_tensor()) {
                Some(g) => flat.extend(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
                None => flat.extend(std::iter::repeat_n(0f32, v.elem_count())),
            }
        }
        crate::parallel::mean_over_ranks(&mut flat)?;
        let mut at = 0;
        for v in &self.vars {
            let n = v.elem_count();
            let g = Tensor::from_slice(&flat[at..at + n], v.shape(), v.device())?.to_dtype(v.dtype())?;
            grads.insert(v.as_tensor(), g);
            at += n;
        }
        Ok(grads)
    }

    /// Moves the schedule on by one step.
    pub fn advance_schedule(&mut self) {
        self.step += 1;
    }
}
