//! LoRA (Hu et al. 2021): `W x + (α/r) · B A x` with `A: [r, in]`, `B: [out, r]`, base frozen.
//!
//! Saved and loaded in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`,
//! keys `base_model.model.<module>.lora_A.weight`), so PEFT loads our adapters and we load its.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// PEFT's `LoraConfig` fields that reins uses; names and defaults as PEFT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update (default 8).
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scale numerator: the update is multiplied by `lora_alpha / r` (default 8).
    #[serde(default = "default_r")]
    pub lora_alpha: usize,
    /// Dropout on the adapter input during training (default 0.0).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names to adapt, matched against the last path component (default q_proj, v_proj).
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

fn default_r() -> usize {
    8
}

fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: 8, lora_alpha: 8, lora_dropout: 0.0, target_modules: default_targets() }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.lora_alpha as f64 / self.r as f64
    }

    /// True when module `name` (e.g. `model.layers.0.self_attn.q_proj`) is targeted.
    pub fn targets(&self, name: &str) -> bool {
        let last = name.rsplit('.').next().unwrap_or(name);
        self.target_modules.iter().any(|t| t == last || t == name)
    }

    /// PEFT's `adapter_config.json`.
    pub fn to_peft_json(&self, base_model: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": self.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
        })
    }

    /// Reads the fields reins needs from a PEFT `adapter_config.json`.
    pub fn from_peft_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Format { path: path.into(), msg: format!("not valid JSON: {e}") })?;
        if v.get("peft_type").and_then(|t| t.as_str()).is_some_and(|t| t != "LORA") {
            return Err(ModelError::Format {
                path: path.into(),
                msg: "peft_type is not LORA; reins loads LoRA adapters only".into(),
            });
        }
        if v.get("use_dora").and_then(|t| t.as_bool()) == Some(true)
            || v.get("use_rslora").and_then(|t| t.as_bool()) == Some(true)
        {
            return Err(ModelError::Format {
                path: path.into(),
                msg: "DoRA / rsLoRA adapters are not supported yet".into(),
            });
        }
        let r = v.get("r").and_then(|x| x.as_u64()).unwrap_or(8) as usize;
        let targets = match v.get("target_modules") {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => default_targets(),
        };
        Ok(LoraConfig {
            r,
            lora_alpha: v.get("lora_alpha").and_then(|x| x.as_u64()).unwrap_or(r as u64) as usize,
            lora_dropout: v.get("lora_dropout").and_then(|x| x.as_f64()).unwrap_or(0.0),
            target_modules: targets,
        })
    }
}

/// One adapter pair on a linear layer.
#[derive(Clone)]
pub struct Lora {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    pub scale: f64,
    /// Dropout on the adapter's input while training; 0 on detached (inference) copies.
    pub dropout: f64,
    /// Seeded source of dropout masks, shared by clones of the training model.
    rng: std::sync::Arc<std::sync::Mutex<rand::rngs::StdRng>>,
}

impl Lora {
    /// PEFT's default init: `A` Kaiming-uniform (a = √5, so bound = 1/√in), `B` zeros, so the
    /// adapted model starts equal to the base.
    pub fn init(inp: usize, out: usize, cfg: &LoraConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..cfg.r * inp).map(|_| rng.random_range(-bound..bound)).collect();
        Ok(Lora {
            a: Tensor::from_vec(a, (cfg.r, inp), device)?,
            b: Tensor::zeros((out, cfg.r), candle_core::DType::F32, device)?,
            scale: cfg.scale(),
            dropout: cfg.lora_dropout,
            rng: std::sync::Arc::new(std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(seed ^ 0xd70f))),
        })
    }

    /// `(dropout(x) Aᵀ) Bᵀ · scale` for `x: [rows, in]` (inverted dropout, as PEFT).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = if self.dropout > 0.0 {
            let keep = 1.0 - self.dropout;
            let n = x.elem_count();
            let mask: Vec<f32> = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                (0..n).map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect()
            };
            (x * Tensor::from_vec(mask, x.shape(), x.device())?)?
        } else {
            x.clone()
        };
        x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }

    /// The dense update `scale · B A`, `[out, in]`.
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }

    /// The adapter on detached tensors, in inference mode (no dropout).
    pub fn detached(&self) -> Self {
        Lora { a: self.a.detach(), b: self.b.detach(), dropout: 0.0, ..self.clone() }
    }
}

/// PEFT's key for an adapter tensor: `base_model.model.<module>.lora_{A,B}.weight`.
pub fn peft_key(module: &str, which: char) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}
