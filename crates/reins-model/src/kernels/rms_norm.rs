//! RMSNorm (Zhang & Sennrich 2019) over the last dimension, `x: [..., D]`, `w: [D]`.
//!
//! ```text
//! forward   r = 1 / √(Σ_k x_k² / D + ε)              (per row, saved)
//!           y_k = (x_k · r) · w_k
//! backward  with u_k = g_k · w_k:
//!           dx_k = r · u_k − x_k · r³ · (Σ_j u_j x_j) / D
//!           dw_k = Σ_rows g_k · x_k · r
//! ```
//!
//! Rounding follows the composition `x · recip(sqrt(mean(x²) + ε)) · w`. The weight gradient
//! is summed per block of rows, then over blocks in order, so it does not depend on thread
//! scheduling.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{f32s, fusable, min_rows, row_sums};
use crate::error::Result;

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension, with a fused backward on CPU f32.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if !fusable(&[x, w]) {
        return composed(x, w, eps);
    }
    let op = RmsNorm { eps: eps as f32, r: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, op)?)
}

/// The differentiable composition the kernel replaces.
pub fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    let xn = x.broadcast_mul(&(ms + eps)?.sqrt()?.recip()?)?;
    Ok(xn.broadcast_mul(w)?)
}

struct RmsNorm {
    eps: f32,
    /// Per-row `r` of the forward pass.
    r: Mutex<Option<Vec<f32>>>,
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("rms_norm: poisoned lock".into())
}

#[inline]
fn row_r(row: &[f32], eps: f32) -> f32 {
    let d = row.len();
    let ss: f32 = row.iter().map(|x| x * x).sum();
    let ms = ss * (1.0 / d as f64) as f32;
    1.0 / (ms + eps).sqrt()
}

fn dims(op: &str, lx: &Layout, w_len: usize) -> candle_core::Result<(usize, usize)> {
    let d = lx.dims().last().copied().unwrap_or(0);
    if d == 0 || d != w_len {
        candle_core::bail!("{op}: last dimension {d} does not match the weight's {w_len}");
    }
    Ok((lx.shape().elem_count() / d, d))
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32s(self.name(), s1, l1)?;
        let w = f32s(self.name(), s2, l2)?;
        let (n, d) = dims(self.name(), l1, w.len())?;
        let mut y = vec![0f32; n * d];
        let mut r = vec![0f32; n];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).zip(r.par_iter_mut()).with_min_len(min_rows(d)).for_each(
            |((y, x), r)| {
                *r = row_r(x, self.eps);
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = (x * *r) * w;
                }
            },
        );
        *self.r.lock().map_err(|_| poisoned())? = Some(r);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let r = self.r.lock().map_err(|_| poisoned())?.clone();
        let op = RmsNormBwd { eps: self.eps, r };
        let g = g.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &g, &op)?;
        let dw = x.apply_op2_no_bwd(&g, &op)?;
        Ok((Some(dx), Some(dw)))
    }
}

struct RmsNormBwd {
    eps: f32,
    r: Option<Vec<f32>>,
}

impl RmsNormBwd {
    fn r(&self, i: usize, row: &[f32]) -> f32 {
        self.r.as_ref().map_or_else(|| row_r(row, self.eps), |r| r[i])
    }
}

/// `dx` from `(x, w, g)`.
impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-bwd-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32s("rms-norm-bwd-x", s1, l1)?;
        let w = f32s("rms-norm-bwd-x", s2, l2)?;
        let g = f32s("rms-norm-bwd-x", s3, l3)?;
        let (n, d) = dims("rms-norm-bwd-x", l1, w.len())?;
        if g.len() != n * d {
            candle_core::bail!("rms_norm: gradient shape mismatch");
        }
        let inv_d = 1.0 / d as f32;
        let mut dx = vec![0f32; n * d];
        dx.par_chunks_mut(d).zip(x.par_chunks(d).zip(g.par_chunks(d))).enumerate().with_min_len(min_rows(d)).for_each(
            |(i, (dx, (x, g)))| {
                let r = self.r(i, x);
                let dot: f32 = x.iter().zip(g).zip(w).map(|((x, g), w)| g * w * x).sum();
                let c = r * r * r * dot * inv_d;
                for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                    *dx = r * g * w - x * c;
                }
            },
        );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `dw` from `(x, g)`.
impl CustomOp2 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-bwd-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32s("rms-norm-bwd-w", s1, l1)?;
        let g = f32s("rms-norm-bwd-w", s2, l2)?;
        let d = l1.dims().last().copied().unwrap_or(0);
        if d == 0 || g.len() != x.len() {
            candle_core::bail!("rms_norm: gradient shape mismatch");
        }
        let dw = row_sums(x, g, d, |i, x, g, acc| {
            let r = self.r(i, x);
            for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                *a += g * (x * r);
            }
        });
        Ok((CpuStorage::F32(dw), Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let x = Var::from_tensor(&randn(&[3, 70, 48], 1)).unwrap();
        let w = Var::from_tensor(&randn(&[48], 2)).unwrap();
        let probe = randn(&[3, 70, 48], 3);
        let f = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        let c = composed(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        assert_matches_composition("rms_norm", &f, &c, &probe, &[&x, &w], 1e-6, 1e-4);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = Var::from_tensor(&randn(&[2, 3, 16], 4)).unwrap();
        let w = Var::from_tensor(&randn(&[16], 5)).unwrap();
        let probe = randn(&[2, 3, 16], 6);
        let f = || (rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap() * &probe).unwrap().sum_all().unwrap();
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..96).step_by(5).collect();
        let ex = finite_diff_err(&x, g.get(x.as_tensor()).unwrap(), &scalar, &coords);
        let ew = finite_diff_err(&w, g.get(w.as_tensor()).unwrap(), &scalar, &[0, 7, 15]);
        assert!(ex < 1e-2 && ew < 1e-2, "finite differences off by {ex} (x), {ew} (w)");
    }
}
