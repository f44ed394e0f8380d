//! `config.json` of a Hugging Face decoder, parsed into one architecture-neutral struct.
//!
//! Accepts both spellings of rotary settings: transformers 5's `rope_parameters` object and the
//! older top-level `rope_theta` + `rope_scaling` (including `linear` and `llama3` scaling).

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// Which family of decoder the weights belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// GPT-2: learned positions, LayerNorm, fused `c_attn`, Conv1D weights stored `[in, out]`.
    Gpt2,
    /// Llama, Mistral and Qwen2: RoPE, RMSNorm, SwiGLU, grouped-query attention.
    Llama,
}

/// Rotary position embedding frequency scaling (`rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (`rope_type = "linear"`).
    Linear { factor: f64 },
    /// Llama 3.1's band-wise frequency scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// Everything the decoders need from `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `model_type` as written in the file (`gpt2`, `llama`, `mistral`, `qwen2`).
    pub model_type: String,
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// RMSNorm epsilon (Llama family) or LayerNorm epsilon (GPT-2).
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2, or `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (`attention_bias` in Llama).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Mistral-style sliding window; `None` attends to the whole prefix.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// `num_labels` of a `*ForSequenceClassification` checkpoint.
    pub num_labels: usize,
    /// The `architectures` list, e.g. `["LlamaForSequenceClassification"]`.
    pub architectures: Vec<String>,
    /// The file as read, written back unchanged (with updated fields) on save.
    pub raw: Value,
}

impl ModelConfig {
    /// Reads `DIR/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Format { path: path.clone(), msg: format!("not valid JSON: {e}") })?;
        Self::from_value(raw).map_err(|e| e.with_path(&path))
    }

    /// Parses an already-loaded `config.json` value.
    pub fn from_value(raw: Value) -> Result<Self> {
        let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let usize_of = |k: &str| -> Result<Option<usize>> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| ModelError::config(k, format!("expected a non-negative integer, found {v}"))),
            }
        };
        let need = |k: &str| -> Result<usize> {
            usize_of(k)?.ok_or_else(|| ModelError::config(k, "missing; every HF config of this model type has it"))
        };
        let f64_of = |k: &str| get(k).and_then(Value::as_f64);
        let bool_of = |k: &str| get(k).and_then(Value::as_bool);

        let model_type = get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::config("model_type", "missing; reins needs it to pick the architecture"))?
            .to_string();
        let architectures = get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let eos_token_ids = match get("eos_token_id") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_u64().map(|x| x as u32)).collect(),
            Some(v) => v.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            None => vec![],
        };
        let token = |k: &str| get(k).and_then(Value::as_u64).map(|x| x as u32);
        let num_labels = match get("num_labels").and_then(Value::as_u64) {
            Some(n) => n as usize,
            None => get("id2label").and_then(Value::as_object).map(|m| m.len()).unwrap_or(2),
        };

        let cfg = match model_type.as_str() {
            "gpt2" => {
                let hidden = need("n_embd")?;
                let heads = need("n_head")?;
                if hidden % heads != 0 {
                    return Err(ModelError::config(
                        "n_head",
                        format!("n_embd {hidden} is not divisible by n_head {heads}"),
                    ));
                }
                match get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new") {
                    "gelu_new" | "gelu_pytorch_tanh" => {}
                    other => {
                        return Err(ModelError::config(
                            "activation_function",
                            format!("`{other}` is not supported; reins' GPT-2 implements gelu_new"),
                        ))
                    }
                }
                ModelConfig {
                    arch: Arch::Gpt2,
                    vocab_size: need("vocab_size")?,
                    hidden_size: hidden,
                    intermediate_size: usize_of("n_inner")?.unwrap_or(4 * hidden),
                    num_hidden_layers: need("n_layer")?,
                    num_attention_heads: heads,
                    num_key_value_heads: heads,
                    head_dim: hidden / heads,
                    norm_eps: f64_of("layer_norm_epsilon").unwrap_or(1e-5),
                    rope_theta: 0.0,
                    rope_scaling: RopeScaling::Default,
                    max_position_embeddings: need("n_positions")?,
                    tie_word_embeddings: bool_of("tie_word_embeddings").unwrap_or(true),
                    qkv_bias: true,
                    o_bias: true,
                    mlp_bias: true,
                    sliding_window: None,
                    model_type,
                    bos_token_id: token("bos_token_id"),
                    eos_token_ids,
                    pad_token_id: token("pad_token_id"),
                    num_labels,
                    architectures,
                    raw: Value::Null,
                }
            }
            "llama" | "mistral" | "qwen2" => {
                let hidden = need("hidden_size")?;
                let heads = need("num_attention_heads")?;
                let kv_heads = usize_of("num_key_value_heads")?.unwrap_or(heads);
                if kv_heads == 0 || heads % kv_heads != 0 {
                    return Err(ModelError::config(
                        "num_key_value_heads",
                        format!("{kv_heads} does not divide num_attention_heads {heads}"),
                    ));
                }
                let head_dim = usize_of("head_dim")?.unwrap_or(hidden / heads);
                match get("hidden_act").and_then(Value::as_str).unwrap_or("silu") {
                    "silu" | "swish" => {}
                    other => {
                        return Err(ModelError::config(
                            "hidden_act",
                            format!("`{other}` is not supported; reins implements silu (SwiGLU)"),
                        ))
                    }
                }
                let (rope_theta, rope_scaling) = parse_rope(&raw)?;
                let is_qwen = model_type == "qwen2";
                let attention_bias = bool_of("attention_bias").unwrap_or(false);
                let sliding_window = match model_type.as_str() {
                    "mistral" => usize_of("sliding_window")?,
                    "qwen2" if bool_of("use_sliding_window").unwrap_or(false) => usize_of("sliding_window")?,
                    _ => None,
                };
                ModelConfig {
                    arch: Arch::Llama,
                    vocab_size: need("vocab_size")?,
                    hidden_size: hidden,
                    intermediate_size: need("intermediate_size")?,
                    num_hidden_layers: need("num_hidden_layers")?,
                    num_attention_heads: heads,
                    num_key_value_heads: kv_heads,
                    head_dim,
                    norm_eps: f64_of("rms_norm_eps").unwrap_or(1e-6),
                    rope_theta,
                    rope_scaling,
                    max_position_embeddings: usize_of("max_position_embeddings")?.unwrap_or(2048),
                    tie_word_embeddings: bool_of("tie_word_embeddings").unwrap_or(false),
                    qkv_bias: is_qwen || attention_bias,
                    o_bias: attention_bias && !is_qwen,
                    mlp_bias: bool_of("mlp_bias").unwrap_or(false),
                    sliding_window,
                    model_type,
                    bos_token_id: token("bos_token_id"),
                    eos_token_ids,
                    pad_token_id: token("pad_token_id"),
                    num_labels,
                    architectures,
                    raw: Value::Null,
                }
            }
            other => {
                return Err(ModelError::config(
                    "model_type",
                    format!("`{other}` is not supported; reins loads gpt2, llama, mistral and qwen2 checkpoints"),
                ))
            }
        };
        Ok(ModelConfig { raw, ..cfg })
    }

    /// True when the checkpoint is a `*ForSequenceClassification` (a reward model).
    pub fn is_sequence_classifier(&self) -> bool {
        self.architectures.iter().any(|a| a.ends_with("ForSequenceClassification"))
    }
}

/// Reads `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older files).
fn parse_rope(raw: &Value) -> Result<(f64, RopeScaling)> {
    let params = raw.get("rope_parameters").filter(|v| v.is_object());
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .or_else(|| raw.get("rope_theta"))
        .and_then(Value::as_f64)
        .unwrap_or(10_000.0);
    let scaling = params.or_else(|| raw.get("rope_scaling").filter(|v| v.is_object()));
    let Some(s) = scaling else { return Ok((theta, RopeScaling::Default)) };
    let key = if params.is_some() { "rope_parameters" } else { "rope_scaling" };
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        s.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::config(&format!("{key}.{k}"), format!("required by rope_type `{kind}`")))
    };
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: num("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(ModelError::config(
                &format!("{key}.rope_type"),
                format!("`{other}` is not supported; reins implements default, linear and llama3"),
            ))
        }
    };
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama(extra: Value) -> Value {
        let mut v = json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn both_rope_spellings_agree() {
        let new = ModelConfig::from_value(llama(
            json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}}),
        ))
        .unwrap();
        let old = ModelConfig::from_value(llama(
            json!({"rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}),
        ))
        .unwrap();
        assert_eq!(new.rope_theta, 500000.0);
        assert_eq!(new.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        assert_eq!(old.rope_theta, new.rope_theta);
        assert_eq!(old.rope_scaling, new.rope_scaling);
    }

    #[test]
    fn llama3_scaling_parsed() {
        let c = ModelConfig::from_value(llama(
            json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
        ))
        .unwrap();
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = ModelConfig::from_value(json!({"model_type": "bert"})).unwrap_err().to_string();
        assert!(e.contains("model_type") && e.contains("bert"), "{e}");
        let e = ModelConfig::from_value(llama(json!({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rope_scaling.rope_type") && e.contains("yarn"), "{e}");
        let e = ModelConfig::from_value(llama(json!({"num_key_value_heads": 3}))).unwrap_err().to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");
        let e = ModelConfig::from_value(llama(json!({"hidden_size": "big"}))).unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }
}
