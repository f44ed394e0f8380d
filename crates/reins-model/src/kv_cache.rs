//! What a forward pass attends to besides its own tokens: a preallocated key/value cache for
//! incremental decoding, or the spans of packed tokens ([`crate::packing`]).

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::nn;
use crate::packing::PackedAttention;

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

/// What a forward pass's tokens attend to besides each other.
pub enum Past<'a> {
    /// Nothing: the tokens attend only to each other.
    None,
    /// Incremental decoding: the new keys/values are appended to the cache (no gradient).
    Cache(&'a mut [LayerCache]),
    /// Packed tokens (one row of `N`): each attends to the tokens of its own span.
    Packed(&'a PackedAttention),
}

impl Past<'_> {
    /// The additive attention mask of a padded pass (`None` for packed tokens, whose mask is
    /// the packing's); see [`nn::attention_bias`].
    pub fn bias(&self, key_mask: &[Vec<u8>], tq: usize, window: Option<usize>, dev: &Device) -> Result<Option<Tensor>> {
        match self {
            Past::Packed(_) => Ok(None),
            _ => Ok(Some(nn::attention_bias(key_mask, tq, window, dev)?)),
        }
    }

    /// Attention of layer `layer`: `q: [B, T, H, d]`, `k, v: [B, T, Hkv, d]` (rotated), `bias`
    /// from [`Past::bias`] → `[B, T, H·d]`; `autocast` as [`nn::attention`].
    pub fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        autocast: Option<DType>,
    ) -> Result<Tensor> {
        let (b, t, h, d) = q.dims4()?;
        let (k, v) = match self {
            Past::Packed(p) => return p.attend(q, k, v, autocast),
            Past::None => (k.transpose(1, 2)?.contiguous()?, v.transpose(1, 2)?.contiguous()?),
            Past::Cache(c) => c[layer].append(&k.transpose(1, 2)?, &v.transpose(1, 2)?)?,
        };
        let bias = bias.ok_or_else(|| ModelError::Usage("attention: a padded pass needs its mask".into()))?;
        Ok(nn::attention(&q.transpose(1, 2)?, &k, &v, bias, autocast)?.transpose(1, 2)?.reshape((b, t, h * d))?)
    }
}
