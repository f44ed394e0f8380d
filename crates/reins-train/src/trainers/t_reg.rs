//! T-REG (Zhou et al., arXiv:2412.02685): offline DPO on preference pairs plus `α·L_REG`, a
//! token-level regularizer ([`crate::losses::t_reg`]) driven by token rewards the starting model
//! gives itself by contrastive prompting.
//!
//! 1. **Token rewards, once per dataset** ([`contrastive_token_rewards`]): every chosen and
//!    rejected completion is scored token by token by the frozen starting model under two opposite
//!    prompts (the user's message behind "make it better" and "make it worse" instructions):
//!    `r_t = log π_0(y_t | x⁺, y_<t) − log π_0(y_t | x⁻, y_<t)`. `uniform` rewards (all zero)
//!    reduce the regularizer to DPO; `shuffled` ones (each response's rewards permuted) are a
//!    placebo with the same values and no position information.
//! 2. **Each step**: DPO's loss on the batch (any [`DpoConfig`]) plus `α·L_REG` on the same
//!    per-token log-probs, the weights from each response's token rewards.
//!
//! The contrastive prompts, the softmax weighting and α's default are reconstructions (research
//! note §4, [recalled]); the paper's code was not read, and no parity is claimed.

use candle_core::{Tensor, D};
use reins_data::collate::PreferenceBatch;
use reins_model::{Batch, Model};
use serde::{Deserialize, Serialize};

use super::metrics::attended_tokens;
use super::reference::Reference;
use super::{completion_only_logps, BatchTrainer, Metrics};
use crate::losses::dpo::{dpo_loss, dpo_metrics};
use crate::losses::{t_reg_loss, token_weights, DpoConfig, DpoExtras, TRegConfig};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

/// Where the token rewards come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenRewardSource {
    /// The starting model under the better and the worse prompt (T-REG). Default.
    #[default]
    Contrastive,
    /// All equal: the regularizer is DPO's loss (a control).
    Uniform,
    /// The contrastive rewards permuted within each response (a placebo control).
    Shuffled,
}

/// How `reins t-reg` makes its token rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenRewardConfig {
    /// `contrastive` (default), `uniform` or `shuffled`.
    pub token_reward: TokenRewardSource,
    /// Put before the user's (last) message for the "better" pass.
    pub better_prompt: String,
    /// Put before the user's (last) message for the "worse" pass.
    pub worse_prompt: String,
}

impl Default for TokenRewardConfig {
    fn default() -> Self {
        TokenRewardConfig {
            token_reward: TokenRewardSource::default(),
            better_prompt: "Give a helpful, correct, concise and polite answer.\n\n".into(),
            worse_prompt: "Give an unhelpful, wrong, rambling and rude answer.\n\n".into(),
        }
    }
}

/// A collated batch of pairs with each row's token rewards (`2B` rows, chosen then rejected,
/// one value per completion token in order; a row may carry more values than the batch kept
/// of its completion after truncation).
#[derive(Debug, Clone)]
pub struct TRegBatch {
    pub pairs: PreferenceBatch,
    pub token_rewards: Vec<Vec<f32>>,
}

/// Contrastive token rewards: for each `(prompt⁺, prompt⁻, completion)` token-id triple,
/// `log π(y_t | prompt⁺, y_<t) − log π(y_t | prompt⁻, y_<t)` for every completion token, from
/// teacher-forced passes of `model` (no graph), `batch_size` sequences at a time.
pub fn contrastive_token_rewards(
    model: &Model,
    rows: &[(Vec<u32>, Vec<u32>, Vec<u32>)],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let model = model.detached();
    type Row = (Vec<u32>, Vec<u32>, Vec<u32>);
    let logps = |prompt_of: &dyn Fn(&Row) -> &Vec<u32>| -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(batch_size.max(1)) {
            let seqs: Vec<(Vec<u32>, usize)> = chunk
                .iter()
                .map(|r| (prompt_of(r).iter().chain(&r.2).copied().collect::<Vec<u32>>(), prompt_of(r).len()))
                .collect();
            let batch = Batch::right_padded(&seqs.iter().map(|s| s.0.clone()).collect::<Vec<_>>(), 0);
            // The completion: from the prompt's end to the row's end.
            let cm: Vec<Vec<u8>> = seqs
                .iter()
                .zip(&batch.mask)
                .map(|(s, m)| m.iter().enumerate().map(|(j, &a)| a * u8::from(j >= s.1)).collect())
                .collect();
            let per_token: Vec<Vec<f32>> =
                completion_only_logps(&model, &batch.ids, &batch.mask, &cm)?.per_token.to_vec2()?;
            for (row, s) in per_token.iter().zip(&seqs) {
                // per_token[j] scores token j + 1: the completion's tokens sit at s.1 - 1 ..
                let start = s.1.saturating_sub(1);
                out.push(row[start..s.0.len() - 1].to_vec());
            }
        }
        Ok(out)
    };
    if rows.iter().any(|r| r.0.is_empty() || r.1.is_empty() || r.2.is_empty()) {
        return Err(TrainError::Input("contrastive token rewards need non-empty prompts and completions".into()));
    }
    let better = logps(&|r| &r.0)?;
    let worse = logps(&|r| &r.1)?;
    Ok(better.iter().zip(&worse).map(|(b, w)| b.iter().zip(w).map(|(x, y)| x - y).collect()).collect())
}

pub struct TRegTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub dpo: DpoConfig,
    pub cfg: TRegConfig,
    pub opt: Optimizer,
    pub num_tokens: f64,
}

impl TRegTrainer {
    pub fn new(policy: Model, reference: Reference, dpo: DpoConfig, cfg: TRegConfig, opt: Optimizer) -> Result<Self> {
        dpo.validate()?;
        cfg.validate()?;
        if matches!(reference, Reference::Precomputed) {
            return Err(TrainError::Config(
                "T-REG needs the reference's per-token log-probs: a reference model, not precomputed sums".into(),
            ));
        }
        Ok(TRegTrainer { policy, reference, dpo, cfg, opt, num_tokens: 0.0 })
    }

    /// DPO's loss plus `α·L_REG` on one batch, with DPO's metrics and `t_reg/*`.
    pub fn loss(&self, b: &TRegBatch) -> Result<(Tensor, Metrics)> {
        let p = &b.pairs;
        let n = p.pairs();
        if b.token_rewards.len() != 2 * n {
            return Err(TrainError::Input(format!("{} token-reward rows for {} pairs", b.token_rewards.len(), n)));
        }
        let (ids, attn, cm) = (&p.input_ids, &p.attention_mask, &p.completion_mask);
        let out = completion_only_logps(&self.policy, ids, attn, cm)?;
        let reference = completion_only_logps(&self.reference.model(&self.policy)?, ids, attn, cm)?;
        let (c, r) = (out.sums.narrow(0, 0, n)?, out.sums.narrow(0, n, n)?);
        let (rc, rr) = (reference.sums.narrow(0, 0, n)?, reference.sums.narrow(0, n, n)?);
        let lengths = out.mask.sum(D::Minus1)?;
        let extras = DpoExtras {
            chosen_lengths: Some(lengths.narrow(0, 0, n)?),
            rejected_lengths: Some(lengths.narrow(0, n, n)?),
            soft_labels: p.strength.as_ref().map(|s| Tensor::from_vec(s.clone(), n, c.device())).transpose()?,
            ..Default::default()
        };
        let dpo = dpo_loss(&c, &r, &rc, &rr, &self.dpo, &extras)?;

        // Token weights on the per-token layout (`[2B, T-1]`, position j scores token j + 1).
        let t = out.per_token.dim(1)?;
        let (mut weights, mut rewards_flat, mut rho_flat) = (vec![0f32; 2 * n * t], vec![], vec![]);
        let rho: Vec<Vec<f32>> = (&out.per_token.detach() - &reference.per_token)?.to_vec2()?;
        for (i, rewards) in b.token_rewards.iter().enumerate() {
            let positions: Vec<usize> = (0..t).filter(|&j| cm[i][j + 1] == 1).collect();
            if rewards.len() < positions.len() {
                return Err(TrainError::Input(format!(
                    "row {i} has {} token rewards for {} completion tokens",
                    rewards.len(),
                    positions.len()
                )));
            }
            let sign = if i < n { 1.0 } else { -1.0 };
            let w = token_weights(&rewards[..positions.len()], sign, self.cfg.token_temperature);
            for (k, &j) in positions.iter().enumerate() {
                weights[i * t + j] = w[k];
                rewards_flat.push(f64::from(rewards[k]));
                rho_flat.push(f64::from(rho[i][j]));
            }
        }
        let weights = Tensor::from_vec(weights, (2 * n, t), out.per_token.device())?;
        let reg = t_reg_loss(&out.per_token, &reference.per_token, &weights, self.dpo.beta)?;
        let loss = (&dpo.loss + (&reg * self.cfg.alpha)?)?;

        let mut m = dpo_metrics(&dpo, &c.detach(), &r.detach())?;
        m.insert("t_reg/dpo_loss".into(), f64::from(dpo.loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?));
        m.insert("t_reg/reg_loss".into(), f64::from(reg.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?));
        m.insert("loss".into(), f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?));
        m.insert("t_reg/implicit_reward_corr".into(), crate::statistics::pearson(&rewards_flat, &rho_flat));
        m.insert("num_tokens".into(), attended_tokens(attn));
        Ok((loss, m))
    }
}

impl BatchTrainer for TRegTrainer {
    type Batch = TRegBatch;
    fn batch_loss(&self, batch: &TRegBatch) -> Result<(Tensor, Metrics)> {
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

    use candle_core::Device;

    use super::*;
    use crate::optim::optimizer::OptimConfig;
    use crate::trainers::dpo::DpoTrainer;

    fn llama(trainable: bool) -> Result<Model> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama");
        Ok(Model::load(&dir, &Device::Cpu, &reins_model::LoadOptions { trainable, ..Default::default() })?)
    }

    /// Two pairs, right-padded, prompts of different lengths.
    fn pairs() -> PreferenceBatch {
        PreferenceBatch {
            input_ids: vec![
                vec![5, 6, 30, 31, 0],
                vec![9, 10, 11, 50, 51],
                vec![5, 6, 40, 0, 0],
                vec![9, 10, 11, 60, 61],
            ],
            attention_mask: vec![vec![1, 1, 1, 1, 0], vec![1; 5], vec![1, 1, 1, 0, 0], vec![1; 5]],
            completion_mask: vec![vec![0, 0, 1, 1, 0], vec![0, 0, 0, 1, 1], vec![0, 0, 1, 0, 0], vec![0, 0, 0, 1, 1]],
            margin: None,
            strength: None,
            ref_logps: None,
        }
    }

    fn trainer(alpha: f64) -> Result<TRegTrainer> {
        let policy = llama(true)?;
        let opt = Optimizer::new(policy.params(), &OptimConfig::default(), 1)?;
        let cfg = TRegConfig { alpha, ..Default::default() };
        TRegTrainer::new(policy, Reference::Model(Box::new(llama(false)?)), DpoConfig::default(), cfg, opt)
    }

    /// Equal token rewards make the regularizer DPO's own loss: T-REG's loss is `(1 + α)` times
    /// the DPO trainer's (another code path), whatever the policy.
    #[test]
    fn uniform_token_rewards_give_one_plus_alpha_times_dpo() -> Result<()> {
        let t = trainer(0.5)?;
        // Move the policy off the reference so the loss is not ln 2 everywhere.
        for (_, v) in t.policy.params() {
            v.set(&(v.as_tensor() * 1.05)?)?;
        }
        let batch =
            TRegBatch { pairs: pairs(), token_rewards: vec![vec![0.7; 2], vec![0.7; 2], vec![0.7; 1], vec![0.7; 2]] };
        let (loss, m) = t.loss(&batch)?;
        let opt = Optimizer::new(t.policy.params(), &OptimConfig::default(), 1)?;
        let dpo =
            DpoTrainer::new(t.policy.clone(), Reference::Model(Box::new(llama(false)?)), DpoConfig::default(), opt)?;
        let (d, _) = dpo.loss(&pairs(), None)?;
        let (l, d): (f32, f32) = (loss.to_scalar()?, d.to_scalar()?);
        assert!((l - 1.5 * d).abs() < 1e-5, "T-REG {l} vs 1.5 × DPO {d}");
        assert!((m["t_reg/reg_loss"] - m["t_reg/dpo_loss"]).abs() < 1e-5, "{m:?}");
        Ok(())
    }

    /// Rewards that favour one token move the loss, and the gradient reaches every parameter.
    #[test]
    fn graded_token_rewards_change_the_loss_and_reach_every_parameter() -> Result<()> {
        let t = trainer(1.0)?;
        let flat =
            TRegBatch { pairs: pairs(), token_rewards: vec![vec![0.0; 2], vec![0.0; 2], vec![0.0], vec![0.0; 2]] };
        let graded = TRegBatch {
            pairs: pairs(),
            token_rewards: vec![vec![3.0, -3.0], vec![-2.0, 2.0], vec![1.0], vec![4.0, -4.0]],
        };
        for (_, v) in t.policy.params() {
            v.set(&(v.as_tensor() * 0.97)?)?;
        }
        let (a, _) = t.loss(&flat)?;
        let (b, _) = t.loss(&graded)?;
        assert!((a.to_scalar::<f32>()? - b.to_scalar::<f32>()?).abs() > 1e-6);
        let grads = b.backward()?;
        for (name, v) in t.policy.params() {
            let g = grads.get(v.as_tensor()).ok_or_else(|| TrainError::Input(format!("no gradient for {name}")))?;
            let norm: f32 = g.sqr()?.sum_all()?.to_scalar()?;
            assert!(norm.is_finite(), "{name}");
        }
        let short = TRegBatch { pairs: pairs(), token_rewards: vec![vec![0.0; 2], vec![0.0; 2], vec![], vec![0.0; 2]] };
        assert!(t.loss(&short).is_err(), "fewer rewards than completion tokens is an error");
        Ok(())
    }

    /// The contrastive rewards by hand: the same completion after two prompts, one full forward
    /// pass each, log-softmax at the positions before each completion token.
    #[test]
    fn contrastive_rewards_are_the_log_prob_gaps_of_each_completion_token() -> Result<()> {
        let model = llama(false)?;
        let rows =
            vec![(vec![5u32, 6, 7], vec![8u32], vec![30u32, 31, 32]), (vec![9u32], vec![10u32, 11], vec![40u32])];
        let got = contrastive_token_rewards(&model, &rows, 1)?;
        let lp = |prompt: &[u32], completion: &[u32]| -> Result<Vec<f32>> {
            let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
            let n = ids.len();
            let logits = model.logits(&reins_model::Batch::new(vec![ids.clone()], vec![vec![1; n]])?)?;
            let ls = candle_nn::ops::log_softmax(&logits.get(0)?, D::Minus1)?.to_vec2::<f32>()?;
            Ok((prompt.len()..n).map(|j| ls[j - 1][ids[j] as usize]).collect())
        };
        for (k, (p, q, c)) in rows.iter().enumerate() {
            let want: Vec<f32> = lp(p, c)?.iter().zip(lp(q, c)?).map(|(a, b)| a - b).collect();
            assert_eq!(got[k].len(), c.len());
            for (x, y) in got[k].iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "row {k}: {:?} vs {want:?}", got[k]);
            }
        }
        Ok(())
    }
}
