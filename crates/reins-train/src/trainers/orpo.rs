//! ORPO: Monolithic Preference Optimization without Reference Model (Hong et al.,
//! arXiv:2403.07691), as TRL 1.16 `ORPOTrainer`. Reference-free: one policy pass over chosen and
//! rejected rows gives average per-token log-probs `ℓ_w`, `ℓ_l` (Eq. 4's odds use the mean over
//! completion tokens) and the chosen NLL; [`orpo_loss`] adds `−β log σ(log odds)` to the NLL.

use candle_core::{DType, Tensor, D};
use reins_data::collate::PreferenceBatch;
use reins_model::logprobs::token_logps;
use reins_model::{nn, Model};
use serde::{Deserialize, Serialize};

use super::metrics::{attended_tokens, mean, mean_logit, pair_reward_metrics, scalar};
use super::{completion_logps_hf_padding, BatchTrainer, Metrics};
use crate::losses::orpo_loss;
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

fn d_beta() -> f64 {
    0.1
}

/// The loss part of TRL's `ORPOConfig` (same names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrpoConfig {
    /// λ of the paper (Eq. 6), the weight of the odds-ratio term; TRL calls it β. Default 0.1.
    #[serde(default = "d_beta")]
    pub beta: f64,
}

impl Default for OrpoConfig {
    fn default() -> Self {
        OrpoConfig { beta: 0.1 }
    }
}

impl OrpoConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(TrainError::Config(format!("`beta` must be ≥ 0 (got {}); ORPO's default is 0.1", self.beta)));
        }
        Ok(())
    }
}

/// The SFT term of ORPO as TRL 1.16 (and the paper's code) computes it: the mean next-token
/// NLL of the chosen rows over every attended token, prompt included (`labels = input_ids`
/// where the attention mask is 1), not only over the completion.
fn prompt_and_completion_nll(logits: &Tensor, batch: &PreferenceBatch, n: usize) -> Result<Tensor> {
    let dev = logits.device();
    let ids = nn::ids_tensor(&batch.input_ids[..n], dev)?;
    let attn = nn::mask_tensor(&batch.attention_mask[..n], dev)?;
    let logps = token_logps(&logits.narrow(0, 0, n)?, &ids, &attn)?;
    let t = attn.dim(1)?;
    let count = attn.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?.sum_all()?;
    Ok((logps.sum_all()?.neg()? / count)?)
}

pub struct OrpoTrainer {
    pub policy: Model,
    pub cfg: OrpoConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl OrpoTrainer {
    pub fn new(policy: Model, cfg: OrpoConfig, opt: Optimizer) -> Result<Self> {
        cfg.validate()?;
        Ok(OrpoTrainer { policy, cfg, opt, num_tokens: 0.0 })
    }

    /// The ORPO loss and TRL's metrics for one batch (chosen rows then rejected rows).
    pub fn loss(&self, batch: &PreferenceBatch) -> Result<(Tensor, Metrics)> {
        let n = batch.pairs();
        let out =
            completion_logps_hf_padding(&self.policy, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?;
        // [2B] average log-prob per completion token.
        let lengths = out.mask.sum(D::Minus1)?.clamp(1f64, f64::INFINITY)?;
        let avg = (&out.sums / lengths)?;
        let (c, r) = (avg.narrow(0, 0, n)?, avg.narrow(0, n, n)?);
        let nll = prompt_and_completion_nll(&out.logits, batch, n)?;
        let res = orpo_loss(&c, &r, &nll, self.cfg.beta)?;
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&res.loss)?);
        pair_reward_metrics(&mut m, &res.chosen_rewards, &res.rejected_rewards)?;
        m.insert("logps/chosen".into(), mean(&c)?);
        m.insert("logps/rejected".into(), mean(&r)?);
        // TRL's ORPO averages the logits of every position but the last (CPO's keep it).
        let t = out.logits.dim(1)?;
        let predicting = out.logits.narrow(1, 0, t - 1)?;
        m.insert("logits/chosen".into(), mean_logit(&predicting, 0, n)?);
        m.insert("logits/rejected".into(), mean_logit(&predicting, n, n)?);
        m.insert("nll_loss".into(), scalar(&nll)?);
        m.insert("log_odds_ratio".into(), scalar(&res.log_odds_ratio)?);
        m.insert("log_odds_chosen".into(), scalar(&res.log_odds_chosen)?);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((res.loss, m))
    }
}

/// Steps as TRL's `ORPOTrainer`: the mean of the micro-batches' mean losses.
impl BatchTrainer for OrpoTrainer {
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
