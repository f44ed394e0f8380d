//! Padding-free packing: a batch's real tokens laid end to end, each row attending only to
//! its own tokens, and rows that share a prompt attending to one copy of it.
//!
//! A padded batch of `B` rows × `T` positions costs `B·T` positions in every linear layer
//! (the bulk of the arithmetic), however many of them are padding. Packed, the linear layers,
//! norms and MLPs run on the `N` real tokens as one `[N, D]` matrix; only attention, which
//! mixes tokens, needs to know which token belongs to which row. For it the packing lists
//! *spans*: the tokens a span attends over (its keys, in order), of which it owns the last
//! `own` (its queries). Per layer, queries and keys are gathered into a padded
//! `[R, H, Tq, d]` / `[R, Hkv, Tk, d]` layout, attend under a causal mask, and each output
//! is gathered back to its token. The gathers are `index_select` (backward: `index_add`), so a
//! key that several spans read gets the sum of their gradients.
//!
//! Two layouts:
//! - [`Packing::rows`]: every row on its own, padding dropped (reward models; DPO and GRPO
//!   batches whose rows share nothing).
//! - [`Packing::shared_prompts`]: rows that share a prompt — the two answers of a DPO pair,
//!   the samples of a GRPO group — attend to one copy of it. Two 64-token answers to one
//!   64-token prompt cost 192 positions instead of 256, and the prompt's tokens get the
//!   gradients both answers send back.
//!
//! Values and gradients equal the padded batch's up to float rounding (tests below).
//! `REINS_PACKING=0` turns packing off (to compare the two paths).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::model::Batch;
use crate::nn;

/// No packed token: padding, or a row the packing leaves out.
const NONE: u32 = u32::MAX;

/// Real tokens of a batch, packed, with what each attends to (see the module docs).
#[derive(Debug, Clone)]
pub struct Packing {
    /// The packed tokens and the position ids the padded batch gives them.
    ids: Vec<u32>,
    positions: Vec<u32>,
    spans: Vec<Span>,
    /// Per batch row and position: the packed token there, or `NONE`.
    at: Vec<Vec<u32>>,
}

/// Tokens that attend together: the packed indices of the keys, in order; the last `own` of
/// them are this span's own tokens (its queries), each owned by exactly one span.
#[derive(Debug, Clone)]
struct Span {
    keys: Vec<u32>,
    own: usize,
}

/// Whether packing is on (`REINS_PACKING=0` turns it off).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("REINS_PACKING").map_or(true, |v| v != "0"))
}

impl Packing {
    fn empty(batch: &Batch) -> Packing {
        let t = batch.ids.first().map_or(0, Vec::len);
        Packing { ids: vec![], positions: vec![], spans: vec![], at: vec![vec![NONE; t]; batch.ids.len()] }
    }

    fn push(&mut self, id: u32, position: u32) -> u32 {
        self.ids.push(id);
        self.positions.push(position);
        (self.ids.len() - 1) as u32
    }

    /// The rows of `batch` that `keep` selects, each on its own: its real tokens (mask 1), at
    /// the positions [`nn::positions_from_mask`] gives them, attending to its earlier real
    /// tokens — what the padded batch computes for them.
    pub fn rows(batch: &Batch, keep: impl Fn(usize) -> bool) -> Packing {
        let positions = nn::positions_from_mask(&batch.mask);
        let mut p = Packing::empty(batch);
        for (r, (ids, mask)) in batch.ids.iter().zip(&batch.mask).enumerate() {
            if !keep(r) {
                continue;
            }
            let mut keys = Vec::new();
            for (t, (&id, &m)) in ids.iter().zip(mask).enumerate() {
                if m != 0 {
                    let n = p.push(id, positions[r][t]);
                    p.at[r][t] = n;
                    keys.push(n);
                }
            }
            if !keys.is_empty() {
                p.spans.push(Span { own: keys.len(), keys });
            }
        }
        p
    }

    /// Rows that share a prompt, with one copy of each distinct prompt. A row's prompt is its
    /// real tokens before the first token `scored` (`[B][T]`) marks; rows with nothing scored
    /// are left out. `None` when no two rows share a prompt, or when a row with scored tokens
    /// does not have this shape (real tokens in one run, at least one prompt token, scored
    /// tokens only among the real ones); [`Packing::rows`] then packs them one by one.
    pub fn shared_prompts(batch: &Batch, scored: &[Vec<u8>]) -> Option<Packing> {
        // (row, first real token, first scored token, last real token)
        let mut rows = Vec::new();
        for (r, (mask, scored)) in batch.mask.iter().zip(scored).enumerate() {
            let Some(start) = scored.iter().position(|&s| s != 0) else { continue };
            let first = mask.iter().position(|&m| m != 0)?;
            let last = mask.iter().rposition(|&m| m != 0)?;
            let one_run = mask[first..=last].iter().all(|&m| m != 0);
            let scored_inside = scored.iter().rposition(|&s| s != 0).is_some_and(|e| e <= last);
            if !one_run || start <= first || !scored_inside {
                return None;
            }
            rows.push((r, first, start, last));
        }
        let mut prompts: HashMap<&[u32], Vec<u32>> = HashMap::new();
        let mut p = Packing::empty(batch);
        for &(r, first, start, last) in &rows {
            let ids = &batch.ids[r];
            let prompt = &ids[first..start];
            let prompt_keys = match prompts.get(prompt) {
                Some(keys) => keys.clone(),
                None => {
                    let keys: Vec<u32> = prompt.iter().zip(0..).map(|(&id, pos)| p.push(id, pos)).collect();
                    p.spans.push(Span { keys: keys.clone(), own: keys.len() });
                    prompts.insert(prompt, keys.clone());
                    keys
                }
            };
            let own: Vec<u32> =
                ids[start..=last].iter().zip(prompt.len() as u32..).map(|(&id, pos)| p.push(id, pos)).collect();
            for (t, &n) in (first..).zip(prompt_keys.iter().chain(&own)) {
                p.at[r][t] = n;
            }
            p.spans.push(Span { own: own.len(), keys: [prompt_keys, own].concat() });
        }
        (prompts.len() < rows.len()).then_some(p)
    }

    /// Packed tokens `N`.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The packed index of batch row `row`'s token at position `pos`, if packed.
    pub fn index(&self, row: usize, pos: usize) -> Option<u32> {
        self.at.get(row)?.get(pos).copied().filter(|&n| n != NONE)
    }

    /// The packed tokens `[1, N]` and their position ids.
    pub fn ids(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.ids.clone(), (1, self.ids.len()), device)?)
    }

    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// The gathers and the masks that every layer's attention uses, built once per pass;
    /// `window` is a sliding-window model's window (Mistral).
    ///
    /// Spans attend in buckets of similar size, each padded to its own longest: a DPO batch's
    /// prompts (`p` queries over `p` keys) and answers (`a` queries over `p + a` keys) padded to
    /// one `[Tq, Tk]` would spend a third more on attention, and keep a third more of it for
    /// the backward, than padded apart.
    pub fn attention(&self, window: Option<usize>, device: &Device) -> Result<PackedAttention> {
        let mut back = vec![NONE; self.len()];
        let mut buckets = Vec::new();
        let mut offset = 0; // outputs of the buckets before this one
        for spans in self.buckets() {
            let bucket = Bucket::new(&spans, window, offset, &mut back, device)?;
            offset += bucket.rows * bucket.tq;
            buckets.push(bucket);
        }
        if back.contains(&NONE) {
            return Err(ModelError::Usage("packing: a token that no span owns".into()));
        }
        let n = back.len();
        Ok(PackedAttention { buckets, back: Tensor::from_vec(back, n, device)? })
    }

    /// The spans in buckets: sorted by their number of keys, a bucket closes when padding the
    /// next span into it would make its padded `[Tq, Tk]` area half again the real one.
    fn buckets(&self) -> Vec<Vec<&Span>> {
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|s| (s.keys.len(), s.own));
        let mut buckets: Vec<Vec<&Span>> = Vec::new();
        let (mut real, mut tq, mut tk) = (0, 0, 0);
        for s in spans {
            let (q, k) = (tq.max(s.own), tk.max(s.keys.len()));
            let n = buckets.last().map_or(0, Vec::len);
            if n == 0 || 2 * (n + 1) * q * k > 3 * (real + s.own * s.keys.len()) {
                buckets.push(Vec::new());
                (real, tq, tk) = (0, 0, 0);
            }
            real += s.own * s.keys.len();
            (tq, tk) = (tq.max(s.own), tk.max(s.keys.len()));
            if let Some(b) = buckets.last_mut() {
                b.push(s);
            }
        }
        buckets
    }
}

/// One pass's attention over packed tokens: per bucket of spans, where their queries and keys
/// come from and the causal mask; and where each token's output lands.
pub struct PackedAttention {
    buckets: Vec<Bucket>,
    /// `[N]`: where token `n`'s output is among the buckets' outputs, laid end to end.
    back: Tensor,
}

/// Spans that attend padded to one `[Tq, Tk]`.
struct Bucket {
    /// `[R·Tq]` packed index of span `s`'s query `j` at `s·Tq + j`.
    queries: Tensor,
    /// `[R·Tk]` packed index of span `s`'s key `i` at `s·Tk + i`.
    keys: Tensor,
    /// `[R, 1, Tq, Tk]`: 0 where a query sees a key, `f32::MIN` elsewhere.
    bias: Tensor,
    rows: usize,
    tq: usize,
    tk: usize,
}

impl Bucket {
    /// The bucket of `spans`, whose outputs start at `offset`; records in `back` where each
    /// of their own tokens' outputs are.
    fn new(spans: &[&Span], window: Option<usize>, offset: usize, back: &mut [u32], device: &Device) -> Result<Bucket> {
        let rows = spans.len();
        let tq = spans.iter().map(|s| s.own).max().unwrap_or(0);
        let tk = spans.iter().map(|s| s.keys.len()).max().unwrap_or(0);
        let mut queries = vec![0u32; rows * tq];
        let mut keys = vec![0u32; rows * tk];
        let mut bias = vec![f32::MIN; rows * tq * tk];
        for (s, span) in spans.iter().enumerate() {
            keys[s * tk..][..span.keys.len()].copy_from_slice(&span.keys);
            let before = span.keys.len() - span.own;
            for j in 0..tq {
                let row = &mut bias[(s * tq + j) * tk..][..tk];
                if j < span.own {
                    // Query j is key `before + j`: it sees the keys up to itself (within the window).
                    let qi = before + j;
                    let n = span.keys[qi];
                    queries[s * tq + j] = n;
                    back[n as usize] = (offset + s * tq + j) as u32;
                    for (i, b) in row.iter_mut().enumerate().take(qi + 1) {
                        if window.is_none_or(|w| qi - i < w) {
                            *b = 0.0;
                        }
                    }
                } else {
                    // A padding query: it sees one key; its output is never gathered back.
                    queries[s * tq + j] = span.keys[0];
                    row[0] = 0.0;
                }
            }
        }
        let u32s = |v: Vec<u32>| {
            let n = v.len();
            Tensor::from_vec(v, n, device)
        };
        Ok(Bucket {
            queries: u32s(queries)?,
            keys: u32s(keys)?,
            bias: Tensor::from_vec(bias, (rows, 1, tq, tk), device)?,
            rows,
            tq,
            tk,
        })
    }

    /// `[R·Tq, H·d]` attention outputs of this bucket's queries.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, autocast: Option<DType>) -> Result<Tensor> {
        let (n, h, d) = (q.dim(1)?, q.dim(2)?, q.dim(3)?);
        let hkv = k.dim(2)?;
        let (r, tq, tk) = (self.rows, self.tq, self.tk);
        let gather = |x: &Tensor, heads: usize, index: &Tensor, t: usize| -> Result<Tensor> {
            Ok(x.reshape((n, heads * d))?.index_select(index, 0)?.reshape((r, t, heads, d))?.transpose(1, 2)?)
        };
        let q = gather(q, h, &self.queries, tq)?;
        let k = gather(k, hkv, &self.keys, tk)?.contiguous()?;
        let v = gather(v, hkv, &self.keys, tk)?.contiguous()?;
        Ok(nn::attention(&q, &k, &v, &self.bias, autocast)?.transpose(1, 2)?.reshape((r * tq, h * d))?)
    }
}

impl PackedAttention {
    /// Attention of the packed tokens: `q: [1, N, H, d]`, `k, v: [1, N, Hkv, d]` (rotated)
    /// → `[1, N, H·d]`; `autocast` as [`nn::attention`].
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, autocast: Option<DType>) -> Result<Tensor> {
        let (_, n, h, d) = q.dims4()?;
        let mut outs = self.buckets.iter().map(|b| b.attend(q, k, v, autocast)).collect::<Result<Vec<_>>>()?;
        let o = match outs.len() {
            0 => return Ok(Tensor::zeros((1, n, h * d), q.dtype(), q.device())?),
            1 => outs.remove(0),
            _ => Tensor::cat(&outs, 0)?,
        };
        Ok(o.index_select(&self.back, 0)?.reshape((1, n, h * d))?)
    }

    /// How many buckets the spans attend in.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::kernels::testing::max_abs_diff;
    use crate::logprobs::{masked_token_logps_and_logits, masked_token_logps_per_row};
    use crate::{LoadOptions, Model};

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
    fn shared_batches() -> Vec<(Batch, Vec<Vec<u8>>)> {
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
        [dpo.to_vec(), grpo].into_iter().map(|rows| split(&rows)).collect()
    }

    fn split(rows: &[(Vec<u32>, Vec<u8>, Vec<u8>)]) -> (Batch, Vec<Vec<u8>>) {
        let (ids, mask): (Vec<_>, Vec<_>) = rows.iter().map(|(i, m, _)| (i.clone(), m.clone())).unzip();
        (Batch::new(ids, mask).unwrap(), rows.iter().map(|r| r.2.clone()).collect())
    }

    /// Rows that share nothing, padded on the right, on the left, and with a gap in the mask;
    /// every real token after the first scored.
    fn padded_batch() -> (Batch, Vec<Vec<u8>>) {
        let rows = [
            (vec![5, 6, 7, 8, 9, 0, 0], vec![1, 1, 1, 1, 1, 0, 0]),
            (vec![0, 0, 10, 11, 12, 13, 14], vec![0, 0, 1, 1, 1, 1, 1]),
            (vec![15, 16, 0, 17, 18, 19, 0], vec![1, 1, 0, 1, 1, 1, 0]),
            (vec![20, 21, 22, 23, 24, 25, 26], vec![1; 7]),
        ];
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(ids, mask)| {
                let first = mask.iter().position(|&m| m != 0).unwrap();
                let scored = mask.iter().enumerate().map(|(t, &m)| (t > first && m != 0) as u8).collect();
                (ids, mask, scored)
            })
            .collect();
        split(&rows)
    }

    /// Values and gradients of a packed pass against the padded one.
    fn assert_same(model: &Model, batch: &Batch, scored: &[Vec<u8>]) {
        for temperature in [1.0, 0.7] {
            let (packed, lp) = masked_token_logps_and_logits(model, batch, scored, temperature).unwrap();
            let (padded, lr) = masked_token_logps_per_row(model, batch, scored, temperature).unwrap();
            // Float rounding only: the packed pass groups tokens differently.
            assert!(close(&packed, &padded), "log-probs differ by {}", max_abs_diff(&packed, &padded));
            assert!(close(&lp, &lr), "logits differ by {}", max_abs_diff(&lp, &lr));
            // A loss that weighs every token differently, so misplaced gradients show.
            let w = Tensor::arange(0f32, packed.elem_count() as f32, &Device::Cpu)
                .unwrap()
                .reshape(packed.shape())
                .unwrap()
                .cos()
                .unwrap();
            let gp = (&packed * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&padded * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in model.params() {
                let (a, b) = (gp.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap());
                assert!(close(a, b), "{name}: gradients differ by {}", max_abs_diff(a, b));
            }
        }
    }

    #[test]
    fn shared_prompts_equal_the_padded_batch_in_values_and_gradients() {
        // Llama with grouped-query heads, Qwen2 with q/k/v biases, GPT-2 with learned positions.
        for name in ["llama", "qwen2", "gpt2"] {
            let model = model(name);
            for (batch, scored) in shared_batches() {
                assert!(Packing::shared_prompts(&batch, &scored).is_some());
                assert_same(&model, &batch, &scored);
            }
        }
    }

    #[test]
    fn packed_rows_equal_the_padded_batch_in_values_and_gradients() {
        let (batch, scored) = padded_batch();
        assert!(Packing::shared_prompts(&batch, &scored).is_none());
        assert_eq!(Packing::rows(&batch, |_| true).len(), 5 + 5 + 5 + 7);
        for name in ["llama", "qwen2", "gpt2"] {
            assert_same(&model(name), &batch, &scored);
        }
    }

    #[test]
    fn a_sliding_window_masks_the_same_keys_packed_and_padded() {
        let mut cfg = model("llama").config.clone();
        cfg.sliding_window = Some(3);
        let mut w = crate::init::random_weights(&cfg, 7, &Device::Cpu).unwrap();
        let opts = LoadOptions { trainable: true, ..Default::default() };
        let model = Model::from_weights(cfg, &mut w, &Device::Cpu, &opts).unwrap();
        let (batch, scored) = padded_batch();
        assert_same(&model, &batch, &scored);
    }

    #[test]
    fn pooled_states_equal_the_padded_batch() {
        let model = model("llama");
        let (batch, _) = padded_batch();
        let packed = model.pooled(&batch).unwrap();
        let hidden = model.hidden(&batch).unwrap();
        for (r, mask) in batch.mask.iter().enumerate() {
            let last = mask.iter().rposition(|&m| m != 0).unwrap();
            let want = hidden.get(r).unwrap().get(last).unwrap();
            let got = packed.get(r).unwrap();
            assert!(close(&got, &want), "row {r}: pooled states differ by {}", max_abs_diff(&got, &want));
        }
    }

    #[test]
    fn the_layout_records_where_every_token_went() {
        let (batch, scored) = &shared_batches()[0];
        let p = Packing::shared_prompts(batch, scored).unwrap();
        // Prompts of 3 and 5 tokens once, answers of 4, 2, 6 and 4.
        assert_eq!(p.len(), 3 + 5 + 4 + 2 + 6 + 4);
        for (r, ids) in batch.ids.iter().enumerate() {
            for (t, &id) in ids.iter().enumerate() {
                match p.index(r, t) {
                    Some(n) => assert_eq!(p.ids[n as usize], id, "row {r} position {t}"),
                    None => assert_eq!(batch.mask[r][t], 0, "row {r} position {t} is real but not packed"),
                }
            }
        }
        // Rows 0 and 2 share their prompt's tokens; their answers are their own.
        assert_eq!(p.index(0, 1), p.index(2, 1));
        assert_ne!(p.index(0, 4), p.index(2, 4));
        // Prompts (3 and 5 keys) and answers (7 and 9 keys) attend in separate buckets, which
        // the equality tests above therefore cover.
        assert!(p.attention(None, &Device::Cpu).unwrap().buckets() >= 2);
    }

    #[test]
    fn rows_without_a_shared_prompt_or_of_another_shape_are_not_shared() {
        let b = |ids: Vec<Vec<u32>>, mask: Vec<Vec<u8>>| Batch::new(ids, mask).unwrap();
        let shared = Packing::shared_prompts;
        // Distinct prompts.
        let batch = b(vec![vec![1, 2, 3], vec![4, 2, 3]], vec![vec![1; 3]; 2]);
        assert!(shared(&batch, &[vec![0, 0, 1], vec![0, 0, 1]]).is_none());
        // A gap in the attention mask.
        let batch = b(vec![vec![1, 2, 3], vec![1, 2, 3]], vec![vec![1, 0, 1], vec![1; 3]]);
        assert!(shared(&batch, &[vec![0, 0, 1], vec![0, 0, 1]]).is_none());
        // No prompt token; a row with nothing scored leaves one row, nothing to share.
        let batch = b(vec![vec![1, 2, 3], vec![1, 2, 3]], vec![vec![1; 3]; 2]);
        assert!(shared(&batch, &[vec![1, 1, 1], vec![0, 0, 1]]).is_none());
        assert!(shared(&batch, &[vec![0, 0, 0], vec![0, 0, 1]]).is_none());
        // A scored padding token.
        let batch = b(vec![vec![1, 2, 0], vec![1, 2, 3]], vec![vec![1, 1, 0], vec![1; 3]]);
        assert!(shared(&batch, &[vec![0, 1, 1], vec![0, 0, 1]]).is_none());
        // Shared.
        assert!(shared(&batch, &[vec![0, 1, 0], vec![0, 1, 1]]).is_some());
    }
}
