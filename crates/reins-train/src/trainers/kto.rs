//! KTO: Kahneman–Tversky Optimization (Ethayarajh et al., arXiv:2402.01306), as TRL 1.16
//! `KTOTrainer`. Unpaired data: each row is a (prompt, completion, desirable?) example. The
//! implied reward is `ρ = log π(y|x) − log π_ref(y|x)` (summed completion log-probs); the
//! reference point `z₀` is the detached KL estimate on mismatched pairs — each prompt with the
//! completion of its neighbour (`kl_completion_ids`), scored by policy and reference — clamped
//! at 0 (§4.1). [`kto_loss`] weights desirable and undesirable examples by λ_D and λ_U.
//!
//! The reference is a frozen copy of the starting policy, or — with LoRA — the policy with
//! adapters off, as for DPO.

use candle_core::{DType, Tensor, D};
use reins_data::collate::UnpairedBatch;
use reins_model::Model;

use super::metrics::{attended_tokens, scalar, MicroBatchMean};
use super::reference::Reference;
use super::{completion_logps, BatchTrainer, Metrics};
use crate::losses::{kto_kl_estimate, kto_loss, KtoConfig, KtoLossType};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

/// Checks a KTO config against the batch size, saying how to fix it.
pub fn validate(cfg: &KtoConfig, per_device_train_batch_size: usize) -> Result<()> {
    let bad = |m: String| Err(TrainError::Config(m));
    if !(cfg.beta.is_finite() && cfg.beta > 0.0) {
        return bad(format!("`beta` must be > 0 (got {}); KTO's default is 0.1", cfg.beta));
    }
    if cfg.desirable_weight < 0.0 || cfg.undesirable_weight < 0.0 {
        return bad("`desirable_weight` and `undesirable_weight` must be ≥ 0".into());
    }
    if cfg.loss_type == KtoLossType::Kto && per_device_train_batch_size <= 1 {
        return bad("loss_type \"kto\" estimates the KL term from mismatched pairs within a batch: set \
                    `per_device_train_batch_size` to 2 or more (TRL requires the same)"
            .into());
    }
    Ok(())
}

pub struct KtoTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub cfg: KtoConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

/// Indices of rows with `label == want`, as a `u32` tensor.
fn rows(labels: &[bool], want: bool, dev: &candle_core::Device) -> Result<Tensor> {
    let idx: Vec<u32> = labels.iter().enumerate().filter(|(_, &l)| l == want).map(|(i, _)| i as u32).collect();
    Ok(Tensor::from_vec(idx.clone(), idx.len(), dev)?)
}

impl KtoTrainer {
    pub fn new(policy: Model, reference: Reference, cfg: KtoConfig, opt: Optimizer) -> Result<Self> {
        validate(&cfg, 2)?;
        Ok(KtoTrainer { policy, reference, cfg, opt, num_tokens: 0.0 })
    }

    fn reference_model(&self) -> Result<Model> {
        self.reference.model(&self.policy)
    }

    /// `z₀` of the batch: detached policy and reference log-probs of the mismatched
    /// (prompt, neighbour's completion) rows; zero for `apo_zero_unpaired`.
    fn kl(&self, batch: &UnpairedBatch) -> Result<Tensor> {
        let dev = self.policy.device();
        let (Some(ids), Some(attn), Some(cm)) =
            (&batch.kl_input_ids, &batch.kl_attention_mask, &batch.kl_completion_mask)
        else {
            if self.cfg.loss_type == KtoLossType::Kto {
                return Err(TrainError::Input("KTO needs the batch's KL completions (collate with them)".into()));
            }
            return Ok(Tensor::zeros((), DType::F32, dev)?);
        };
        if self.cfg.loss_type != KtoLossType::Kto {
            return Ok(Tensor::zeros((), DType::F32, dev)?);
        }
        let policy = completion_logps(&self.policy.detached(), ids, attn, cm)?.sums;
        let reference = completion_logps(&self.reference_model()?, ids, attn, cm)?.sums;
        kto_kl_estimate(&policy, &reference)
    }

    /// The KTO loss and TRL's metrics (`kl`, `rewards/*`, `logps/*`, `logits/*`) for a batch.
    pub fn loss(&self, batch: &UnpairedBatch) -> Result<(Tensor, Metrics)> {
        let dev = self.policy.device().clone();
        let kl = self.kl(batch)?;
        let out = completion_logps(&self.policy, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?;
        let reference = completion_logps(
            &self.reference_model()?,
            &batch.input_ids,
            &batch.attention_mask,
            &batch.completion_mask,
        )?
        .sums;
        let (ci, ri) = (rows(&batch.label, true, &dev)?, rows(&batch.label, false, &dev)?);
        let pick = |t: &Tensor, i: &Tensor| -> Result<Option<Tensor>> {
            Ok((i.elem_count() > 0).then(|| t.index_select(i, 0)).transpose()?)
        };
        let (c, rc) = (pick(&out.sums, &ci)?, pick(&reference, &ci)?);
        let (r, rr) = (pick(&out.sums, &ri)?, pick(&reference, &ri)?);
        let res = kto_loss(c.as_ref().zip(rc.as_ref()), r.as_ref().zip(rr.as_ref()), &kl, &self.cfg)?;

        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&res.loss)?);
        m.insert("kl".into(), scalar(&kl)?);
        let stats = super::token_metrics::TokenStats::from_full(&out.logits, &batch.input_ids, &batch.completion_mask)?;
        m.insert("entropy".into(), stats.entropy(0..stats.rows()));
        // Mean over the vocabulary at each completion position, averaged over completion tokens.
        let t = out.logits.dim(1)?;
        let mean_logits = out.logits.narrow(1, 0, t - 1)?.detach().mean(D::Minus1)?;
        let mask = out.mask.contiguous()?;
        let masked = (mean_logits * &mask)?.contiguous()?;
        let side_mean = |s: Option<&Tensor>| -> Result<Option<f64>> {
            s.map(|x| scalar(&x.detach().to_dtype(DType::F32)?.mean_all()?)).transpose()
        };
        for (name, idx, logps, rewards) in
            [("chosen", &ci, &c, &res.chosen_rewards), ("rejected", &ri, &r, &res.rejected_rewards)]
        {
            if let (Some(lp), Some(rw)) = (side_mean(logps.as_ref())?, side_mean(rewards.as_ref())?) {
                m.insert(format!("rewards/{name}"), rw);
                m.insert(format!("logps/{name}"), lp);
                let tokens = scalar(&mask.index_select(idx, 0)?.sum_all()?)?;
                let total = scalar(&masked.index_select(idx, 0)?.sum_all()?)?;
                if tokens > 0.0 {
                    m.insert(format!("logits/{name}"), total / tokens);
                }
            }
        }
        if let (Some(a), Some(b)) = (m.get("rewards/chosen"), m.get("rewards/rejected")) {
            m.insert("rewards/margins".into(), a - b);
        }
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((res.loss, m))
    }
}

/// Steps as TRL's `KTOTrainer`: the mean of the micro-batches' mean losses. A metric is
/// averaged over the micro-batches that have it (a micro-batch may hold no desirable or no
/// undesirable example).
impl BatchTrainer for KtoTrainer {
    type Batch = UnpairedBatch;
    const METRICS_MEAN: MicroBatchMean = MicroBatchMean::WherePresent;
    fn batch_loss(&self, batch: &UnpairedBatch) -> Result<(Tensor, Metrics)> {
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
