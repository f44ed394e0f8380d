//! The loss of a segment reward model (Fine-Grained RLHF, Wu et al., arXiv:2306.01693, code
//! `qa_feedback`): a token classifier read at the last token of each segment, trained with
//! binary cross-entropy on "no error" (label 1) against "error" (label 0) per segment.
//!
//! `L = mean_k [ −y_k·log σ(z_k) − (1 − y_k)·log(1 − σ(z_k)) ]`, `z_k = score[row_k, pos_k]`.

use candle_core::Tensor;

use super::ops::softplus;
use crate::{Result, TrainError};

/// One labelled segment: its row in the batch, the position of its last token, its label
/// (1 = no error, 0 = error; soft labels in between are allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentTarget {
    pub row: usize,
    pub pos: usize,
    pub label: f32,
}

/// The loss and the segment logits `[K]` it read.
pub struct SegmentOutput {
    pub loss: Tensor,
    pub logits: Tensor,
}

/// Mean binary cross-entropy at the segment ends of `scores` (`[B, T]`, the score head's first
/// label at every token).
pub fn segment_loss(scores: &Tensor, targets: &[SegmentTarget]) -> Result<SegmentOutput> {
    let (b, t) = scores.dims2()?;
    if targets.is_empty() {
        return Err(TrainError::Input("segment loss: the batch has no labelled segment".into()));
    }
    if let Some(x) = targets.iter().find(|x| x.row >= b || x.pos >= t || !(0.0..=1.0).contains(&x.label)) {
        return Err(TrainError::Input(format!(
            "segment loss: target {x:?} is outside the [{b}, {t}] scores or its label is not in [0, 1]"
        )));
    }
    let dev = scores.device();
    let idx: Vec<u32> = targets.iter().map(|x| (x.row * t + x.pos) as u32).collect();
    let idx = Tensor::from_vec(idx, targets.len(), dev)?;
    let z = scores.flatten_all()?.index_select(&idx, 0)?;
    let y = Tensor::from_vec(targets.iter().map(|x| x.label).collect::<Vec<_>>(), targets.len(), dev)?
        .to_dtype(z.dtype())?;
    // −y·log σ(z) − (1−y)·log σ(−z) = y·softplus(−z) + (1−y)·softplus(z)
    let pos = (softplus(&z.neg()?)? * &y)?;
    let neg = (softplus(&z)? * (1.0 - &y)?)?;
    let loss = (pos + neg)?.mean_all()?;
    Ok(SegmentOutput { loss, logits: z })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_binary_cross_entropy_by_hand() {
        let scores = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.0, 3.0, -0.25]], &Device::Cpu).unwrap();
        let targets = [
            SegmentTarget { row: 0, pos: 1, label: 1.0 },
            SegmentTarget { row: 0, pos: 2, label: 0.0 },
            SegmentTarget { row: 1, pos: 2, label: 1.0 },
            SegmentTarget { row: 1, pos: 0, label: 0.3 },
        ];
        let out = segment_loss(&scores, &targets).unwrap();
        let bce = |z: f64, y: f64| {
            let p = 1.0 / (1.0 + (-z).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        let want = (bce(-1.0, 1.0) + bce(2.0, 0.0) + bce(-0.25, 1.0) + bce(0.0, 0.3)) / 4.0;
        let got = out.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(out.logits.to_vec1::<f32>().unwrap(), vec![-1.0, 2.0, -0.25, 0.0]);
    }

    #[test]
    fn bad_targets_are_errors_not_panics() {
        let scores = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(segment_loss(&scores, &[]).is_err());
        assert!(segment_loss(&scores, &[SegmentTarget { row: 2, pos: 0, label: 1.0 }]).is_err());
        assert!(segment_loss(&scores, &[SegmentTarget { row: 0, pos: 3, label: 1.0 }]).is_err());
        assert!(segment_loss(&scores, &[SegmentTarget { row: 0, pos: 0, label: 2.0 }]).is_err());
    }
}
