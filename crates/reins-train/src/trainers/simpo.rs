//! SimPO: Simple Preference Optimization with a Reference-Free Reward (Meng et al.,
//! arXiv:2405.14734). TRL runs it as `CPOTrainer` with `loss_type = "simpo"`: the reward is
//! `β · ℓ̄` (average per-token log-prob) and the sigmoid loss has target margin `γ`
//! (`simpo_gamma`). Pure SimPO has `cpo_alpha = 0`; `cpo_alpha > 0` gives CPO-SimPO (with the
//! chosen NLL term).

use reins_model::Model;

use super::cpo::CpoTrainer;
use crate::losses::{CpoConfig, CpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

/// A [`CpoTrainer`] running SimPO; fails unless `cfg.loss_type` is `simpo`.
pub fn simpo_trainer(policy: Model, cfg: CpoConfig, opt: Optimizer) -> Result<CpoTrainer> {
    if cfg.loss_type != CpoLossType::Simpo {
        return Err(TrainError::Config(format!(
            "`reins simpo` needs loss_type = \"simpo\" (got {:?}); use `reins cpo` for other loss types",
            cfg.loss_type
        )));
    }
    CpoTrainer::new(policy, cfg, opt)
}
