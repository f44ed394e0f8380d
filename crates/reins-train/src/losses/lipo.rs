//! LiPO-λ: listwise preference optimization with LambdaRank weights (Liu et al., "LiPO:
//! Listwise Preference Optimization through Learning-to-Rank", arXiv:2402.01878, §4.2).

use candle_core::{DType, Tensor};

use super::ops::log_sigmoid;
use crate::{Result, TrainError};

/// LiPO-λ loss (arXiv:2402.01878 Eq. 10–11):
/// `L = −Σ_{i,j: ψ_i > ψ_j} Δ_ij log σ(s_i − s_j)`, `s_i = β (log π(y_i) − log π_ref(y_i))`,
/// `Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)|`, `G = 2^ψ − 1`, `D(τ) = log₂(1 + τ)` with
/// `τ_i` the 1-based rank of `s_i` (descending) among the list's present items. Summed over
/// pairs of a list, averaged over lists. Δ is a constant (no gradient through the ranks).
///
/// At K = 2 with labels ψ = (1, 0) it is `(1 − 1/log₂3) ·` the DPO sigmoid loss.
///
/// Shapes: `policy_logps`, `ref_logps`, `labels` (ψ, e.g. graded scores) and `mask` (1 =
/// present) `[B, K]` → scalar.
pub fn lipo_lambda_loss(
    policy_logps: &Tensor,
    ref_logps: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    beta: f64,
) -> Result<Tensor> {
    let (b, k) = policy_logps.dims2()?;
    let s = ((policy_logps - ref_logps)? * beta)?;
    let sv = s.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let psi = labels.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mv = mask.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    if psi.len() != b || mv.len() != b {
        return Err(TrainError::Input(format!("lipo: labels/mask must be [{b}, {k}]")));
    }
    let mut delta = vec![0f64; b * k * k];
    for r in 0..b {
        let present: Vec<usize> = (0..k).filter(|&i| mv[r][i] > 0.5).collect();
        let mut order = present.clone();
        order.sort_by(|&x, &y| sv[r][y].total_cmp(&sv[r][x]));
        let mut rank = vec![0f64; k];
        for (pos, &i) in order.iter().enumerate() {
            rank[i] = (pos + 1) as f64;
        }
        for &i in &present {
            for &j in &present {
                if psi[r][i] > psi[r][j] {
                    let g = (psi[r][i].exp2() - psi[r][j].exp2()).abs();
                    let d = (1.0 / (1.0 + rank[i]).log2() - 1.0 / (1.0 + rank[j]).log2()).abs();
                    delta[(r * k + i) * k + j] = g * d;
                }
            }
        }
    }
    let delta = Tensor::from_vec(delta, (b, k, k), s.device())?.to_dtype(s.dtype())?;
    let diff = s.unsqueeze(2)?.broadcast_sub(&s.unsqueeze(1)?)?; // [B, K, K]: s_i − s_j
    let terms = (log_sigmoid(&diff)? * delta)?;
    Ok((terms.sum_all()?.neg()? / b as f64)?)
}
