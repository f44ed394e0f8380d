//! reins-train: pure RLHF losses, advantage estimators and the optimizer.
//!
//! Everything in [`losses`] and [`rl`] is a free function from tensors to tensors with no
//! trainer state, tested against reference numbers re-derived from TRL 1.16 / PyTorch.
//! [`optim`] holds the fused in-place AdamW, global grad-norm clipping and LR schedules.

pub mod error;
pub mod losses;
pub mod optim;
pub mod rl;

pub use error::{Result, TrainError};
