//! Per-position statistics of logits for metrics: entropy, mean logit and argmax of each row
//! of `[N, V]` in one pass over it, with no gradient. TRL logs all three every step (entropy,
//! `logits/*`, mean token accuracy); as a composition of candle ops they took nine passes over
//! the logits and 2–3 % of an SFT step.
//!
//! Per row `x` with `m = max x`, `s = Σ exp(x − m)`:
//! `H = −Σ p log p = (m + ln s) − Σ exp(x − m)·x / s`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::exp::{exp, sum};
use super::{f32s, fusable, min_rows};
use crate::error::Result;

/// Entropy (nats), mean and argmax of every row of `logits: [N, V]`.
pub struct RowStats {
    pub entropy: Vec<f32>,
    pub mean: Vec<f32>,
    pub argmax: Vec<u32>,
}

/// [`RowStats`] of `logits: [N, V]` (detached; any dtype or device).
pub fn row_stats(logits: &Tensor) -> Result<RowStats> {
    let x = logits.detach().to_dtype(DType::F32)?.contiguous()?;
    if !fusable(&[&x]) {
        let max = x.max_keepdim(D::Minus1)?;
        let sh = x.broadcast_sub(&max)?;
        let lse = sh.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let logp = sh.broadcast_sub(&lse)?;
        return Ok(RowStats {
            entropy: (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?.to_vec1()?,
            mean: x.mean(D::Minus1)?.to_vec1()?,
            argmax: x.argmax(D::Minus1)?.to_vec1()?,
        });
    }
    let out: Vec<f32> = x.apply_op1_no_bwd(&RowStatsOp)?.flatten_all()?.to_vec1()?;
    let (mut s, n) = (RowStats { entropy: vec![], mean: vec![], argmax: vec![] }, out.len() / 3);
    for r in 0..n {
        s.entropy.push(out[3 * r]);
        s.mean.push(out[3 * r + 1]);
        s.argmax.push(out[3 * r + 2] as u32);
    }
    Ok(s)
}

/// `[N, V]` → `[N, 3]`: entropy, mean, argmax (as f32, exact below 2²⁴).
struct RowStatsOp;

impl CustomOp1 for RowStatsOp {
    fn name(&self) -> &'static str {
        "row-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32s(self.name(), s, l)?;
        let (n, v) = l.shape().dims2()?;
        let mut out = vec![0f32; n * 3];
        out.par_chunks_mut(3).zip(x.par_chunks(v)).with_min_len(min_rows(v)).for_each(|(o, row)| {
            let (mut m, mut arg) = (f32::NEG_INFINITY, 0usize);
            for (j, &x) in row.iter().enumerate() {
                if x > m {
                    (m, arg) = (x, j);
                }
            }
            let (mut s, mut sx) = (0f32, 0f32);
            let mut e = [0f32; 256];
            let mut ex = [0f32; 256];
            for c in row.chunks(256) {
                for ((e, ex), &x) in e.iter_mut().zip(ex.iter_mut()).zip(c) {
                    *e = exp(x - m);
                    *ex = *e * x;
                }
                s += sum(&e[..c.len()]);
                sx += sum(&ex[..c.len()]);
            }
            o[0] = m + s.ln() - sx / s;
            o[1] = sum(row) / v as f32;
            o[2] = arg as f32;
        });
        Ok((CpuStorage::F32(out), Shape::from((n, 3))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::randn;

    #[test]
    fn matches_the_composition() {
        let x = (randn(&[37, 300], 5) * 3.0).unwrap();
        let fused = row_stats(&x).unwrap();
        let logp = crate::nn::log_softmax_last(&x).unwrap();
        let h: Vec<f32> =
            (logp.exp().unwrap() * &logp).unwrap().sum(D::Minus1).unwrap().neg().unwrap().to_vec1().unwrap();
        let mean: Vec<f32> = x.mean(D::Minus1).unwrap().to_vec1().unwrap();
        let argmax: Vec<u32> = x.argmax(D::Minus1).unwrap().to_vec1().unwrap();
        for r in 0..37 {
            assert!((fused.entropy[r] - h[r]).abs() < 1e-5, "row {r}: {} vs {}", fused.entropy[r], h[r]);
            assert!((fused.mean[r] - mean[r]).abs() < 1e-6);
        }
        assert_eq!(fused.argmax, argmax);
    }
}
