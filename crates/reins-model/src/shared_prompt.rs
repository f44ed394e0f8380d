//! Rows that share a prompt — the two answers of a DPO pair, the samples of a GRPO group —
//! run with the prompt computed once.
//!
//! The distinct prompts run as one left-padded batch whose keys and values are recorded at
//! every layer; the completions then run as a second batch in which each row attends to its
//! prompt's keys/values (gathered per row, graph kept) before its own tokens. Gradients flow
//! back through the gathered keys and values into the prompt pass, so values and gradients
//! equal those of running every row on its own, up to float rounding (padding reorders a few
//! sums). Two 64-token answers to one 64-token prompt cost 192 token positions instead of 256.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::kv_cache::Past;
use crate::model::{Batch, Model};
use crate::nn;

/// A batch split into distinct prompts and per-row completions.
#[derive(Debug)]
pub struct SharedPrompts {
    /// The distinct prompts, in order of first appearance.
    prompts: Vec<Vec<u32>>,
    /// The batch rows with scored tokens (rows with none need no pass).
    rows: Vec<usize>,
    /// Per such row: the index of its prompt.
    owner: Vec<usize>,
    /// Per such row: the position of its first completion token (the prompt ends before it).
    start: Vec<usize>,
    /// Per such row: its tokens from `start` to its last real token.
    completions: Vec<Vec<u32>>,
}

impl SharedPrompts {
    /// Splits `batch` where `scored` (`[B][T]`, 1 = this token's log-prob is wanted) first marks
    /// a token: the prompt is the row's real tokens before it. `None` when no two rows share a
    /// prompt, or when a row with scored tokens does not have this shape (real tokens in one
    /// run, at least one prompt token, scored tokens only among the real ones); callers then run
    /// every row on its own.
    /// `REINS_SHARED_PROMPTS=0` turns sharing off (to compare the two paths).
    pub fn find(batch: &Batch, scored: &[Vec<u8>]) -> Option<SharedPrompts> {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !*ENABLED.get_or_init(|| std::env::var("REINS_SHARED_PROMPTS").map_or(true, |v| v != "0")) {
            return None;
        }
        let mut index: HashMap<&[u32], usize> = HashMap::new();
        let mut sp = SharedPrompts { prompts: vec![], rows: vec![], owner: vec![], start: vec![], completions: vec![] };
        for (r, ((ids, mask), scored)) in batch.ids.iter().zip(&batch.mask).zip(scored).enumerate() {
            let Some(start) = scored.iter().position(|&s| s != 0) else { continue };
            let first = mask.iter().position(|&m| m != 0)?;
            let last = mask.iter().rposition(|&m| m != 0)?;
            let one_run = mask[first..=last].iter().all(|&m| m != 0);
            let scored_inside = scored.iter().rposition(|&s| s != 0).is_some_and(|e| e <= last);
            if !one_run || start <= first || !scored_inside {
                return None;
            }
            let n = index.len();
            let p = *index.entry(&ids[first..start]).or_insert(n);
            if p == n {
                sp.prompts.push(ids[first..start].to_vec());
            }
            sp.rows.push(r);
            sp.owner.push(p);
            sp.start.push(start);
            sp.completions.push(ids[start..=last].to_vec());
        }
        (sp.prompts.len() < sp.owner.len()).then_some(sp)
    }

    /// Final hidden states, every position that predicts a scored token, in row-major order of
    /// `(row, position)`: `([M, D], next tokens [M], output index r·(T−1) + p − 1 [M])`, as
    /// [`crate::logprobs::masked_token_logps_and_logits`] scores them.
    pub fn hidden_at_scored(&self, model: &Model, scored: &[Vec<u8>]) -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
        let dev = model.device();
        let t = scored.first().map_or(0, Vec::len);
        // The prompts, left-padded so that each ends at the last position.
        let tp = self.prompts.iter().map(Vec::len).max().unwrap_or(0);
        let (p_ids, p_mask): (Vec<_>, Vec<_>) = self.prompts.iter().map(|p| padded(p, tp, true)).unzip();
        let p_pos = nn::positions_from_mask(&p_mask);
        let mut kv = Vec::new();
        let p_hidden = model.forward_hidden(&nn::ids_tensor(&p_ids, dev)?, &p_pos, &p_mask, Past::Record(&mut kv))?;

        // The completions, right-padded, after their prompt's keys/values.
        let ts = self.completions.iter().map(Vec::len).max().unwrap_or(0);
        let (c_ids, c_mask): (Vec<_>, Vec<_>) = self.completions.iter().map(|c| padded(c, ts, false)).unzip();
        let key_mask: Vec<Vec<u8>> =
            self.owner.iter().zip(&c_mask).map(|(&o, m)| [&p_mask[o][..], m].concat()).collect();
        let c_pos: Vec<Vec<u32>> = self
            .owner
            .iter()
            .zip(&c_mask)
            .map(|(&o, m)| {
                let len = self.prompts[o].len() as u32;
                // Padding gets position 1, as `positions_from_mask` gives it.
                m.iter().enumerate().map(|(j, &m)| if m != 0 { len + j as u32 } else { 1 }).collect()
            })
            .collect();
        let owner = Tensor::from_vec(self.owner.iter().map(|&o| o as u32).collect(), self.owner.len(), dev)?;
        let prefix: Vec<_> = kv
            .iter()
            .map(|(k, v)| Ok((k.index_select(&owner, 0)?, v.index_select(&owner, 0)?)))
            .collect::<Result<_>>()?;
        let c_hidden = model.forward_hidden(&nn::ids_tensor(&c_ids, dev)?, &c_pos, &key_mask, Past::Prefix(&prefix))?;

        // The state before completion token j is the prompt's last (j = 0) or the completion's
        // token j − 1.
        let (n_p, d) = (self.prompts.len(), p_hidden.dim(2)?);
        let all = Tensor::cat(&[p_hidden.reshape((n_p * tp, d))?, c_hidden.reshape((self.owner.len() * ts, d))?], 0)?;
        let (mut src, mut next, mut dst) = (vec![], vec![], vec![]);
        for (i, &r) in self.rows.iter().enumerate() {
            for (p, _) in scored[r].iter().enumerate().filter(|(_, &s)| s != 0) {
                let j = p - self.start[i];
                src.push(if j == 0 { self.owner[i] * tp + tp - 1 } else { n_p * tp + i * ts + j - 1 } as u32);
                next.push(self.completions[i][j]);
                dst.push((r * (t - 1) + p - 1) as u32);
            }
        }
        let n = src.len();
        Ok((all.index_select(&Tensor::from_vec(src, n, dev)?, 0)?, next, dst))
    }
}

/// `row` padded to `width` with id 0, on the left or the right, and its mask.
fn padded(row: &[u32], width: usize, left: bool) -> (Vec<u32>, Vec<u8>) {
    let fill = width - row.len();
    if left {
        ([vec![0; fill], row.to_vec()].concat(), [vec![0u8; fill], vec![1; row.len()]].concat())
    } else {
        ([row.to_vec(), vec![0; fill]].concat(), [vec![1u8; row.len()], vec![0; fill]].concat())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::kernels::testing::max_abs_diff;
    use crate::logprobs::{masked_token_logps_and_logits, masked_token_logps_per_row};
    use crate::LoadOptions;

    /// A fixture model (transformers' tiny checkpoints), trainable.
    fn model(name: &str) -> Model {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models").join(name);
        Model::load(&dir, &Device::Cpu, &LoadOptions { trainable: true, ..Default::default() }).unwrap()
    }

    /// Within 1e-5 of the largest magnitude in `b` (f32 rounding through a few layers).
    fn close(a: &Tensor, b: &Tensor) -> bool {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
        max_abs_diff(a, b) <= 1e-5 * scale
    }

    /// A DPO-like batch: two pairs (rows i and i + 2 share a prompt) of different prompt and
    /// answer lengths, right-padded; and a GRPO-like batch: left-padded prompts, three samples
    /// each, one answer cut short, one masked out.
    fn batches() -> Vec<(Batch, Vec<Vec<u8>>)> {
        let row = |prompt: &[u32], answer: &[u32], t: usize| {
            let real = [prompt, answer].concat();
            let fill = t - real.len();
            let ids = [real.clone(), vec![0; fill]].concat();
            let mask = [vec![1u8; real.len()], vec![0; fill]].concat();
            let scored = [vec![0u8; prompt.len()], vec![1; answer.len()], vec![0; fill]].concat();
            (ids, mask, scored)
        };
        let dpo = [
            row(&[5, 6, 7], &[8, 9, 10, 11], 9),
            row(&[12, 13, 14, 15, 16], &[17, 18], 9),
            row(&[5, 6, 7], &[20, 21, 22, 23, 24, 25], 9),
            row(&[12, 13, 14, 15, 16], &[26, 27, 28, 29], 9),
        ];
        let left = |prompt: &[u32], answer: &[u32], tp: usize, ta: usize| {
            let ids =
                [vec![0; tp - prompt.len()], prompt.to_vec(), answer.to_vec(), vec![0; ta - answer.len()]].concat();
            let mask = [vec![0u8; tp - prompt.len()], vec![1; prompt.len() + answer.len()], vec![0; ta - answer.len()]]
                .concat();
            let scored = [vec![0u8; tp], vec![1; answer.len()], vec![0; ta - answer.len()]].concat();
            (ids, mask, scored)
        };
        let grpo = [
            left(&[30, 31], &[32, 33, 34], 4, 3),
            left(&[30, 31], &[35, 36, 37], 4, 3),
            left(&[30, 31], &[38], 4, 3),
            left(&[40, 41, 42, 43], &[44, 45, 46], 4, 3),
            left(&[40, 41, 42, 43], &[47, 48, 49], 4, 3),
            left(&[40, 41, 42, 43], &[3, 4, 5], 4, 3),
        ];
        let mut grpo = grpo.to_vec();
        grpo[2].2 = vec![0; 7]; // a sample masked out (truncated): nothing scored
        [dpo.to_vec(), grpo]
            .into_iter()
            .map(|rows| {
                let (ids, mask): (Vec<_>, Vec<_>) = rows.iter().map(|(i, m, _)| (i.clone(), m.clone())).unzip();
                (Batch::new(ids, mask).unwrap(), rows.into_iter().map(|r| r.2).collect())
            })
            .collect()
    }

    #[test]
    fn shared_prompts_equal_the_per_row_path_in_values_and_gradients() {
        // Llama with grouped-query heads, Qwen2 with q/k/v biases, GPT-2 with learned positions.
        for name in ["llama", "qwen2", "gpt2"] {
            let model = model(name);
            for (batch, scored) in batches() {
                assert!(SharedPrompts::find(&batch, &scored).is_some());
                for temperature in [1.0, 0.7] {
                    let (shared, ls) = masked_token_logps_and_logits(&model, &batch, &scored, temperature).unwrap();
                    let (rows, lr) = masked_token_logps_per_row(&model, &batch, &scored, temperature).unwrap();
                    // Float rounding only: the prompt pass pads and groups rows differently.
                    assert!(close(&shared, &rows), "log-probs differ by {}", max_abs_diff(&shared, &rows));
                    assert!(close(&ls, &lr), "logits differ by {}", max_abs_diff(&ls, &lr));
                    // A loss that weighs every token differently, so misplaced gradients show.
                    let w = Tensor::arange(0f32, shared.elem_count() as f32, &Device::Cpu)
                        .unwrap()
                        .reshape(shared.shape())
                        .unwrap()
                        .cos()
                        .unwrap();
                    let gs = (&shared * &w).unwrap().sum_all().unwrap().backward().unwrap();
                    let gr = (&rows * &w).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, v) in model.params() {
                        let (a, b) = (gs.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap());
                        assert!(close(a, b), "{name}: gradients differ by {}", max_abs_diff(a, b));
                    }
                }
            }
        }
    }

    #[test]
    fn rows_without_a_shared_prompt_or_of_another_shape_run_on_their_own() {
        let b = |ids: Vec<Vec<u32>>, mask: Vec<Vec<u8>>| Batch::new(ids, mask).unwrap();
        // Distinct prompts.
        let batch = b(vec![vec![1, 2, 3], vec![4, 2, 3]], vec![vec![1; 3]; 2]);
        assert!(SharedPrompts::find(&batch, &[vec![0, 0, 1], vec![0, 0, 1]]).is_none());
        // A gap in the attention mask.
        let batch = b(vec![vec![1, 2, 3], vec![1, 2, 3]], vec![vec![1, 0, 1], vec![1; 3]]);
        assert!(SharedPrompts::find(&batch, &[vec![0, 0, 1], vec![0, 0, 1]]).is_none());
        // No prompt token; a row with nothing scored leaves one row, nothing to share.
        let batch = b(vec![vec![1, 2, 3], vec![1, 2, 3]], vec![vec![1; 3]; 2]);
        assert!(SharedPrompts::find(&batch, &[vec![1, 1, 1], vec![0, 0, 1]]).is_none());
        assert!(SharedPrompts::find(&batch, &[vec![0, 0, 0], vec![0, 0, 1]]).is_none());
        // A scored padding token.
        let batch = b(vec![vec![1, 2, 0], vec![1, 2, 3]], vec![vec![1, 1, 0], vec![1; 3]]);
        assert!(SharedPrompts::find(&batch, &[vec![0, 1, 1], vec![0, 0, 1]]).is_none());
        // Shared.
        assert!(SharedPrompts::find(&batch, &[vec![0, 1, 0], vec![0, 1, 1]]).is_some());
    }
}
