//! MetaRM (Wang et al., "Secrets of RLHF in Large Language Models Part II", arXiv:2401.06080,
//! §3.2, Algorithm 1): a reward-model update that keeps the RM able to tell apart responses of
//! the *shifted* policy. Per step, with a batch of labelled pairs `X_t` and a meta batch `X_s`
//! of k unlabelled policy samples per prompt:
//!
//! 1. meta ascent on the difference loss ([`crate::losses::metarm_difference`]):
//!    `θ' = θ + η ∇_θ J(θ; X_s)` (Eq. 12);
//! 2. the vanilla Bradley–Terry gradient at θ': `g = ∇_{θ'} L(θ'; X_t)` (Eq. 13);
//! 3. θ is restored and the optimizer applies `g` to it (Eq. 14; AdamW here, SGD in the
//!    paper's notation).
//!
//! This is the first-order step Algorithm 1 prints (no second derivative of J is formed). At
//! `η = 0` it is exactly an ordinary reward-model step.

use reins_data::collate::RewardBatch;
use reins_model::Batch;

use super::accumulation::finish_step;
use super::metrics::{scalar, MicroBatchMean};
use super::reward::RewardTrainer;
use super::Metrics;
use crate::losses::metarm_difference;
use crate::Result;

/// A meta batch: `prompts · k` right-padded rows, the k samples of each prompt adjacent.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    /// Samples per prompt (k ≥ 2).
    pub k: usize,
}

/// One MetaRM optimizer step of `trainer` (see the module doc) with meta step size `eta` (η).
/// Metrics are the reward step's plus `metarm/difference` (J at θ, before the step).
pub fn metarm_step(trainer: &mut RewardTrainer, pairs: &RewardBatch, meta: &MetaBatch, eta: f64) -> Result<Metrics> {
    let rows = meta.input_ids.len();
    if meta.k < 2 || rows == 0 || !rows.is_multiple_of(meta.k) {
        return Err(crate::TrainError::Input(format!(
            "a MetaRM meta batch needs k >= 2 samples per prompt ({} rows, k = {})",
            rows, meta.k
        )));
    }
    let b = Batch::new(meta.input_ids.clone(), meta.attention_mask.clone())?;
    let scores = trainer.model.scores(&b)?.narrow(1, 0, 1)?.reshape((rows / meta.k, meta.k))?;
    let j = metarm_difference(&scores)?;
    let difference = scalar(&j)?;
    // θ' = θ + η ∇J, remembering θ.
    let mut saved = Vec::new();
    if eta != 0.0 {
        let grads = j.backward()?;
        for (_, v) in trainer.model.params() {
            if let Some(g) = grads.get(v.as_tensor()) {
                let theta = v.as_tensor().copy()?;
                v.set(&(&theta + (g * eta)?)?)?;
                saved.push((v.clone(), theta));
            }
        }
    }
    let outcome = trainer.loss(pairs).and_then(|(loss, m)| Ok((loss.backward()?, m)));
    // θ comes back whatever happened at θ'.
    for (v, theta) in &saved {
        v.set(theta)?;
    }
    let (grads, m) = outcome?;
    trainer.opt.accumulate(grads)?;
    let metrics = MicroBatchMean::All.reduce(vec![m], &mut trainer.num_tokens);
    let mut metrics = finish_step(&mut trainer.opt, metrics, trainer.num_tokens)?;
    metrics.insert("metarm/difference".into(), difference);
    Ok(metrics)
}

/// A reward-model run whose every step is a [`metarm_step`]; step t uses meta batch
/// `t mod len` (so a resumed run sees the same meta batches).
pub struct MetaRmTrainer {
    pub inner: RewardTrainer,
    pub meta: Vec<MetaBatch>,
    /// η, the meta ascent step.
    pub eta: f64,
}

impl crate::run::Trainer for MetaRmTrainer {
    type Batch = RewardBatch;
    fn train_step(&mut self, micro_batches: &[RewardBatch]) -> Result<Metrics> {
        let [pairs] = micro_batches else {
            return Err(crate::TrainError::Config(
                "MetaRM takes one batch per step: set gradient_accumulation_steps = 1".into(),
            ));
        };
        if self.meta.is_empty() {
            return Err(crate::TrainError::Input("MetaRM needs at least one meta batch".into()));
        }
        let meta = &self.meta[self.inner.opt.step % self.meta.len()];
        metarm_step(&mut self.inner, pairs, meta, self.eta)
    }
    fn evaluate(&mut self, batch: &RewardBatch) -> Result<Metrics> {
        Ok(self.inner.loss(batch)?.1)
    }
    fn model(&self) -> &reins_model::Model {
        &self.inner.model
    }
    fn optimizer(&mut self) -> &mut crate::optim::optimizer::Optimizer {
        &mut self.inner.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.inner.num_tokens
    }
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        crate::trainers::BatchTrainer::model_files(&self.inner)
    }
    fn extra_state(&self) -> Result<Vec<(String, candle_core::Tensor)>> {
        crate::trainers::BatchTrainer::extra_state(&self.inner)
    }
    fn load_extra_state(&mut self, saved: &std::collections::HashMap<String, candle_core::Tensor>) -> Result<()> {
        crate::trainers::BatchTrainer::load_extra_state(&mut self.inner, saved)
    }
}
