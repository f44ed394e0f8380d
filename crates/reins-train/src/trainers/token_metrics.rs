//! TRL's per-token diagnostics of a forward pass: `entropy` (nats, of the next-token
//! distribution), `mean_token_accuracy` (argmax equals the next token) and `logits/*` (the
//! vocabulary-mean logit), each averaged over the positions a mask selects. TRL logs them for
//! SFT, DPO and KTO; they cost no extra forward pass, only reductions over logits already there.
//!
//! Positions follow [`reins_model::logprobs::token_logps`]: `mask[b][t+1] == 1` selects the
//! prediction made at position `t` of row `b`, whose target is `ids[b][t+1]`.

use candle_core::{DType, Tensor};

use crate::Result;
use reins_model::kernels::row_stats::{row_stats, RowStats};

/// Per-row sums over the selected positions; all detached (no graph).
#[derive(Debug, Clone, Default)]
pub struct TokenStats {
    entropy: Vec<f64>,
    mean_logit: Vec<f64>,
    top1: Vec<f64>,
    tokens: Vec<f64>,
}

impl TokenStats {
    /// From the `[M, V]` logits of the `M` selected positions in row-major `(row, position)`
    /// order, as [`reins_model::logprobs::masked_token_logps_and_logits`] returns them.
    pub fn from_selected(logits: &Tensor, ids: &[Vec<u32>], mask: &[Vec<u8>]) -> Result<Self> {
        let rows = ids.len();
        let mut s = TokenStats {
            entropy: vec![0.0; rows],
            mean_logit: vec![0.0; rows],
            top1: vec![0.0; rows],
            tokens: vec![0.0; rows],
        };
        if logits.dim(0)? == 0 {
            return Ok(s);
        }
        let RowStats { entropy, mean, argmax } = row_stats(logits)?;
        let mut k = 0;
        for (r, (row, m)) in ids.iter().zip(mask).enumerate() {
            for p in 0..row.len().saturating_sub(1) {
                if m[p + 1] != 0 {
                    s.entropy[r] += entropy[k] as f64;
                    s.mean_logit[r] += mean[k] as f64;
                    s.top1[r] += (argmax[k] == row[p + 1]) as u8 as f64;
                    s.tokens[r] += 1.0;
                    k += 1;
                }
            }
        }
        Ok(s)
    }

    /// From full `[B, T, V]` logits.
    pub fn from_full(logits: &Tensor, ids: &[Vec<u32>], mask: &[Vec<u8>]) -> Result<Self> {
        let (b, t, v) = logits.dims3()?;
        let idx: Vec<u32> = mask
            .iter()
            .enumerate()
            .flat_map(|(r, m)| {
                (0..t.saturating_sub(1)).filter(move |&p| m[p + 1] != 0).map(move |p| (r * t + p) as u32)
            })
            .collect();
        let n = idx.len();
        let selected = if n == 0 {
            Tensor::zeros((0, v), DType::F32, logits.device())?
        } else {
            logits.detach().reshape((b * t, v))?.index_select(&Tensor::from_vec(idx, n, logits.device())?, 0)?
        };
        Self::from_selected(&selected, ids, mask)
    }

    fn ratio(num: &[f64], den: &[f64], rows: std::ops::Range<usize>) -> f64 {
        let d: f64 = den[rows.clone()].iter().sum();
        if d > 0.0 {
            num[rows].iter().sum::<f64>() / d
        } else {
            0.0
        }
    }

    /// Mean entropy over the selected positions of `rows` (0 when there are none, as TRL).
    pub fn entropy(&self, rows: std::ops::Range<usize>) -> f64 {
        Self::ratio(&self.entropy, &self.tokens, rows)
    }

    /// Mean of the vocabulary-mean logit over the selected positions of `rows`.
    pub fn mean_logit(&self, rows: std::ops::Range<usize>) -> f64 {
        Self::ratio(&self.mean_logit, &self.tokens, rows)
    }

    /// Fraction of the selected positions of `rows` whose argmax is the next token.
    pub fn accuracy(&self, rows: std::ops::Range<usize>) -> f64 {
        Self::ratio(&self.top1, &self.tokens, rows)
    }

    /// Selected positions of the rows at `idx` (any order).
    pub fn tokens_of(&self, idx: &[usize]) -> f64 {
        idx.iter().map(|&i| self.tokens[i]).sum()
    }

    /// Sum of vocabulary-mean logits over the selected positions of the rows at `idx`.
    pub fn mean_logit_sum_of(&self, idx: &[usize]) -> f64 {
        idx.iter().map(|&i| self.mean_logit[i]).sum()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn full_and_selected_agree_and_count_only_masked_positions() -> Result<()> {
        let dev = Device::Cpu;
        // [2, 3, 4] logits; row 0 selects positions 0 and 1, row 1 position 1 only.
        let logits = Tensor::arange(0f32, 24., &dev)?.reshape((2, 3, 4))?.sin()?;
        let ids = vec![vec![0u32, 3, 1], vec![2, 2, 0]];
        let mask = vec![vec![0u8, 1, 1], vec![0, 0, 1]];
        let full = TokenStats::from_full(&logits, &ids, &mask)?;
        assert_eq!(full.tokens, vec![2.0, 1.0]);
        let rows: Vec<f32> = logits.get(1)?.get(1)?.to_vec1()?;
        let mean = rows.iter().sum::<f32>() as f64 / 4.0;
        assert!((full.mean_logit(1..2) - mean).abs() < 1e-6);
        let argmax = (0..4).max_by(|&a, &b| rows[a].total_cmp(&rows[b])).unwrap();
        assert_eq!(full.accuracy(1..2), (argmax == 0) as u8 as f64);
        assert!(full.entropy(0..2) > 0.0 && full.entropy(0..2) <= (4f64).ln() + 1e-9);
        assert_eq!(TokenStats::from_full(&logits, &ids, &[vec![0; 3], vec![0; 3]])?.entropy(0..2), 0.0);
        Ok(())
    }
}
