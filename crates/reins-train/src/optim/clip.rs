//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics.
//!
//! torch computes each gradient's L2 norm (CPU float reductions accumulate in double, the
//! result is float32), then the norm of the stacked per-tensor norms, then
//! `coef = max_norm / (total_norm + 1e-6)` clamped to at most 1.0 and multiplies every
//! gradient by it (always, also when `coef == 1`). Pascanu et al., arXiv:1211.5063, Alg. 1.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Storage, Tensor, Var};
use rayon::prelude::*;

use crate::Result;

/// `‖g‖₂` over all gradients of `vars` present in `grads` (missing ones are skipped, like
/// torch's `p.grad is None`). Per-tensor sums of squares are accumulated in f64, each
/// per-tensor norm is rounded to f32 as torch's float32 `vector_norm` does, and the total
/// is the f32-rounded norm of those. Returned as f64 holding that f32 value.
pub fn global_grad_norm(vars: &[Var], grads: &GradStore) -> Result<f64> {
    let mut total_sq = 0f64;
    for var in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let sq = match host_sum_sq(g) {
            Some(sq) => sq,
            None => g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?,
        };
        let norm32 = sq.sqrt() as f32;
        total_sq += f64::from(norm32) * f64::from(norm32);
    }
    Ok(f64::from(total_sq.sqrt() as f32))
}

/// `Σ g²` accumulated in f64 in one pass over a CPU f32 gradient, without the f64 copy and
/// the squared temporary of the composed path (fixed chunks summed in order, so the result
/// does not depend on thread scheduling). `None` for other devices, dtypes or layouts.
fn host_sum_sq(g: &Tensor) -> Option<f64> {
    const CHUNK: usize = 1 << 14;
    let (storage, layout) = g.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (a, b) = layout.contiguous_offsets()?;
    let partials: Vec<f64> =
        data[a..b].par_chunks(CHUNK).map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()).collect();
    Some(partials.iter().sum())
}

/// torch's clip coefficient `min(1, max_norm / (total_norm + 1e-6))`, computed in f32 as
/// torch does on a float32 norm. Pass it as `grad_scale` to [`super::adamw::AdamW::step`].
pub fn clip_coef(total_norm: f64, max_norm: f64) -> f32 {
    let denom = total_norm as f32 + 1e-6f32;
    let coef = max_norm as f32 / denom;
    coef.min(1.0)
}

/// Convenience: `(total_norm, coef)` for `vars` at `max_norm`.
pub fn clip_grad_norm(vars: &[Var], grads: &GradStore, max_norm: f64) -> Result<(f64, f32)> {
    let n = global_grad_norm(vars, grads)?;
    Ok((n, clip_coef(n, max_norm)))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn one_pass_sum_of_squares_matches_the_composition() {
        let v: Vec<f32> = (0..50_000).map(|i| ((i * 7919) % 1000) as f32 / 300.0 - 1.5).collect();
        let g = Tensor::from_vec(v, (250, 200), &Device::Cpu).unwrap();
        let composed = g.to_dtype(DType::F64).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let fused = host_sum_sq(&g).unwrap();
        assert!((fused - composed).abs() <= 1e-12 * composed, "{fused} vs {composed}");
        assert_eq!(fused.sqrt() as f32, composed.sqrt() as f32);
        assert!(host_sum_sq(&g.t().unwrap()).is_none(), "strided gradients take the composed path");
    }
}
