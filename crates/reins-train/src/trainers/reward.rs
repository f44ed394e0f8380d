//! Reward-model training (TRL `RewardTrainer`): a score head read at the last token,
//! Bradley–Terry loss `−log σ(r_chosen − r_rejected − margin)` (Ouyang et al. 2022, eq. 1),
//! with the pair's soft label (`strength`) as its target when the data has one;
//! and its listwise generalisation on ranked lists, Plackett–Luce (Zhu et al. 2023, §4.2),
//! which equals Bradley–Terry on lists of two.

use candle_core::{DType, Tensor};
use reins_data::collate::{pad, PaddingSide, RewardBatch};
use reins_data::tokenize::reward::tokenize_reward_response;
use reins_data::tokenize::Stats;
use reins_data::{HfTokenizer, Record, Text};
use reins_model::{Batch, Model};

use super::metrics::{attended_tokens, scalar};
use super::{BatchTrainer, Metrics};
use crate::losses::{
    contrastive_reward_loss, pairwise_reward_loss, plackett_luce_loss, reward_metrics, ContrastiveConfig,
    RewardLossConfig, SWAV_PROTOTYPES,
};
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

pub struct RewardTrainer {
    pub model: Model,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
    pub cfg: RewardLossConfig,
    /// The contrastive term (Secrets of RLHF II §3.1); off by default.
    pub contrastive: ContrastiveConfig,
    /// Files every checkpoint carries beside the weights (a residual model's `feature_rm.json`).
    pub files: Vec<(String, String)>,
    /// SwAV's prototypes when the contrastive term is SwAV (`ContrastiveConfig::init_prototypes`);
    /// the optimizer must hold them too. Saved in `trainer_extra.safetensors`.
    pub prototypes: Option<candle_core::Var>,
}

/// The parameters a reward trainer's optimizer updates: the model's, plus SwAV's prototypes
/// when the contrastive term has them.
pub fn trainable_params(model: &Model, prototypes: Option<&candle_core::Var>) -> Vec<(String, candle_core::Var)> {
    let mut params = model.params().to_vec();
    params.extend(prototypes.map(|p| (SWAV_PROTOTYPES.to_string(), p.clone())));
    params
}

impl RewardTrainer {
    pub fn new(model: Model, opt: Optimizer, cfg: RewardLossConfig) -> Self {
        RewardTrainer {
            model,
            opt,
            cfg,
            num_tokens: 0.0,
            contrastive: ContrastiveConfig::default(),
            files: Vec::new(),
            prototypes: None,
        }
    }

    /// Scores `[2B]` of a batch (chosen rows first, then rejected).
    pub fn scores(&self, batch: &RewardBatch) -> Result<Tensor> {
        let b = Batch::new(batch.input_ids.clone(), batch.attention_mask.clone())?;
        Ok(self.model.scores(&b)?.narrow(1, 0, 1)?.squeeze(1)?)
    }

    pub fn loss(&self, batch: &RewardBatch) -> Result<(Tensor, Metrics)> {
        let (s, pooled) = if self.contrastive.enabled() {
            let b = Batch::new(batch.input_ids.clone(), batch.attention_mask.clone())?;
            let pooled = self.model.pooled(&b)?;
            (self.model.score_pooled(&pooled)?.narrow(1, 0, 1)?.squeeze(1)?, Some(pooled))
        } else {
            (self.scores(batch)?, None)
        };
        let n = batch.input_ids.len() / 2;
        let (c, r) = (s.narrow(0, 0, n)?, s.narrow(0, n, n)?);
        let per_pair = |v: &Option<Vec<f64>>| -> Result<Option<Tensor>> {
            Ok(match v {
                Some(v) => Some(Tensor::from_vec(v.clone(), n, s.device())?.to_dtype(s.dtype())?),
                None => None,
            })
        };
        let (margin, soft_labels) = (per_pair(&batch.margin)?, per_pair(&batch.strength)?);
        let mut loss = pairwise_reward_loss(&c, &r, margin.as_ref(), soft_labels.as_ref(), &self.cfg)?;
        let mut m = reward_metrics(&c.detach(), &r.detach())?;
        if let Some(pooled) = pooled {
            // Masks follow the optimizer step and the batch's tokens: a resumed run redraws them.
            let seed = batch
                .input_ids
                .iter()
                .flatten()
                .fold(self.opt.step as u64, |h, &t| h.wrapping_mul(0x100000001b3).wrapping_add(t as u64));
            let prototypes = self.prototypes.as_ref().map(|v| v.as_tensor().to_dtype(pooled.dtype())).transpose()?;
            let cl = contrastive_reward_loss(&pooled, &self.contrastive, seed, prototypes.as_ref())?;
            m.insert("contrastive_loss".into(), scalar(&cl)?);
            loss = (loss + (cl * self.contrastive.contrastive_coef)?)?;
        }
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((loss, m))
    }
}

/// Steps as TRL's `RewardTrainer`: each micro-batch's mean over pairs divided by the number of
/// micro-batches (no `num_items_in_batch`).
impl BatchTrainer for RewardTrainer {
    type Batch = RewardBatch;
    fn batch_loss(&self, batch: &RewardBatch) -> Result<(Tensor, Metrics)> {
        self.loss(batch)
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
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        Ok(self.files.clone())
    }
    fn extra_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.prototypes.iter().map(|v| (SWAV_PROTOTYPES.to_string(), v.as_tensor().clone())).collect())
    }
    fn load_extra_state(&mut self, saved: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        if let Some(v) = &self.prototypes {
            let t = saved
                .get(SWAV_PROTOTYPES)
                .ok_or_else(|| crate::TrainError::State("the checkpoint has no SwAV prototypes".into()))?;
            v.set(t)?;
        }
        Ok(())
    }
}

/// One ranked list for a listwise reward model: `prompt + response` ids, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRewardIds {
    pub items: Vec<Vec<u32>>,
    /// Graded labels aligned with `items` (descending; equal grades are ties).
    pub grades: Vec<f64>,
}

/// Tokenizes ranked lists (`Record::RankedList`, ordered by score, else rank) and pairs (lists
/// of two) for Plackett–Luce training. Lists with fewer than two responses, without a grade
/// on every response, with all grades equal, or with a sequence longer than `max_length` are
/// dropped and counted by reason. `max_list_size > 0` keeps the best `max_list_size`.
pub fn tokenize_ranked_reward_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    max_length: Option<usize>,
    max_list_size: usize,
) -> Result<(Vec<RankedRewardIds>, Stats)> {
    let data = |e: reins_data::DataError| TrainError::Input(e.to_string());
    let mut stats = Stats::default();
    let mut out = Vec::new();
    for r in records {
        let (prompt, mut list): (&Text, Vec<(Text, f64)>) = match r {
            Record::RankedList { prompt, responses, .. } => {
                let Some(g) = super::lipo::grades(responses) else {
                    stats.drop("ranked list without a score or rank on every response");
                    continue;
                };
                (prompt, responses.iter().map(|x| x.response.clone()).zip(g).collect())
            }
            Record::Preference(p) => (&p.prompt, vec![(p.chosen.clone(), 1.0), (p.rejected.clone(), 0.0)]),
            other => {
                stats.drop(&format!("{} is neither a ranked list nor a pair", other.kind().name()));
                continue;
            }
        };
        // Stable, best first; the loss treats tied responses as a group, in no order.
        list.sort_by(|a, b| b.1.total_cmp(&a.1));
        if max_list_size > 0 {
            list.truncate(max_list_size);
        }
        if list.len() < 2 || list.first().map(|x| x.1) == list.last().map(|x| x.1) {
            stats.drop("fewer than two responses with different grades");
            continue;
        }
        let items: Vec<Vec<u32>> = list
            .iter()
            .map(|(resp, _)| tokenize_reward_response(tok, prompt, resp).map_err(data))
            .collect::<Result<_>>()?;
        if max_length.is_some_and(|m| items.iter().any(|i| i.len() > m)) {
            stats.drop("longer than max_length");
            continue;
        }
        stats.kept += 1;
        out.push(RankedRewardIds { items, grades: list.into_iter().map(|x| x.1).collect() });
    }
    Ok((out, stats))
}

/// Lists padded to a common length K: rows `b·K + j` hold item j of list b (right-padded
/// sequences; a missing item repeats the list's first sequence and is masked out).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRewardBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    /// `[B][K]` grades (0 where absent).
    pub grades: Vec<Vec<f64>>,
    /// `[B][K]` 1 for a present item.
    pub present: Vec<Vec<f64>>,
}

pub fn collate_ranked_reward(lists: &[RankedRewardIds], pad_id: u32) -> RankedRewardBatch {
    let k = lists.iter().map(|l| l.items.len()).max().unwrap_or(0);
    let (mut rows, mut grades, mut present) = (Vec::new(), Vec::new(), Vec::new());
    for l in lists {
        for j in 0..k {
            rows.push(l.items.get(j).unwrap_or(&l.items[0]).clone());
        }
        grades.push((0..k).map(|j| l.grades.get(j).copied().unwrap_or(0.0)).collect());
        present.push((0..k).map(|j| if j < l.items.len() { 1.0 } else { 0.0 }).collect());
    }
    let attn: Vec<Vec<u8>> = rows.iter().map(|r| vec![1u8; r.len()]).collect();
    RankedRewardBatch {
        input_ids: pad(&rows, pad_id, PaddingSide::Right, None),
        attention_mask: pad(&attn, 0, PaddingSide::Right, None),
        grades,
        present,
    }
}

/// A reward model trained on ranked lists with the Plackett–Luce loss.
pub struct ListwiseRewardTrainer {
    pub model: Model,
    pub opt: Optimizer,
    pub num_tokens: f64,
}

impl ListwiseRewardTrainer {
    pub fn new(model: Model, opt: Optimizer) -> Self {
        ListwiseRewardTrainer { model, opt, num_tokens: 0.0 }
    }

    /// Loss and metrics: `loss` (Plackett–Luce with tied grades as Efron's tie groups, see
    /// [`plackett_luce_loss`]), `accuracy` (over ordered pairs with different grades, the
    /// better one must score strictly higher), `top1_accuracy` (the highest-scored item has
    /// the top grade),
    /// and TRL's reward statistics over present items.
    pub fn loss(&self, batch: &RankedRewardBatch) -> Result<(Tensor, Metrics)> {
        let (b, k) = (batch.grades.len(), batch.grades.first().map_or(0, Vec::len));
        let ids = Batch::new(batch.input_ids.clone(), batch.attention_mask.clone())?;
        let scores = self.model.scores(&ids)?.narrow(1, 0, 1)?.reshape((b, k))?;
        let present = Tensor::from_vec(batch.present.concat(), (b, k), scores.device())?.to_dtype(scores.dtype())?;
        let grades = Tensor::from_vec(batch.grades.concat(), (b, k), scores.device())?;
        let loss = plackett_luce_loss(&scores, &grades, &present)?;
        let s: Vec<Vec<f64>> = scores.detach().to_dtype(DType::F64)?.to_vec2()?;
        let (mut right, mut pairs, mut top1) = (0usize, 0usize, 0usize);
        let mut all = Vec::new();
        for (i, row) in s.iter().enumerate() {
            let n = batch.present[i].iter().filter(|&&p| p > 0.0).count();
            all.extend_from_slice(&row[..n]);
            let g = &batch.grades[i];
            for a in 0..n {
                for c in 0..n {
                    if g[a] > g[c] {
                        pairs += 1;
                        right += usize::from(row[a] > row[c]);
                    }
                }
            }
            // The highest-scored item has the top grade (any of a tied top group counts).
            let best = (0..n).max_by(|&x, &y| row[x].total_cmp(&row[y]));
            let top = g[..n].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            top1 += usize::from(best.is_some_and(|i| g[i] == top));
        }
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("accuracy".into(), right as f64 / pairs.max(1) as f64);
        m.insert("top1_accuracy".into(), top1 as f64 / b.max(1) as f64);
        m.insert("min_reward".into(), all.iter().copied().fold(f64::INFINITY, f64::min));
        m.insert("max_reward".into(), all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        m.insert("mean_reward".into(), all.iter().sum::<f64>() / all.len().max(1) as f64);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((loss, m))
    }
}

/// Steps as [`RewardTrainer`]: the mean of the micro-batches' mean losses.
impl BatchTrainer for ListwiseRewardTrainer {
    type Batch = RankedRewardBatch;
    fn batch_loss(&self, batch: &RankedRewardBatch) -> Result<(Tensor, Metrics)> {
        self.loss(batch)
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

/// Scores of `(chosen, rejected)` for each pair under `model` (detached), `batch_size` pairs
/// at a time.
pub fn pair_scores(
    model: &Model,
    pairs: &[reins_data::tokenize::reward::RewardIds],
    pad_id: u32,
    batch_size: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let model = model.detached();
    let (mut chosen, mut rejected) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
    for chunk in pairs.chunks(batch_size.max(1)) {
        let b = reins_data::collate::collate_reward(chunk, pad_id, None);
        let s: Vec<f64> = model
            .scores(&Batch::new(b.input_ids, b.attention_mask)?)?
            .narrow(1, 0, 1)?
            .squeeze(1)?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        let n = chunk.len();
        chosen.extend_from_slice(&s[..n]);
        rejected.extend_from_slice(&s[n..]);
    }
    Ok((chosen, rejected))
}
