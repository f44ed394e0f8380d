//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics.
//!
//! torch computes each gradient's L2 norm (CPU float reductions accumulate in double, the
//! result is float32), then the norm of the stacked per-tensor norms, then
//! `coef = max_norm / (total_norm + 1e-6)` clamped to at most 1.0 and multiplies every
//! gradient by it (always, also when `coef == 1`). Pascanu et al., arXiv:1211.5063, Alg. 1.

use candle_core::backprop::GradStore;
use candle_core::{DType, Var};

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
        let g = g.to_dtype(DType::F64)?;
        let sq = g.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let norm32 = sq.sqrt() as f32;
        total_sq += f64::from(norm32) * f64::from(norm32);
    }
    Ok(f64::from(total_sq.sqrt() as f32))
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
