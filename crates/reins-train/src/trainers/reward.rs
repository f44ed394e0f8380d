//! Reward-model training (TRL `RewardTrainer`): a score head read at the last token,
//! Bradley–Terry loss `−log σ(r_chosen − r_rejected − margin)` (Ouyang et al. 2022, eq. 1).

use candle_core::Tensor;
use reins_data::collate::RewardBatch;
use reins_model::{Batch, Model};

use super::{scalar, Metrics};
use crate::losses::{bradley_terry_loss, reward_metrics, RewardLossConfig};
use crate::optim::optimizer::Optimizer;
use crate::Result;

pub struct RewardTrainer {
    pub model: Model,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
    pub cfg: RewardLossConfig,
}

impl RewardTrainer {
    pub fn new(model: Model, opt: Optimizer, cfg: RewardLossConfig) -> Self {
        RewardTrainer { model, opt, cfg, num_tokens: 0.0 }
    }

    /// Scores `[2B]` of a batch (chosen rows first, then rejected).
    pub fn scores(&self, batch: &RewardBatch) -> Result<Tensor> {
        let b = Batch::new(batch.input_ids.clone(), batch.attention_mask.clone())?;
        Ok(self.model.scores(&b)?.narrow(1, 0, 1)?.squeeze(1)?)
    }

    pub fn loss(&self, batch: &RewardBatch) -> Result<(Tensor, Metrics)> {
        let s = self.scores(batch)?;
        let n = batch.input_ids.len() / 2;
        let (c, r) = (s.narrow(0, 0, n)?, s.narrow(0, n, n)?);
        let margin = match &batch.margin {
            Some(m) => Some(Tensor::from_vec(m.iter().map(|&x| x as f32).collect::<Vec<_>>(), n, s.device())?),
            None => None,
        };
        let loss = bradley_terry_loss(&c, &r, margin.as_ref(), None, &self.cfg)?;
        let mut m = reward_metrics(&c.detach(), &r.detach())?;
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("num_tokens".into(), batch.attention_mask.iter().flatten().map(|&x| x as f64).sum());
        Ok((loss, m))
    }

    pub fn train_step(&mut self, micro_batches: &[RewardBatch]) -> Result<Metrics> {
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

impl crate::run::Trainer for RewardTrainer {
    type Batch = RewardBatch;
    fn train_step(&mut self, micro_batches: &[RewardBatch]) -> Result<Metrics> {
        RewardTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &RewardBatch) -> Result<Metrics> {
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
