//! The Llama family: Llama, Mistral and Qwen2 (RoPE, RMSNorm, SwiGLU, grouped-query attention).
//!
//! Follows transformers' `modeling_llama.py`; Qwen2 differs only by q/k/v biases, Mistral by an
//! optional sliding window, both handled by [`ModelConfig`] flags.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;
use crate::kernels::rope::rope;
use crate::kv_cache::Past;
use crate::nn::{self, Linear};
use crate::weights::ParamBuilder;

#[derive(Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
}

#[derive(Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Clone)]
pub struct Layer {
    pub input_layernorm: Tensor,
    pub self_attn: Attention,
    pub post_attention_layernorm: Tensor,
    pub mlp: Mlp,
}

#[derive(Clone)]
pub struct Llama {
    pub embed_tokens: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    inv_freq: Vec<f32>,
    cfg: ModelConfig,
    /// Mixed precision of attention's products (see [`nn::attention`]).
    pub autocast: Option<DType>,
}

fn linear(p: &mut ParamBuilder, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
    let w = p.get(&format!("{name}.weight"), &[out, inp])?;
    let b = if bias { Some(p.get(&format!("{name}.bias"), &[out])?) } else { None };
    Ok(Linear::new(w, b))
}

impl Llama {
    pub fn load(cfg: &ModelConfig, p: &mut ParamBuilder) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (h, hkv, ff) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size);
        let embed_tokens = p.get("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let pre = format!("model.layers.{i}");
            let a = format!("{pre}.self_attn");
            let m = format!("{pre}.mlp");
            layers.push(Layer {
                input_layernorm: p.get(&format!("{pre}.input_layernorm.weight"), &[d])?,
                self_attn: Attention {
                    q_proj: linear(p, &format!("{a}.q_proj"), h * hd, d, cfg.qkv_bias)?,
                    k_proj: linear(p, &format!("{a}.k_proj"), hkv * hd, d, cfg.qkv_bias)?,
                    v_proj: linear(p, &format!("{a}.v_proj"), hkv * hd, d, cfg.qkv_bias)?,
                    o_proj: linear(p, &format!("{a}.o_proj"), d, h * hd, cfg.o_bias)?,
                },
                post_attention_layernorm: p.get(&format!("{pre}.post_attention_layernorm.weight"), &[d])?,
                mlp: Mlp {
                    gate_proj: linear(p, &format!("{m}.gate_proj"), ff, d, cfg.mlp_bias)?,
                    up_proj: linear(p, &format!("{m}.up_proj"), ff, d, cfg.mlp_bias)?,
                    down_proj: linear(p, &format!("{m}.down_proj"), d, ff, cfg.mlp_bias)?,
                },
            });
        }
        let norm = p.get("model.norm.weight", &[d])?;
        Ok(Llama { embed_tokens, layers, norm, inv_freq: inv_freq(cfg), cfg: cfg.clone(), autocast: None })
    }

    /// Named linear layers, for LoRA and merging (`model.layers.{i}.self_attn.q_proj`, …).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = format!("model.layers.{i}.self_attn");
            let m = format!("model.layers.{i}.mlp");
            out.push((format!("{a}.q_proj"), &mut l.self_attn.q_proj));
            out.push((format!("{a}.k_proj"), &mut l.self_attn.k_proj));
            out.push((format!("{a}.v_proj"), &mut l.self_attn.v_proj));
            out.push((format!("{a}.o_proj"), &mut l.self_attn.o_proj));
            out.push((format!("{m}.gate_proj"), &mut l.mlp.gate_proj));
            out.push((format!("{m}.up_proj"), &mut l.mlp.up_proj));
            out.push((format!("{m}.down_proj"), &mut l.mlp.down_proj));
        }
        out
    }

    /// All tensors by HF name, for saving (adapters merged).
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed_tokens.clone())];
        let mut me = self.clone();
        for (name, lin) in me.linears_mut() {
            out.push((format!("{name}.weight"), lin.merged_weight()?));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("model.layers.{i}.input_layernorm.weight"), l.input_layernorm.clone()));
            out.push((format!("model.layers.{i}.post_attention_layernorm.weight"), l.post_attention_layernorm.clone()));
        }
        out.push(("model.norm.weight".into(), self.norm.clone()));
        Ok(out)
    }

    pub fn detached(&self) -> Self {
        let mut m = self.clone();
        m.embed_tokens = m.embed_tokens.detach();
        m.norm = m.norm.detach();
        for l in &mut m.layers {
            l.input_layernorm = l.input_layernorm.detach();
            l.post_attention_layernorm = l.post_attention_layernorm.detach();
        }
        for (_, lin) in m.linears_mut() {
            *lin = lin.detached();
        }
        m
    }

    /// Final hidden states `[B, T, D]` (after the last norm).
    ///
    /// `positions: [B][T]`; `key_mask: [B][past + T]` covers the past's tokens and the new
    /// ones (unused for packed tokens); `past` says what else they attend to (see [`Past`]).
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &[Vec<u32>],
        key_mask: &[Vec<u8>],
        mut past: Past<'_>,
    ) -> Result<Tensor> {
        let dev = ids.device();
        let (b, t) = ids.dims2()?;
        let (h, hkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let (cos, sin) = nn::rope_tables(&self.inv_freq, positions, dev)?;
        let (cos, sin) = (cos.squeeze(1)?, sin.squeeze(1)?); // [B, T, d]
        let bias = past.bias(key_mask, t, self.cfg.sliding_window, dev)?;
        let mut x = nn::embed(&self.embed_tokens, ids)?;
        let eps = self.cfg.norm_eps;
        for (i, layer) in self.layers.iter().enumerate() {
            let residual = x.clone();
            let hs = nn::rms_norm(&x, &layer.input_layernorm, eps)?;
            let a = &layer.self_attn;
            // [B, T, H*d] -> [B, T, H, d], q and k rotated
            let q = rope(&a.q_proj.forward(&hs)?.reshape((b, t, h, hd))?, &cos, &sin)?;
            let k = rope(&a.k_proj.forward(&hs)?.reshape((b, t, hkv, hd))?, &cos, &sin)?;
            let v = a.v_proj.forward(&hs)?.reshape((b, t, hkv, hd))?;
            let o = past.attend(i, &q, &k, &v, bias.as_ref(), self.autocast)?;
            x = (residual + a.o_proj.forward(&o)?)?;
            let residual = x.clone();
            let hs = nn::rms_norm(&x, &layer.post_attention_layernorm, eps)?;
            let m = &layer.mlp;
            let g = m.gate_proj.forward(&hs)?;
            let u = m.up_proj.forward(&hs)?;
            let gu = crate::kernels::swiglu::swiglu(&g, &u)?;
            x = (residual + m.down_proj.forward(&gu)?)?;
        }
        nn::rms_norm(&x, &self.norm, eps)
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }
}

/// RoPE inverse frequencies `θ^(-2i/d)`, with `linear` or `llama3` scaling applied as in
/// transformers' `modeling_rope_utils.py`.
pub fn inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64)).collect();
    let scaled: Vec<f64> = match &cfg.rope_scaling {
        RopeScaling::Default => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen > low_wavelen {
                        f / factor
                    } else if wavelen < high_wavelen {
                        f
                    } else {
                        let smooth = (original_max_position_embeddings / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    };
    scaled.into_iter().map(|f| f as f32).collect()
}
