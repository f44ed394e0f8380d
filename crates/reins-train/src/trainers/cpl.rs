//! Contrastive Preference Learning for language (Hejna et al., arXiv:2310.13639): a preference
//! pair's two completions are the two segments, each step a completion token, and the policy
//! is fit to the labels with [`cpl_loss`] on its own per-token log-probs — no reward model, no
//! RL and, unlike DPO, no reference model (plain CPL is a reference-free DPO whose rejected
//! score carries the conservative bias λ).
//!
//! The official code's BC pretraining phase (`bc_steps`, then an optimizer reset) is not a
//! step of this trainer: run `reins sft` first and start from its checkpoint. CPL-BC, the BC
//! term kept during CPL (`bc_coeff`), is part of the loss.

use candle_core::Tensor;
use reins_data::collate::PreferenceBatch;
use reins_model::Model;

use super::metrics::attended_tokens;
use super::token_metrics::TokenStats;
use super::{completion_only_logps, BatchTrainer, Metrics};
use crate::losses::{cpl_loss, cpl_metrics, CplConfig, Segments};
use crate::optim::optimizer::Optimizer;
use crate::Result;

pub struct CplTrainer {
    pub policy: Model,
    pub cfg: CplConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl CplTrainer {
    pub fn new(policy: Model, cfg: CplConfig, opt: Optimizer) -> Result<Self> {
        cfg.validate()?;
        Ok(CplTrainer { policy, cfg, opt, num_tokens: 0.0 })
    }

    /// The CPL loss and its metrics for one batch (rows `0..B` chosen, `B..2B` rejected); a
    /// batch's soft labels (`strength`) are CPL's soft preference labels.
    pub fn loss(&self, batch: &PreferenceBatch) -> Result<(Tensor, Metrics)> {
        let n = batch.pairs();
        let (ids, cm) = (&batch.input_ids, &batch.completion_mask);
        let out = completion_only_logps(&self.policy, ids, &batch.attention_mask, cm)?;
        let stats = TokenStats::from_selected(&out.logits, ids, cm)?;
        // [2B, T-1] per-token log-probs and completion mask: the two segments of each pair.
        let (lc, lr) = (out.per_token.narrow(0, 0, n)?, out.per_token.narrow(0, n, n)?);
        let (mc, mr) = (out.mask.narrow(0, 0, n)?, out.mask.narrow(0, n, n)?);
        let labels = match &batch.strength {
            Some(p) => Some(Tensor::from_vec(p.clone(), n, lc.device())?),
            None => None,
        };
        let chosen = Segments { logps: &lc, mask: &mc };
        let rejected = Segments { logps: &lr, mask: &mr };
        let res = cpl_loss(&chosen, &rejected, labels.as_ref(), &self.cfg)?;
        let mut m = cpl_metrics(&res, &out.sums.narrow(0, 0, n)?, &out.sums.narrow(0, n, n)?)?;
        // As TRL's DPO: entropy over every completion token, accuracy over the chosen ones.
        m.insert("entropy".into(), stats.entropy(0..2 * n));
        m.insert("mean_token_accuracy".into(), stats.accuracy(0..n));
        m.insert("logits/chosen".into(), stats.mean_logit(0..n));
        m.insert("logits/rejected".into(), stats.mean_logit(n..2 * n));
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((res.loss, m))
    }
}

/// Steps as the other pairwise trainers: the mean of the micro-batches' mean losses.
impl BatchTrainer for CplTrainer {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::{DType, Device};

    use super::*;
    use crate::losses::{DpoConfig, DpoLossType};
    use crate::optim::optimizer::OptimConfig;
    use crate::optim::SchedulerType;
    use crate::trainers::dpo::{DpoTrainer, Reference};

    fn llama() -> Result<Model> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama");
        Ok(Model::load(&dir, &Device::Cpu, &reins_model::LoadOptions { trainable: true, ..Default::default() })?)
    }

    fn optimizer(model: &Model) -> Result<Optimizer> {
        let cfg = OptimConfig { learning_rate: 1e-2, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
        Optimizer::new(model.params(), &cfg, 3)
    }

    /// Two pairs of right-padded rows with completions of different lengths; `ref_logps` zero
    /// (a DPO reference of probability one everywhere).
    fn batch() -> PreferenceBatch {
        PreferenceBatch {
            input_ids: vec![
                vec![5, 6, 30, 31, 0],
                vec![9, 10, 11, 50, 0],
                vec![5, 6, 40, 0, 3],
                vec![9, 10, 11, 60, 61],
            ],
            attention_mask: vec![vec![1, 1, 1, 1, 1], vec![1, 1, 1, 1, 1], vec![1, 1, 1, 1, 0], vec![1, 1, 1, 1, 1]],
            completion_mask: vec![vec![0, 0, 1, 1, 1], vec![0, 0, 0, 1, 1], vec![0, 0, 1, 1, 0], vec![0, 0, 0, 1, 1]],
            margin: None,
            strength: None,
            ref_logps: Some(vec![0.0; 4]),
        }
    }

    /// Unbiased CPL (λ = 1) with α = β is DPO against a reference that gives every completion
    /// probability one (Hejna et al. §4): the DPO trainer, a different code path, must agree.
    #[test]
    fn unbiased_cpl_is_dpo_without_a_reference() -> Result<()> {
        let alpha = 0.7;
        let cpl = CplConfig { alpha, contrastive_bias: 1.0, ..CplConfig::default() };
        let policy = llama()?;
        let opt = optimizer(&policy)?;
        let trainer = CplTrainer::new(policy, cpl, opt)?;
        let (_, m) = trainer.loss(&batch())?;
        let policy = llama()?;
        let opt = optimizer(&policy)?;
        let dpo_cfg = DpoConfig { beta: alpha, ..DpoConfig::with_loss(DpoLossType::Sigmoid) };
        let dpo = DpoTrainer::new(policy, Reference::Precomputed, dpo_cfg, opt)?;
        let (_, d) = dpo.loss(&batch(), None)?;
        for key in ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"] {
            assert!((m[key] - d[key]).abs() < 1e-5, "{key}: CPL {} vs DPO {}", m[key], d[key]);
        }
        Ok(())
    }

    /// One optimizer step changes every trainable parameter and logs the metrics; a lower
    /// conservative bias gives a different loss on the same batch.
    #[test]
    fn a_step_trains_every_parameter_and_logs_metrics() -> Result<()> {
        let policy = llama()?;
        let before: Vec<Tensor> =
            policy.params().iter().map(|(_, v)| v.as_tensor().copy()).collect::<std::result::Result<_, _>>()?;
        let opt = optimizer(&policy)?;
        let mut trainer = CplTrainer::new(policy, CplConfig::default(), opt)?;
        let biased_loss = trainer.loss(&batch())?.1["loss"];
        trainer.cfg.contrastive_bias = 1.0;
        assert!((biased_loss - trainer.loss(&batch())?.1["loss"]).abs() > 1e-6, "the bias changes the loss");
        trainer.cfg.contrastive_bias = 0.5;
        let m = crate::run::Trainer::train_step(&mut trainer, &[batch()])?;
        for key in ["loss", "cpl_loss", "bc_loss", "rewards/accuracies", "logps/chosen", "grad_norm", "num_tokens"] {
            assert!(m.get(key).is_some_and(|v| v.is_finite()), "{key} missing or not finite in {m:?}");
        }
        assert_eq!(m["num_tokens"], 19.0);
        for ((name, v), old) in trainer.policy.params().iter().zip(&before) {
            let moved = (v.as_tensor() - old)?.abs()?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            assert!(moved > 0.0, "{name} did not change");
        }
        Ok(())
    }
}
