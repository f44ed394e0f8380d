//! Contrastive losses for reward models (Wang et al., "Secrets of RLHF in Large Language Models
//! Part II", arXiv:2401.06080, §3.1): the total loss is `ℓ_RM + β·ℓ_CL`, with `ℓ_CL` computed on
//! pooled representations of responses, or on the *preference difference*
//! `f(x, y_c) − f(x, y_r)` (§3.1.1), of which two views are made by dropout.
//!
//! SimCSE's InfoNCE (Gao et al., "SimCSE", EMNLP 2021, Eq. 1; Secrets of RLHF II Eq. 9): for
//! two views `a`, `b` `[N, D]` of N items,
//! `ℓ = mean_i −log [exp(cos(a_i, b_i)/τ) / Σ_j exp(cos(a_i, b_j)/τ)]`
//! — the other items of the batch are the negatives. SwAV's swapped cluster prediction
//! ([`swav_loss`], Eqs. 7–8) is the other choice (`contrastive_loss = "swav"`): the same two
//! views each predict the other's cluster among `swav_prototypes` learned prototypes, which the
//! reward trainer optimizes with the model and keeps in its checkpoints for an exact resume.
//! Both are checked, with their gradients, against PyTorch in
//! `fixtures/torch/contrastive.{py,json}`.

use candle_core::{Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// What the two views are views of (§3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContrastiveOn {
    /// The preference difference `h(x, y_c) − h(x, y_r)`, one item per pair.
    #[default]
    Difference,
    /// Each response's pooled state, chosen and rejected alike (2B items).
    Responses,
}

/// Which contrastive loss the two views feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContrastiveLoss {
    /// SimCSE's InfoNCE ([`info_nce_loss`]).
    #[default]
    InfoNce,
    /// SwAV's swapped prediction over learned prototypes ([`swav_loss`]).
    Swav,
}

/// The contrastive term of `reins reward` (flat keys): `ℓ = ℓ_BT + β·ℓ_CL`, `ℓ_CL` InfoNCE
/// (default) or SwAV.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveConfig {
    /// β, the weight of the InfoNCE term (paper, SimCSE: 1). Default 0: off.
    pub contrastive_coef: f64,
    /// τ of InfoNCE. Default 0.05 (SimCSE's; the paper gives none).
    pub contrastive_temperature: f64,
    /// Dropout rate that makes the two views (paper: 0.05). reins' models have no dropout
    /// layers, so it is applied to the pooled last-token state, with masks seeded by the
    /// optimizer step and the batch, so a resumed run draws the same masks.
    pub contrastive_dropout: f64,
    /// `"difference"` (default) or `"responses"`.
    pub contrastive_on: ContrastiveOn,
    /// `"info_nce"` (default, SimCSE) or `"swav"`.
    pub contrastive_loss: ContrastiveLoss,
    /// SwAV's number of prototypes K (the paper gives none). Default 16.
    pub swav_prototypes: usize,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        ContrastiveConfig {
            contrastive_coef: 0.0,
            contrastive_temperature: 0.05,
            contrastive_dropout: 0.05,
            contrastive_on: ContrastiveOn::Difference,
            contrastive_loss: ContrastiveLoss::InfoNce,
            swav_prototypes: 16,
        }
    }
}

impl ContrastiveConfig {
    pub fn enabled(&self) -> bool {
        self.contrastive_coef > 0.0
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, range: &str, v: f64| Err(TrainError::Config(format!("`{key}` must be {range} (got {v})")));
        if !(self.contrastive_coef.is_finite() && self.contrastive_coef >= 0.0) {
            return bad("contrastive_coef", "a finite β >= 0", self.contrastive_coef);
        }
        if !(self.contrastive_temperature.is_finite() && self.contrastive_temperature > 0.0) {
            return bad("contrastive_temperature", "> 0", self.contrastive_temperature);
        }
        if !(0.0..1.0).contains(&self.contrastive_dropout) {
            return bad("contrastive_dropout", "in [0, 1)", self.contrastive_dropout);
        }
        if self.contrastive_loss == ContrastiveLoss::Swav && self.swav_prototypes < 2 {
            return bad("swav_prototypes", "at least 2", self.swav_prototypes as f64);
        }
        Ok(())
    }

    /// SwAV's prototypes `[K, d]` for pooled states of width `d`, drawn uniformly in
    /// `[−1, 1)` from `seed` (only their directions matter: the loss normalises them); `None`
    /// unless the term is on and is SwAV.
    pub fn init_prototypes(
        &self,
        d: usize,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Option<candle_core::Var>> {
        if !(self.enabled() && self.contrastive_loss == ContrastiveLoss::Swav) {
            return Ok(None);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a_7a_b0);
        let v: Vec<f32> = (0..self.swav_prototypes * d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        Ok(Some(candle_core::Var::from_tensor(&Tensor::from_vec(v, (self.swav_prototypes, d), device)?)?))
    }
}

/// The name SwAV's prototypes carry in the optimizer and in `trainer_extra.safetensors`.
pub const SWAV_PROTOTYPES: &str = "swav.prototypes";

/// Inverted dropout with a mask drawn from `seed`: `x · m / (1 − p)`, `m ~ Bernoulli(1 − p)`.
pub fn seeded_dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keep: Vec<f64> =
        (0..x.elem_count()).map(|_| if rng.random::<f64>() < p { 0.0 } else { 1.0 / (1.0 - p) }).collect();
    let mask = Tensor::from_vec(keep, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok((x * mask)?)
}

/// The contrastive term on pooled states `[2B, D]` (chosen rows first, then rejected): two
/// dropout views (masks from `seed` and `seed + 1`) of the preference differences or of the
/// responses, then [`info_nce_loss`], or [`swav_loss`] over `prototypes` (`[K, D]`, needed
/// then).
pub fn contrastive_reward_loss(
    pooled: &Tensor,
    cfg: &ContrastiveConfig,
    seed: u64,
    prototypes: Option<&Tensor>,
) -> Result<Tensor> {
    let view = |s: u64| -> Result<Tensor> {
        let v = seeded_dropout(pooled, cfg.contrastive_dropout, s)?;
        Ok(match cfg.contrastive_on {
            ContrastiveOn::Responses => v,
            ContrastiveOn::Difference => {
                let n = v.dim(0)? / 2;
                (v.narrow(0, 0, n)? - v.narrow(0, n, n)?)?
            }
        })
    };
    let (a, b) = (view(seed)?, view(seed.wrapping_add(1))?);
    match (cfg.contrastive_loss, prototypes) {
        (ContrastiveLoss::InfoNce, _) => info_nce_loss(&a, &b, cfg.contrastive_temperature),
        (ContrastiveLoss::Swav, Some(c)) => swav_loss(&a, &b, c, cfg.contrastive_temperature),
        (ContrastiveLoss::Swav, None) => {
            Err(TrainError::Config("contrastive_loss = \"swav\" needs the trainer's prototypes".into()))
        }
    }
}

/// Rows scaled to unit length (`x / ‖x‖`, with `‖x‖² + 1e-24` under the root so a zero row has
/// a gradient; torch's `F.normalize` clamps at 1e-12 instead, the same for any non-zero row).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-24)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// SimCSE InfoNCE between views `a`, `b` `[N, D]` at temperature `τ > 0` → scalar (see the
/// module doc). Built from differentiable ops only (no fused softmax: it has no backward).
pub fn info_nce_loss(a: &Tensor, b: &Tensor, temperature: f64) -> Result<Tensor> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(TrainError::Config(format!("the contrastive temperature must be > 0 (got {temperature})")));
    }
    let (n, d) = a.dims2()?;
    if b.dims2()? != (n, d) || n == 0 {
        return Err(TrainError::Input(format!(
            "info_nce_loss: the two views must have the same non-empty shape (got {:?} and {:?})",
            a.dims(),
            b.dims()
        )));
    }
    let logits = (l2_normalize(a)?.matmul(&l2_normalize(b)?.t()?)? / temperature)?; // [N, N]
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let lse = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?.squeeze(D::Minus1)?;
    let eye = Tensor::eye(n, logits.dtype(), logits.device())?;
    let positives = (&logits * eye)?.sum(D::Minus1)?;
    Ok((lse - positives)?.mean_all()?)
}

/// `log softmax` over the last dimension from differentiable ops.
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// SwAV's codes (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
/// Assignments", NeurIPS 2020, Alg. 1): `iters` Sinkhorn–Knopp normalisations of
/// `exp(scores / eps)` so that the N items spread evenly over the K prototypes. No gradient
/// flows through the codes. Shapes: `scores [N, K]` → `[N, K]`, each row summing to 1.
pub fn sinkhorn_codes(scores: &Tensor, eps: f64, iters: usize) -> Result<Tensor> {
    let (n, k) = scores.dims2()?;
    let mut q = (scores.detach() / eps)?.exp()?.t()?; // [K, N]
    q = q.broadcast_div(&q.sum_all()?)?;
    for _ in 0..iters {
        q = (q.broadcast_div(&q.sum_keepdim(1)?)? / k as f64)?;
        q = (q.broadcast_div(&q.sum_keepdim(0)?)? / n as f64)?;
    }
    Ok((q * n as f64)?.t()?)
}

/// SwAV's swapped prediction (Secrets of RLHF II Eqs. 7–8): views `a`, `b` `[N, D]` and
/// prototypes `c` `[K, D]` (all scaled to unit length here, differentiably), codes `q` from
/// [`sinkhorn_codes`] (eps 0.05, 3 iterations) on each view's prototype scores, and
/// `ℓ = mean_i [−Σ_k q_b log softmax(a·cᵀ/τ) − Σ_k q_a log softmax(b·cᵀ/τ)]`: each view
/// predicts the other's cluster. Gradients reach `a`, `b` and the prototypes.
pub fn swav_loss(a: &Tensor, b: &Tensor, prototypes: &Tensor, temperature: f64) -> Result<Tensor> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(TrainError::Config(format!("the SwAV temperature must be > 0 (got {temperature})")));
    }
    let (n, d) = a.dims2()?;
    if b.dims2()? != (n, d) || prototypes.dim(1)? != d || n == 0 {
        return Err(TrainError::Input(format!(
            "swav_loss: views {:?} and {:?}, prototypes {:?}: need [N, D], [N, D], [K, D]",
            a.dims(),
            b.dims(),
            prototypes.dims()
        )));
    }
    let c = l2_normalize(prototypes)?.t()?;
    let (sa, sb) = (l2_normalize(a)?.matmul(&c)?, l2_normalize(b)?.matmul(&c)?); // [N, K]
    let (qa, qb) = (sinkhorn_codes(&sa, 0.05, 3)?, sinkhorn_codes(&sb, 0.05, 3)?);
    let ce =
        |q: &Tensor, s: &Tensor| -> Result<Tensor> { Ok((q * log_softmax(&(s / temperature)?)?)?.sum(D::Minus1)?) };
    Ok((ce(&qb, &sa)? + ce(&qa, &sb)?)?.neg()?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    fn fixture() -> serde_json::Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/torch/contrastive.json");
        serde_json::from_str(&std::fs::read_to_string(p).expect("fixtures/torch/contrastive.json")).unwrap()
    }

    fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
        serde_json::from_value(v.clone()).unwrap()
    }

    fn tensor(rows: &[Vec<f64>]) -> Result<Tensor> {
        Ok(Tensor::from_vec(rows.concat(), (rows.len(), rows[0].len()), &Device::Cpu)?)
    }

    /// Loss and both gradients equal PyTorch's (`F.cross_entropy` over normalised dot
    /// products) on three cases, τ ∈ {0.05, 0.5, 1}.
    #[test]
    fn info_nce_matches_torch_with_gradients() -> Result<()> {
        for case in fixture()["cases"].as_array().unwrap() {
            let tau = case["tau"].as_f64().unwrap();
            let a = Var::from_tensor(&tensor(&matrix(&case["a"]))?)?;
            let b = Var::from_tensor(&tensor(&matrix(&case["b"]))?)?;
            let loss = info_nce_loss(a.as_tensor(), b.as_tensor(), tau)?;
            let want = case["loss"].as_f64().unwrap();
            let got = loss.to_scalar::<f64>()?;
            assert!((got - want).abs() < 1e-10 * want.abs().max(1.0), "τ {tau}: loss {got} vs torch {want}");
            let grads = loss.backward()?;
            for (var, key) in [(&a, "grad_a"), (&b, "grad_b")] {
                let g: Vec<Vec<f64>> = grads.get(var.as_tensor()).expect("a gradient").to_vec2()?;
                for (x, y) in g.concat().iter().zip(matrix(&case[key]).concat()) {
                    assert!((x - y).abs() < 1e-9, "τ {tau}: {key} {x} vs torch {y}");
                }
            }
        }
        Ok(())
    }

    /// SwAV's loss, its codes and the gradients of both views and of the prototypes (the new
    /// parameters) equal PyTorch's.
    #[test]
    fn swav_matches_torch_with_gradients_for_the_prototypes() -> Result<()> {
        for case in fixture()["swav"].as_array().unwrap() {
            let tau = case["tau"].as_f64().unwrap();
            let a = Var::from_tensor(&tensor(&matrix(&case["a"]))?)?;
            let b = Var::from_tensor(&tensor(&matrix(&case["b"]))?)?;
            let c = Var::from_tensor(&tensor(&matrix(&case["prototypes"]))?)?;
            let scores = l2_normalize(a.as_tensor())?.matmul(&l2_normalize(c.as_tensor())?.t()?)?;
            let codes: Vec<Vec<f64>> = sinkhorn_codes(&scores, 0.05, 3)?.to_vec2()?;
            for (x, y) in codes.concat().iter().zip(matrix(&case["codes_a"]).concat()) {
                assert!((x - y).abs() < 1e-9, "codes {x} vs torch {y}");
            }
            let loss = swav_loss(a.as_tensor(), b.as_tensor(), c.as_tensor(), tau)?;
            let (got, want) = (loss.to_scalar::<f64>()?, case["loss"].as_f64().unwrap());
            assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "τ {tau}: loss {got} vs torch {want}");
            let grads = loss.backward()?;
            for (var, key) in [(&a, "grad_a"), (&b, "grad_b"), (&c, "grad_prototypes")] {
                let g: Vec<Vec<f64>> = grads.get(var.as_tensor()).expect("a gradient").to_vec2()?;
                assert!(g.concat().iter().any(|x| *x != 0.0), "{key} is all zero");
                for (x, y) in g.concat().iter().zip(matrix(&case[key]).concat()) {
                    assert!((x - y).abs() < 1e-8, "τ {tau}: {key} {x} vs torch {y}");
                }
            }
        }
        Ok(())
    }

    /// The difference views: with no dropout both views are `h_c − h_r` exactly, so the term
    /// is InfoNCE of the differences against themselves; dropout masks are reproducible.
    #[test]
    fn contrastive_term_on_differences() -> Result<()> {
        let pooled = tensor(&[vec![1.0, 0.0], vec![0.0, 2.0], vec![0.0, 0.0], vec![1.0, 0.0]])?;
        let cfg = ContrastiveConfig {
            contrastive_coef: 1.0,
            contrastive_dropout: 0.0,
            contrastive_temperature: 0.5,
            ..Default::default()
        };
        let got = contrastive_reward_loss(&pooled, &cfg, 7, None)?.to_scalar::<f64>()?;
        // Differences (1, 0) and (−1, 2): cos = −1/√5; each row log(1 + e^{(−1/√5 − 1)/0.5}).
        let want = (1.0 + ((-1.0 / 5f64.sqrt() - 1.0) / 0.5).exp()).ln();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let x = tensor(&[vec![1.0; 50]])?;
        let a: Vec<Vec<f64>> = seeded_dropout(&x, 0.5, 3)?.to_vec2()?;
        assert_eq!(a, seeded_dropout(&x, 0.5, 3)?.to_vec2::<f64>()?);
        assert_ne!(a, seeded_dropout(&x, 0.5, 4)?.to_vec2::<f64>()?);
        assert!(a[0].iter().all(|&v| v == 0.0 || v == 2.0));
        let bad = ContrastiveConfig { contrastive_dropout: 1.0, ..cfg };
        assert!(bad.validate().unwrap_err().to_string().contains("contrastive_dropout"));
        Ok(())
    }

    /// Invariants: cosine makes the loss blind to each row's length; with identical, mutually
    /// orthogonal views the loss is `log(1 + (N−1)·e^{−1/τ})`; it is never below 0.
    #[test]
    fn info_nce_invariants() -> Result<()> {
        let a = tensor(&[vec![1.0, 2.0, -1.0], vec![0.5, -0.3, 2.0], vec![-1.0, 0.0, 0.4]])?;
        let b = tensor(&[vec![0.2, 1.0, 1.0], vec![1.5, -0.3, 0.0], vec![-1.0, 2.0, 0.4]])?;
        let base = info_nce_loss(&a, &b, 0.3)?.to_scalar::<f64>()?;
        let scale = Tensor::new(&[[3.0], [0.1], [7.0]], &Device::Cpu)?;
        let scaled = info_nce_loss(&a.broadcast_mul(&scale)?, &b, 0.3)?.to_scalar::<f64>()?;
        assert!((base - scaled).abs() < 1e-12 && base > 0.0, "{base} vs {scaled}");
        let eye = Tensor::eye(3, DType::F64, &Device::Cpu)?;
        let tau: f64 = 0.5;
        let got = info_nce_loss(&eye, &eye, tau)?.to_scalar::<f64>()?;
        let want = (1.0 + 2.0 * (-1.0 / tau).exp()).ln();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!(info_nce_loss(&a, &b, 0.0).is_err());
        assert!(info_nce_loss(&a, &b.narrow(0, 0, 2)?, 0.3).is_err());
        Ok(())
    }
}
