//! What a forward pass attends to before its own tokens: a preallocated key/value cache for
//! incremental decoding, or a shared prompt's keys and values for training.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// Keys and values of one layer, `[B, Hkv, capacity, d]`, filled up to `len`.
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    pub fn new(batch: usize, kv_heads: usize, capacity: usize, head_dim: usize, device: &Device) -> Result<Self> {
        let shape = (batch, kv_heads, capacity, head_dim);
        Ok(LayerCache {
            k: Tensor::zeros(shape, DType::F32, device)?,
            v: Tensor::zeros(shape, DType::F32, device)?,
            len: 0,
        })
    }

    /// Appends `k, v: [B, Hkv, t, d]` and returns all keys/values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let cap = self.k.dim(2)?;
        if self.len + t > cap {
            return Err(ModelError::Usage(format!("KV cache full: {} + {t} positions > capacity {cap}", self.len)));
        }
        self.k.slice_set(&k.contiguous()?, 2, self.len)?;
        self.v.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += t;
        // Views into the preallocated buffers (no copy); matmul takes their strides as they are.
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }

    /// A cache of `index.len()` rows, row `i` a copy of row `index[i]` of this one (every
    /// sample of a prompt starts from that prompt's one prefill).
    pub fn rows(&self, index: &Tensor) -> Result<Self> {
        Ok(LayerCache { k: self.k.index_select(index, 0)?, v: self.v.index_select(index, 0)?, len: self.len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One layer's keys and values `[B, Hkv, T, d]` (keys already rotated).
pub type KeysValues = (Tensor, Tensor);

/// The keys and values that come before a forward pass's own tokens, per layer.
pub enum Past<'a> {
    /// Nothing: the tokens attend only to each other.
    None,
    /// Incremental decoding: the new keys/values are appended to the cache (no gradient).
    Cache(&'a mut [LayerCache]),
    /// Keys/values of a prefix computed by an earlier pass, `[B, Hkv, Tp, d]` per layer, put
    /// before the new ones with their graph, so gradients reach the prefix's own pass.
    Prefix(&'a [KeysValues]),
    /// No past; each layer's keys/values are recorded (to be a later pass's `Prefix`).
    Record(&'a mut Vec<KeysValues>),
}

impl Past<'_> {
    /// The keys/values layer `layer` attends to, given its own `k, v: [B, Hkv, T, d]`.
    pub fn keys_values(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<KeysValues> {
        match self {
            Past::None => Ok((k.contiguous()?, v.contiguous()?)),
            Past::Cache(c) => c[layer].append(&k, &v),
            Past::Prefix(p) => {
                let (pk, pv) = &p[layer];
                Ok((Tensor::cat(&[pk, &k.contiguous()?], 2)?, Tensor::cat(&[pv, &v.contiguous()?], 2)?))
            }
            Past::Record(out) => {
                let kv = (k.contiguous()?, v.contiguous()?);
                out.push(kv.clone());
                Ok(kv)
            }
        }
    }
}
