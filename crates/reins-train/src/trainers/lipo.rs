//! LiPO-λ: listwise preference optimization with LambdaRank weights (Liu et al., "LiPO:
//! Listwise Preference Optimization through Learning-to-Rank", arXiv:2402.01878, §4.2).
//! Each example is a prompt with a list of K responses and graded labels ψ (scores, or ranks
//! turned into grades); policy and reference score every response by summed completion
//! log-probs, and [`lipo_lambda_loss`] weights each correctly ordered pair's logistic loss by
//! its LambdaRank Δ. A pair record is a list of two (ψ = 1, 0).
//!
//! The reference is a frozen copy of the starting policy, or — with LoRA — the policy with
//! adapters off, as for DPO. TRL has no LiPO trainer; `beta` has DPO's meaning and default.

use candle_core::{DType, Tensor};
use reins_data::collate::{pad, PaddingSide};
use reins_data::tokenize::preference::tokenize_preference;
use reins_data::tokenize::{truncate, Stats, TruncationMode};
use reins_data::{HfTokenizer, Preference, Record, Text};
use reins_model::Model;
use serde::{Deserialize, Serialize};

use super::metrics::{attended_tokens, scalar};
use super::reference::Reference;
use super::{completion_logps, BatchTrainer, Metrics};
use crate::losses::lipo_lambda_loss;
use crate::optim::optimizer::Optimizer;
use crate::{Result, TrainError};

fn d_beta() -> f64 {
    0.1
}

/// LiPO-λ settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LipoConfig {
    /// β, scale of the implied reward `β (log π − log π_ref)`. Default 0.1.
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// Longest list kept (the best `max_list_size` responses by label); 0 keeps all. Default 0.
    #[serde(default)]
    pub max_list_size: usize,
}

impl Default for LipoConfig {
    fn default() -> Self {
        LipoConfig { beta: 0.1, max_list_size: 0 }
    }
}

impl LipoConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(TrainError::Config(format!("`beta` must be > 0 (got {}); the default is 0.1", self.beta)));
        }
        if self.max_list_size == 1 {
            return Err(TrainError::Config("`max_list_size` must be 0 (all) or at least 2".into()));
        }
        Ok(())
    }
}

/// One tokenized list: per response, prompt ids and completion ids; graded labels ψ.
#[derive(Clone, Debug, PartialEq)]
pub struct RankedIds {
    pub items: Vec<(Vec<u32>, Vec<u32>)>,
    pub labels: Vec<f64>,
}

/// Graded labels of a list: scores where every response has one, else `max_rank − rank`
/// (rank 0 = best); `None` when neither is complete.
pub(crate) fn grades(responses: &[reins_data::Ranked]) -> Option<Vec<f64>> {
    if let Some(s) = responses.iter().map(|r| r.score).collect::<Option<Vec<f64>>>() {
        return Some(s);
    }
    let ranks = responses.iter().map(|r| r.rank).collect::<Option<Vec<u32>>>()?;
    let worst = *ranks.iter().max()?;
    Some(ranks.iter().map(|&r| f64::from(worst - r)).collect())
}

/// Tokenizes ranked lists (`Record::RankedList`) and pairs (`Record::Preference`, as lists of
/// two) like DPO's pairs (EOS appended to standard completions). Lists with fewer than two
/// responses, without complete scores or ranks, or whose labels are all equal are dropped.
pub fn tokenize_ranked_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    max_list_size: usize,
) -> Result<(Vec<RankedIds>, Stats)> {
    let data = |e: reins_data::DataError| TrainError::Input(e.to_string());
    let mut stats = Stats::default();
    let mut out = Vec::new();
    for r in records {
        let (prompt, mut list): (&Text, Vec<(Text, f64)>) = match r {
            Record::RankedList { prompt, responses, .. } => {
                let Some(g) = grades(responses) else {
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
        list.sort_by(|a, b| b.1.total_cmp(&a.1));
        if max_list_size > 0 {
            list.truncate(max_list_size);
        }
        if list.len() < 2 || list.first().map(|x| x.1) == list.last().map(|x| x.1) {
            stats.drop("fewer than two responses with different labels");
            continue;
        }
        let mut items = Vec::with_capacity(list.len());
        for (response, _) in &list {
            let p = Preference {
                prompt: prompt.clone(),
                chosen: response.clone(),
                rejected: response.clone(),
                margin: None,
                strength: None,
                reference: None,
                meta: Default::default(),
            };
            let ids = tokenize_preference(tok, &p).map_err(data)?;
            items.push((ids.prompt_ids, ids.chosen_ids));
        }
        stats.kept += 1;
        out.push(RankedIds { items, labels: list.iter().map(|x| x.1).collect() });
    }
    Ok((out, stats))
}

/// A batch of B lists padded to K responses: `B·K` right-padded rows (list-major), labels ψ and
/// presence mask `[B][K]`. An absent slot is its list's first prompt with no completion.
#[derive(Clone, Debug, PartialEq)]
pub struct RankedBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub completion_mask: Vec<Vec<u8>>,
    pub labels: Vec<Vec<f64>>,
    pub present: Vec<Vec<f64>>,
}

/// Collates lists: rows truncated to `max_length` (keep start), right-padded with `pad_id`.
pub fn collate_ranked(lists: &[RankedIds], pad_id: u32, max_length: Option<usize>) -> RankedBatch {
    let k = lists.iter().map(|l| l.items.len()).max().unwrap_or(0);
    let (mut ids, mut cm, mut labels, mut present) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for l in lists {
        let mut psi = Vec::with_capacity(k);
        let mut here = Vec::with_capacity(k);
        for j in 0..k {
            let (p, c) = match l.items.get(j) {
                Some((p, c)) => (p.clone(), c.clone()),
                None => (l.items[0].0.clone(), Vec::new()),
            };
            let m: Vec<u8> = std::iter::repeat_n(0u8, p.len()).chain(std::iter::repeat_n(1u8, c.len())).collect();
            let row: Vec<u32> = p.into_iter().chain(c).collect();
            ids.push(truncate(&row, max_length, TruncationMode::KeepStart));
            cm.push(truncate(&m, max_length, TruncationMode::KeepStart));
            psi.push(l.labels.get(j).copied().unwrap_or(0.0));
            here.push(if j < l.items.len() { 1.0 } else { 0.0 });
        }
        labels.push(psi);
        present.push(here);
    }
    let attn: Vec<Vec<u8>> = ids.iter().map(|r| vec![1u8; r.len()]).collect();
    RankedBatch {
        input_ids: pad(&ids, pad_id, PaddingSide::Right, None),
        attention_mask: pad(&attn, 0, PaddingSide::Right, None),
        completion_mask: pad(&cm, 0, PaddingSide::Right, None),
        labels,
        present,
    }
}

pub struct LipoTrainer {
    pub policy: Model,
    pub reference: Reference,
    pub cfg: LipoConfig,
    pub opt: Optimizer,
    /// Tokens seen so far (TRL's cumulative `num_tokens`).
    pub num_tokens: f64,
}

impl LipoTrainer {
    pub fn new(policy: Model, reference: Reference, cfg: LipoConfig, opt: Optimizer) -> Result<Self> {
        cfg.validate()?;
        Ok(LipoTrainer { policy, reference, cfg, opt, num_tokens: 0.0 })
    }

    /// The LiPO-λ loss and DPO-style metrics: `chosen` is each list's best response,
    /// `rejected` the others; `rewards/accuracies` is the share of label-ordered pairs the
    /// implied rewards order correctly.
    pub fn loss(&self, batch: &RankedBatch) -> Result<(Tensor, Metrics)> {
        let (b, k) = (batch.labels.len(), batch.labels.first().map_or(0, Vec::len));
        let dev = self.policy.device();
        let reference = self.reference.model(&self.policy)?;
        let rows = |m: &Model| -> Result<Tensor> {
            Ok(completion_logps(m, &batch.input_ids, &batch.attention_mask, &batch.completion_mask)?
                .sums
                .reshape((b, k))?)
        };
        let logps = rows(&self.policy)?; // [B, K]
        let ref_logps = rows(&reference)?;
        let flat = |v: &[Vec<f64>]| v.iter().flatten().copied().collect::<Vec<f64>>();
        let labels = Tensor::from_vec(flat(&batch.labels), (b, k), dev)?.to_dtype(logps.dtype())?;
        let mask = Tensor::from_vec(flat(&batch.present), (b, k), dev)?.to_dtype(logps.dtype())?;
        let loss = lipo_lambda_loss(&logps, &ref_logps, &labels, &mask, self.cfg.beta)?;

        let lp = logps.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let rlp = ref_logps.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let (mut rc, mut rr, mut lc, mut lr, mut right, mut pairs) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
        let mut n_rejected = 0.0;
        for i in 0..b {
            let s: Vec<f64> = (0..k).map(|j| self.cfg.beta * (lp[i][j] - rlp[i][j])).collect();
            let present: Vec<usize> = (0..k).filter(|&j| batch.present[i][j] > 0.5).collect();
            let best = present.iter().copied().max_by(|&x, &y| batch.labels[i][x].total_cmp(&batch.labels[i][y]));
            for &j in &present {
                if Some(j) == best {
                    rc += s[j];
                    lc += lp[i][j];
                } else {
                    rr += s[j];
                    lr += lp[i][j];
                    n_rejected += 1.0;
                }
                for &h in &present {
                    if batch.labels[i][j] > batch.labels[i][h] {
                        pairs += 1.0;
                        right += f64::from(u8::from(s[j] > s[h]));
                    }
                }
            }
        }
        let (nb, nr) = (b.max(1) as f64, f64::max(n_rejected, 1.0));
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("rewards/chosen".into(), rc / nb);
        m.insert("rewards/rejected".into(), rr / nr);
        m.insert("rewards/margins".into(), rc / nb - rr / nr);
        m.insert("rewards/accuracies".into(), right / pairs.max(1.0));
        m.insert("logps/chosen".into(), lc / nb);
        m.insert("logps/rejected".into(), lr / nr);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((loss, m))
    }
}

/// Steps as DPO does: the mean of the micro-batches' mean losses.
impl BatchTrainer for LipoTrainer {
    type Batch = RankedBatch;
    fn batch_loss(&self, batch: &RankedBatch) -> Result<(Tensor, Metrics)> {
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
    use super::*;

    #[test]
    fn lists_are_padded_with_absent_slots() {
        let a = RankedIds { items: vec![(vec![1, 2], vec![3]), (vec![1, 2], vec![4, 5])], labels: vec![1.0, 0.0] };
        let b = RankedIds {
            items: vec![(vec![7], vec![8]), (vec![7], vec![9]), (vec![7], vec![10, 11])],
            labels: vec![2.0, 1.0, 0.0],
        };
        let batch = collate_ranked(&[a, b], 0, None);
        assert_eq!(batch.input_ids.len(), 6);
        assert_eq!(batch.present, vec![vec![1.0, 1.0, 0.0], vec![1.0, 1.0, 1.0]]);
        assert_eq!(batch.input_ids[2], vec![1, 2, 0, 0]);
        assert_eq!(batch.completion_mask[2], vec![0, 0, 0, 0]);
        assert_eq!(batch.completion_mask[1], vec![0, 0, 1, 1]);
    }

    #[test]
    fn grades_come_from_scores_else_ranks() {
        let r = |rank: Option<u32>, score: Option<f64>| reins_data::Ranked {
            response: Text::Plain("x".into()),
            rank,
            score,
            ratings: Default::default(),
            annotator_id: None,
        };
        assert_eq!(grades(&[r(Some(0), Some(4.5)), r(Some(1), Some(2.0))]), Some(vec![4.5, 2.0]));
        assert_eq!(grades(&[r(Some(0), None), r(Some(2), None), r(Some(1), Some(1.0))]), Some(vec![2.0, 0.0, 1.0]));
        assert_eq!(grades(&[r(None, None), r(Some(1), None)]), None);
    }
}
