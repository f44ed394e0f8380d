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

use super::metrics::attended_tokens;
use super::token_metrics::TokenStats;
use super::{completion_logps, completion_only_logps, BatchTrainer, Metrics};
use crate::losses::dpo::{chosen_sft_nll, dpo_loss, dpo_metrics, ld_alpha_logps, log_sum_sq_probs, wpo_weights};
use crate::losses::{DpoConfig, DpoExtras, DpoLossType};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};

// The binary, the lab and the tests name it `trainers::dpo::Reference`.
pub use super::reference::Reference;

/// TRL's DPO trainer settings outside the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoTrainerArgs {
    /// Score the training and eval sets with the reference once, before training, and drop
    /// the reference model (TRL `precompute_ref_log_probs`, default false).
    pub precompute_ref_log_probs: bool,
    /// TR-DPO (Gorbatovski et al., arXiv:2404.09656): every `ref_model_sync_steps` optimizer
    /// steps the reference becomes `α·π_θ + (1 − α)·π_ref` (TRL `sync_ref_model`, default false).
    pub sync_ref_model: bool,
    /// α of the soft update (TRL default 0.6).
    pub ref_model_mixup_alpha: f64,
    /// Steps between syncs (TRL default 512).
    pub ref_model_sync_steps: usize,
}

impl Default for DpoTrainerArgs {
    fn default() -> Self {
        DpoTrainerArgs {
            precompute_ref_log_probs: false,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
        }
    }
}

impl DpoTrainerArgs {
    pub fn validate(&self, lora: bool) -> Result<()> {
        if !self.sync_ref_model {
            return Ok(());
        }
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if !(0.0..=1.0).contains(&self.ref_model_mixup_alpha) {
            return bad("`ref_model_mixup_alpha` must lie in [0, 1]");
        }
        if self.ref_model_sync_steps == 0 {
            return bad("`ref_model_sync_steps` must be at least 1");
        }
        if lora {
            return bad("`sync_ref_model` needs a separate reference model; it cannot be combined with LoRA (the reference is the adapter-free policy)");
        }
        if self.precompute_ref_log_probs {
            return bad("`sync_ref_model` changes the reference during training; it cannot be combined with `precompute_ref_log_probs`");
        }
        Ok(())
    }
}

/// TR-DPO's soft update `π_ref ← α·π_θ + (1 − α)·π_ref` for the parameters both share by name.
pub fn sync_reference(reference: &Model, policy: &Model, alpha: f64) -> Result<()> {
    if reference.params().is_empty() {
        return Err(TrainError::Config(
            "TR-DPO needs a reference loaded with trainable parameters (LoadOptions::trainable)".into(),
        ));
    }
    let policy: std::collections::HashMap<&str, &candle_core::Var> =
        policy.params().iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, r) in reference.params() {
        if let Some(p) = policy.get(name.as_str()) {
            let mixed = ((p.as_tensor() * alpha)? + (r.as_tensor() * (1.0 - alpha))?)?;
            r.set(&mixed)?;
        }
    }
    Ok(())
}

pub struct DpoTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub cfg: DpoConfig,
    /// TR-DPO `(α, every N steps)`; set with [`DpoTrainer::with_reference_sync`].
    pub sync: Option<(f64, usize)>,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl DpoTrainer {
    pub fn new(policy: Model, reference: Reference, cfg: DpoConfig, opt: Optimizer) -> Result<Self> {
        cfg.validate()?;
        Ok(DpoTrainer { policy, reference, cfg, sync: None, opt, num_tokens: 0.0 })
    }

    /// Turns on TR-DPO reference syncing; the reference must be a [`Reference::Model`]
    /// loaded with trainable parameters.
    pub fn with_reference_sync(mut self, alpha: f64, every: usize) -> Result<Self> {
        match &self.reference {
            Reference::Model(m) if !m.params().is_empty() => {}
            _ => {
                return Err(TrainError::Config(
                    "`sync_ref_model` needs a separate reference model loaded with trainable parameters".into(),
                ))
            }
        }
        self.sync = Some((alpha, every.max(1)));
        Ok(self)
    }

    /// Summed reference log-probs `[2B]` of a batch (chosen rows then rejected), no graph;
    /// the batch's own `ref_logps` when it carries them.
    pub fn reference_logps(&self, batch: &PreferenceBatch) -> Result<Tensor> {
        if let Some(r) = &batch.ref_logps {
            let r: Vec<f32> = r.iter().map(|&x| x as f32).collect();
            return Ok(Tensor::from_vec(r, batch.input_ids.len(), self.policy.device())?);
        }
        let reference = self.reference.model(&self.policy)?;
        let out = completion_only_logps(&reference, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?;
        self.sequence_logps(&out.per_token, &out.mask, &out.sums)
    }

    /// TRL `precompute_ref_log_probs`: the reference's summed log-probs of every example,
    /// `(chosen, rejected)`, scored `batch_size` at a time. Afterwards the reference model can
    /// be dropped (`self.reference = Reference::Precomputed`) and batches carry the values
    /// (see [`attach_reference_logps`]).
    pub fn precompute_reference_logps(
        &self,
        n_examples: usize,
        collate: &dyn Fn(&[usize]) -> Result<PreferenceBatch>,
        batch_size: usize,
    ) -> Result<Vec<(f64, f64)>> {
        let mut out = Vec::with_capacity(n_examples);
        let idx: Vec<usize> = (0..n_examples).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let mut batch = collate(chunk)?;
            batch.ref_logps = None;
            let r: Vec<f64> = self.reference_logps(&batch)?.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            let n = chunk.len();
            out.extend((0..n).map(|i| (r[i], r[n + i])));
        }
        Ok(out)
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
        let (out, logits, stats) = if self.cfg.use_weighting {
            let o = completion_logps(&self.policy, ids, attn, cm)?;
            let stats = TokenStats::from_full(&o.logits, ids, cm)?;
            let only =
                super::CompletionOnlyLogps { per_token: o.per_token, sums: o.sums, mask: o.mask, logits: o.logits };
            let full = only.logits.clone();
            (only, Some(full), stats)
        } else {
            let o = completion_only_logps(&self.policy, ids, attn, cm)?;
            let stats = TokenStats::from_selected(&o.logits, ids, cm)?;
            (o, None, stats)
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
            soft_labels: match &batch.strength {
                Some(p) => Some(Tensor::from_vec(p.clone(), n, c.device())?),
                None => None,
            },
        };
        let res = dpo_loss(&c, &r, &rc, &rr, &self.cfg, &extras)?;
        let mut m = dpo_metrics(&res, &c.detach(), &r.detach())?;
        // TRL: entropy over every completion token, accuracy over the chosen ones.
        m.insert("entropy".into(), stats.entropy(0..2 * n));
        m.insert("mean_token_accuracy".into(), stats.accuracy(0..n));
        m.insert("logits/chosen".into(), stats.mean_logit(0..n));
        m.insert("logits/rejected".into(), stats.mean_logit(n..2 * n));
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((res.loss, m))
    }
}

/// Puts the precomputed reference log-probs of examples `idx` into their batch
/// (chosen rows first, then rejected, as the batch itself).
pub fn attach_reference_logps(batch: &mut PreferenceBatch, idx: &[usize], refs: &[(f64, f64)]) {
    let chosen = idx.iter().map(|&i| refs[i].0);
    let rejected = idx.iter().map(|&i| refs[i].1);
    batch.ref_logps = Some(chosen.chain(rejected).collect());
}

/// Steps as TRL's `DPOTrainer`: each micro-batch's loss is a mean over its pairs divided by the
/// number of micro-batches (TRL does not normalise DPO by `num_items_in_batch`, unlike SFT).
impl BatchTrainer for DpoTrainer {
    type Batch = PreferenceBatch;
    fn batch_loss(&self, batch: &PreferenceBatch) -> Result<(Tensor, Metrics)> {
        self.loss(batch, None)
    }
    /// TRL's `SyncRefModelCallback.on_step_end`: after optimizer step N, when N % every == 0.
    fn after_step(&mut self) -> Result<()> {
        if let (Some((alpha, every)), Reference::Model(reference)) = (self.sync, &self.reference) {
            if self.opt.step.is_multiple_of(every) {
                sync_reference(reference, &self.policy, alpha)?;
            }
        }
        Ok(())
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
    /// With TR-DPO the reference drifts, so it is part of the checkpoint.
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        match (&self.sync, &self.reference) {
            (Some(_), Reference::Model(m)) => {
                Ok(m.params().iter().map(|(n, v)| (format!("reference.{n}"), v.as_tensor().clone())).collect())
            }
            _ => Ok(Vec::new()),
        }
    }
    fn load_extra_state(&mut self, saved: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        if let (Some(_), Reference::Model(m)) = (&self.sync, &self.reference) {
            for (n, v) in m.params() {
                let t = saved
                    .get(&format!("reference.{n}"))
                    .ok_or_else(|| TrainError::State(format!("the checkpoint has no synced reference weight `{n}`")))?;
                v.set(t)?;
            }
        }
        Ok(())
    }
}
