//! Preallocated key/value cache for incremental decoding.

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

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
