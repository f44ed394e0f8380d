//! Supervised fine-tuning (TRL `SFTTrainer`): mean next-token cross-entropy over the labelled
//! tokens — the completion only for prompt/completion data, the assistant turns for chats.

use candle_core::Tensor;
use reins_data::collate::SftBatch;
use reins_model::Model;

use super::accumulation::finish_step;
use super::metrics::{attended_tokens, scalar, MicroBatchMean};
use super::token_metrics::TokenStats;
use super::{completion_logps, BatchTrainer, Metrics};
use crate::optim::optimizer::Optimizer;
use crate::Result;

pub struct SftTrainer {
    pub model: Model,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
    /// Files `(name, contents)` written into every checkpoint beside the weights (a
    /// sequence-to-sequence reward model's `seq2seq_reward.json`); none by default.
    pub model_files: Vec<(String, String)>,
}

impl SftTrainer {
    pub fn new(model: Model, opt: Optimizer) -> Self {
        SftTrainer { model, opt, num_tokens: 0.0, model_files: Vec::new() }
    }

    /// Loss of one batch: `−Σ log p(labels) / #labels` over labels ≠ -100, with the
    /// number of tokens seen (`num_tokens`) for TRL's metric.
    pub fn loss(&self, batch: &SftBatch) -> Result<(Tensor, Metrics)> {
        let (sum, n, mut m) = self.summed_loss(batch)?;
        let loss = (sum / n.max(1) as f64)?;
        m.insert("loss".into(), scalar(&loss)?);
        Ok((loss, m))
    }

    /// `−Σ log p(labels)` of one batch, its number of label tokens, and `num_tokens`.
    fn summed_loss(&self, batch: &SftBatch) -> Result<(Tensor, usize, Metrics)> {
        let attn = match &batch.attention_mask {
            Some(a) => a.clone(),
            None => batch.input_ids.iter().map(|r| vec![1u8; r.len()]).collect(),
        };
        // A label at position t is predicted from position t-1: the label mask marks targets.
        let label_mask: Vec<Vec<u8>> =
            batch.labels.iter().map(|r| r.iter().map(|&l| (l != -100) as u8).collect()).collect();
        let out = completion_logps(&self.model, &batch.input_ids, &attn, &label_mask)?;
        let mut m = Metrics::new();
        let stats = TokenStats::from_full(&out.logits, &batch.input_ids, &label_mask)?;
        m.insert("entropy".into(), stats.entropy(0..stats.rows()));
        m.insert("mean_token_accuracy".into(), stats.accuracy(0..stats.rows()));
        m.insert("num_tokens".into(), attended_tokens(&attn));
        Ok((out.sums.sum_all()?.neg()?, label_tokens(batch), m))
    }
}

/// Label tokens the loss counts: labels ≠ -100 after the first position of each row (the
/// first token has no prediction). transformers' `num_items_in_batch`.
fn label_tokens(batch: &SftBatch) -> usize {
    batch.labels.iter().map(|r| r.iter().skip(1).filter(|&&l| l != -100).count()).sum()
}

impl BatchTrainer for SftTrainer {
    type Batch = SftBatch;
    fn batch_loss(&self, batch: &SftBatch) -> Result<(Tensor, Metrics)> {
        self.loss(batch)
    }
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        Ok(self.model_files.clone())
    }

    /// One optimizer step over `micro_batches` (gradient accumulation).
    ///
    /// As transformers' `Trainer` with `num_items_in_batch`: each micro-batch's summed token
    /// loss is divided by the label tokens of the whole accumulated batch, so the step's
    /// gradient and logged `loss` are those of one batch holding every micro-batch, however
    /// unequally the tokens fall into them (a mean of per-micro-batch means would weight a
    /// token of a short micro-batch more).
    fn train_step(&mut self, micro_batches: &[SftBatch]) -> Result<Metrics> {
        // Under data parallelism the label tokens of every rank's share count, and a rank's loss
        // is scaled by the number of ranks, as the optimizer averages their gradients.
        let local = micro_batches.iter().map(label_tokens).sum::<usize>() as f64;
        let ranks = crate::parallel::world().world_size() as f64;
        let total = crate::parallel::sum_over_ranks(local)?.max(1.0) / ranks;
        let mut loss = 0.0;
        let mut per_batch = Vec::with_capacity(micro_batches.len());
        for b in micro_batches {
            let (sum, _, m) = self.summed_loss(b)?;
            let part = (sum / total)?;
            loss += scalar(&part)?;
            self.opt.accumulate(part.backward()?)?;
            per_batch.push(m);
        }
        // Token-level statistics (`entropy`, `mean_token_accuracy`) are means over the
        // micro-batches, as TRL averages what each `compute_loss` call logged.
        let mut metrics = MicroBatchMean::All.reduce(per_batch, &mut self.num_tokens);
        metrics.insert("loss".into(), loss);
        finish_step(&mut self.opt, metrics, self.num_tokens)
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
