//! The reference policy that DPO-family and RL trainers measure the policy against (the KL
//! term, the implied reward `β log π/π_ref`): a frozen copy of the starting policy, or — with
//! LoRA — the same weights with the adapters off (no copy).

use reins_model::Model;

use crate::{Result, TrainError};

/// Where the reference log-probs come from.
pub enum Reference {
    /// A separate frozen model (a copy of the starting policy).
    Model(Box<Model>),
    /// The policy with its LoRA adapters disabled.
    AdaptersOff,
    /// Computed once before training (TRL `precompute_ref_log_probs`): every batch carries
    /// its reference log-probs and no reference model is kept.
    Precomputed,
}

impl Reference {
    /// The reference as a model without a graph, for a policy `policy`.
    pub fn model(&self, policy: &Model) -> Result<Model> {
        match self {
            Reference::Model(m) => Ok(m.detached()),
            Reference::AdaptersOff => Ok(policy.without_adapters()),
            Reference::Precomputed => {
                Err(TrainError::Input("the reference log-probs were precomputed but this batch carries none".into()))
            }
        }
    }
}
