//! Layer norm (Ba et al. 2016) over the last dimension, `x: [..., D]`, `w, b: [D]` (GPT-2).
//!
//! ```text
//! forward   μ = Σ x / D,  r = 1 / √(Σ (x − μ)² / D + ε)        (per row; r saved)
//!           x̂ = (x − μ) · r,  y = x̂ · w + b
//! backward  with u = g · w:
//!           dx = r · (u − mean(u) − x̂ · mean(u · x̂))
//!           dw = Σ_rows g · x̂,  db = Σ_rows g
//! ```
//!
//! Rounding follows the composition `(x − mean) · recip(sqrt(var + ε)) · w + b`. Weight and
//! bias gradients are summed per fixed block of rows, then over blocks in order.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{f32s, fusable, min_rows, row_sums};
use crate::error::Result;

/// Layer norm with affine `w`, `b`, with a fused backward on CPU f32.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if !fusable(&[x, w, b]) {
        return composed(x, w, b, eps);
    }
    let op = LayerNorm { eps: eps as f32, r: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

/// The differentiable composition the kernel replaces.
pub fn composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    Ok(xn.broadcast_mul(w)?.broadcast_add(b)?)
}

struct LayerNorm {
    eps: f32,
    /// Per-row `r` of the forward pass.
    r: Mutex<Option<Vec<f32>>>,
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("layer_norm: poisoned lock".into())
}

/// `(μ, r)` of a row.
#[inline]
fn stats(row: &[f32], eps: f32) -> (f32, f32) {
    let inv_d = (1.0 / row.len() as f64) as f32;
    let mu = row.iter().sum::<f32>() * inv_d;
    let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f32>() * inv_d;
    (mu, 1.0 / (var + eps).sqrt())
}

fn row_len(op: &str, l: &Layout, w_len: usize) -> candle_core::Result<usize> {
    let d = l.dims().last().copied().unwrap_or(0);
    if d == 0 || d != w_len {
        candle_core::bail!("{op}: last dimension {d} does not match the weight's {w_len}");
    }
    Ok(d)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
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
        let x = f32s(self.name(), s1, l1)?;
        let w = f32s(self.name(), s2, l2)?;
        let b = f32s(self.name(), s3, l3)?;
        let d = row_len(self.name(), l1, w.len())?;
        if b.len() != d {
            candle_core::bail!("layer_norm: bias of {} values for rows of {d}", b.len());
        }
        let mut y = vec![0f32; x.len()];
        let mut r = vec![0f32; x.len() / d];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).zip(r.par_iter_mut()).with_min_len(min_rows(d)).for_each(
            |((y, x), r)| {
                let (mu, ri) = stats(x, self.eps);
                *r = ri;
                for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = ((x - mu) * ri) * w + b;
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
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let r = self.r.lock().map_err(|_| poisoned())?.clone();
        let g = g.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &g, &LayerNormBwd { eps: self.eps, r: r.clone(), part: Part::X })?;
        let dw = x.apply_op3_no_bwd(w, &g, &LayerNormBwd { eps: self.eps, r: r.clone(), part: Part::W })?;
        let db = x.apply_op3_no_bwd(w, &g, &LayerNormBwd { eps: self.eps, r, part: Part::B })?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    X,
    W,
    B,
}

/// One of `dx`, `dw`, `db` from `(x, w, g)`.
struct LayerNormBwd {
    eps: f32,
    r: Option<Vec<f32>>,
    part: Part,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "layer-norm-bwd"
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
        let x = f32s(self.name(), s1, l1)?;
        let w = f32s(self.name(), s2, l2)?;
        let g = f32s(self.name(), s3, l3)?;
        let d = row_len(self.name(), l1, w.len())?;
        if g.len() != x.len() {
            candle_core::bail!("layer_norm: gradient shape mismatch");
        }
        let mu_r = |i: usize, row: &[f32]| {
            let (mu, r) = stats(row, self.eps);
            (mu, self.r.as_ref().map_or(r, |rs| rs[i]))
        };
        if self.part == Part::X {
            let inv_d = 1.0 / d as f32;
            let mut dx = vec![0f32; x.len()];
            dx.par_chunks_mut(d)
                .zip(x.par_chunks(d).zip(g.par_chunks(d)))
                .enumerate()
                .with_min_len(min_rows(d))
                .for_each(|(i, (dx, (x, g)))| {
                    let (mu, r) = mu_r(i, x);
                    let (mut su, mut sux) = (0f32, 0f32);
                    for ((&x, &g), &w) in x.iter().zip(g).zip(w) {
                        let u = g * w;
                        su += u;
                        sux += u * ((x - mu) * r);
                    }
                    let (mu_u, mu_ux) = (su * inv_d, sux * inv_d);
                    for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                        *dx = r * (g * w - mu_u - ((x - mu) * r) * mu_ux);
                    }
                });
            return Ok((CpuStorage::F32(dx), l1.shape().clone()));
        }
        let out = row_sums(x, g, d, |i, x, g, acc| {
            if self.part == Part::B {
                acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                return;
            }
            let (mu, r) = mu_r(i, x);
            for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                *a += g * ((x - mu) * r);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let x = Var::from_tensor(&(randn(&[3, 70, 48], 1) + 0.5).unwrap()).unwrap();
        let w = Var::from_tensor(&randn(&[48], 2)).unwrap();
        let b = Var::from_tensor(&randn(&[48], 3)).unwrap();
        let probe = randn(&[3, 70, 48], 4);
        let f = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        let c = composed(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        assert_matches_composition("layer_norm", &f, &c, &probe, &[&x, &w, &b], 1e-5, 1e-4);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = Var::from_tensor(&randn(&[2, 3, 16], 5)).unwrap();
        let w = Var::from_tensor(&randn(&[16], 6)).unwrap();
        let b = Var::from_tensor(&randn(&[16], 7)).unwrap();
        let probe = randn(&[2, 3, 16], 8);
        let f = || {
            let y = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
            (y * &probe).unwrap().sum_all().unwrap()
        };
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..96).step_by(5).collect();
        let ex = finite_diff_err(&x, g.get(x.as_tensor()).unwrap(), &scalar, &coords);
        let ew = finite_diff_err(&w, g.get(w.as_tensor()).unwrap(), &scalar, &[0, 7, 15]);
        let eb = finite_diff_err(&b, g.get(b.as_tensor()).unwrap(), &scalar, &[0, 7, 15]);
        assert!(ex < 1e-2 && ew < 1e-2 && eb < 1e-2, "finite differences off by {ex}, {ew}, {eb}");
    }
}
