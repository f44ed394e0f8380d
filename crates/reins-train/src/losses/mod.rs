//! Pure loss functions: tensors in, tensors out, no trainer state.

pub mod contrastive;
pub mod cpl;
pub mod cpo;
pub mod dpo;
pub mod inpo;
pub mod kto;
pub mod lipo;
pub mod metarm;
pub mod nash_md;
pub mod ops;
pub mod orpo;
pub mod reward;
pub mod reward_noise;
pub mod running;
pub mod sampler_correction;
pub mod segment;
pub mod simpo;
pub mod t_reg;

pub use contrastive::{
    contrastive_reward_loss, info_nce_loss, l2_normalize, seeded_dropout, sinkhorn_codes, swav_loss, ContrastiveConfig,
    ContrastiveLoss, ContrastiveOn, SWAV_PROTOTYPES,
};
pub use cpl::{cpl_loss, cpl_metrics, cpl_rank_loss, CplConfig, CplOutput, Segments};
pub use cpo::{cpo_loss, CpoConfig, CpoLossType, CpoOutput};
pub use dpo::{
    chosen_sft_nll, dpo_loss, dpo_metrics, f_divergence_score, ld_alpha_logps, log_sum_sq_probs, wpo_weights,
    DpoConfig, DpoExtras, DpoLossType, DpoOutput, FDivergenceType,
};
pub use inpo::{inpo_h, inpo_loss, inpo_metrics, InpoConfig, InpoOutput};
pub use kto::{kto_kl_estimate, kto_loss, KtoConfig, KtoLossType, KtoOutput};
pub use lipo::lipo_lambda_loss;
pub use metarm::metarm_difference;
pub use orpo::{log1mexp, orpo_loss, OrpoOutput};
pub use reward::{
    bradley_terry_loss, ensemble_aggregate, pairwise_reward_loss, plackett_luce_loss, preference_strength,
    rationality_reward_loss, reward_metrics, thurstone_loss, EnsembleAggregation, RewardLossConfig,
};
pub use reward_noise::{treat_pairs, NoiseAwareConfig, PairTreatment, SmoothPairs};
pub use running::RunningMoments;
pub use segment::{segment_loss, SegmentOutput, SegmentTarget};
pub use simpo::simpo_loss;
pub use t_reg::{t_reg_loss, token_weights, TRegConfig};
pub mod kl;
pub mod ppo;

pub use kl::{kl_estimate, kl_penalized_rewards, last_token_index, KlController, KlEstimator};
pub use ppo::{
    entropy_from_logits, grpo_loss, ppo_policy_loss, ppo_value_loss, rloo_sequence_loss, GrpoLossConfig, GrpoLossType,
    GrpoOutput, ImportanceSamplingLevel, PolicyLossOutput, ValueLossOutput,
};
