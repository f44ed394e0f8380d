//! Safetensors checkpoints: one `model.safetensors` or a sharded `model.safetensors.index.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{ModelError, Result};

/// The tensors of a checkpoint, taken one by one by the model builders.
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// The file (or index) the tensors came from, for error messages.
    pub source: PathBuf,
}

impl Weights {
    /// Loads every tensor of `DIR/model.safetensors` or of the shards listed in
    /// `DIR/model.safetensors.index.json`, as f32 on `device`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single.clone()]
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Format { path: index.clone(), msg: format!("not valid JSON: {e}") })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Format {
                path: index.clone(),
                msg: "no `weight_map` object; is this a safetensors index?".into(),
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(ModelError::Format {
                path: dir.to_path_buf(),
                msg: "no model.safetensors or model.safetensors.index.json here; \
                      reins reads safetensors checkpoints (convert .bin files with transformers' save_pretrained)"
                    .into(),
            });
        };
        let mut tensors = HashMap::new();
        for f in &files {
            let loaded = candle_core::safetensors::load(f, device)
                .map_err(|e| ModelError::Format { path: f.clone(), msg: format!("cannot read safetensors: {e}") })?;
            for (k, t) in loaded {
                let t = if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32)? };
                tensors.insert(k, t);
            }
        }
        let source = if files.len() == 1 { files[0].clone() } else { index };
        Ok(Weights { tensors, source })
    }

    /// Wraps tensors already in memory (tests, freshly initialised models).
    pub fn from_map(tensors: HashMap<String, Tensor>, source: impl Into<PathBuf>) -> Self {
        Weights { tensors, source: source.into() }
    }

    /// Removes and returns tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.remove(name).ok_or_else(|| ModelError::Weight {
            path: self.source.clone(),
            name: name.into(),
            msg: "missing; does config.json describe this checkpoint?".into(),
        })?;
        if t.dims() != shape {
            return Err(ModelError::Weight {
                path: self.source.clone(),
                name: name.into(),
                msg: format!("has shape {:?} but config.json implies {:?}", t.dims(), shape),
            });
        }
        Ok(t)
    }

    /// Moves every tensor to `device` (a no-op for those already there).
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for t in self.tensors.values_mut() {
            *t = t.to_device(device)?;
        }
        Ok(())
    }

    /// True when the checkpoint has tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Turns checkpoint tensors into model parameters: trainable ones become [`Var`]s (recorded by
/// their Hugging Face name), frozen ones stay plain tensors that never enter a graph.
pub struct ParamBuilder<'a> {
    pub weights: &'a mut Weights,
    pub trainable: bool,
    pub params: Vec<(String, Var)>,
}

impl<'a> ParamBuilder<'a> {
    pub fn new(weights: &'a mut Weights, trainable: bool) -> Self {
        ParamBuilder { weights, trainable, params: Vec::new() }
    }

    /// Takes tensor `name` of `shape` as a parameter.
    pub fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.weights.take(name, shape)?;
        self.param(name, t)
    }

    /// Registers an existing tensor as parameter `name`.
    pub fn param(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        if !self.trainable {
            return Ok(t);
        }
        let v = Var::from_tensor(&t)?;
        let t = v.as_tensor().clone();
        self.params.push((name.to_string(), v));
        Ok(t)
    }
}

/// Writes named tensors to a safetensors file (keys sorted, as transformers writes them), with
/// the `format: pt` metadata transformers expects.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let map: BTreeMap<String, Tensor> =
        tensors.iter().map(|(k, t)| Ok((k.clone(), t.contiguous()?))).collect::<Result<_>>()?;
    let data: Vec<(String, TensorView)> =
        map.iter().map(|(k, t)| Ok((k.clone(), TensorView::new(t)?))).collect::<Result<_>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(data.iter().map(|(k, v)| (k.clone(), v)), Some(meta), path)
        .map_err(|e| ModelError::Format { path: path.to_path_buf(), msg: format!("cannot write safetensors: {e}") })
}

/// f32 bytes of a tensor, as `safetensors` wants them.
struct TensorView {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl TensorView {
    fn new(t: &Tensor) -> Result<Self> {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(TensorView { shape: t.dims().to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() })
    }
}

impl safetensors::View for &TensorView {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
