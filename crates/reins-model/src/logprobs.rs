//! Token log-probabilities and the SFT loss from logits.

use candle_core::Tensor;

use crate::error::Result;
use crate::kernels::log_softmax_gather::log_softmax_gather;

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
