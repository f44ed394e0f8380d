//! Differentiable numerical building blocks shared by the losses.
//!
//! candle's fused `candle_nn::ops` kernels may lack a backward; everything here is composed
//! from primitive ops that all have one.

use candle_core::{DType, Tensor, D};

use crate::Result;

/// `log σ(x) = min(x, 0) − log(1 + exp(−|x|))`, stable for large |x|. Any shape.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    // Two branches, each stable on its half-line, selected by `where_cond`: the gradient is
    // exactly σ(−x) everywhere, also at x = 0 (the `min(x, 0) − log1p(e^{−|x|})` form has kinks
    // there whose subgradients sum to 1 instead of ½ — which is every DPO loss's first step).
    let zeros = x.zeros_like()?;
    let pos = x.ge(&zeros)?;
    let xp = pos.where_cond(x, &zeros)?; // x on x ≥ 0, else 0
    let xn = pos.where_cond(&zeros, x)?; // x on x < 0, else 0
    let on_pos = (xp.neg()?.exp()? + 1.0)?.log()?.neg()?; // −log(1 + e^{−x})
    let on_neg = (&xn - (xn.exp()? + 1.0)?.log()?)?; // x − log(1 + e^{x})
    Ok(pos.where_cond(&on_pos, &on_neg)?)
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

#[cfg(test)]
mod log_sigmoid_tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn gradient_is_sigmoid_of_minus_x_including_zero() {
        let xs = [-80.0f32, -3.0, -1e-3, 0.0, 1e-3, 2.5, 80.0];
        let x = Var::new(&xs[..], &Device::Cpu).unwrap();
        let y = log_sigmoid(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(x.as_tensor()).unwrap().to_vec1().unwrap();
        let v: Vec<f32> = y.to_vec1().unwrap();
        for ((&x, &g), &v) in xs.iter().zip(&g).zip(&v) {
            let s = 1.0 / (1.0 + (x as f64).exp());
            assert!((g as f64 - s).abs() < 1e-6, "d/dx log σ({x}) = {g}, expected {s}");
            let want = -(1.0 + (-(x as f64)).exp()).ln();
            assert!((v as f64 - want).abs() < 1e-5 * want.abs().max(1.0), "log σ({x}) = {v}, expected {want}");
        }
    }
}
