//! AdamW with PyTorch's semantics, as one fused in-place pass per parameter on CPU.
//!
//! Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101,
//! Algorithm 2; update order and rounding of `torch.optim.AdamW` (single-tensor path):
//!
//! ```text
//! g  = grad · grad_scale                       (torch: clip_grad_norm_ scales grads in place)
//! p ← p · (1 − lr·wd)                          (decoupled weight decay)
//! m ← m + (1 − β1)(g − m)                      (torch `lerp_`)
//! v ← β2 v + (1 − β2) g²
//! p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)   (ε outside the sqrt)
//! ```
//!
//! On CPU with f32 contiguous parameters the whole update is one pass over `p`, `g`, `m`,
//! `v` (candle [`InplaceOp2`], chunks in parallel with rayon); elsewhere composed tensor ops.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

const CHUNK: usize = 1 << 14;

/// Hyper-parameters; names and defaults of `torch.optim.AdamW` / TRL's `adamw_torch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate used when `step` is called with the config's value. Default 1e-3.
    pub lr: f64,
    /// β1, decay of the first moment. Default 0.9.
    pub beta1: f64,
    /// β2, decay of the second moment. Default 0.999.
    pub beta2: f64,
    /// ε added outside the square root. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.01 (torch); TRL/HF trainers default to 0.0.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

#[derive(Debug)]
enum Moments {
    /// CPU f32 state for the fused kernel.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Device tensors for the composed fallback (f32).
    Device { m: Tensor, v: Tensor },
}

/// AdamW over named parameters.
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<(String, Var)>,
    state: Vec<Moments>,
    /// Per-parameter step counts (torch keeps `state["step"]` per parameter, so a parameter
    /// that missed a gradient has its own bias correction).
    param_steps: Vec<u64>,
    cfg: AdamWConfig,
    step_t: u64,
    fused: bool,
}

/// Per-step scalars of the update, rounded to f32 as torch does for Python scalars.
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    decay: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
    grad_scale: f32,
}

impl StepScalars {
    fn new(cfg: &AdamWConfig, lr: f64, t: u64, grad_scale: f32) -> Self {
        let bc1 = 1.0 - cfg.beta1.powi(t as i32);
        let bc2 = 1.0 - cfg.beta2.powi(t as i32);
        Self {
            decay: (1.0 - lr * cfg.weight_decay) as f32,
            one_minus_b1: (1.0 - cfg.beta1) as f32,
            b2: cfg.beta2 as f32,
            one_minus_b2: (1.0 - cfg.beta2) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: cfg.eps as f32,
            neg_step_size: (-(lr / bc1)) as f32,
            grad_scale,
        }
    }

    #[inline(always)]
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        // Zipped, not indexed: without bounds checks the loop vectorises.
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let gi = g * self.grad_scale;
            let pi = *p * self.decay;
            let mi = *m + self.one_minus_b1 * (gi - *m);
            let vi = *v * self.b2 + self.one_minus_b2 * (gi * gi);
            let denom = vi.sqrt() / self.bc2_sqrt + self.eps;
            *p = pi + self.neg_step_size * mi / denom; // torch addcdiv: (value·m)/denom
            *m = mi;
            *v = vi;
        }
    }
}

/// The fused in-place kernel: `p` is the destination, the gradient the source, the moments
/// are borrowed mutably through a mutex (the trait hands out `&self`).
struct FusedAdamW<'a> {
    s: StepScalars,
    m: Mutex<&'a mut [f32]>,
    v: Mutex<&'a mut [f32]>,
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("fused-adamw: parameter and gradient must be f32");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("fused-adamw: parameter and gradient must be contiguous");
        };
        let p = &mut p[p0..p1];
        let g = &g[g0..g1];
        let mut m = self.m.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        let mut v = self.v.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        if p.len() != g.len() || p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("fused-adamw: size mismatch {} {} {} {}", p.len(), g.len(), m.len(), v.len());
        }
        let s = self.s;
        if p.len() <= CHUNK {
            s.apply(p, g, &mut m[..], &mut v[..]);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| s.apply(p, g, m, v));
        }
        Ok(())
    }
}

fn fusable(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == DType::F32 && var.is_contiguous()
}

impl AdamW {
    /// Optimizer over `vars` (names are used for state save/load). Uses the fused CPU kernel
    /// where possible.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        Self::with_fused(vars, cfg, true)
    }

    /// As [`AdamW::new`], choosing whether the fused CPU kernel may be used (`false` forces
    /// the composed-ops path everywhere, e.g. to test that both agree).
    pub fn with_fused(vars: Vec<(String, Var)>, cfg: AdamWConfig, fused: bool) -> Result<Self> {
        let state = vars
            .iter()
            .map(|(_, var)| {
                if fused && fusable(var) {
                    let n = var.elem_count();
                    Ok(Moments::Host { m: vec![0.0; n], v: vec![0.0; n] })
                } else {
                    let z = Tensor::zeros(var.shape(), DType::F32, var.device())?;
                    Ok(Moments::Device { m: z.clone(), v: z })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { param_steps: vec![0; vars.len()], vars, state, cfg, step_t: 0, fused })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Number of steps taken so far (torch's `state["step"]`).
    pub fn step_count(&self) -> u64 {
        self.step_t
    }

    /// The parameters, by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One AdamW step at learning rate `lr`, with every gradient multiplied by `grad_scale`
    /// first (the clip coefficient of [`super::clip::clip_coef`], or 1). Parameters without a
    /// gradient in `grads` are skipped, and so is their state, as in torch.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f32) -> Result<()> {
        self.step_t += 1;
        for (((_, var), st), t) in self.vars.iter().zip(self.state.iter_mut()).zip(self.param_steps.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            *t += 1;
            let s = StepScalars::new(&self.cfg, lr, *t, grad_scale);
            match st {
                Moments::Host { m, v } => {
                    let grad = grad.to_dtype(DType::F32)?.contiguous()?.detach();
                    let op = FusedAdamW { s, m: Mutex::new(&mut m[..]), v: Mutex::new(&mut v[..]) };
                    var.as_tensor().inplace_op2(&grad, &op)?;
                }
                Moments::Device { m, v } => {
                    let (nm, nv, np) = composed_update(var.as_tensor(), grad, m, v, &s)?;
                    *m = nm;
                    *v = nv;
                    var.set(&np)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the state to a safetensors file: `step` (optimizer steps, f64 `[1]`) and per
    /// parameter `<name>.step` (f64 `[1]`), `<name>.exp_avg`, `<name>.exp_avg_sq` (f32, the
    /// parameter's shape).
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        map.insert("step".into(), Tensor::new(&[self.step_t as f64], &Device::Cpu)?);
        for (((name, var), st), t) in self.vars.iter().zip(&self.state).zip(&self.param_steps) {
            map.insert(format!("{name}.step"), Tensor::new(&[*t as f64], &Device::Cpu)?);
            let (m, v) = match st {
                Moments::Host { m, v } => (
                    Tensor::from_slice(m, var.shape(), &Device::Cpu)?,
                    Tensor::from_slice(v, var.shape(), &Device::Cpu)?,
                ),
                Moments::Device { m, v } => (m.to_device(&Device::Cpu)?, v.to_device(&Device::Cpu)?),
            };
            map.insert(format!("{name}.exp_avg"), m);
            map.insert(format!("{name}.exp_avg_sq"), v);
        }
        candle_core::safetensors::save(&map, path)
            .map_err(|e| TrainError::State(format!("writing {}: {e}", path.display())))
    }

    /// Restores what [`AdamW::save_state`] wrote; every parameter name must be present with
    /// the parameter's shape.
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| TrainError::State(format!("reading {}: {e}", path.display())))?;
        let get = |k: &str| {
            map.get(k).ok_or_else(|| {
                TrainError::State(format!("{} has no tensor `{k}`; was it saved for this model?", path.display()))
            })
        };
        let step = get("step")?.to_vec1::<f64>()?;
        let mut new_state = Vec::with_capacity(self.vars.len());
        let mut new_steps = Vec::with_capacity(self.vars.len());
        for ((name, var), st) in self.vars.iter().zip(&self.state) {
            let t = match map.get(&format!("{name}.step")) {
                Some(t) => t.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64,
                None => step.first().copied().unwrap_or(0.0) as u64,
            };
            new_steps.push(t);
            let m = get(&format!("{name}.exp_avg"))?.to_dtype(DType::F32)?;
            let v = get(&format!("{name}.exp_avg_sq"))?.to_dtype(DType::F32)?;
            if m.shape() != var.shape() || v.shape() != var.shape() {
                return Err(TrainError::State(format!(
                    "`{name}`: saved shape {:?}, parameter shape {:?}",
                    m.shape(),
                    var.shape()
                )));
            }
            new_state.push(match st {
                Moments::Host { .. } => {
                    Moments::Host { m: m.flatten_all()?.to_vec1()?, v: v.flatten_all()?.to_vec1()? }
                }
                Moments::Device { .. } => {
                    Moments::Device { m: m.to_device(var.device())?, v: v.to_device(var.device())? }
                }
            });
        }
        self.state = new_state;
        self.param_steps = new_steps;
        self.step_t = step.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }

    /// Whether the fused kernel was allowed at construction.
    pub fn is_fused(&self) -> bool {
        self.fused
    }
}

/// The same update with composed tensor ops (any device; computed in f32).
fn composed_update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &StepScalars,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dt = p.dtype();
    let g = (g.to_dtype(DType::F32)?.detach() * s.grad_scale as f64)?;
    let pf = (p.to_dtype(DType::F32)?.detach() * s.decay as f64)?;
    let m = (m + ((&g - m)? * s.one_minus_b1 as f64)?)?;
    let v = ((v * s.b2 as f64)? + (g.sqr()? * s.one_minus_b2 as f64)?)?;
    let bc2 = Tensor::new(s.bc2_sqrt, p.device())?;
    let denom = (v.sqrt()?.broadcast_div(&bc2)? + s.eps as f64)?;
    let np = (pf + ((&m * s.neg_step_size as f64)? / denom)?)?.to_dtype(dt)?;
    Ok((m, v, np))
}
