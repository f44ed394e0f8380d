//! Optimizer: fused in-place AdamW, global grad-norm clipping, LR schedules.

pub mod adamw;
pub mod clip;
pub mod optimizer;
pub mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_coef, clip_grad_norm, global_grad_norm};
pub use schedule::{warmup_steps, LrSchedule, SchedulerType};
