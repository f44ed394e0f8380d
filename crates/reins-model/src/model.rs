//! A loaded checkpoint: decoder body plus the heads RLHF needs (LM logits, reward score, value).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor, Var, D};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::{Arch, ModelConfig};
use crate::error::{ModelError, Result};
use crate::kv_cache::Past;
use crate::lora::{self, Lora, LoraConfig};
use crate::models::{gpt2::Gpt2, llama::Llama};
use crate::nn::{self, Linear};
use crate::packing::Packing;
use crate::weights::{save_safetensors, ParamBuilder, Weights};

#[derive(Clone)]
pub enum Body {
    Llama(Llama),
    Gpt2(Gpt2),
}

/// What to build on top of the checkpoint.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Make parameters trainable [`Var`]s. With `lora`, only the adapters (and new heads) are.
    pub trainable: bool,
    /// Add LoRA adapters (fresh, or from `lora_dir` in PEFT layout).
    pub lora: Option<LoraConfig>,
    /// Load an existing PEFT adapter folder.
    pub lora_dir: Option<PathBuf>,
    /// Add a scalar per-token value head (PPO critic), `v_head.summary.{weight,bias}`.
    pub value_head: bool,
    /// Force a sequence-classification score head with this many labels even if the
    /// checkpoint is a causal LM (a new reward model initialised from a policy).
    pub score_head: Option<usize>,
    /// Seed for freshly initialised heads and adapters.
    pub seed: u64,
    /// Mixed precision (`Some(BF16)`): see [`Model::set_autocast`].
    pub autocast: Option<DType>,
}

/// A decoder LM with its heads. Cheap to clone: tensors share storage.
#[derive(Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub body: Body,
    /// `lm_head.weight` `[V, D]`; for tied checkpoints the embedding table itself.
    pub lm_head: Option<Linear>,
    /// `score.weight` `[num_labels, D]` of `*ForSequenceClassification`.
    pub score: Option<Linear>,
    /// `[1, D]` + bias: the PPO value head.
    pub value_head: Option<Linear>,
    pub lora: Option<LoraConfig>,
    /// Mixed precision of the products (see [`Model::set_autocast`]).
    pub autocast: Option<DType>,
    params: Vec<(String, Var)>,
}

/// Token ids `[B][T]` with attention mask `[B][T]` (1 = real token).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<u8>>,
}

impl Batch {
    pub fn new(ids: Vec<Vec<u32>>, mask: Vec<Vec<u8>>) -> Result<Self> {
        let t = ids.first().map_or(0, Vec::len);
        if ids.iter().any(|r| r.len() != t) || mask.len() != ids.len() || mask.iter().any(|r| r.len() != t) {
            return Err(ModelError::Usage(
                "batch rows must all have the same length, and the mask the shape of the ids".into(),
            ));
        }
        Ok(Batch { ids, mask })
    }

    /// Rows of different lengths, right-padded with `pad` to the longest; the mask marks the
    /// real tokens.
    pub fn right_padded(rows: &[Vec<u32>], pad: u32) -> Self {
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids =
            rows.iter().map(|r| r.iter().copied().chain(std::iter::repeat_n(pad, t - r.len())).collect()).collect();
        let mask = rows.iter().map(|r| (0..t).map(|j| u8::from(j < r.len())).collect()).collect();
        Batch { ids, mask }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Model {
    /// Loads a Hugging Face folder: `config.json` + safetensors weights.
    pub fn load(dir: &Path, device: &Device, opts: &LoadOptions) -> Result<Self> {
        let config = ModelConfig::from_dir(dir)?;
        let mut weights = Weights::from_dir(dir, device)?;
        Self::from_weights(config, &mut weights, device, opts).map_err(|e| e.with_path(&dir.join("config.json")))
    }

    /// Builds the model from config and tensors (see [`Model::load`]) on `device`, moving the
    /// tensors there first when they live elsewhere (a CPU copy put on the GPU).
    pub fn from_weights(
        config: ModelConfig,
        weights: &mut Weights,
        device: &Device,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let device = device.clone();
        weights.to_device(&device)?;
        let base_trainable = opts.trainable && opts.lora.is_none() && opts.lora_dir.is_none();
        let mut p = ParamBuilder::new(weights, base_trainable);
        let body = match config.arch {
            Arch::Llama => Body::Llama(Llama::load(&config, &mut p)?),
            Arch::Gpt2 => Body::Gpt2(Gpt2::load(&config, &mut p)?),
        };
        let (v, d) = (config.vocab_size, config.hidden_size);
        let classifier = opts.score_head.is_some() || config.is_sequence_classifier();
        let lm_head = if classifier {
            None
        } else if p.weights.contains("lm_head.weight") && !config.tie_word_embeddings {
            Some(Linear::new(p.get("lm_head.weight", &[v, d])?, None))
        } else {
            None // tied: the embedding table doubles as the output projection
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let init_std = config.raw.get("initializer_range").and_then(|x| x.as_f64()).unwrap_or(0.02);
        let score = if classifier {
            let n = opts.score_head.unwrap_or(config.num_labels);
            let w = if p.weights.contains("score.weight") {
                p.weights.take("score.weight", &[n, d])?
            } else {
                normal(&mut rng, &[n, d], init_std, &device)?
            };
            // A reward model's head trains even under LoRA (PEFT's modules_to_save).
            let mut hp = ParamBuilder::new(p.weights, opts.trainable);
            let w = hp.param("score.weight", w)?;
            p.params.extend(hp.params);
            Some(Linear::new(w, None))
        } else {
            None
        };
        let value_head = if opts.value_head {
            let (w, b) = if p.weights.contains("v_head.summary.weight") {
                (p.weights.take("v_head.summary.weight", &[1, d])?, p.weights.take("v_head.summary.bias", &[1])?)
            } else {
                (normal(&mut rng, &[1, d], init_std, &device)?, Tensor::zeros(1, DType::F32, &device)?)
            };
            let mut hp = ParamBuilder::new(p.weights, opts.trainable);
            let w = hp.param("v_head.summary.weight", w)?;
            let b = hp.param("v_head.summary.bias", b)?;
            p.params.extend(hp.params);
            Some(Linear::new(w, Some(b)))
        } else {
            None
        };
        let params = p.params;
        let mut model = Model { config, body, lm_head, score, value_head, lora: None, autocast: None, params };
        if let Some(dir) = &opts.lora_dir {
            model.load_adapter(dir, opts.trainable)?;
        } else if let Some(cfg) = &opts.lora {
            model.add_adapters(cfg, opts.seed, opts.trainable)?;
        }
        model.set_autocast(opts.autocast);
        Ok(model)
    }

    /// Mixed precision, as `torch.autocast`: the products — every linear layer, the LM head,
    /// attention's two — run in `dtype` (bf16: inputs and weights cast, the product cast back),
    /// while the weights, the residual stream, norms, softmaxes and the loss stay f32. The
    /// gradients reach the f32 weights through the casts, so they are the master copy the
    /// optimizer updates; bf16 has f32's exponent range, so no loss scaling is needed. On a
    /// GPU the products run on its bf16 units; on a CPU candle widens bf16 back to f32 to
    /// multiply, so it is slower than f32 there (use it to check a run before taking it to a
    /// GPU). `None` turns it off.
    pub fn set_autocast(&mut self, dtype: Option<DType>) {
        self.autocast = dtype;
        match &mut self.body {
            Body::Llama(m) => m.autocast = dtype,
            Body::Gpt2(m) => m.autocast = dtype,
        }
        for (_, l) in self.linears_mut() {
            l.autocast = dtype;
        }
        for head in [&mut self.lm_head, &mut self.score, &mut self.value_head].into_iter().flatten() {
            head.autocast = dtype;
        }
    }

    /// The trainable parameters, by Hugging Face (or PEFT) name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    pub fn device(&self) -> &Device {
        match &self.body {
            Body::Llama(m) => m.device(),
            Body::Gpt2(m) => m.device(),
        }
    }

    /// The same model on detached tensors: no graph is recorded, storage is shared (so it
    /// always sees the latest optimizer update). Use for rollouts and scoring.
    pub fn detached(&self) -> Model {
        let body = match &self.body {
            Body::Llama(m) => Body::Llama(m.detached()),
            Body::Gpt2(m) => Body::Gpt2(m.detached()),
        };
        Model {
            config: self.config.clone(),
            body,
            lm_head: self.lm_head.as_ref().map(Linear::detached),
            score: self.score.as_ref().map(Linear::detached),
            value_head: self.value_head.as_ref().map(Linear::detached),
            lora: self.lora.clone(),
            autocast: self.autocast,
            params: Vec::new(),
        }
    }

    /// The frozen base without adapters: the reference policy of DPO/PPO at no memory cost.
    pub fn without_adapters(&self) -> Model {
        let mut m = self.detached();
        for (_, lin) in m.linears_mut() {
            lin.lora = None;
        }
        m.lora = None;
        m
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        match &mut self.body {
            Body::Llama(m) => m.linears_mut(),
            Body::Gpt2(m) => m.linears_mut(),
        }
    }

    /// Adds fresh LoRA adapters to the targeted modules; the base stays frozen.
    pub fn add_adapters(&mut self, cfg: &LoraConfig, seed: u64, trainable: bool) -> Result<()> {
        if matches!(self.body, Body::Gpt2(_)) {
            return Err(ModelError::Usage(
                "LoRA on GPT-2's Conv1D layers is not supported yet; use a Llama-family model".into(),
            ));
        }
        let device = self.device().clone();
        let mut new_params = Vec::new();
        let mut n = 0;
        for (i, (name, lin)) in self.linears_mut().into_iter().enumerate() {
            if !cfg.targets(&name) {
                continue;
            }
            let mut l = Lora::init(lin.in_features(), lin.out_features(), cfg, seed.wrapping_add(i as u64), &device)?;
            if trainable {
                let a = Var::from_tensor(&l.a)?;
                let b = Var::from_tensor(&l.b)?;
                l.a = a.as_tensor().clone();
                l.b = b.as_tensor().clone();
                new_params.push((lora::peft_key(&name, 'A'), a));
                new_params.push((lora::peft_key(&name, 'B'), b));
            }
            lin.lora = Some(l);
            n += 1;
        }
        if n == 0 {
            return Err(ModelError::config(
                "target_modules",
                format!("{:?} matches no module of this model (try q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", cfg.target_modules),
            ));
        }
        self.params.extend(new_params);
        self.lora = Some(cfg.clone());
        Ok(())
    }

    /// Loads a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    pub fn load_adapter(&mut self, dir: &Path, trainable: bool) -> Result<()> {
        let cfg = LoraConfig::from_peft_json(&dir.join("adapter_config.json"))?;
        let file = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&file, self.device())
            .map_err(|e| ModelError::Format { path: file.clone(), msg: format!("cannot read safetensors: {e}") })?;
        self.add_adapters(&cfg, 0, trainable)?;
        let mut w = Weights::from_map(tensors, file);
        let mut params = Vec::new();
        for (name, lin) in self.linears_mut() {
            if let Some(l) = &mut lin.lora {
                let (r, inp, out) = (l.a.dim(0)?, l.a.dim(1)?, l.b.dim(0)?);
                let a = w.take(&lora::peft_key(&name, 'A'), &[r, inp])?;
                let b = w.take(&lora::peft_key(&name, 'B'), &[out, r])?;
                if trainable {
                    let (va, vb) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
                    l.a = va.as_tensor().clone();
                    l.b = vb.as_tensor().clone();
                    params.push((lora::peft_key(&name, 'A'), va));
                    params.push((lora::peft_key(&name, 'B'), vb));
                } else {
                    l.a = a;
                    l.b = b;
                }
            }
        }
        // Replace the freshly initialised adapter Vars registered by add_adapters.
        self.params.retain(|(n, _)| !n.starts_with("base_model.model."));
        self.params.extend(params);
        Ok(())
    }

    /// Folds the adapters into the base weights (`W + scale·BA`) and removes them.
    pub fn merge_adapters(&mut self) -> Result<()> {
        for (_, lin) in self.linears_mut() {
            if lin.lora.is_some() {
                let merged = lin.merged_weight()?.detach();
                lin.weight = if lin.transposed { merged.t()?.contiguous()? } else { merged };
                lin.lora = None;
            }
        }
        self.params.retain(|(n, _)| !n.starts_with("base_model.model."));
        self.lora = None;
        Ok(())
    }

    /// Final hidden states `[B, T, D]` for explicit positions and key mask (see
    /// [`Llama::forward`]); the entry point for cached decoding and shared prompts.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &[Vec<u32>],
        key_mask: &[Vec<u8>],
        past: Past<'_>,
    ) -> Result<Tensor> {
        match &self.body {
            Body::Llama(m) => m.forward(ids, positions, key_mask, past),
            Body::Gpt2(m) => m.forward(ids, positions, key_mask, past),
        }
    }

    /// Final hidden states `[N, D]` of packed tokens, in the packing's order (see
    /// [`crate::packing`]).
    pub fn forward_packed(&self, packing: &Packing) -> Result<Tensor> {
        let dev = self.device();
        let attention = packing.attention(self.config.sliding_window, dev)?;
        let positions = [packing.positions().to_vec()];
        Ok(self.forward_hidden(&packing.ids(dev)?, &positions, &[], Past::Packed(&attention))?.squeeze(0)?)
    }

    /// Hidden states of a padded batch (left or right padding), positions from the mask.
    pub fn hidden(&self, batch: &Batch) -> Result<Tensor> {
        let ids = nn::ids_tensor(&batch.ids, self.device())?;
        let positions = nn::positions_from_mask(&batch.mask);
        self.forward_hidden(&ids, &positions, &batch.mask, Past::None)
    }

    /// LM logits `[B, T, V]` from hidden states.
    pub fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.lm_head {
            Some(h) => Ok(h.forward(hidden)?),
            None => {
                let emb = match &self.body {
                    Body::Llama(m) => &m.embed_tokens,
                    Body::Gpt2(m) => &m.wte,
                };
                if self.score.is_some() {
                    return Err(ModelError::Usage("this is a sequence-classification model; it has no LM head".into()));
                }
                Ok(Linear { autocast: self.autocast, ..Linear::new(emb.clone(), None) }.forward(hidden)?)
            }
        }
    }

    /// Causal-LM logits for every position, `[B, T, V]`.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor> {
        self.lm_logits(&self.hidden(batch)?)
    }

    /// Sequence-classification scores `[B, num_labels]`, read at each row's last real token
    /// (as `*ForSequenceClassification`).
    pub fn scores(&self, batch: &Batch) -> Result<Tensor> {
        self.score_head()?;
        self.score_pooled(&self.pooled(batch)?)
    }

    /// The score head at every position, `[B, T, num_labels]`: a segment reward model reads
    /// its verdicts at the tokens where segments end.
    pub fn token_scores(&self, batch: &Batch) -> Result<Tensor> {
        let head = self.score_head()?;
        Ok(head.forward(&self.hidden(batch)?)?)
    }

    fn score_head(&self) -> Result<&Linear> {
        self.score.as_ref().ok_or_else(|| {
            ModelError::Usage("this model has no score head; load it with `score_head` or use a *ForSequenceClassification checkpoint".into())
        })
    }

    /// The final hidden state at each row's last real token, `[B, D]`: what the score head
    /// reads (and what a contrastive reward loss compares).
    /// A batch with padding runs packed ([`crate::packing`]): the padding costs nothing.
    pub fn pooled(&self, batch: &Batch) -> Result<Tensor> {
        let last: Vec<u32> = batch.mask.iter().map(|r| r.iter().rposition(|&m| m == 1).unwrap_or(0) as u32).collect();
        if crate::packing::enabled() && batch.mask.iter().flatten().any(|&m| m == 0) {
            let packing = Packing::rows(batch, |_| true);
            let at: Option<Vec<u32>> = last.iter().enumerate().map(|(r, &t)| packing.index(r, t as usize)).collect();
            if let Some(at) = at {
                let n = at.len();
                return Ok(self.forward_packed(&packing)?.index_select(&Tensor::from_vec(at, n, self.device())?, 0)?);
            }
        }
        let hidden = self.hidden(batch)?;
        let (b, _, d) = hidden.dims3()?;
        let idx = Tensor::from_vec(last, (b, 1, 1), hidden.device())?.broadcast_as((b, 1, d))?.contiguous()?;
        Ok(hidden.gather(&idx, 1)?.reshape((b, d))?)
    }

    /// The score head on pooled states `[B, D]` → `[B, num_labels]`.
    pub fn score_pooled(&self, pooled: &Tensor) -> Result<Tensor> {
        Ok(self.score_head()?.forward(pooled)?)
    }

    /// Per-token values `[B, T]` from the value head.
    pub fn values_from_hidden(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self
            .value_head
            .as_ref()
            .ok_or_else(|| ModelError::Usage("this model has no value head; load it with `value_head: true`".into()))?;
        Ok(head.forward(hidden)?.squeeze(D::Minus1)?)
    }

    /// All weights by HF name, adapters merged, as `save_pretrained` writes them.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = match &self.body {
            Body::Llama(m) => m.named_tensors()?,
            Body::Gpt2(m) => m.named_tensors()?,
        };
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".into(), h.weight.clone()));
        }
        if let Some(h) = &self.score {
            out.push(("score.weight".into(), h.weight.clone()));
        }
        if let Some(h) = &self.value_head {
            out.push(("v_head.summary.weight".into(), h.weight.clone()));
            if let Some(b) = &h.bias {
                out.push(("v_head.summary.bias".into(), b.clone()));
            }
        }
        Ok(out)
    }

    /// Writes an HF folder transformers loads unchanged: `config.json` and `model.safetensors`
    /// (adapters merged). Tokenizer files are copied by the caller.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut cfg = self.config.raw.clone();
        if let (Some(n), Some(obj)) = (self.score.as_ref().map(Linear::out_features), cfg.as_object_mut()) {
            if !self.config.is_sequence_classifier() {
                let arch = match self.config.arch {
                    Arch::Llama => format!("{}ForSequenceClassification", camel(&self.config.model_type)),
                    Arch::Gpt2 => "GPT2ForSequenceClassification".into(),
                };
                obj.insert("architectures".into(), serde_json::json!([arch]));
                let labels: serde_json::Map<_, _> =
                    (0..n).map(|i| (i.to_string(), serde_json::json!(format!("LABEL_{i}")))).collect();
                obj.insert("id2label".into(), labels.into());
            }
        }
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| ModelError::Usage(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        save_safetensors(&dir.join("model.safetensors"), &self.named_tensors()?)
    }

    /// Writes the adapters alone in PEFT's layout.
    pub fn save_adapter(&self, dir: &Path, base_model: &str) -> Result<()> {
        let cfg =
            self.lora.as_ref().ok_or_else(|| ModelError::Usage("this model has no LoRA adapters to save".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut me = self.clone();
        let mut tensors = Vec::new();
        for (name, lin) in me.linears_mut() {
            if let Some(l) = &lin.lora {
                tensors.push((lora::peft_key(&name, 'A'), l.a.clone()));
                tensors.push((lora::peft_key(&name, 'B'), l.b.clone()));
            }
        }
        let path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&cfg.to_peft_json(base_model))
            .map_err(|e| ModelError::Usage(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        save_safetensors(&dir.join("adapter_model.safetensors"), &tensors)
    }
}

fn camel(model_type: &str) -> String {
    match model_type {
        "qwen2" => "Qwen2".into(),
        "mistral" => "Mistral".into(),
        _ => "Llama".into(),
    }
}

fn normal(rng: &mut rand::rngs::StdRng, shape: &[usize], std: f64, device: &Device) -> Result<Tensor> {
    let dist = Normal::new(0.0f32, std as f32).map_err(|e| ModelError::Usage(e.to_string()))?;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}
