//! The softmax of causal attention: scale, additive mask and softmax over keys in one pass.
//!
//! `s: [B, H, Tq, Tk]` raw scores `q·kᵀ`, `bias: [B, 1, Tq, Tk]` (0 or `f32::MIN`, shared by
//! the heads), `c` the scale `1/√d`:
//!
//! ```text
//! forward   z_j = s_j · c + bias_j,  p_j = exp(z_j − max z) / Σ_k exp(z_k − max z)
//! backward  ds_j = c · p_j · (g_j − Σ_k g_k p_k)        (the mask is a constant: no gradient)
//! ```
//!
//! The composition it replaces (`mul`, `broadcast_add`, `max`, `sub`, `exp`, `sum`, `div`)
//! writes five `[B, H, Tq, Tk]` temporaries forward and more backward; this writes `p`
//! forward and `ds` backward, from `p` alone. The matmuls on either side stay with gemm. At
//! the sequence lengths RLHF uses on CPU (≤ 512) the `[Tq, Tk]` probabilities per head are
//! small next to the MLP activations, so they are kept rather than recomputed.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{f32s, fusable, min_rows};
use crate::error::Result;

/// `softmax(scores · scale + bias)` over the last dimension; `bias` broadcasts over heads.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, tq, tk) = scores.dims4()?;
    if !fusable(&[scores, bias]) || bias.dims() != [b, 1, tq, tk] {
        return composed(scores, bias, scale);
    }
    Ok(scores.contiguous()?.apply_op2(&bias.contiguous()?, MaskedSoftmax { scale: scale as f32 })?)
}

/// The differentiable composition the kernel replaces.
pub fn composed(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let z = (scores * scale)?.broadcast_add(bias)?;
    let max = z.max_keepdim(D::Minus1)?.detach();
    let e = z.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = f32s(self.name(), s1, l1)?;
        let bias = f32s(self.name(), s2, l2)?;
        let (b, h, tq, tk) = l1.shape().dims4()?;
        if bias.len() != b * tq * tk || tk == 0 {
            candle_core::bail!("masked_softmax: bias of {} values for scores {:?}", bias.len(), l1.dims());
        }
        let mut p = vec![0f32; s.len()];
        p.par_chunks_mut(tk).zip(s.par_chunks(tk)).enumerate().with_min_len(min_rows(tk)).for_each(|(r, (p, s))| {
            // row r = ((bi · h + hi) · tq + i); its mask row is (bi · tq + i).
            let (bi, i) = (r / (h * tq), r % tq);
            let m = &bias[(bi * tq + i) * tk..][..tk];
            let mut max = f32::NEG_INFINITY;
            for ((p, &s), &m) in p.iter_mut().zip(s).zip(m) {
                *p = s * self.scale + m;
                max = max.max(*p);
            }
            for p in p.iter_mut() {
                *p = super::exp::exp(*p - max);
            }
            let inv = 1.0 / super::exp::sum(p);
            for p in p.iter_mut() {
                *p *= inv;
            }
        });
        Ok((CpuStorage::F32(p), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _s: &Tensor,
        _bias: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ds = g.contiguous()?.apply_op1_no_bwd(&SoftmaxBwd { p: p.clone(), scale: self.scale })?;
        Ok((Some(ds), None))
    }
}

/// `ds = c · p ⊙ (g − Σ g p)` from `g`, with `p` the forward's output.
struct SoftmaxBwd {
    p: Tensor,
    scale: f32,
}

impl CustomOp1 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "masked-softmax-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32s(self.name(), s, l)?;
        let (ps, pl) = self.p.storage_and_layout();
        let candle_core::Storage::Cpu(ps) = &*ps else {
            candle_core::bail!("masked_softmax: probabilities not on the CPU");
        };
        let p = f32s(self.name(), ps, pl)?;
        let tk = l.dims().last().copied().unwrap_or(0);
        if p.len() != g.len() || tk == 0 {
            candle_core::bail!("masked_softmax: gradient shape mismatch");
        }
        let mut ds = vec![0f32; g.len()];
        ds.par_chunks_mut(tk).zip(p.par_chunks(tk).zip(g.par_chunks(tk))).with_min_len(min_rows(tk)).for_each(
            |(ds, (p, g))| {
                let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                for ((ds, &p), &g) in ds.iter_mut().zip(p).zip(g) {
                    *ds = self.scale * (p * (g - dot));
                }
            },
        );
        Ok((CpuStorage::F32(ds), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    fn bias() -> Tensor {
        // Causal over 7 keys for the last 5 queries, one left-padded key in batch row 1.
        let mask = vec![vec![1u8; 7], [vec![0u8], vec![1u8; 6]].concat()];
        crate::nn::attention_bias(&mask, 5, None, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let s = Var::from_tensor(&(randn(&[2, 3, 5, 7], 1) * 4.0).unwrap()).unwrap();
        let probe = randn(&[2, 3, 5, 7], 2);
        let f = masked_softmax(s.as_tensor(), &bias(), 0.125).unwrap();
        let c = composed(s.as_tensor(), &bias(), 0.125).unwrap();
        assert_matches_composition("attention", &f, &c, &probe, &[&s], 1e-6, 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let s = Var::from_tensor(&randn(&[2, 3, 5, 7], 3)).unwrap();
        let probe = randn(&[2, 3, 5, 7], 4);
        let f = || (masked_softmax(s.as_tensor(), &bias(), 0.5).unwrap() * &probe).unwrap().sum_all().unwrap();
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..210).step_by(7).collect();
        let err = finite_diff_err(&s, g.get(s.as_tensor()).unwrap(), &scalar, &coords);
        assert!(err < 1e-2, "finite differences off by {err}");
    }
}
