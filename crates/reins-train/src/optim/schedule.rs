//! Learning-rate schedules with Hugging Face transformers semantics
//! (`transformers.optimization.get_*_schedule_with_warmup`).
//!
//! `lr(k) = base_lr · λ(k)` where `k` counts scheduler steps taken so far: the first optimizer
//! step uses `k = 0`, which is why warmup starts at lr 0.

use serde::{Deserialize, Serialize};

/// TRL/HF `lr_scheduler_type` values supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    /// Linear warmup then linear decay to 0 at `num_training_steps`. HF default.
    #[default]
    Linear,
    /// Warmup then half-cosine decay to 0 (`num_cycles = 0.5`).
    Cosine,
    /// Constant, no warmup.
    Constant,
    /// Linear warmup then constant.
    ConstantWithWarmup,
}

/// HF's warmup steps: `warmup_steps` if > 0, else `ceil(warmup_ratio · num_training_steps)`.
pub fn warmup_steps(warmup_steps: usize, warmup_ratio: f64, num_training_steps: usize) -> usize {
    if warmup_steps > 0 {
        warmup_steps
    } else {
        (warmup_ratio * num_training_steps as f64).ceil() as usize
    }
}

/// A schedule resolved to step counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Which schedule.
    pub kind: SchedulerType,
    /// Peak learning rate.
    pub base_lr: f64,
    /// Warmup steps.
    pub warmup_steps: usize,
    /// Total optimizer steps.
    pub num_training_steps: usize,
    /// Cosine cycles; HF default 0.5 (one half-cosine to 0).
    pub num_cycles: f64,
}

impl LrSchedule {
    /// A schedule with HF's default `num_cycles = 0.5`.
    pub fn new(kind: SchedulerType, base_lr: f64, warmup_steps: usize, num_training_steps: usize) -> Self {
        Self { kind, base_lr, warmup_steps, num_training_steps, num_cycles: 0.5 }
    }

    /// The multiplier λ(k) of HF's `LambdaLR` lambdas.
    pub fn lambda(&self, k: usize) -> f64 {
        let (k, w, n) = (k as f64, self.warmup_steps as f64, self.num_training_steps as f64);
        let warm = |k: f64| k / w.max(1.0);
        match self.kind {
            SchedulerType::Constant => 1.0,
            SchedulerType::ConstantWithWarmup => {
                if k < w {
                    warm(k)
                } else {
                    1.0
                }
            }
            SchedulerType::Linear => {
                if k < w {
                    warm(k)
                } else {
                    ((n - k) / (n - w).max(1.0)).max(0.0)
                }
            }
            SchedulerType::Cosine => {
                if k < w {
                    warm(k)
                } else {
                    let progress = (k - w) / (n - w).max(1.0);
                    let c = (std::f64::consts::PI * self.num_cycles * 2.0 * progress).cos();
                    (0.5 * (1.0 + c)).max(0.0)
                }
            }
        }
    }

    /// Learning rate for the optimizer step taken after `k` scheduler steps.
    pub fn lr(&self, k: usize) -> f64 {
        self.base_lr * self.lambda(k)
    }
}
