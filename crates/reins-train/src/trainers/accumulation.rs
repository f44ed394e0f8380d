//! Gradient accumulation: how the micro-batches of one optimizer step become one update, for
//! every trainer. Each micro-batch's loss, scaled to its share of the step, is differentiated
//! at once (its graph is freed before the next micro-batch runs) and its gradient added to the
//! optimizer's; after the last one the optimizer steps and the step's metrics are logged.
//!
//! Trainers on fixed batches (SFT, reward models, DPO, KTO, ORPO, CPO/SimPO, LiPO) implement
//! [`BatchTrainer`], which is mostly their loss on one batch; the optimizer step
//! ([`mean_of_micro_batches`]) and the [`run::Trainer`] glue come from here. Online trainers
//! sample first and then pass their per-micro-batch losses through [`accumulate`].
//!
//! [`run::Trainer`]: crate::run::Trainer

use std::collections::HashMap;

use candle_core::Tensor;
use reins_model::Model;

use super::metrics::{add_mean, MicroBatchMean};
use super::Metrics;
use crate::optim::optimizer::{Optimizer, StepStats};
use crate::Result;

/// A trainer that learns from collated batches of a fixed dataset. It supplies its loss on
/// one batch and where its model, optimizer and token count live; [`crate::run::Trainer`] is
/// implemented for it here.
pub trait BatchTrainer {
    /// A collated batch.
    type Batch;
    /// How the micro-batches' metrics are averaged (default: over all of them).
    const METRICS_MEAN: MicroBatchMean = MicroBatchMean::All;
    /// The loss of one batch (with graph; a mean over its examples) and its metrics under
    /// TRL's keys, `num_tokens` being the batch's attended tokens.
    fn batch_loss(&self, batch: &Self::Batch) -> Result<(Tensor, Metrics)>;
    /// The model being trained (what checkpoints save).
    fn model(&self) -> &Model;
    fn optimizer(&mut self) -> &mut Optimizer;
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    fn num_tokens(&mut self) -> &mut f64;
    /// One optimizer step over `micro_batches`: [`mean_of_micro_batches`], unless the
    /// trainer normalises its loss otherwise (SFT's `num_items_in_batch`).
    fn train_step(&mut self, micro_batches: &[Self::Batch]) -> Result<Metrics> {
        mean_of_micro_batches(self, micro_batches)
    }
    /// Runs after every optimizer step (TR-DPO's reference sync).
    fn after_step(&mut self) -> Result<()> {
        Ok(())
    }
    /// See [`crate::run::Trainer::model_files`].
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    /// See [`crate::run::Trainer::extra_state`].
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// See [`crate::run::Trainer::load_extra_state`].
    fn load_extra_state(&mut self, _saved: &HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// One optimizer step as TRL's trainers without `num_items_in_batch` take it (DPO, reward,
/// KTO, ORPO, CPO): each micro-batch's mean loss divided by the number of micro-batches, so
/// the step's gradient is the mean of the micro-batches' mean gradients; metrics averaged
/// over the micro-batches ([`BatchTrainer::METRICS_MEAN`]), `num_tokens` cumulative.
pub fn mean_of_micro_batches<T: BatchTrainer + ?Sized>(trainer: &mut T, micro_batches: &[T::Batch]) -> Result<Metrics> {
    let k = micro_batches.len() as f64;
    let mut per_batch = Vec::with_capacity(micro_batches.len());
    for b in micro_batches {
        let (loss, m) = trainer.batch_loss(b)?;
        trainer.optimizer().accumulate((loss / k)?.backward()?)?;
        per_batch.push(m);
    }
    let metrics = T::METRICS_MEAN.reduce(per_batch, trainer.num_tokens());
    let tokens = *trainer.num_tokens();
    let metrics = finish_step(trainer.optimizer(), metrics, tokens)?;
    trainer.after_step()?;
    Ok(metrics)
}

/// The micro-batches of one optimizer step of a trainer that samples its own data: for each,
/// `micro_batch` gives its loss, already scaled to its share of the step, and its metrics; the
/// loss's gradient is added to the optimizer's and the metrics to `metrics` with weight `1/n`.
/// The caller steps the optimizer ([`finish_step`]), so GRPO and RLOO can take
/// `num_iterations` steps over one generation batch.
pub fn accumulate<I>(
    opt: &mut Optimizer,
    micro_batches: impl IntoIterator<Item = I>,
    metrics: &mut Metrics,
    n: f64,
    mut micro_batch: impl FnMut(I) -> Result<(Tensor, Metrics)>,
) -> Result<()> {
    for b in micro_batches {
        let (loss, m) = micro_batch(b)?;
        opt.accumulate(loss.backward()?)?;
        add_mean(metrics, m, n);
    }
    Ok(())
}

/// Steps the optimizer on the accumulated gradient and logs the step ([`log_step`]).
pub fn finish_step(opt: &mut Optimizer, mut metrics: Metrics, num_tokens: f64) -> Result<Metrics> {
    let s = opt.step()?;
    log_step(&mut metrics, &s, num_tokens);
    Ok(metrics)
}

/// TRL's per-step keys: `num_tokens` (cumulative), `grad_norm` (before clipping) and
/// `learning_rate` of the optimizer step `s`.
pub fn log_step(metrics: &mut Metrics, s: &StepStats, num_tokens: f64) {
    metrics.insert("num_tokens".into(), num_tokens);
    metrics.insert("grad_norm".into(), s.grad_norm);
    metrics.insert("learning_rate".into(), s.learning_rate);
}

impl<T: BatchTrainer> crate::run::Trainer for T {
    type Batch = T::Batch;
    fn train_step(&mut self, micro_batches: &[T::Batch]) -> Result<Metrics> {
        BatchTrainer::train_step(self, micro_batches)
    }
    fn evaluate(&mut self, batch: &T::Batch) -> Result<Metrics> {
        Ok(self.batch_loss(batch)?.1)
    }
    fn model(&self) -> &Model {
        BatchTrainer::model(self)
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        BatchTrainer::optimizer(self)
    }
    fn num_tokens(&mut self) -> &mut f64 {
        BatchTrainer::num_tokens(self)
    }
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        BatchTrainer::model_files(self)
    }
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        BatchTrainer::extra_state(self)
    }
    fn load_extra_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        BatchTrainer::load_extra_state(self, saved)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::optim::optimizer::OptimConfig;

    fn metric(key: &str, v: f64) -> Metrics {
        Metrics::from([(key.to_string(), v)])
    }

    /// One weight `w`; the loss of batch `c` is `c·w`, so its gradient is `c`.
    struct Linear {
        w: Var,
        opt: Optimizer,
        num_tokens: f64,
        steps_seen: usize,
    }

    impl Linear {
        fn new() -> Result<Self> {
            let w = Var::new(&[1f32], &Device::Cpu)?;
            let opt = Optimizer::new(&[("w".to_string(), w.clone())], &OptimConfig::default(), 4)?;
            Ok(Linear { w, opt, num_tokens: 0.0, steps_seen: 0 })
        }
    }

    impl BatchTrainer for Linear {
        type Batch = f64;
        fn batch_loss(&self, c: &f64) -> Result<(Tensor, Metrics)> {
            let mut m = metric("loss", *c);
            m.insert("num_tokens".into(), 10.0);
            Ok(((self.w.as_tensor().sum_all()? * *c)?, m))
        }
        fn model(&self) -> &Model {
            unreachable!("no checkpoint is written here")
        }
        fn optimizer(&mut self) -> &mut Optimizer {
            &mut self.opt
        }
        fn num_tokens(&mut self) -> &mut f64 {
            &mut self.num_tokens
        }
        fn after_step(&mut self) -> Result<()> {
            self.steps_seen = self.opt.step;
            Ok(())
        }
    }

    #[test]
    fn a_step_is_the_mean_of_its_micro_batches() -> Result<()> {
        let mut t = Linear::new()?;
        let m = crate::run::Trainer::train_step(&mut t, &[1.0, 3.0])?;
        // Gradient (1 + 3) / 2 = 2 before clipping; losses averaged; tokens summed.
        assert_eq!((m["grad_norm"], m["loss"], m["num_tokens"]), (2.0, 2.0, 20.0));
        assert_eq!(t.steps_seen, 1, "after_step runs after the optimizer step");
        let m = crate::run::Trainer::train_step(&mut t, &[5.0])?;
        assert_eq!((m["grad_norm"], m["loss"], m["num_tokens"]), (5.0, 5.0, 30.0));
        assert_eq!(crate::run::Trainer::evaluate(&mut t, &4.0)?["loss"], 4.0);
        Ok(())
    }

    #[test]
    fn accumulate_adds_each_scaled_gradient_and_averages_metrics() -> Result<()> {
        let mut t = Linear::new()?;
        let mut metrics = Metrics::new();
        let w = t.w.clone();
        accumulate(&mut t.opt, [1.0, 3.0, 8.0], &mut metrics, 4.0, |c: f64| {
            Ok(((w.as_tensor().sum_all()? * (c / 4.0))?, metric("kl", c)))
        })?;
        let m = finish_step(&mut t.opt, metrics, 7.0)?;
        assert_eq!((m["grad_norm"], m["kl"], m["num_tokens"]), (3.0, 3.0, 7.0));
        assert!(finish_step(&mut t.opt, Metrics::new(), 7.0).is_err(), "a step without gradients");
        Ok(())
    }
}
