//! Fresh weights for a config, as transformers' `_init_weights` does: linear and embedding
//! weights ~ N(0, initializer_range), biases 0, norm weights 1 (and GPT-2 norm biases 0).
//! Used to pretrain from scratch (the quickstart lab) and by the benchmark.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::{Arch, ModelConfig};
use crate::error::Result;
use crate::weights::Weights;

/// The shapes of every tensor a checkpoint of `cfg` holds, by HF name.
pub fn tensor_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    match cfg.arch {
        Arch::Llama => {
            let (h, hkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
            out.push(("model.embed_tokens.weight".into(), vec![v, d]));
            for i in 0..cfg.num_hidden_layers {
                let p = format!("model.layers.{i}");
                let mut lin = |n: &str, o: usize, inp: usize, bias: bool| {
                    out.push((format!("{p}.{n}.weight"), vec![o, inp]));
                    if bias {
                        out.push((format!("{p}.{n}.bias"), vec![o]));
                    }
                };
                lin("self_attn.q_proj", h * hd, d, cfg.qkv_bias);
                lin("self_attn.k_proj", hkv * hd, d, cfg.qkv_bias);
                lin("self_attn.v_proj", hkv * hd, d, cfg.qkv_bias);
                lin("self_attn.o_proj", d, h * hd, cfg.o_bias);
                lin("mlp.gate_proj", ff, d, cfg.mlp_bias);
                lin("mlp.up_proj", ff, d, cfg.mlp_bias);
                lin("mlp.down_proj", d, ff, cfg.mlp_bias);
                out.push((format!("{p}.input_layernorm.weight"), vec![d]));
                out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
            }
            out.push(("model.norm.weight".into(), vec![d]));
        }
        Arch::Gpt2 => {
            out.push(("transformer.wte.weight".into(), vec![v, d]));
            out.push(("transformer.wpe.weight".into(), vec![cfg.max_position_embeddings, d]));
            for i in 0..cfg.num_hidden_layers {
                let p = format!("transformer.h.{i}");
                for (n, inp, o) in
                    [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, ff), ("mlp.c_proj", ff, d)]
                {
                    out.push((format!("{p}.{n}.weight"), vec![inp, o]));
                    out.push((format!("{p}.{n}.bias"), vec![o]));
                }
                for n in ["ln_1", "ln_2"] {
                    out.push((format!("{p}.{n}.weight"), vec![d]));
                    out.push((format!("{p}.{n}.bias"), vec![d]));
                }
            }
            out.push(("transformer.ln_f.weight".into(), vec![d]));
            out.push(("transformer.ln_f.bias".into(), vec![d]));
        }
    }
    if !cfg.tie_word_embeddings && cfg.arch == Arch::Llama {
        out.push(("lm_head.weight".into(), vec![v, d]));
    }
    out
}

/// Random weights for `cfg` (seeded).
pub fn random_weights(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Weights> {
    let std = cfg.raw.get("initializer_range").and_then(|x| x.as_f64()).unwrap_or(0.02) as f32;
    let normal = Normal::new(0.0f32, std).expect("std is positive");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut map = HashMap::new();
    for (name, shape) in tensor_shapes(cfg) {
        let n: usize = shape.iter().product();
        let is_norm = name.contains("norm") || name.contains("ln_");
        let data: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; n]
        } else if is_norm {
            vec![1.0; n]
        } else {
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        map.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Ok(Weights::from_map(map, "<random init>"))
}

/// A Llama `config.json` value for the given sizes (used by the lab and the benchmark).
pub fn llama_config(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    max_pos: usize,
) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden / heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_pos,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": false,
        "attention_bias": false,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "dtype": "float32",
        "transformers_version": "5.24.0",
    })
}
