//! Differentiable building blocks shared by the decoders.
//!
//! candle's fused `rms_norm`, `layer_norm`, `softmax_last_dim` and `rope` kernels have no
//! backward pass, so everything here is either a composition of ops that do or one of our
//! own fused kernels with a backward (`crate::kernels`).

use candle_core::{DType, Device, Module, Tensor, D};

use crate::error::Result;
use crate::lora::Lora;

/// `y = x Wᵀ + b` with an optional low-rank adapter.
///
/// `weight` is `[out, in]` as in `nn.Linear`; GPT-2's `Conv1D` stores `[in, out]`, flagged by
/// `transposed`.
#[derive(Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub transposed: bool,
    pub lora: Option<Lora>,
    /// Mixed precision: multiply in this dtype (input and weight cast to it, the product cast
    /// back to the input's dtype), as `torch.autocast` runs a linear layer. `None`: as stored.
    pub autocast: Option<DType>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, transposed: false, lora: None, autocast: None }
    }

    /// `[in, out]` weights (GPT-2 `Conv1D`).
    pub fn conv1d(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, transposed: true, lora: None, autocast: None }
    }

    pub fn out_features(&self) -> usize {
        let d = self.weight.dims();
        if self.transposed {
            d[1]
        } else {
            d[0]
        }
    }

    pub fn in_features(&self) -> usize {
        let d = self.weight.dims();
        if self.transposed {
            d[0]
        } else {
            d[1]
        }
    }

    /// The same layer on detached tensors (shared storage, no graph).
    pub fn detached(&self) -> Self {
        Linear {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
            transposed: self.transposed,
            lora: self.lora.as_ref().map(Lora::detached),
            autocast: self.autocast,
        }
    }

    /// The effective `[out, in]` weight with any adapter merged in.
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = if self.transposed { self.weight.t()?.contiguous()? } else { self.weight.clone() };
        match &self.lora {
            Some(l) => Ok((w + l.delta()?)?),
            None => Ok(w),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // [..., in] -> [rows, in] so one GEMM serves any leading shape.
        let dims = x.dims().to_vec();
        let (lead, inp) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, inp[0]))?;
        let few_rows = rows <= crate::kernels::linear::MAX_ROWS && !self.transposed;
        let mut y = if let Some(dt) = self.autocast.filter(|&dt| dt != x2.dtype()) {
            // The gradient of each cast is cast back: the weight's reaches it in its own dtype.
            let (xc, w) = (x2.to_dtype(dt)?, self.weight.to_dtype(dt)?);
            let y = if self.transposed { xc.matmul(&w)? } else { xc.matmul(&w.t()?)? };
            y.to_dtype(x2.dtype())?
        } else if few_rows && crate::kernels::fusable(&[&x2, &self.weight]) {
            crate::kernels::linear::matmul_t(&x2, &self.weight)?
        } else if self.transposed {
            x2.matmul(&self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = &self.lora {
            y = (y + l.forward(&x2)?)?;
        }
        let mut out = lead.to_vec();
        out.push(self.out_features());
        y.reshape(out)
    }
}

/// Root-mean-square norm (Zhang & Sennrich 2019): `x / sqrt(mean(x²) + eps) * w`, `x: [..., d]`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    crate::kernels::rms_norm::rms_norm(x, weight, eps)
}

/// Layer norm (Ba et al. 2016) over the last dimension, with affine `weight` and `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    crate::kernels::layer_norm::layer_norm(x, weight, bias, eps)
}

/// Softmax over the last dimension; the max shift is a constant, so it is detached.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// `log softmax(x)` over the last dimension.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_sub(&logsumexp_last(x)?)?)
}

/// `log Σ exp(x)` over the last dimension, keeping it: `[..., V] -> [..., 1]`.
pub fn logsumexp_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let s = x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok((s + max)?)
}

/// Additive attention bias `[B, 1, Tq, Tk]`: 0 where query `i` may see key `j`, `f32::MIN`
/// elsewhere (causal, key padding, and an optional sliding window), as HF's eager attention.
///
/// `key_mask: [B][Tk]` is 1 for real tokens; queries are the last `tq` keys.
pub fn attention_bias(key_mask: &[Vec<u8>], tq: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let b = key_mask.len();
    let tk = key_mask.first().map_or(0, Vec::len);
    let mut bias = vec![0f32; b * tq * tk];
    for (r, row) in key_mask.iter().enumerate() {
        for i in 0..tq {
            let qi = tk - tq + i;
            for (j, &m) in row.iter().enumerate() {
                let blocked = m == 0 || j > qi || window.is_some_and(|w| qi - j >= w);
                if blocked {
                    bias[(r * tq + i) * tk + j] = f32::MIN;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (b, 1, tq, tk), device)?)
}

/// Position ids from an attention mask: `cumsum(mask) - 1`, padding set to 1 (as HF generate).
pub fn positions_from_mask(mask: &[Vec<u8>]) -> Vec<Vec<u32>> {
    mask.iter()
        .map(|row| {
            let mut c = 0u32;
            row.iter()
                .map(|&m| {
                    c += m as u32;
                    if m == 0 {
                        1
                    } else {
                        c - 1
                    }
                })
                .collect()
        })
        .collect()
}

/// A `[B, T]` u32 tensor from rows of equal length.
pub fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let t = rows.first().map_or(0, Vec::len);
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), t), device)?)
}

/// Scaled dot-product attention with grouped-query heads.
///
/// `q: [B, H, Tq, d]`, `k, v: [B, Hkv, Tk, d]`, `bias: [B, 1, Tq, Tk]` → `[B, H, Tq, d]`.
/// With `autocast` the two products run in that dtype and the softmax in the input's, as
/// `torch.autocast` runs them.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, autocast: Option<DType>) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let hkv = k.dim(1)?;
    let tk = k.dim(2)?;
    let group = h / hkv;
    let dt = q.dtype();
    let cast = |t: &Tensor| -> Result<Tensor> {
        Ok(match autocast {
            Some(c) if c != dt => t.to_dtype(c)?,
            _ => t.clone(),
        })
    };
    // Fold the query heads that share a KV head into the query axis: [B, Hkv, group*Tq, d].
    let qg = q.reshape((b, hkv, group * tq, d))?;
    let scores = cast(&qg)?.matmul(&cast(k)?.t()?)?.to_dtype(dt)?.reshape((b, h, tq, tk))?;
    let p = crate::kernels::attention::masked_softmax(&scores, bias, 1.0 / (d as f64).sqrt())?;
    let p = p.reshape((b, hkv, group * tq, tk))?;
    Ok(cast(&p)?.matmul(&cast(v)?)?.to_dtype(dt)?.reshape((b, h, tq, d))?)
}

/// Rotary embedding tables for given positions: `cos, sin: [B, 1, T, head_dim]`.
pub fn rope_tables(inv_freq: &[f32], positions: &[Vec<u32>], device: &Device) -> Result<(Tensor, Tensor)> {
    let b = positions.len();
    let t = positions.first().map_or(0, Vec::len);
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(b * t * half * 2);
    let mut sin = Vec::with_capacity(b * t * half * 2);
    for row in positions {
        for &p in row {
            // HF computes `position * inv_freq` in f32 and takes cos/sin in f32.
            let angles: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
    }
    let shape = (b, 1, t, 2 * half);
    Ok((Tensor::from_vec(cos, shape, device)?, Tensor::from_vec(sin, shape, device)?))
}

/// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = [-x₂, x₁]` (Su et al. 2021, eq. 34,
/// in HF's half-split layout). `x: [B, H, T, d]`.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?)?)
}

/// Embedding lookup `[B, T] -> [B, T, D]` (differentiable through `index_select`).
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let flat = ids.flatten_all()?;
    Ok(table.index_select(&flat, 0)?.reshape((b, t, table.dim(1)?))?)
}

/// `mask [B][T]` as an f32 tensor.
pub fn mask_tensor(mask: &[Vec<u8>], device: &Device) -> Result<Tensor> {
    let t = mask.first().map_or(0, Vec::len);
    let flat: Vec<f32> = mask.iter().flatten().map(|&m| m as f32).collect();
    Ok(Tensor::from_vec(flat, (mask.len(), t), device)?.to_dtype(DType::F32)?)
}
