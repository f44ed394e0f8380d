//! Rotary position embeddings (Su et al. 2021, eq. 34) in HF's half-split layout.
//!
//! `x: [B, T, H, d]` (heads not yet moved forward), `cos, sin: [B, T, d]`, `h = d/2`:
//!
//! ```text
//! forward   y[:h] = x[:h] · cos[:h] − x[h:] · sin[:h]
//!           y[h:] = x[h:] · cos[h:] + x[:h] · sin[h:]
//! backward  dx[:h] = g[:h] · cos[:h] + g[h:] · sin[h:]
//!           dx[h:] = g[h:] · cos[h:] − g[:h] · sin[:h]        (the tables get no gradient)
//! ```
//!
//! Rounding follows the composition `x · cos + rotate_half(x) · sin`. It replaces `narrow`,
//! `neg`, `cat`, two broadcast multiplies and an add (and their backward) with one pass.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{f32s, fusable, min_rows};
use crate::error::Result;

/// RoPE on `x: [B, T, H, d]` with tables `cos, sin: [B, T, d]`; differentiable in `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, t, _, d) = x.dims4()?;
    if !fusable(&[x, cos, sin]) || d % 2 != 0 || cos.dims() != [b, t, d] || sin.dims() != [b, t, d] {
        return composed(x, cos, sin);
    }
    let op = Rope { backward: false };
    Ok(x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, op)?)
}

/// The differentiable composition the kernel replaces.
pub fn composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(3)?;
    let (cos, sin) = (cos.unsqueeze(2)?, sin.unsqueeze(2)?);
    let x1 = x.narrow(3, 0, d / 2)?;
    let x2 = x.narrow(3, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], 3)?;
    Ok((x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?)?)
}

/// The forward map, or (with `backward`) its transpose applied to a gradient.
struct Rope {
    backward: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        if self.backward {
            "rope-bwd"
        } else {
            "rope"
        }
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
        let cos = f32s(self.name(), s2, l2)?;
        let sin = f32s(self.name(), s3, l3)?;
        let (b, t, h, d) = l1.shape().dims4()?;
        if cos.len() != b * t * d || sin.len() != b * t * d || d % 2 != 0 {
            candle_core::bail!("rope: tables do not match x {:?}", l1.dims());
        }
        let half = d / 2;
        let mut y = vec![0f32; x.len()];
        // One task unit = the H heads of one (batch, position).
        y.par_chunks_mut(h * d).zip(x.par_chunks(h * d)).enumerate().with_min_len(min_rows(h * d)).for_each(
            |(bt, (y, x))| {
                let (c, s) = (&cos[bt * d..][..d], &sin[bt * d..][..d]);
                for (y, x) in y.chunks_mut(d).zip(x.chunks(d)) {
                    let (x1, x2) = x.split_at(half);
                    let (y1, y2) = y.split_at_mut(half);
                    for i in 0..half {
                        if self.backward {
                            y1[i] = x1[i] * c[i] + x2[i] * s[half + i];
                            y2[i] = x2[i] * c[half + i] - x1[i] * s[i];
                        } else {
                            y1[i] = x1[i] * c[i] + -x2[i] * s[i];
                            y2[i] = x2[i] * c[half + i] + x1[i] * s[half + i];
                        }
                    }
                }
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = g.contiguous()?.apply_op3_no_bwd(cos, sin, &Rope { backward: true })?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::kernels::testing::{assert_matches_composition, finite_diff_err, randn};

    fn tables() -> (Tensor, Tensor) {
        let inv_freq = [1.0f32, 0.1, 0.01, 0.001];
        let pos = vec![vec![0u32, 1, 2, 3, 4], vec![1, 1, 0, 1, 2]];
        let (c, s) = crate::nn::rope_tables(&inv_freq, &pos, &Device::Cpu).unwrap();
        (c.squeeze(1).unwrap(), s.squeeze(1).unwrap())
    }

    #[test]
    fn matches_the_composition_values_and_gradients() {
        let (c, s) = tables();
        let x = Var::from_tensor(&randn(&[2, 5, 3, 8], 1)).unwrap();
        let probe = randn(&[2, 5, 3, 8], 2);
        let f = rope(x.as_tensor(), &c, &s).unwrap();
        let r = composed(x.as_tensor(), &c, &s).unwrap();
        assert_matches_composition("rope", &f, &r, &probe, &[&x], 0.0, 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (c, s) = tables();
        let x = Var::from_tensor(&randn(&[2, 5, 3, 8], 3)).unwrap();
        let probe = randn(&[2, 5, 3, 8], 4);
        let f = || (rope(x.as_tensor(), &c, &s).unwrap() * &probe).unwrap().sum_all().unwrap();
        let g = f().backward().unwrap();
        let scalar = || f().to_scalar::<f32>().unwrap() as f64;
        let coords: Vec<usize> = (0..240).step_by(7).collect();
        let err = finite_diff_err(&x, g.get(x.as_tensor()).unwrap(), &scalar, &coords);
        assert!(err < 1e-2, "finite differences off by {err}");
    }
}
