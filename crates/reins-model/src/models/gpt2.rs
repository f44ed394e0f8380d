//! GPT-2 (Radford et al. 2019): learned positions, pre-LayerNorm blocks, `gelu_new` MLP.
//!
//! Follows transformers' `modeling_gpt2.py`. Its `Conv1D` layers store weights `[in, out]`.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::Past;
use crate::nn::{self, Linear};
use crate::weights::ParamBuilder;

#[derive(Clone)]
pub struct Block {
    pub ln_1: (Tensor, Tensor),
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub ln_2: (Tensor, Tensor),
    pub c_fc: Linear,
    pub mlp_c_proj: Linear,
}

#[derive(Clone)]
pub struct Gpt2 {
    pub wte: Tensor,
    pub wpe: Tensor,
    pub h: Vec<Block>,
    pub ln_f: (Tensor, Tensor),
    cfg: ModelConfig,
    /// Mixed precision of attention's products (see [`nn::attention`]).
    pub autocast: Option<DType>,
}

fn conv1d(p: &mut ParamBuilder, name: &str, inp: usize, out: usize) -> Result<Linear> {
    let w = p.get(&format!("{name}.weight"), &[inp, out])?;
    let b = p.get(&format!("{name}.bias"), &[out])?;
    Ok(Linear::conv1d(w, Some(b)))
}

fn ln(p: &mut ParamBuilder, name: &str, d: usize) -> Result<(Tensor, Tensor)> {
    Ok((p.get(&format!("{name}.weight"), &[d])?, p.get(&format!("{name}.bias"), &[d])?))
}

impl Gpt2 {
    pub fn load(cfg: &ModelConfig, p: &mut ParamBuilder) -> Result<Self> {
        let (d, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let wte = p.get("transformer.wte.weight", &[cfg.vocab_size, d])?;
        let wpe = p.get("transformer.wpe.weight", &[cfg.max_position_embeddings, d])?;
        let mut h = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let pre = format!("transformer.h.{i}");
            h.push(Block {
                ln_1: ln(p, &format!("{pre}.ln_1"), d)?,
                c_attn: conv1d(p, &format!("{pre}.attn.c_attn"), d, 3 * d)?,
                c_proj: conv1d(p, &format!("{pre}.attn.c_proj"), d, d)?,
                ln_2: ln(p, &format!("{pre}.ln_2"), d)?,
                c_fc: conv1d(p, &format!("{pre}.mlp.c_fc"), d, ff)?,
                mlp_c_proj: conv1d(p, &format!("{pre}.mlp.c_proj"), ff, d)?,
            });
        }
        let ln_f = ln(p, "transformer.ln_f", d)?;
        Ok(Gpt2 { wte, wpe, h, ln_f, cfg: cfg.clone(), autocast: None })
    }

    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.h.iter_mut().enumerate() {
            let pre = format!("transformer.h.{i}");
            out.push((format!("{pre}.attn.c_attn"), &mut b.c_attn));
            out.push((format!("{pre}.attn.c_proj"), &mut b.c_proj));
            out.push((format!("{pre}.mlp.c_fc"), &mut b.c_fc));
            out.push((format!("{pre}.mlp.c_proj"), &mut b.mlp_c_proj));
        }
        out
    }

    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            ("transformer.wte.weight".to_string(), self.wte.clone()),
            ("transformer.wpe.weight".to_string(), self.wpe.clone()),
        ];
        let mut me = self.clone();
        for (name, lin) in me.linears_mut() {
            // Back to the `[in, out]` Conv1D layout.
            out.push((format!("{name}.weight"), lin.merged_weight()?.t()?.contiguous()?));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
        }
        let mut lns = |name: String, (w, b): &(Tensor, Tensor)| {
            out.push((format!("{name}.weight"), w.clone()));
            out.push((format!("{name}.bias"), b.clone()));
        };
        for (i, b) in self.h.iter().enumerate() {
            lns(format!("transformer.h.{i}.ln_1"), &b.ln_1);
            lns(format!("transformer.h.{i}.ln_2"), &b.ln_2);
        }
        lns("transformer.ln_f".into(), &self.ln_f);
        Ok(out)
    }

    pub fn detached(&self) -> Self {
        let mut m = self.clone();
        let d = |p: &(Tensor, Tensor)| (p.0.detach(), p.1.detach());
        m.wte = m.wte.detach();
        m.wpe = m.wpe.detach();
        m.ln_f = d(&m.ln_f);
        for b in &mut m.h {
            b.ln_1 = d(&b.ln_1);
            b.ln_2 = d(&b.ln_2);
        }
        for (_, lin) in m.linears_mut() {
            *lin = lin.detached();
        }
        m
    }

    /// Final hidden states `[B, T, D]`; arguments as [`crate::models::llama::Llama::forward`].
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &[Vec<u32>],
        key_mask: &[Vec<u8>],
        mut past: Past<'_>,
    ) -> Result<Tensor> {
        let dev = ids.device();
        let (b, t) = ids.dims2()?;
        let (h, d) = (self.cfg.num_attention_heads, self.cfg.hidden_size);
        let hd = d / h;
        let eps = self.cfg.norm_eps;
        let pos = nn::ids_tensor(positions, dev)?;
        let bias = past.bias(key_mask, t, None, dev)?;
        let mut x = (nn::embed(&self.wte, ids)? + nn::embed(&self.wpe, &pos)?)?;
        for (i, blk) in self.h.iter().enumerate() {
            let hs = nn::layer_norm(&x, &blk.ln_1.0, &blk.ln_1.1, eps)?;
            let qkv = blk.c_attn.forward(&hs)?; // [B, T, 3D]
            let split = |j: usize| -> Result<Tensor> { Ok(qkv.narrow(2, j * d, d)?.reshape((b, t, h, hd))?) };
            let o = past.attend(i, &split(0)?, &split(1)?, &split(2)?, bias.as_ref(), self.autocast)?;
            x = (x + blk.c_proj.forward(&o)?)?;
            let hs = nn::layer_norm(&x, &blk.ln_2.0, &blk.ln_2.1, eps)?;
            let m = blk.c_fc.forward(&hs)?.gelu()?;
            x = (x + blk.mlp_c_proj.forward(&m)?)?;
        }
        nn::layer_norm(&x, &self.ln_f.0, &self.ln_f.1, eps)
    }

    pub fn device(&self) -> &Device {
        self.wte.device()
    }
}
