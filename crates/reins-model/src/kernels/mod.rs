//! Fused CPU kernels with their backward pass, as candle custom ops.
//!
//! Each file holds one concept, states its math forward and backward, and is tested against
//! the differentiable composition it replaces (values and gradients) and against finite
//! differences. The public functions take any tensors: on CPU f32 they run the fused kernel
//! (rows split over the rayon pool, the one matmul uses too), elsewhere the composition.

pub mod attention;
pub mod layer_norm;
pub mod linear;
pub mod log_softmax_gather;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

use candle_core::{CpuStorage, Layout, Tensor};

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
