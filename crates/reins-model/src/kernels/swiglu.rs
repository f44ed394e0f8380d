//! The SwiGLU gate of Llama's MLP (Shazeer 2020): `y = silu(a) · b` elementwise.
//!
//! ```text
//! forward   σ = 1 / (1 + e^(−a)),  y = (a / (1 + e^(−a))) · b
//! backward  da = g · b · σ · (1 + a · (1 − σ))
//!           db = g · silu(a)
//! ```
//!
//! One pass instead of candle's `silu` and `mul` forward and five elementwise ops backward.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{f32s, fusable};
use crate::error::Result;

const CHUNK: usize = 1 << 14;

/// `silu(a) * b` for tensors of one shape, with a fused backward on CPU f32.
pub fn swiglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !fusable(&[a, b]) || a.shape() != b.shape() {
        return Ok((a.silu()? * b)?);
    }
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, SwiGlu)?)
}

struct SwiGlu;

fn pair<'a>(
    op: &str,
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(&'a [f32], &'a [f32])> {
    let (a, b) = (f32s(op, s1, l1)?, f32s(op, s2, l2)?);
    if a.len() != b.len() {
        candle_core::bail!("{op}: operands of {} and {} values", a.len(), b.len());
    }
    Ok((a, b))
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = pair(self.name(), s1, l1, s2, l2)?;
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(y, (a, b))| {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = (a / (1.0 + super::exp::exp(-a))) * b;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        // One pass (one exponential per element) for both gradients, stacked: [2, ..a's shape].
        let d = a.apply_op3_no_bwd(b, &g, &SwiGluBwd)?;
        Ok((Some(d.get(0)?), Some(d.get(1)?)))
    }
}

/// `da` (or `db`) from `(a, b, g)`.
/// `[da; db]`, stacked on a new first axis.
struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "swiglu-bwd"
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
        let (a, b) = pair(self.name(), s1, l1, s2, l2)?;
        let g = f32s(self.name(), s3, l3)?;
        if g.len() != a.len() {
            candle_core::bail!("swiglu: gradient shape mismatch");
        }
        let n = a.len();
        let mut d = vec![0f32; 2 * n];
        let (da, db) = d.split_at_mut(n);
        da.par_chunks_mut(CHUNK)
            .zip(db.par_chunks_mut(CHUNK))
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))))
            .for_each(|((da, db), (a, (b, g)))| {
                for ((((da, db), &a), &b), &g) in da.iter_mut().zip(db).zip(a).zip(b).zip(g) {
                    let s = 1.0 / (1.0 + super::exp::exp(-a));
                    *da = g * b * (s * (1.0 + a * (1.0 - s)));
                    *db = g * (a * s);
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.shape().dims());
        Ok((CpuStorage::F32(d), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let a = Var::from_tensor(&(randn(&[4, 9, 40], 1) * 3.0).unwrap()).unwrap();
        let b = Var::from_tensor(&randn(&[4, 9, 40], 2)).unwrap();
        let probe = randn(&[4, 9, 40], 3);
        let f = swiglu(a.as_tensor(), b.as_tensor()).unwrap();
        let c = (a.as_tensor().silu().unwrap() * b.as_tensor()).unwrap();
        assert_matches_composition("swiglu", &f, &c, &probe, &[&a, &b], 1e-6, 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let a = Var::from_tensor(&randn(&[3, 20], 4)).unwrap();
        let b = Var::from_tensor(&randn(&[3, 20], 5)).unwrap();
        let probe = randn(&[3, 20], 6);
        let f = || (swiglu(a.as_tensor(), b.as_tensor()).unwrap() * &probe).unwrap().sum_all().unwrap();
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..60).step_by(3).collect();
        let ea = finite_diff_err(&a, g.get(a.as_tensor()).unwrap(), &scalar, &coords);
        let eb = finite_diff_err(&b, g.get(b.as_tensor()).unwrap(), &scalar, &coords);
        assert!(ea < 1e-2 && eb < 1e-2, "finite differences off by {ea} (a), {eb} (b)");
    }
}
