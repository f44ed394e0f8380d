//! Direct Preference Optimization (Rafailov et al. 2023) and its TRL 1.16 variants: the policy's
//! and the reference's summed completion log-probs go into [`dpo_loss`], whose `loss_type`
//! picks the paper (sigmoid, IPO, hinge, robust, BCO, SPPO, AOT, APO, DiscoPOP, …).
//!
//! The reference is a frozen copy of the starting policy, or — with LoRA — the same weights
//! with adapters off (no copy). TR-DPO (Gorbatovski et al. 2024) optionally mixes the policy
//! into the reference every `ref_model_sync_steps`.

use candle_core::{Tensor, D};
use reins_data::collate::PreferenceBatch;
use reins_model::Model;

use super::{completion_logps, completion_only_logps, Metrics};
use crate::losses::dpo::{chosen_sft_nll, dpo_loss, dpo_metrics, ld_alpha_logps, log_sum_sq_probs, wpo_weights};
use crate::losses::{DpoConfig, DpoExtras, DpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::Result;

/// Where the reference log-probs come from.
pub enum Reference {
    /// A separate frozen model (a copy of the starting policy).
    Model(Box<Model>),
    /// The policy with its LoRA adapters disabled.
    AdaptersOff,
}

pub struct DpoTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub cfg: DpoConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl DpoTrainer {
    pub fn new(policy: Model, reference: Reference, cfg: DpoConfig, opt: Optimizer) -> Result<Self> {
        cfg.validate()?;
        Ok(DpoTrainer { policy, reference, cfg, opt, num_tokens: 0.0 })
    }

    /// Summed reference log-probs `[2B]` of a batch (chosen rows then rejected), no graph.
    pub fn reference_logps(&self, batch: &PreferenceBatch) -> Result<Tensor> {
        let reference = match &self.reference {
            Reference::Model(m) => m.detached(),
            Reference::AdaptersOff => self.policy.without_adapters(),
        };
        let out = completion_only_logps(&reference, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?;
        self.sequence_logps(&out.per_token, &out.mask, &out.sums)
    }

    fn sequence_logps(&self, per_token: &Tensor, mask: &Tensor, sums: &Tensor) -> Result<Tensor> {
        match self.cfg.ld_alpha {
            Some(a) => ld_alpha_logps(per_token, mask, a),
            None => Ok(sums.clone()),
        }
    }

    /// The DPO loss and TRL's metrics for one batch; `ref_logps` may be precomputed
    /// (`precompute_ref_log_probs`).
    pub fn loss(&self, batch: &PreferenceBatch, ref_logps: Option<&Tensor>) -> Result<(Tensor, Metrics)> {
        let n = batch.pairs();
        let (ids, attn, cm) = (&batch.input_ids, &batch.attention_mask, &batch.completion_mask);
        // Only WPO needs the full logits; otherwise the LM head runs on completion positions.
        let (out, logits) = if self.cfg.use_weighting {
            let o = completion_logps(&self.policy, ids, attn, cm)?;
            let only = super::CompletionOnlyLogps { per_token: o.per_token, sums: o.sums, mask: o.mask };
            (only, Some(o.logits))
        } else {
            (completion_only_logps(&self.policy, ids, attn, cm)?, None)
        };
        let logps = self.sequence_logps(&out.per_token, &out.mask, &out.sums)?;
        let reference = match ref_logps {
            Some(r) => r.clone(),
            None => self.reference_logps(batch)?,
        };
        let (c, r) = (logps.narrow(0, 0, n)?, logps.narrow(0, n, n)?);
        let (rc, rr) = (reference.narrow(0, 0, n)?, reference.narrow(0, n, n)?);
        let lengths = out.mask.sum(D::Minus1)?;
        let needs_sft = self.cfg.loss_type.contains(&DpoLossType::Sft);
        let extras = DpoExtras {
            chosen_lengths: Some(lengths.narrow(0, 0, n)?),
            rejected_lengths: Some(lengths.narrow(0, n, n)?),
            sft_nll: if needs_sft {
                Some(chosen_sft_nll(&out.per_token.narrow(0, 0, n)?, &out.mask.narrow(0, 0, n)?)?)
            } else {
                None
            },
            wpo_weights: match &logits {
                Some(logits) => {
                    let t = logits.dim(1)?;
                    let lss = log_sum_sq_probs(&logits.narrow(1, 0, t - 1)?)?;
                    Some(wpo_weights(&out.per_token, &lss, &out.mask)?)
                }
                None => None,
            },
            bco_delta: None,
        };
        let res = dpo_loss(&c, &r, &rc, &rr, &self.cfg, &extras)?;
        let mut m = dpo_metrics(&res, &c.detach(), &r.detach())?;
        m.insert("num_tokens".into(), batch.attention_mask.iter().flatten().map(|&x| x as f64).sum());
        Ok((res.loss, m))
    }

    /// One optimizer step over `micro_batches` (gradient accumulation); metrics averaged.
    pub fn train_step(&mut self, micro_batches: &[PreferenceBatch]) -> Result<Metrics> {
        let k = micro_batches.len() as f64;
        let mut metrics = Metrics::new();
        for b in micro_batches {
            let (loss, m) = self.loss(b, None)?;
            self.opt.accumulate((loss / k)?.backward()?)?;
            super::accumulate_metrics(&mut metrics, m, k, &mut self.num_tokens);
        }
        super::finish_step(&mut self.opt, metrics, self.num_tokens)
    }
}

impl crate::run::Trainer for DpoTrainer {
    type Batch = PreferenceBatch;
    fn train_step(&mut self, micro_batches: &[PreferenceBatch]) -> Result<Metrics> {
        DpoTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &PreferenceBatch) -> Result<Metrics> {
        Ok(self.loss(batch, None)?.1)
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
