//! Token log-probabilities straight from logits, without a `[N, V]` log-softmax.
//!
//! ```text
//! forward   m_n = max_j x[n, j]
//!           lse_n = m_n + ln Σ_j exp(x[n, j] − m_n)           (saved, [N])
//!           y_n = x[n, t_n] − lse_n
//! backward  ∂y_n/∂x[n, j] = δ(j, t_n) − softmax(x_n)_j, so
//!           dx[n, j] = g_n · (δ(j, t_n) − exp(x[n, j] − lse_n))  (rows with g_n = 0 are zero)
//! ```
//!
//! The composition it replaces (`gather` + `logsumexp` over the last dimension) writes four
//! `[N, V]` temporaries forward and as many backward; this reads the logits twice forward and
//! writes the one `[N, V]` gradient backward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{f32s, fusable, min_rows};
use crate::error::Result;

/// `y[...] = log softmax(x[..., :])[t[...]]`: `logits: [..., V]` (f32), `targets: [...]`
/// (u32 ids below V) → `[...]`, differentiable with respect to the logits.
pub fn log_softmax_gather(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let targets = targets.to_dtype(DType::U32)?;
    if !fusable(&[logits]) {
        let picked = logits.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?.squeeze(D::Minus1)?;
        let lse = crate::nn::logsumexp_last(logits)?.squeeze(D::Minus1)?;
        return Ok((picked - lse)?);
    }
    let op = LogSoftmaxGather { lse: Mutex::new(None) };
    Ok(logits.contiguous()?.apply_op2(&targets.contiguous()?, op)?)
}

struct LogSoftmaxGather {
    /// `lse_n` of the forward pass, for the backward.
    lse: Mutex<Option<Vec<f32>>>,
}

fn check(v: usize, n: usize, x_len: usize, t: &[u32]) -> candle_core::Result<()> {
    if v == 0 || x_len != n * v {
        candle_core::bail!("log_softmax_gather: {x_len} logits do not form {n} rows");
    }
    if let Some(bad) = t.iter().find(|&&i| i as usize >= v) {
        candle_core::bail!("log_softmax_gather: target id {bad} is outside the vocabulary of {v}");
    }
    Ok(())
}

fn u32s<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        candle_core::bail!("log_softmax_gather: targets must be u32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("log_softmax_gather: targets must be contiguous"),
    }
}

#[inline]
fn row_lse(row: &[f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Σ exp(x − m) in blocks, so the exponentials vectorise without a [V] buffer.
    let s: f32 = row
        .chunks(256)
        .map(|c| {
            let mut e = [0f32; 256];
            for (e, &x) in e.iter_mut().zip(c) {
                *e = super::exp::exp(x - m);
            }
            super::exp::sum(&e[..c.len()])
        })
        .sum();
    s.ln() + m
}

impl CustomOp2 for LogSoftmaxGather {
    fn name(&self) -> &'static str {
        "log-softmax-gather"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32s(self.name(), s1, l1)?;
        let t = u32s(s2, l2)?;
        let v = l1.dims().last().copied().unwrap_or(0);
        let n = t.len();
        check(v, n, x.len(), t)?;
        let mut lse = vec![0f32; n];
        let mut y = vec![0f32; n];
        x.par_chunks(v)
            .zip(lse.par_iter_mut().zip(y.par_iter_mut()))
            .zip(t.par_iter())
            .with_min_len(min_rows(v))
            .for_each(|((row, (l, y)), &t)| {
                *l = row_lse(row);
                *y = row[t as usize] - *l;
            });
        *self.lse.lock().map_err(|_| candle_core::Error::Msg("log_softmax_gather: poisoned".into()))? = Some(lse);
        Ok((CpuStorage::F32(y), l2.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved =
            self.lse.lock().map_err(|_| candle_core::Error::Msg("log_softmax_gather: poisoned".into()))?.clone();
        let op = LogSoftmaxGatherBwd { lse: saved };
        let dx = x.apply_op3_no_bwd(t, &grad.contiguous()?, &op)?;
        Ok((Some(dx), None))
    }
}

/// `dx = g ⊗ (onehot(t) − softmax(x))`, from `(x, t, g)`.
struct LogSoftmaxGatherBwd {
    lse: Option<Vec<f32>>,
}

impl CustomOp3 for LogSoftmaxGatherBwd {
    fn name(&self) -> &'static str {
        "log-softmax-gather-bwd"
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
        let t = u32s(s2, l2)?;
        let g = f32s(self.name(), s3, l3)?;
        let v = l1.dims().last().copied().unwrap_or(0);
        let n = t.len();
        check(v, n, x.len(), t)?;
        if g.len() != n {
            candle_core::bail!("log_softmax_gather: gradient of {} values for {n} rows", g.len());
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(v).zip(x.par_chunks(v)).enumerate().with_min_len(min_rows(v)).for_each(|(r, (d, row))| {
            let gr = g[r];
            if gr == 0.0 {
                return;
            }
            let lse = self.lse.as_ref().map_or_else(|| row_lse(row), |l| l[r]);
            for (d, &x) in d.iter_mut().zip(row) {
                *d = -gr * super::exp::exp(x - lse);
            }
            d[t[r] as usize] += gr;
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    fn composed(x: &Tensor, t: &Tensor) -> Tensor {
        let picked = x.gather(&t.unsqueeze(D::Minus1).unwrap().contiguous().unwrap(), D::Minus1).unwrap();
        let lse = crate::nn::logsumexp_last(x).unwrap();
        (picked - lse).unwrap().squeeze(D::Minus1).unwrap()
    }

    fn case() -> (Var, Tensor, Tensor) {
        let x = Var::from_tensor(&(randn(&[3, 5, 37], 1) * 3.0).unwrap()).unwrap();
        let t: Vec<u32> = (0..15).map(|i| (i * 7 % 37) as u32).collect();
        let t = Tensor::from_vec(t, (3, 5), &Device::Cpu).unwrap();
        // Loss weights, some zero as for masked positions.
        let w = randn(&[3, 5], 2).relu().unwrap();
        (x, t, w)
    }

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let (x, t, w) = case();
        let fused = log_softmax_gather(x.as_tensor(), &t).unwrap();
        let reference = composed(x.as_tensor(), &t);
        assert_matches_composition("log_softmax_gather", &fused, &reference, &w, &[&x], 1e-6, 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, t, w) = case();
        let f = || (log_softmax_gather(x.as_tensor(), &t).unwrap() * &w).unwrap().sum_all().unwrap();
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..555).step_by(13).chain([0, 37 + 7]).collect(); // and two target logits
        let err = finite_diff_err(&x, g.get(x.as_tensor()).unwrap(), &scalar, &coords);
        assert!(err < 1e-2, "finite differences off by {err}");
    }

    #[test]
    fn rejects_targets_outside_the_vocabulary() {
        let x = randn(&[2, 4], 3);
        let t = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
        assert!(log_softmax_gather(&x, &t).is_err());
    }
}
