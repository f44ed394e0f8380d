//! CPO: Contrastive Preference Optimization (Xu et al., arXiv:2401.08417), as TRL 1.16
//! `CPOTrainer`. Reference-free: one policy pass over chosen and rejected rows gives their
//! log-probs — summed for `sigmoid`/`hinge`, averaged per completion token for `ipo`/`simpo`
//! ([`CpoLossType::uses_average_logps`]) — and the chosen NLL; [`cpo_loss`] adds
//! `cpo_alpha · nll` (Eq. 6) to the preference term. SimPO is this trainer with
//! `loss_type = "simpo"` (see [`super::simpo`]).

use candle_core::{Tensor, D};
use reins_data::collate::PreferenceBatch;
use reins_model::Model;

use super::metrics::{attended_tokens, mean, mean_logit, pair_reward_metrics, scalar};
use super::{completion_logps_hf_padding, BatchTrainer, Metrics};
use crate::losses::dpo::chosen_sft_nll;
use crate::losses::{cpo_loss, CpoConfig, CpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

/// Checks a CPO config, saying how to fix it.
pub fn validate(cfg: &CpoConfig) -> Result<()> {
    let bad = |m: String| Err(TrainError::Config(m));
    if !(cfg.beta.is_finite() && cfg.beta > 0.0) {
        return bad(format!("`beta` must be > 0 (got {}); TRL's default is 0.1", cfg.beta));
    }
    if !(0.0..=0.5).contains(&cfg.label_smoothing) {
        return bad(format!("`label_smoothing` must be in [0, 0.5] (got {})", cfg.label_smoothing));
    }
    if cfg.label_smoothing > 0.0 && matches!(cfg.loss_type, CpoLossType::Hinge | CpoLossType::Ipo) {
        return bad("`label_smoothing` only applies to loss_type \"sigmoid\" or \"simpo\"; set it to 0".into());
    }
    if !(cfg.cpo_alpha.is_finite() && cfg.cpo_alpha >= 0.0) {
        return bad(format!("`cpo_alpha` must be ≥ 0 (got {})", cfg.cpo_alpha));
    }
    Ok(())
}

pub struct CpoTrainer {
    pub policy: Model,
    pub cfg: CpoConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl CpoTrainer {
    pub fn new(policy: Model, cfg: CpoConfig, opt: Optimizer) -> Result<Self> {
        validate(&cfg)?;
        Ok(CpoTrainer { policy, cfg, opt, num_tokens: 0.0 })
    }

    /// The CPO-family loss and TRL's metrics for one batch (chosen rows then rejected rows).
    pub fn loss(&self, batch: &PreferenceBatch) -> Result<(Tensor, Metrics)> {
        let n = batch.pairs();
        let out =
            completion_logps_hf_padding(&self.policy, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?;
        let logps = if self.cfg.loss_type.uses_average_logps() {
            (&out.sums / out.mask.sum(D::Minus1)?.clamp(1f64, f64::INFINITY)?)?
        } else {
            out.sums.clone()
        };
        let (c, r) = (logps.narrow(0, 0, n)?, logps.narrow(0, n, n)?);
        // TRL computes (and logs) the NLL only when it is part of the loss: 0 for pure SimPO.
        let nll = if self.cfg.cpo_alpha != 0.0 {
            chosen_sft_nll(&out.per_token.narrow(0, 0, n)?, &out.mask.narrow(0, 0, n)?)?
        } else {
            Tensor::zeros((), candle_core::DType::F32, out.sums.device())?
        };
        let res = cpo_loss(&c, &r, Some(&nll), &self.cfg)?;
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&res.loss)?);
        pair_reward_metrics(&mut m, &res.chosen_rewards, &res.rejected_rewards)?;
        m.insert("logps/chosen".into(), mean(&c)?);
        m.insert("logps/rejected".into(), mean(&r)?);
        m.insert("logits/chosen".into(), mean_logit(&out.logits, 0, n)?);
        m.insert("logits/rejected".into(), mean_logit(&out.logits, n, n)?);
        m.insert("nll_loss".into(), scalar(&nll)?);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((res.loss, m))
    }
}

/// Steps as TRL's `CPOTrainer`: the mean of the micro-batches' mean losses.
impl BatchTrainer for CpoTrainer {
    type Batch = PreferenceBatch;
    fn batch_loss(&self, batch: &PreferenceBatch) -> Result<(Tensor, Metrics)> {
        self.loss(batch)
    }
    fn model(&self) -> &Model {
        &self.policy
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.num_tokens
    }
}
