//! `y = x Wᵀ` for a few rows of `x`: the projections of one decoding step.
//!
//! ```text
//! forward   y[r, o] = Σ_k x[r, k] · W[o, k]        x: [m, in], W: [out, in] (nn.Linear layout)
//! backward  dx = g W,  dW = gᵀ x                   (candle matmuls; rarely needed)
//! ```
//!
//! With `m` ≤ [`MAX_ROWS`] a general GEMM spends most of its time packing `W` (a profile of
//! sampling showed 43% of cycles there); here every row of `W` is read once, straight from
//! its `[out, in]` layout, and dotted with all rows of `x` while it is in registers. Output
//! columns are split over the rayon pool.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::f32s;

/// Row counts up to which [`matmul_t`] is used.
pub const MAX_ROWS: usize = 16;
/// Output columns per rayon task.
const COLS_PER_TASK: usize = 64;

/// `x Wᵀ` with `x: [m, in]`, `W: [out, in]`, both CPU f32; differentiable.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, MatmulT)
}

struct MatmulT;

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "matmul-few-rows"
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
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || k == 0 {
            candle_core::bail!("matmul: [{m}, {k}] x [{n}, {k2}]ᵀ");
        }
        // [out, m], then transposed into [m, out].
        let mut yt = vec![0f32; n * m];
        yt.par_chunks_mut(COLS_PER_TASK * m).zip(w.par_chunks(COLS_PER_TASK * k)).for_each(|(yt, w)| {
            for (yo, wo) in yt.chunks_mut(m).zip(w.chunks(k)) {
                // Four rows of x per pass over the weight row: one load of W per four FMAs.
                for (y4, x4) in yo.chunks_mut(4).zip(x.chunks(4 * k)) {
                    if y4.len() == 4 {
                        y4.copy_from_slice(&dot4(x4, wo));
                    } else {
                        for (y, xr) in y4.iter_mut().zip(x4.chunks(k)) {
                            *y = dot(xr, wo);
                        }
                    }
                }
            }
        });
        let mut y = vec![0f32; m * n];
        for (o, col) in yt.chunks(m).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                y[r * n + o] = v;
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.matmul(w)?), Some(g.t()?.matmul(x)?)))
    }
}

/// `Σ a_i b_i` with eight independent accumulators (AVX2 + FMA when the CPU has them).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features the function is compiled for were just detected.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// The dots of `w` with four consecutive rows of `x4` (`[4, w.len()]`).
#[inline]
fn dot4(x4: &[f32], w: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features the function is compiled for were just detected.
            return unsafe { dot4_avx2(x4, w) };
        }
    }
    let k = w.len();
    std::array::from_fn(|r| dot_portable(&x4[r * k..(r + 1) * k], w))
}

#[inline]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
        i += 16;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc0, acc1));
    let mut s: f32 = lanes.iter().sum();
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(x4: &[f32], w: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let k = w.len();
    assert!(x4.len() >= 4 * k);
    let pw = w.as_ptr();
    let px = [x4.as_ptr(), x4.as_ptr().add(k), x4.as_ptr().add(2 * k), x4.as_ptr().add(3 * k)];
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 8 <= k {
        let wv = _mm256_loadu_ps(pw.add(i));
        for r in 0..4 {
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(px[r].add(i)), wv, acc[r]);
        }
        i += 8;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
        out[r] = lanes.iter().sum();
        for j in i..k {
            out[r] += x4[r * k + j] * w[j];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    #[test]
    fn matches_matmul_values_and_gradients() {
        for (m, k, n) in [(1, 64, 70), (8, 256, 129), (3, 37, 5), (6, 21, 9)] {
            let x = Var::from_tensor(&randn(&[m, k], 1)).unwrap();
            let w = Var::from_tensor(&randn(&[n, k], 2)).unwrap();
            let probe = randn(&[m, n], 3);
            let f = matmul_t(x.as_tensor(), w.as_tensor()).unwrap();
            let c = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            assert_matches_composition(&format!("linear {m}x{k}x{n}"), &f, &c, &probe, &[&x, &w], 1e-4, 1e-4);
        }
        assert!((dot_portable(&[1.0; 19], &[2.0; 19]) - 38.0).abs() < 1e-6);
    }

    /// The backward is checked against finite differences of the fused forward itself, not
    /// against candle's matmul (whose backward is the same two matmuls as ours). Shapes cover
    /// the four-row blocks, a remainder row, and `in` not a multiple of the SIMD width.
    #[test]
    fn gradient_matches_finite_differences() {
        for (m, k, n) in [(5, 19, 7), (16, 40, 3), (1, 9, 70)] {
            let x = Var::from_tensor(&randn(&[m, k], 4)).unwrap();
            let w = Var::from_tensor(&randn(&[n, k], 5)).unwrap();
            let probe = randn(&[m, n], 6);
            let f = || (matmul_t(x.as_tensor(), w.as_tensor()).unwrap() * &probe).unwrap().sum_all().unwrap();
            let g = f().backward().unwrap();
            let scalar = || f().to_scalar::<f32>().unwrap() as f64;
            let cx: Vec<usize> = (0..m * k).step_by(5).collect();
            let cw: Vec<usize> = (0..n * k).step_by(7).collect();
            let ex = finite_diff_err(&x, g.get(x.as_tensor()).unwrap(), &scalar, &cx);
            let ew = finite_diff_err(&w, g.get(w.as_tensor()).unwrap(), &scalar, &cw);
            assert!(ex < 1e-2 && ew < 1e-2, "{m}x{k}x{n}: finite differences off by {ex} (x), {ew} (w)");
        }
    }
}
