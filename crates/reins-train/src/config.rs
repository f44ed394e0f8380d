//! Trainer configs as TRL users write them: one flat TOML table whose keys are TRL's
//! (`learning_rate`, `beta`, `loss_type`, `per_device_train_batch_size`, …).
//!
//! The flat table is split among several serde structs (the run's [`TrainingArgs`], the
//! optimizer's, the loss's); a key that none of them knows is an error that names it and
//! suggests the closest known key.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Result, TrainError};

/// Run-level fields of HF `TrainingArguments` and TRL configs (names and defaults as there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingArgs {
    /// HF model folder to start from (required).
    pub model_name_or_path: PathBuf,
    /// Training data file (JSONL, JSON, gzip or Parquet in any format `reins data` reads).
    pub dataset: PathBuf,
    /// Optional evaluation data file, scored every `eval_steps` and at the end.
    pub eval_dataset: Option<PathBuf>,
    /// Run folder: resolved config, `metrics.jsonl`, checkpoints (default `runs/reins`).
    pub output_dir: PathBuf,
    /// Examples per micro-batch (default 8).
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimizer step (default 1).
    pub gradient_accumulation_steps: usize,
    /// Passes over the data when `max_steps` is 0 (default 3, TRL).
    pub num_train_epochs: usize,
    /// Optimizer steps; 0 means `num_train_epochs` passes (default 0).
    pub max_steps: usize,
    /// Log every N optimizer steps (default 10).
    pub logging_steps: usize,
    /// Checkpoint every N optimizer steps; 0 saves only at the end (default 500).
    pub save_steps: usize,
    /// Evaluate every N optimizer steps; 0 only at the end (default 0).
    pub eval_steps: usize,
    /// Seed of data order and new weights (default 42).
    pub seed: u64,
    /// Max tokens of prompt + completion (default 1024).
    pub max_length: usize,
    /// LoRA rank; 0 trains all weights (default 0). With LoRA the reference model of DPO is
    /// the base with adapters off.
    pub lora_r: usize,
    /// LoRA α (default 16).
    pub lora_alpha: usize,
    /// LoRA dropout on the adapter input while training (default 0.0).
    pub lora_dropout: f64,
    /// LoRA target modules (default q_proj, v_proj).
    pub lora_target_modules: Vec<String>,
    /// Continue from the last checkpoint in `output_dir` (default true).
    pub resume: bool,
    /// Online runs: stop when the logged KL to the reference (`objective/kl` or `kl`) exceeds
    /// this, keeping the last checkpoint (default `None`: no limit).
    pub max_kl: Option<f64>,
    /// Online runs: append the step's sampled completions and rewards to `samples.jsonl`
    /// every N steps; 0 = never (default 0).
    pub log_completions_steps: usize,
    /// Mixed precision: the products of the policy and its reference run in bf16, weights,
    /// norms, softmaxes and the loss in f32 (`reins_model::Model::set_autocast`); for GPUs
    /// (default false, HF's `bf16`).
    pub bf16: bool,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        TrainingArgs {
            model_name_or_path: PathBuf::new(),
            dataset: PathBuf::new(),
            eval_dataset: None,
            output_dir: PathBuf::from("runs/reins"),
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            num_train_epochs: 3,
            max_steps: 0,
            logging_steps: 10,
            save_steps: 500,
            eval_steps: 0,
            seed: 42,
            max_length: 1024,
            lora_r: 0,
            lora_alpha: 16,
            lora_dropout: 0.0,
            lora_target_modules: vec!["q_proj".into(), "v_proj".into()],
            resume: true,
            max_kl: None,
            log_completions_steps: 0,
            bf16: false,
        }
    }
}

impl TrainingArgs {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.model_name_or_path.as_os_str().is_empty() {
            return bad("`model_name_or_path` is required: the HF folder to start from");
        }
        if self.dataset.as_os_str().is_empty() {
            return bad("`dataset` is required: a JSONL/JSON/Parquet file of training records");
        }
        if self.per_device_train_batch_size == 0 || self.gradient_accumulation_steps == 0 {
            return bad("`per_device_train_batch_size` and `gradient_accumulation_steps` must be at least 1");
        }
        if self.logging_steps == 0 {
            return bad("`logging_steps` must be at least 1");
        }
        Ok(())
    }

    /// The mixed precision `bf16` asks for.
    pub fn autocast(&self) -> Option<candle_core::DType> {
        self.bf16.then_some(candle_core::DType::BF16)
    }

    pub fn lora(&self) -> Option<reins_model::LoraConfig> {
        (self.lora_r > 0).then(|| reins_model::LoraConfig {
            r: self.lora_r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: self.lora_target_modules.clone(),
        })
    }
}

/// A flat table of settings (from TOML, with `--set` overrides applied).
#[derive(Debug, Clone, Default)]
pub struct FlatConfig {
    pub table: Map<String, Value>,
}

impl FlatConfig {
    /// Parses TOML text into a flat table.
    pub fn from_toml(text: &str) -> Result<Self> {
        let v: toml::Value = toml::from_str(text).map_err(|e| TrainError::Config(format!("not valid TOML: {e}")))?;
        let json = serde_json::to_value(v).map_err(|e| TrainError::Config(e.to_string()))?;
        match json {
            Value::Object(table) => Ok(FlatConfig { table }),
            _ => Err(TrainError::Config("the config must be a TOML table of key = value lines".into())),
        }
    }

    /// Applies `key=value` (value parsed as TOML, else taken as a string).
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let (k, v) = assignment
            .split_once('=')
            .ok_or_else(|| TrainError::Config(format!("--set `{assignment}`: expected key=value")))?;
        let parsed: Value = toml::from_str::<toml::Value>(&format!("x = {v}"))
            .ok()
            .and_then(|t| t.get("x").cloned())
            .and_then(|x| serde_json::to_value(x).ok())
            .unwrap_or_else(|| Value::String(v.to_string()));
        self.table.insert(k.trim().to_string(), parsed);
        Ok(())
    }

    /// Deserializes the keys that belong to `T` (those its default serializes).
    pub fn part<T: Serialize + DeserializeOwned + Default>(&self) -> Result<T> {
        let known = keys_of::<T>();
        let sub: Map<String, Value> =
            self.table.iter().filter(|(k, _)| known.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        serde_json::from_value(Value::Object(sub.clone())).map_err(|e| {
            // Name the key: the first one that fails on its own, laid over the defaults.
            let defaults = match serde_json::to_value(T::default()) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let bad = sub.iter().find(|(k, v)| {
                let mut one = defaults.clone();
                one.insert((*k).clone(), (*v).clone());
                serde_json::from_value::<T>(Value::Object(one)).is_err()
            });
            match bad {
                Some((k, _)) => TrainError::Config(format!("`{k}`: {e}")),
                None => TrainError::Config(e.to_string()),
            }
        })
    }

    /// Fails on any key outside `known`, naming it and the closest known key.
    pub fn check_known(&self, known: &[String]) -> Result<()> {
        for k in self.table.keys() {
            if !known.contains(k) {
                let best = known.iter().min_by_key(|c| edit_distance(k, c));
                let hint = best.map(|b| format!("; did you mean `{b}`?")).unwrap_or_default();
                return Err(TrainError::Config(format!("unknown config key `{k}`{hint}")));
            }
        }
        Ok(())
    }
}

/// Field names of `T` as its default value serializes them.
pub fn keys_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Merges the serialized parts into one flat table (the resolved config written to a run).
pub fn resolved(parts: &[Value]) -> Map<String, Value> {
    let mut out = Map::new();
    for p in parts {
        if let Value::Object(m) = p {
            out.extend(m.clone());
        }
    }
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::optimizer::OptimConfig;

    #[test]
    fn a_bad_value_names_its_key() {
        let c = FlatConfig::from_toml("learning_rate = 1e-3\nlr_scheduler_type = \"cosin\"\n").unwrap();
        let e = c.part::<OptimConfig>().unwrap_err().to_string();
        assert!(e.contains("`lr_scheduler_type`") && e.contains("cosin"), "{e}");
    }

    #[test]
    fn typos_are_named_with_a_suggestion() {
        let mut c = FlatConfig::from_toml("learning_rate = 1e-3\nper_device_train_batchsize = 4\n").unwrap();
        let mut known = keys_of::<TrainingArgs>();
        known.extend(keys_of::<OptimConfig>());
        let e = c.check_known(&known).unwrap_err().to_string();
        assert!(e.contains("per_device_train_batchsize") && e.contains("per_device_train_batch_size"), "{e}");
        c.table.remove("per_device_train_batchsize");
        c.set("warmup_steps=5").unwrap();
        c.check_known(&known).unwrap();
        let o: OptimConfig = c.part().unwrap();
        assert_eq!((o.learning_rate, o.warmup_steps), (1e-3, 5));
        let t: TrainingArgs = c.part().unwrap();
        assert_eq!(t.per_device_train_batch_size, 8);
    }

    #[test]
    fn wrong_types_are_reported() {
        let c = FlatConfig::from_toml("learning_rate = \"fast\"").unwrap();
        let e = c.part::<OptimConfig>().unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
    }
}
