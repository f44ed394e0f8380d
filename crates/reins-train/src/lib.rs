//! reins-train: pure RLHF losses, advantage estimators and the optimizer.
//!
//! Everything in [`losses`] and [`rl`] is a free function from tensors to tensors with no
//! trainer state, tested against reference numbers re-derived from TRL 1.16 / PyTorch.
//! [`optim`] holds the fused in-place AdamW, global grad-norm clipping and LR schedules.
//!
//! Metric keys (TRL's, so dashboards carry over):
//! - DPO ([`losses::dpo_metrics`]): `loss`, `rewards/chosen`, `rewards/rejected`,
//!   `rewards/margins`, `rewards/accuracies`, `logps/chosen`, `logps/rejected`.
//! - Reward model ([`losses::reward_metrics`]): `accuracy`, `margin`, `min_reward`,
//!   `mean_reward`, `max_reward`.
//! - ORPO ([`losses::OrpoOutput`]): `log_odds_ratio`, `log_odds_chosen`, plus the DPO reward keys.
//! - PPO ([`losses::PolicyLossOutput`], [`losses::ValueLossOutput`]): `policy/clipfrac`,
//!   `policy/approxkl`, `val/clipfrac`; GRPO ([`losses::GrpoOutput`]): `kl`,
//!   `clip_ratio/low_mean`, `clip_ratio/high_mean`, `clip_ratio/region_mean`.

pub mod best_of_n;
pub mod config;
pub mod consistency;
pub mod convex_da;
pub mod error;
pub mod judges;
pub mod losses;
pub mod optim;
pub mod parallel;
pub mod pit;
pub mod principle_rules;
pub mod rewards;
pub mod rl;
pub mod run;
pub mod statistics;
pub mod trainers;

pub use error::{Result, TrainError};
