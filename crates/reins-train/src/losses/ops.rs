//! Differentiable numerical building blocks shared by the losses.
//!
//! candle's fused `candle_nn::ops` kernels may lack a backward; everything here is composed
//! from primitive ops that all have one.

use candle_core::{DType, Tensor, D};

use crate::Result;

/// `log σ(x) = min(x, 0) − log(1 + exp(−|x|))`, stable for large |x|. Any shape.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let neg_abs = x.abs()?.neg()?;
    let softplus_tail = (neg_abs.exp()? + 1.0)?.log()?;
    Ok((x.minimum(0f64)? - softplus_tail)?)
}

/// `σ(x) = exp(log σ(x))`. Any shape.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(log_sigmoid(x)?.exp()?)
}

/// `softplus(x) = log(1 + exp(x)) = −log σ(−x)`. Any shape.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok(log_sigmoid(&x.neg()?)?.neg()?)
}

/// Sum of `x * mask` over `dim`. `mask` has `x`'s shape (0/1 in any float dtype).
pub fn masked_sum(x: &Tensor, mask: &Tensor, dim: usize) -> Result<Tensor> {
    Ok((x * mask.to_dtype(x.dtype())?)?.sum(dim)?)
}

/// Mean of `x` over the entries where `mask` is 1, over all dims (TRL `masked_mean` with
/// `axis=None`). Returns a scalar tensor.
pub fn masked_mean_all(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(x.dtype())?;
    let num = (x * &mask)?.sum_all()?;
    let den = mask.sum_all()?;
    Ok(num.broadcast_div(&den)?)
}

/// Mean of `x` over the last dim where `mask` is 1: `[B, T] -> [B]`. Rows with no real token
/// divide by 1 (TRL's `clamp(min=1)`).
pub fn masked_mean_rows(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(x.dtype())?;
    let num = (x * &mask)?.sum(D::Minus1)?;
    let den = mask.sum(D::Minus1)?.clamp(1f64, f64::INFINITY)?;
    Ok((num / den)?)
}

/// Per-token log-probabilities of `labels` under `logits`: `[B, T, V], [B, T] (u32) -> [B, T]`.
/// Differentiable (composed log-softmax + gather).
pub fn token_logps(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let idx = labels.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
    Ok(logp.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?)
}

/// Host copy of a rank-1 tensor as `f64`.
pub(crate) fn to_vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}
