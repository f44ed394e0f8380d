//! Supervised fine-tuning (TRL `SFTTrainer`): mean next-token cross-entropy over the labelled
//! tokens — the completion only for prompt/completion data, the assistant turns for chats.

use reins_data::collate::SftBatch;
use reins_model::Model;

use super::{scalar, Metrics};
use crate::optim::optimizer::Optimizer;
use crate::Result;

pub struct SftTrainer {
    pub model: Model,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl SftTrainer {
    pub fn new(model: Model, opt: Optimizer) -> Self {
        SftTrainer { model, opt, num_tokens: 0.0 }
    }

    /// Loss of one batch: `−Σ log p(labels) / #labels` over labels ≠ -100, with the
    /// number of tokens seen (`num_tokens`) for TRL's metric.
    pub fn loss(&self, batch: &SftBatch) -> Result<(candle_core::Tensor, Metrics)> {
        let attn = match &batch.attention_mask {
            Some(a) => a.clone(),
            None => batch.input_ids.iter().map(|r| vec![1u8; r.len()]).collect(),
        };
        // A label at position t is predicted from position t-1: the label mask marks targets.
        let label_mask: Vec<Vec<u8>> =
            batch.labels.iter().map(|r| r.iter().map(|&l| (l != -100) as u8).collect()).collect();
        let out = super::completion_logps(&self.model, &batch.input_ids, &attn, &label_mask)?;
        let n = out.mask.sum_all()?;
        let loss = (out.sums.sum_all()?.neg()? / n)?;
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&loss)?);
        let stats = super::token_metrics::TokenStats::from_full(&out.logits, &batch.input_ids, &label_mask)?;
        m.insert("entropy".into(), stats.entropy(0..stats.rows()));
        m.insert("mean_token_accuracy".into(), stats.accuracy(0..stats.rows()));
        m.insert("num_tokens".into(), attn.iter().flatten().map(|&x| x as f64).sum());
        Ok((loss, m))
    }

    /// One optimizer step over `micro_batches` (gradient accumulation); metrics averaged.
    pub fn train_step(&mut self, micro_batches: &[SftBatch]) -> Result<Metrics> {
        let k = micro_batches.len() as f64;
        let mut metrics = Metrics::new();
        for b in micro_batches {
            let (loss, m) = self.loss(b)?;
            self.opt.accumulate((loss / k)?.backward()?)?;
            super::accumulate_metrics(&mut metrics, m, k, &mut self.num_tokens);
        }
        super::finish_step(&mut self.opt, metrics, self.num_tokens)
    }
}

impl crate::run::Trainer for SftTrainer {
    type Batch = SftBatch;
    fn train_step(&mut self, micro_batches: &[SftBatch]) -> Result<Metrics> {
        SftTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &SftBatch) -> Result<Metrics> {
        Ok(self.loss(batch)?.1)
    }
    fn model(&self) -> &Model {
        &self.model
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.num_tokens
    }
}
