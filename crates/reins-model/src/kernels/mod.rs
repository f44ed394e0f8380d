//! Fused CPU kernels with their backward pass, as candle custom ops (and `row_stats`, for
//! metrics, without one).
//!
//! Each file holds one concept, states its math forward and backward, and is tested against
//! the differentiable composition it replaces (values and gradients) and against finite
//! differences. The public functions take any tensors: on CPU f32 they run the fused kernel
//! (rows split over the rayon pool, the one matmul uses too), elsewhere the composition.

pub mod attention;
pub mod exp;
pub mod layer_norm;
pub mod linear;
pub mod log_softmax_gather;
pub mod rms_norm;
pub mod rope;
pub mod row_stats;
pub mod swiglu;

use candle_core::{CpuStorage, Layout, Tensor};
use rayon::prelude::*;

/// Rows per rayon task: enough work per task to amortise the fork/join.
pub(crate) fn min_rows(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
}

/// The contiguous f32 data behind a CPU storage.
pub(crate) fn f32s<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: expected f32 data");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

/// Rows per block of [`row_sums`].
const SUM_BLOCK: usize = 64;

/// `Σ_rows term(i, x_i, g_i)` for the rows (length `d`) of `x` and `g`, where `term` adds row
/// `i`'s contribution into `acc`: the weight and bias gradients of the norms. Rows are summed
/// per fixed block of 64 in parallel, then the blocks in order, so the result does not depend
/// on the thread count.
pub(crate) fn row_sums(
    x: &[f32],
    g: &[f32],
    d: usize,
    term: impl Fn(usize, &[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = x
        .par_chunks(d * SUM_BLOCK)
        .zip(g.par_chunks(d * SUM_BLOCK))
        .enumerate()
        .map(|(b, (xb, gb))| {
            let mut acc = vec![0f32; d];
            for (j, (x, g)) in xb.chunks(d).zip(gb.chunks(d)).enumerate() {
                term(b * SUM_BLOCK + j, x, g, &mut acc);
            }
            acc
        })
        .collect();
    let mut out = vec![0f32; d];
    for p in partials {
        out.iter_mut().zip(p).for_each(|(a, p)| *a += p);
    }
    out
}

/// Whether the fused CPU kernels apply to all of `ts`.
pub(crate) fn fusable(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor, Var};

    pub fn randn(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Checks a fused op against the composition it replaces: values within `tol_value`, and
    /// the gradients of Σ probe · output with respect to each of `vars` within `tol_grad`.
    pub fn assert_matches_composition(
        name: &str,
        fused: &Tensor,
        composed: &Tensor,
        probe: &Tensor,
        vars: &[&Var],
        tol_value: f32,
        tol_grad: f32,
    ) {
        let dv = max_abs_diff(fused, composed);
        println!("{name}: max value error {dv:e}");
        assert!(dv <= tol_value, "{name}: values differ by {dv}");
        let gf = (fused * probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composed * probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in vars {
            let d = max_abs_diff(gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            println!("{name}: max gradient error {d:e}");
            assert!(d <= tol_grad, "{name}: gradients differ by {d}");
        }
    }

    /// Central finite difference of `f` (a scalar function of `v`) at a few coordinates, in f64
    /// on the f32 function, compared with the analytic gradient `grad`; returns the max error.
    pub fn finite_diff_err(v: &Var, grad: &Tensor, f: &dyn Fn() -> f64, coords: &[usize]) -> f64 {
        let h = 1e-2f32;
        let g = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut err = 0f64;
        for &i in coords {
            let mut p = base.clone();
            p[i] += h;
            v.set(&Tensor::from_vec(p.clone(), v.shape(), &Device::Cpu).unwrap()).unwrap();
            let fp = f();
            p[i] -= 2.0 * h;
            v.set(&Tensor::from_vec(p, v.shape(), &Device::Cpu).unwrap()).unwrap();
            let fm = f();
            v.set(&Tensor::from_vec(base.clone(), v.shape(), &Device::Cpu).unwrap()).unwrap();
            let fd = (fp - fm) / (2.0 * h as f64);
            err = err.max((fd - g[i] as f64).abs() / (1.0 + g[i].abs() as f64));
        }
        err
    }
}
