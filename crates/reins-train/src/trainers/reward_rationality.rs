//! A reward model trained with per-annotator rationality (Liu, Shi & Sun, arXiv:2604.02507;
//! arXiv:2512.03208): `P(y_w ≻ y_l) = σ(β_a (r_w − r_l − margin))` with `β_a` the rationality of
//! the annotator who labelled the pair. Alternating steps, as in arXiv:2512.03208: each
//! optimizer step on the reward model uses the current β's as constants
//! ([`rationality_reward_loss`]); then the β's take one gradient step on the same batch's
//! (detached) reward gaps ([`rationality_step`]) and are centred so that mean ln β = 0.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::Tensor;
use reins_data::collate::RewardBatch;
use reins_model::Model;
use serde::{Deserialize, Serialize};

use super::metrics::{attended_tokens, scalar};
use super::reward::RewardTrainer;
use super::{BatchTrainer, Metrics};
use crate::losses::ops::to_vec_f64;
use crate::losses::{rationality_reward_loss, reward_metrics};
use crate::optim::optimizer::Optimizer;
use crate::statistics::{rationality_step, GapObservation, Rationality};
use crate::{Result, TrainError};

/// A reward batch with the annotator (an index into the trainer's annotator ids) of each pair.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedRewardBatch {
    pub batch: RewardBatch,
    pub annotators: Vec<usize>,
}

/// The `annotator_rationality` options of `reins reward`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RationalityArgs {
    /// Learn a rationality β ≥ 0 per annotator jointly with the reward (every pair needs an
    /// `annotator_id`). Default false.
    pub annotator_rationality: bool,
    /// Step size of the β updates (on ln β, per annotator: the mean gradient over its pairs in
    /// the batch). Default 0.05.
    pub rationality_learning_rate: f64,
    /// Precision of the Gaussian prior on each ln β (shrinks towards the typical annotator;
    /// keeps β finite for an annotator the reward never contradicts). Default 0.1.
    pub rationality_prior_precision: f64,
}

impl Default for RationalityArgs {
    fn default() -> Self {
        RationalityArgs {
            annotator_rationality: false,
            rationality_learning_rate: 0.05,
            rationality_prior_precision: 0.1,
        }
    }
}

impl RationalityArgs {
    pub fn validate(&self) -> Result<()> {
        if !(self.rationality_learning_rate > 0.0 && self.rationality_learning_rate.is_finite()) {
            return Err(TrainError::Config(format!(
                "`rationality_learning_rate` must be a positive number (got {}); 0.05 is the default",
                self.rationality_learning_rate
            )));
        }
        if !(self.rationality_prior_precision >= 0.0 && self.rationality_prior_precision.is_finite()) {
            return Err(TrainError::Config(format!(
                "`rationality_prior_precision` must be a finite number >= 0 (got {})",
                self.rationality_prior_precision
            )));
        }
        Ok(())
    }
}

/// One annotator's learned rationality, as `annotator_rationality.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorBeta {
    pub annotator_id: String,
    pub beta: f64,
    pub log_beta: f64,
    /// Training pairs this annotator labelled.
    pub pairs: usize,
}

/// `annotator_rationality.json`: every annotator's β, largest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RationalityReport {
    /// How β and the reward's scale are told apart.
    pub normalisation: String,
    pub annotators: Vec<AnnotatorBeta>,
}

impl RationalityReport {
    pub const FILE: &'static str = "annotator_rationality.json";
}

pub struct RationalityRewardTrainer {
    pub inner: RewardTrainer,
    pub rationality: Rationality,
    /// The annotator ids, in the order of [`Rationality::log_beta`].
    pub annotator_ids: Vec<String>,
    /// Training pairs per annotator (for the report).
    pub pair_counts: Vec<usize>,
    pub args: RationalityArgs,
    /// The current step's reward gaps, gathered by `batch_loss` for the β step.
    gaps: RefCell<Vec<GapObservation>>,
}

impl RationalityRewardTrainer {
    pub fn new(
        inner: RewardTrainer,
        annotator_ids: Vec<String>,
        pair_counts: Vec<usize>,
        args: RationalityArgs,
    ) -> Self {
        RationalityRewardTrainer {
            inner,
            rationality: Rationality::new(annotator_ids.len()),
            annotator_ids,
            pair_counts,
            args,
            gaps: RefCell::new(Vec::new()),
        }
    }

    /// The learned β's, largest first.
    pub fn report(&self) -> RationalityReport {
        let mut annotators: Vec<AnnotatorBeta> = self
            .annotator_ids
            .iter()
            .enumerate()
            .map(|(a, id)| AnnotatorBeta {
                annotator_id: id.clone(),
                beta: self.rationality.beta(a),
                log_beta: self.rationality.log_beta[a],
                pairs: self.pair_counts.get(a).copied().unwrap_or(0),
            })
            .collect();
        annotators.sort_by(|a, b| b.beta.total_cmp(&a.beta));
        RationalityReport {
            normalisation: "mean of ln(beta) over annotators is 0: the reward has the scale of an annotator with beta = 1 (the geometric mean)".into(),
            annotators,
        }
    }
}

impl BatchTrainer for RationalityRewardTrainer {
    type Batch = AnnotatedRewardBatch;

    fn batch_loss(&self, b: &AnnotatedRewardBatch) -> Result<(Tensor, Metrics)> {
        let s = self.inner.scores(&b.batch)?;
        let n = b.batch.input_ids.len() / 2;
        if b.annotators.len() != n {
            return Err(TrainError::Input(format!("{} annotators for a batch of {n} pairs", b.annotators.len())));
        }
        let (c, r) = (s.narrow(0, 0, n)?, s.narrow(0, n, n)?);
        let per_pair = |v: &Option<Vec<f64>>| -> Result<Option<Tensor>> {
            Ok(match v {
                Some(v) => Some(Tensor::from_vec(v.clone(), n, s.device())?.to_dtype(s.dtype())?),
                None => None,
            })
        };
        let (margin, soft) = (per_pair(&b.batch.margin)?, per_pair(&b.batch.strength)?);
        // An annotator the training data does not have (an eval pair's) is scored at β = 1.
        let u = &self.rationality.log_beta;
        let betas: Vec<f64> = b.annotators.iter().map(|&a| u.get(a).map_or(1.0, |u| u.exp())).collect();
        let beta = Tensor::from_vec(betas, n, s.device())?;
        let cfg = &self.inner.cfg;
        let loss = rationality_reward_loss(&c, &r, margin.as_ref(), soft.as_ref(), &beta, cfg)?;
        // The gaps and targets the β step reads (label smoothing as in the loss).
        let (cv, rv) = (to_vec_f64(&c)?, to_vec_f64(&r)?);
        let eps = cfg.label_smoothing;
        let mut gaps = self.gaps.borrow_mut();
        for i in 0..n {
            let p = b.batch.strength.as_ref().map_or(1.0, |p| p[i]);
            gaps.push(GapObservation {
                annotator: b.annotators[i],
                gap: cv[i] - rv[i] - b.batch.margin.as_ref().map_or(0.0, |m| m[i]),
                target: (1.0 - eps) * p + eps * (1.0 - p),
            });
        }
        let mut m = reward_metrics(&c.detach(), &r.detach())?;
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("num_tokens".into(), attended_tokens(&b.batch.attention_mask));
        Ok((loss, m))
    }

    fn train_step(&mut self, micro_batches: &[AnnotatedRewardBatch]) -> Result<Metrics> {
        self.gaps.borrow_mut().clear();
        let mut m = super::accumulation::mean_of_micro_batches(self, micro_batches)?;
        let gaps = std::mem::take(&mut *self.gaps.borrow_mut());
        let a = &self.args;
        rationality_step(
            &mut self.rationality,
            self.inner.cfg.link,
            &gaps,
            a.rationality_learning_rate,
            a.rationality_prior_precision,
        );
        let betas = self.rationality.betas();
        m.insert("rationality/beta_min".into(), betas.iter().copied().fold(f64::INFINITY, f64::min));
        m.insert("rationality/beta_max".into(), betas.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        Ok(m)
    }

    fn model(&self) -> &Model {
        &self.inner.model
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.inner.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.inner.num_tokens
    }

    /// Every checkpoint carries the β's beside the weights.
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        let json = serde_json::to_string_pretty(&self.report()).map_err(|e| TrainError::State(e.to_string()))?;
        Ok(vec![(RationalityReport::FILE.into(), json)])
    }

    /// ln β, so a resumed run goes on with the β's it had.
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        let u = &self.rationality.log_beta;
        Ok(vec![("annotator_log_beta".into(), Tensor::from_vec(u.clone(), u.len(), &candle_core::Device::Cpu)?)])
    }

    fn load_extra_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        if let Some(t) = saved.get("annotator_log_beta") {
            let u: Vec<f64> = t.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            if u.len() != self.rationality.log_beta.len() {
                return Err(TrainError::State(format!(
                    "the checkpoint has {} annotators, the data {}: resume with the same dataset",
                    u.len(),
                    self.rationality.log_beta.len()
                )));
            }
            self.rationality.log_beta = u;
        }
        Ok(())
    }
}
