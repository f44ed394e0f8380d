//! Token log-probabilities and the SFT loss from logits.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::kernels::log_softmax_gather::log_softmax_gather;
use crate::model::{Batch, Model};
use crate::packing::{self, Packing};

/// `logps[b, t] = log p(ids[b, t+1] | ids[b, ..=t]) · mask[b, t+1]`, shape `[B, T-1]`.
///
/// Computed as `logit[target] − logsumexp(logits)` by one fused kernel: the `[B, T, V]`
/// log-softmax is never materialised, forward or backward.
pub fn token_logps(logits: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    // Targets shifted left, with a dummy last column so the gather runs on the contiguous
    // logits; the last position is dropped afterwards.
    let next = ids.narrow(1, 1, t - 1)?;
    let targets = Tensor::cat(&[&next, &ids.narrow(1, 0, 1)?], 1)?.contiguous()?;
    let logps = log_softmax_gather(logits, &targets)?.narrow(1, 0, t - 1)?;
    Ok((logps * mask.narrow(1, 1, t - 1)?)?)
}

/// Mean next-token cross-entropy over the positions `labels_mask[:, 1:]` marks (the HF
/// `CausalLM` loss with `-100` on ignored labels).
pub fn sft_loss(logits: &Tensor, ids: &Tensor, labels_mask: &Tensor) -> Result<Tensor> {
    let logps = token_logps(logits, ids, labels_mask)?;
    let n = labels_mask.narrow(1, 1, labels_mask.dim(1)? - 1)?.sum_all()?;
    Ok((logps.sum_all()?.neg()? / n)?)
}

/// As [`token_logps`] on `model.logits(batch) / temperature` with `mask` the `[B][T]` token
/// mask, but the LM head and the log-softmax run only on the positions whose next token is
/// masked in: `[B, T-1]`, zero elsewhere. With completions half the sequence this halves the
/// largest matmul and the `[·, V]` work, forward and backward.
pub fn masked_token_logps(model: &Model, batch: &Batch, mask: &[Vec<u8>], temperature: f64) -> Result<Tensor> {
    Ok(masked_token_logps_and_logits(model, batch, mask, temperature)?.0)
}

/// [`masked_token_logps`] and the `[M, V]` logits (already divided by `temperature`) of the
/// `M` selected positions, in row-major order of `(row, position)`. The batch runs packed
/// ([`Packing`]) when that saves work: rows that share a prompt (DPO pairs, GRPO groups) run
/// it once, and padding is dropped; otherwise as the padded batch.
pub fn masked_token_logps_and_logits(
    model: &Model,
    batch: &Batch,
    mask: &[Vec<u8>],
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    check_mask(batch, mask)?;
    let Some(packing) = packing_for(batch, mask) else {
        return masked_token_logps_per_row(model, batch, mask, temperature);
    };
    // `packing_for` checked that the token before every selected one is packed.
    let (src, next, dst) = selected(batch, mask, |r, p| packing.index(r, p).unwrap_or(0));
    let n = src.len();
    let hidden = model.forward_packed(&packing)?.index_select(&Tensor::from_vec(src, n, model.device())?, 0)?;
    score(model, batch, &hidden, next, dst, temperature)
}

/// The packing of the rows with selected tokens, if it saves work: shared prompts, or rows
/// with padding. `None` when packing is off, saves nothing, or a selected token follows a
/// padding token (its predecessor has no packed state).
fn packing_for(batch: &Batch, mask: &[Vec<u8>]) -> Option<Packing> {
    if !packing::enabled() {
        return None;
    }
    if let Some(shared) = Packing::shared_prompts(batch, mask) {
        return Some(shared);
    }
    let selected = |r: usize| mask[r].iter().skip(1).any(|&m| m != 0);
    let rows = Packing::rows(batch, selected);
    let padded = (0..batch.ids.len()).filter(|&r| selected(r)).map(|r| batch.ids[r].len()).sum::<usize>();
    let all_packed =
        mask.iter().enumerate().all(|(r, m)| (1..m.len()).all(|p| m[p] == 0 || rows.index(r, p - 1).is_some()));
    (rows.len() < padded && all_packed).then_some(rows)
}

/// [`masked_token_logps_and_logits`] with every row run on its own, shared prompt or not.
pub fn masked_token_logps_per_row(
    model: &Model,
    batch: &Batch,
    mask: &[Vec<u8>],
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    check_mask(batch, mask)?;
    let (b, t) = (batch.ids.len(), batch.ids.first().map_or(0, Vec::len));
    let hidden = model.hidden(batch)?; // [B, T, D]
    let d = hidden.dim(2)?;
    let (src, next, dst) = selected(batch, mask, |r, p| (r * t + p) as u32);
    let n = src.len();
    let hidden = hidden.reshape((b * t, d))?.index_select(&Tensor::from_vec(src, n, model.device())?, 0)?;
    score(model, batch, &hidden, next, dst, temperature)
}

/// For every selected position `p ≥ 1` (`mask[r][p] = 1`), in row-major order: the hidden
/// state before it (`at(r, p − 1)`), its token, and its index `r·(T−1) + p − 1` in the
/// `[B, T-1]` output.
fn selected(batch: &Batch, mask: &[Vec<u8>], at: impl Fn(usize, usize) -> u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let t = batch.ids.first().map_or(0, Vec::len);
    let (mut src, mut next, mut dst) = (vec![], vec![], vec![]);
    for (r, (ids, m)) in batch.ids.iter().zip(mask).enumerate() {
        for p in 1..t {
            if m[p] != 0 {
                src.push(at(r, p - 1));
                next.push(ids[p]);
                dst.push((r * (t - 1) + p - 1) as u32);
            }
        }
    }
    (src, next, dst)
}

fn check_mask(batch: &Batch, mask: &[Vec<u8>]) -> Result<()> {
    let t = batch.ids.first().map_or(0, Vec::len);
    if mask.len() != batch.ids.len() || mask.iter().any(|r| r.len() != t) {
        return Err(crate::ModelError::Usage("the token mask must have the shape of the ids".into()));
    }
    Ok(())
}

/// Log-probs of the `next` tokens from the hidden states `[M, D]` before them, placed at `dst`
/// in a zero `[B, T-1]`, and the `[M, V]` logits.
fn score(
    model: &Model,
    batch: &Batch,
    hidden: &Tensor,
    next: Vec<u32>,
    dst: Vec<u32>,
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    let dev = model.device();
    let (b, t) = (batch.ids.len(), batch.ids.first().map_or(0, Vec::len).saturating_sub(1));
    let zeros = Tensor::zeros(b * t, DType::F32, dev)?;
    let n = next.len();
    if n == 0 {
        let v = model.config.vocab_size;
        return Ok((zeros.reshape((b, t))?, Tensor::zeros((0, v), DType::F32, dev)?));
    }
    let mut logits = model.lm_logits(hidden)?; // [n, V]
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    let lp = log_softmax_gather(&logits, &Tensor::from_vec(next, n, dev)?)?;
    let logps = zeros.index_add(&Tensor::from_vec(dst, n, dev)?, &lp, 0)?.reshape((b, t))?;
    Ok((logps, logits))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::init::{llama_config, random_weights};
    use crate::kernels::testing::max_abs_diff;
    use crate::{LoadOptions, ModelConfig};

    #[test]
    fn masked_token_logps_match_token_logps_values_and_gradients() {
        let cfg = ModelConfig::from_value(llama_config(50, 16, 2, 2, 2, 32, 64)).unwrap();
        let mut w = random_weights(&cfg, 0, &Device::Cpu).unwrap();
        let opts = LoadOptions { trainable: true, ..Default::default() };
        let model = Model::from_weights(cfg, &mut w, &Device::Cpu, &opts).unwrap();
        let ids = vec![vec![3u32, 7, 9, 11, 13, 2], vec![5, 6, 8, 10, 0, 0]];
        let attn = vec![vec![1u8; 6], vec![1, 1, 1, 1, 0, 0]];
        let mask = vec![vec![0u8, 0, 1, 1, 1, 1], vec![0, 1, 1, 1, 0, 0]];
        let batch = Batch::new(ids.clone(), attn).unwrap();
        for temperature in [1.0, 0.7] {
            let sparse = masked_token_logps(&model, &batch, &mask, temperature).unwrap();
            let logits = (model.logits(&batch).unwrap() / temperature).unwrap();
            let idt = crate::nn::ids_tensor(&ids, &Device::Cpu).unwrap();
            let mt = crate::nn::mask_tensor(&mask, &Device::Cpu).unwrap();
            let dense = token_logps(&logits, &idt, &mt).unwrap();
            let dv = max_abs_diff(&sparse, &dense);
            assert!(dv < 1e-5, "values differ by {dv}");
            let gs = sparse.sum_all().unwrap().backward().unwrap();
            let gd = dense.sum_all().unwrap().backward().unwrap();
            for (name, v) in model.params() {
                let (a, b) = (gs.get(v.as_tensor()).unwrap(), gd.get(v.as_tensor()).unwrap());
                let dg = max_abs_diff(a, b);
                assert!(dg < 1e-5, "{name}: gradients differ by {dg}");
            }
        }
    }
}
