//! RL core: advantages and whitening over `[batch, seq]` tensors, independent of text.

pub mod advantages;
pub mod filter;
pub mod macro_actions;

pub use advantages::{
    discounted_returns, gae, gae_skip_masked, grpo_advantages, masked_mean, masked_var, masked_whiten,
    reinforce_pp_advantages, reinforce_pp_baseline_advantages, remax_advantages, rloo_advantages, ScaleRewards,
};
pub use filter::{auto_candidates, filter_rows, r_squared, select_filter, FilterChoice, PolicyFilter};
