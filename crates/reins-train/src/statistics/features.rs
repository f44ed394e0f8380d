//! The frozen features a score head reads, `φ(x, y)`: the last real token's hidden state of
//! `prompt ++ response` (what `*ForSequenceClassification` pools), and the head's weight
//! vector. Everything runs on detached weights.

use candle_core::{DType, Module, Tensor};
use reins_model::{Batch, Model};

use crate::{Result, TrainError};

/// Pooled features `[N][D]` and the model's scores (label 0) `[N]` of `rows` (token ids,
/// unpadded), `batch_size` rows per forward pass.
pub fn pooled_features(
    model: &Model,
    rows: &[Vec<u32>],
    pad_id: u32,
    batch_size: usize,
) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let head = model.score.as_ref().ok_or_else(no_head)?;
    let model = model.detached();
    let (mut feats, mut scores) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    for chunk in rows.chunks(batch_size.max(1)) {
        let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
        if t == 0 {
            return Err(TrainError::Input("an empty sequence has no last token to score".into()));
        }
        let ids = chunk.iter().map(|r| [r.clone(), vec![pad_id; t - r.len()]].concat()).collect();
        let mask: Vec<Vec<u8>> = chunk.iter().map(|r| [vec![1u8; r.len()], vec![0u8; t - r.len()]].concat()).collect();
        let batch = Batch::new(ids, mask)?;
        let hidden = model.hidden(&batch)?; // [b, T, D]
        let (b, _, d) = hidden.dims3()?;
        let last: Vec<u32> = chunk.iter().map(|r| r.len() as u32 - 1).collect();
        let idx = Tensor::from_vec(last, (b, 1, 1), hidden.device())?.broadcast_as((b, 1, d))?.contiguous()?;
        let pooled = hidden.gather(&idx, 1)?.reshape((b, d))?; // [b, D]
        let s = head.forward(&pooled)?.narrow(1, 0, 1)?.squeeze(1)?;
        feats.extend(pooled.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        scores.extend(s.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok((feats, scores))
}

/// The score head's weights for label 0, `w` with `score = wᵀφ + bias` (an adapter on the
/// head merged in).
pub fn score_head_weights(model: &Model) -> Result<Vec<f64>> {
    let head = model.score.as_ref().ok_or_else(no_head)?;
    let w = head.merged_weight()?; // [num_labels, D]
    Ok(w.narrow(0, 0, 1)?.squeeze(0)?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

fn no_head() -> TrainError {
    TrainError::Config(
        "the model has no score head; use a *ForSequenceClassification checkpoint (a `reins reward` output)".into(),
    )
}
