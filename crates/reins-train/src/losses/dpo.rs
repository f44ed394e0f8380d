//! Direct Preference Optimization and every `loss_type` of TRL 1.16's `DPOTrainer`.
//!
//! Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
//! Model", arXiv:2305.18290, Eq. 7:
//! `L = −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])`.
//!
//! The variants follow `DPOTrainer._compute_loss` of TRL 1.16 line by line; each arm cites
//! its paper. Inputs are per-sequence summed log-probs `[B]` (chosen rows and rejected rows of
//! the same pair share an index). Outputs are per-sequence `[B]` so a trainer can reduce or
//! reweight them.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::ops::{log_sigmoid, sigmoid, to_vec_f64};
use crate::{Result, TrainError};

/// TRL's `loss_type` values for DPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossType {
    /// DPO, arXiv:2305.18290 Eq. 7: `−log σ(β Δ)`.
    Sigmoid,
    /// SLiC hinge, arXiv:2305.10425 Eq. 2: `relu(1 − β Δ)`.
    Hinge,
    /// IPO, arXiv:2310.12036 Eq. 17, on per-token averaged scores: `(Δ̄ − 1/(2β))²`.
    Ipo,
    /// EXO-pref, arXiv:2402.00856 Eq. 16 (needs `label_smoothing > 0` as ε).
    ExoPair,
    /// NCA pairwise, arXiv:2402.05369 Eq. 12.
    NcaPair,
    /// Robust DPO (rDPO), arXiv:2403.00409 Eq. 8, flip rate = `label_smoothing`.
    Robust,
    /// BCO pairwise form as TRL 1.16 writes it: `−log σ(β ρ_w) − log σ(−β ρ_l)`.
    BcoPair,
    /// SPPO hard-label, arXiv:2405.00675 Eq. 4.7 with P = 1 / 0.
    SppoHard,
    /// AOT paired, arXiv:2406.05882: sorted log-ratio differences.
    Aot,
    /// AOT unpaired, arXiv:2406.05882: sorted chosen vs sorted rejected log-ratios.
    AotUnpaired,
    /// APO-zero, arXiv:2408.06266 Eq. 7.
    ApoZero,
    /// APO-down, arXiv:2408.06266 Eq. 8.
    ApoDown,
    /// DiscoPOP, arXiv:2406.08414 Eq. 5.
    Discopop,
    /// Supervised NLL on the chosen completions (token mean over the batch).
    Sft,
    /// Length-normalised sigmoid: `−log σ(β (s_w/|y_w| − s_l/|y_l|))`.
    SigmoidNorm,
}

/// TRL's `f_divergence_type` (Wang et al., "Beyond Reverse KL", arXiv:2309.16240, Table 1):
/// the score `f'(π/π_ref)` used in place of the log-ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FDivergenceType {
    /// `f'(t) = log t` (standard DPO). Default.
    #[default]
    ReverseKl,
    /// `f'(t) = 1 − 1/t`.
    ForwardKl,
    /// `f'(t) = log 2 + log σ(log t)`.
    JsDivergence,
    /// `f'(t) = (t^(α−1) − 1)/(α − 1)`, α = `f_alpha_divergence_coef`.
    AlphaDivergence,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(DpoLossType),
    Many(Vec<DpoLossType>),
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<DpoLossType>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

fn default_beta() -> f64 {
    0.1
}
fn default_loss_type() -> Vec<DpoLossType> {
    vec![DpoLossType::Sigmoid]
}
fn default_alpha() -> f64 {
    0.5
}
fn default_tau() -> f64 {
    0.05
}

/// The loss part of TRL's `DPOConfig` (same names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoConfig {
    /// Temperature β of the implicit reward; for IPO the regulariser τ. Default 0.1.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Loss type, or a list of them combined with `loss_weights`. Default `["sigmoid"]`.
    #[serde(default = "default_loss_type", deserialize_with = "one_or_many")]
    pub loss_type: Vec<DpoLossType>,
    /// One weight per `loss_type`; `None` means all 1.0. Default `None`.
    #[serde(default)]
    pub loss_weights: Option<Vec<f64>>,
    /// Label smoothing / assumed flip rate (robust, exo_pair, aot, aot_unpaired). Default 0.0.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Which f-divergence score to use. Default `reverse_kl`.
    #[serde(default)]
    pub f_divergence_type: FDivergenceType,
    /// α of the alpha-divergence. Default 0.5.
    #[serde(default = "default_alpha")]
    pub f_alpha_divergence_coef: f64,
    /// Temperature of DiscoPOP's mixing sigmoid. Default 0.05.
    #[serde(default = "default_tau")]
    pub discopop_tau: f64,
    /// LD-DPO α (arXiv:2409.06411); applied when computing log-probs, see [`ld_alpha_logps`].
    /// Default `None`.
    #[serde(default)]
    pub ld_alpha: Option<f64>,
    /// WPO weighting (arXiv:2406.11827); pass weights from [`wpo_weights`]. Default false.
    #[serde(default)]
    pub use_weighting: bool,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: default_loss_type(),
            loss_weights: None,
            label_smoothing: 0.0,
            f_divergence_type: FDivergenceType::ReverseKl,
            f_alpha_divergence_coef: 0.5,
            discopop_tau: 0.05,
            ld_alpha: None,
            use_weighting: false,
        }
    }
}

impl DpoConfig {
    /// Config with a single loss type and TRL defaults otherwise.
    pub fn with_loss(loss_type: DpoLossType) -> Self {
        Self { loss_type: vec![loss_type], ..Self::default() }
    }

    /// Checks the combinations TRL rejects, with a message saying how to fix them.
    pub fn validate(&self) -> Result<()> {
        use DpoLossType::*;
        let err = |m: String| Err(TrainError::Config(m));
        if self.loss_type.is_empty() {
            return err("`loss_type` is empty; use e.g. \"sigmoid\"".into());
        }
        if let Some(w) = &self.loss_weights {
            if w.len() != self.loss_type.len() {
                return err(format!(
                    "`loss_weights` has {} entries for {} loss types; give one weight per loss type",
                    w.len(),
                    self.loss_type.len()
                ));
            }
        }
        if self.beta.is_nan() || self.beta <= 0.0 {
            return err(format!("`beta` must be > 0 (got {})", self.beta));
        }
        let f_ok = [Sigmoid, SigmoidNorm, Hinge, Ipo, ExoPair, Robust, Discopop, Sft];
        if self.f_divergence_type != FDivergenceType::ReverseKl && !self.loss_type.iter().all(|t| f_ok.contains(t)) {
            return err(format!(
                "`f_divergence_type={:?}` is only supported for {f_ok:?}; use reverse_kl with {:?}",
                self.f_divergence_type, self.loss_type
            ));
        }
        if self.use_weighting && self.loss_type.iter().any(|t| matches!(t, Aot | AotUnpaired)) {
            return err("`use_weighting` is not supported with aot/aot_unpaired".into());
        }
        if self.loss_type.contains(&Robust) && !(0.0..0.5).contains(&self.label_smoothing) {
            return err(format!("`label_smoothing` must lie in [0, 0.5) for robust (got {})", self.label_smoothing));
        }
        if self.loss_type.contains(&ExoPair) && self.label_smoothing == 0.0 {
            return err("exo_pair needs `label_smoothing` > 0 (e.g. 1e-3)".into());
        }
        if let Some(a) = self.ld_alpha {
            if !(0.0..=1.0).contains(&a) {
                return err(format!("`ld_alpha` must be in [0, 1] (got {a})"));
            }
        }
        Ok(())
    }
}

/// Optional inputs that some loss types need.
#[derive(Debug, Clone, Default)]
pub struct DpoExtras {
    /// Completion token counts of the chosen rows `[B]` (ipo, sigmoid_norm).
    pub chosen_lengths: Option<Tensor>,
    /// Completion token counts of the rejected rows `[B]` (ipo, sigmoid_norm).
    pub rejected_lengths: Option<Tensor>,
    /// Scalar mean token NLL of the chosen completions (sft), see [`chosen_sft_nll`].
    pub sft_nll: Option<Tensor>,
    /// WPO weight per pair `[B]` (detached), see [`wpo_weights`]; used when `use_weighting`.
    pub wpo_weights: Option<Tensor>,
    /// BCO reward shift δ for `bco_pair` (the running mean of the implicit rewards, kept by
    /// the caller in a [`super::running::RunningMoments`]). TRL 1.16 has no shift: `None`
    /// reproduces it; `Some(δ)` gives `−log σ(βρ_w − δ) − log σ(−(βρ_l − δ))` as in TRL ≤ 0.12
    /// and the BCO paper (arXiv:2404.04656 Eq. 8).
    pub bco_delta: Option<f64>,
    /// Soft label per pair `[B]`: the probability `p` that the chosen response is preferred
    /// (the data's `strength`; `None` = 1, TRL's hard label). See [`dpo_loss`] for the loss
    /// types that take it.
    pub soft_labels: Option<Tensor>,
}

/// Result of [`dpo_loss`].
#[derive(Debug, Clone)]
pub struct DpoOutput {
    /// Scalar training loss `Σ_k w_k · mean_b ℓ_k[b]` (TRL's `loss`).
    pub loss: Tensor,
    /// Per-pair combined loss `Σ_k w_k ℓ_k[b]`, `[B]`; its mean is `loss`.
    pub losses: Tensor,
    /// `β (log π(y_w) − log π_ref(y_w))`, detached, `[B]`.
    pub chosen_rewards: Tensor,
    /// `β (log π(y_l) − log π_ref(y_l))`, detached, `[B]`.
    pub rejected_rewards: Tensor,
}

/// f-divergence score `f'(π/π_ref)` of a log-ratio `[B]` (TRL `DPOTrainer`, arXiv:2309.16240).
pub fn f_divergence_score(logratios: &Tensor, kind: FDivergenceType, alpha: f64) -> Result<Tensor> {
    Ok(match kind {
        FDivergenceType::ReverseKl => logratios.clone(),
        FDivergenceType::ForwardKl => (1.0 - logratios.neg()?.exp()?)?,
        FDivergenceType::JsDivergence => (log_sigmoid(logratios)? + std::f64::consts::LN_2)?,
        FDivergenceType::AlphaDivergence => {
            if (alpha - 1.0).abs() < 1e-6 {
                logratios.clone()
            } else {
                // TRL upcasts half types to f32 and clamps so exp stays representable.
                let dt = logratios.dtype();
                let clamp_max = if dt == DType::F16 { 11.0 } else { 80.0 };
                let work = if matches!(dt, DType::F16 | DType::BF16) { DType::F32 } else { dt };
                let t = (logratios.to_dtype(work)? * (alpha - 1.0))?;
                let t = t.clamp(f64::NEG_INFINITY, clamp_max)?;
                ((t.exp()? - 1.0)?.to_dtype(logratios.dtype())? / (alpha - 1.0))?
            }
        }
    })
}

fn need<'a>(t: &'a Option<Tensor>, what: &str, lt: DpoLossType) -> Result<&'a Tensor> {
    t.as_ref().ok_or_else(|| TrainError::Input(format!("loss_type {lt:?} needs `{what}` in DpoExtras")))
}

/// Sorts a `[B]` tensor ascending along dim 0, differentiably (gather by host arg-sort).
fn sort_b(x: &Tensor) -> Result<Tensor> {
    let v = to_vec_f64(x)?;
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize]));
    let idx = Tensor::from_vec(idx, v.len(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
}

/// Soft-label logistic term `−(1−ε) log σ(βd) − ε log σ(−βd)` (cDPO form used by AOT).
fn smoothed_logistic(bd: &Tensor, eps: f64) -> Result<Tensor> {
    let pos = (log_sigmoid(bd)? * (-(1.0 - eps)))?;
    let neg = (log_sigmoid(&bd.neg()?)? * (-eps))?;
    Ok((pos + neg)?)
}

/// `−p log σ(x) − q log σ(−x)` for soft labels `(p, q = 1 − p)`, TRL's `−log σ(x)` without.
fn soft_logistic(x: &Tensor, soft: Option<&(Tensor, Tensor)>) -> Result<Tensor> {
    Ok(match soft {
        None => log_sigmoid(x)?.neg()?,
        Some((p, q)) => ((log_sigmoid(x)? * p)? + (log_sigmoid(&x.neg()?)? * q)?)?.neg()?,
    })
}

/// Checks the soft labels: `[B]`, each in [0, 1], and all 1 unless every loss type has a
/// soft-label form. `None` when there are none.
fn soft_labels(p: Option<&Tensor>, b: usize, types: &[DpoLossType]) -> Result<Option<Tensor>> {
    use DpoLossType::*;
    let Some(p) = p else { return Ok(None) };
    let v = to_vec_f64(&p.to_dtype(DType::F64)?)?;
    if v.len() != b {
        return Err(TrainError::Input(format!("{} soft labels for {b} pairs", v.len())));
    }
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
        return Err(TrainError::Input(format!(
            "soft label (`strength`) {x} of pair {i} is outside [0, 1]: it is the probability that chosen is preferred"
        )));
    }
    let takes = [Sigmoid, SigmoidNorm, Robust, ExoPair, Sft];
    if let Some(t) = types.iter().find(|&t| !takes.contains(t)) {
        if v.iter().any(|&x| x != 1.0) {
            return Err(TrainError::Input(format!(
                "loss_type {t:?} has no soft-label form, but the data gives pairs a `strength` below 1; \
                 use sigmoid, sigmoid_norm, robust or exo_pair, or drop the `strength` field"
            )));
        }
    }
    Ok(Some(p.clone()))
}

/// Every DPO-family loss of TRL 1.16 `DPOTrainer._compute_loss`, combined with
/// `loss_weights`.
///
/// With `ρ_w = log π(y_w) − log π_ref(y_w)`, `ρ_l` likewise, scores `s = f'(exp ρ)` and
/// `Δ = s_w − s_l`, each arm computes TRL's per-sequence loss (see [`DpoLossType`]); the result
/// is `Σ_k w_k ℓ_k[b]`, multiplied by the WPO weight (arXiv:2406.11827 Eq. 2) when
/// `use_weighting`.
///
/// Soft labels (`extras.soft_labels`, `p` = probability that `y_w ≻ y_l`) replace the hard
/// label: a pair's loss is the expectation over the two orders, `p ℓ(Δ) + (1 − p) ℓ(−Δ)`
/// (cDPO, Mitchell 2023, "A note on DPO with noisy preferences and relationship to IPO";
/// rDPO arXiv:2403.00409 Eq. 8 applied to each order). `sigmoid` and `sigmoid_norm` become
/// `−p log σ(βΔ) − (1 − p) log σ(−βΔ)`; `robust` weighs `−log σ(±βΔ)` by
/// `(p(1 − ε) − (1 − p)ε) / (1 − 2ε)` and `((1 − p)(1 − ε) − pε) / (1 − 2ε)`; `exo_pair`
/// takes the target `(1 − ε)p + ε(1 − p)` in place of `1 − ε`. At `p = 1/2` each is symmetric
/// in chosen and rejected, at `p = 1` it is TRL's loss. `sft` ignores them; the other types
/// have no per-pair label to soften and reject a batch whose labels are not all 1.
///
/// Shapes: the four log-prob inputs `[B]` (summed over completion tokens); extras as in
/// [`DpoExtras`]. Output tensors `[B]` and a scalar `loss`.
pub fn dpo_loss(
    chosen_logps: &Tensor,
    rejected_logps: &Tensor,
    ref_chosen_logps: &Tensor,
    ref_rejected_logps: &Tensor,
    cfg: &DpoConfig,
    extras: &DpoExtras,
) -> Result<DpoOutput> {
    use DpoLossType::*;
    cfg.validate()?;
    let beta = cfg.beta;
    let ls = cfg.label_smoothing;
    let chosen_logratios = (chosen_logps - ref_chosen_logps)?;
    let rejected_logratios = (rejected_logps - ref_rejected_logps)?;
    let fa = cfg.f_alpha_divergence_coef;
    let chosen_scores = f_divergence_score(&chosen_logratios, cfg.f_divergence_type, fa)?;
    let rejected_scores = f_divergence_score(&rejected_logratios, cfg.f_divergence_type, fa)?;
    let delta_score = (&chosen_scores - &rejected_scores)?;
    let b = chosen_logps.dims1()?;
    let weights = cfg.loss_weights.clone().unwrap_or_else(|| vec![1.0; cfg.loss_type.len()]);
    // (p, 1 − p), `[B]`, for the loss types that take soft labels; `None` = hard labels.
    let soft = match soft_labels(extras.soft_labels.as_ref(), b, &cfg.loss_type)? {
        Some(p) => {
            let p = p.to_dtype(chosen_scores.dtype())?;
            let q = (1.0 - &p)?;
            Some((p, q))
        }
        None => None,
    };

    let mut total: Option<Tensor> = None;
    for (&lt, &w) in cfg.loss_type.iter().zip(weights.iter()) {
        let per_seq = match lt {
            Sigmoid => soft_logistic(&(&delta_score * beta)?, soft.as_ref())?,
            Hinge => (1.0 - (&delta_score * beta)?)?.relu()?,
            Ipo | SigmoidNorm => {
                let lc = need(&extras.chosen_lengths, "chosen_lengths", lt)?
                    .to_dtype(chosen_scores.dtype())?
                    .clamp(1f64, f64::INFINITY)?;
                let lr = need(&extras.rejected_lengths, "rejected_lengths", lt)?
                    .to_dtype(chosen_scores.dtype())?
                    .clamp(1f64, f64::INFINITY)?;
                let d = ((&chosen_scores / lc)? - (&rejected_scores / lr)?)?;
                if lt == Ipo {
                    (d - 1.0 / (2.0 * beta))?.sqr()?
                } else {
                    soft_logistic(&(d * beta)?, soft.as_ref())?
                }
            }
            ExoPair => {
                let bd = (&delta_score * beta)?;
                let qw = sigmoid(&bd)?;
                let log_qw = log_sigmoid(&bd)?;
                let ql = sigmoid(&bd.neg()?)?;
                let log_ql = log_sigmoid(&bd.neg()?)?;
                // Target probability of y_w ≻ y_l: 1 − ε for a hard label.
                match &soft {
                    None => ((qw * (log_qw - (-ls).ln_1p())?)? + (ql * (log_ql - ls.ln())?)?)?,
                    Some((p, q)) => {
                        let pw = ((p * (1.0 - ls))? + (q * ls)?)?;
                        let log_pl = (1.0 - &pw)?.log()?;
                        ((qw * (log_qw - pw.log()?)?)? + (ql * (log_ql - log_pl)?)?)?
                    }
                }
            }
            NcaPair => {
                let cr = (&chosen_logratios * beta)?;
                let rr = (&rejected_logratios * beta)?;
                let a = log_sigmoid(&cr)?.neg()?;
                let c = (log_sigmoid(&cr.neg()?)? * 0.5)?;
                let d = (log_sigmoid(&rr.neg()?)? * 0.5)?;
                ((a - c)? - d)?
            }
            Robust => {
                let bd = (&delta_score * beta)?;
                match &soft {
                    None => {
                        let clean = (log_sigmoid(&bd)? * (-(1.0 - ls)))?;
                        let flipped = (log_sigmoid(&bd.neg()?)? * (-ls))?;
                        ((clean - flipped)? / (1.0 - 2.0 * ls))?
                    }
                    // p ℓ(Δ) + (1 − p) ℓ(−Δ), ℓ(x) = [(1−ε)(−log σ(βx)) − ε(−log σ(−βx))]/(1−2ε).
                    Some((p, q)) => {
                        let w_pos = (((p * (1.0 - ls))? - (q * ls)?)? / (1.0 - 2.0 * ls))?;
                        let w_neg = (((q * (1.0 - ls))? - (p * ls)?)? / (1.0 - 2.0 * ls))?;
                        let pos = (log_sigmoid(&bd)?.neg()? * w_pos)?;
                        let neg = (log_sigmoid(&bd.neg()?)?.neg()? * w_neg)?;
                        (pos + neg)?
                    }
                }
            }
            BcoPair => {
                let d = extras.bco_delta.unwrap_or(0.0);
                let cr = ((&chosen_logratios * beta)? - d)?;
                let rr = ((&rejected_logratios * beta)? - d)?;
                (log_sigmoid(&cr)?.neg()? - log_sigmoid(&rr.neg()?)?)?
            }
            SppoHard => {
                let wm = (&chosen_logratios - 0.5 / beta)?.sqr()?;
                let lm = (&rejected_logratios + 0.5 / beta)?.sqr()?;
                (wm + lm)?
            }
            Aot => {
                let logratios = (chosen_logps - rejected_logps)?;
                let ref_logratios = (ref_chosen_logps - ref_rejected_logps)?;
                let delta = (sort_b(&logratios)? - sort_b(&ref_logratios)?)?;
                smoothed_logistic(&(delta * beta)?, ls)?
            }
            AotUnpaired => {
                let delta = (sort_b(&chosen_logratios)? - sort_b(&rejected_logratios)?)?;
                smoothed_logistic(&(delta * beta)?, ls)?
            }
            ApoZero => {
                let lc = (1.0 - sigmoid(&(&chosen_logratios * beta)?)?)?;
                let lr = sigmoid(&(&rejected_logratios * beta)?)?;
                (lc + lr)?
            }
            ApoDown => {
                let lc = sigmoid(&(&chosen_logratios * beta)?)?;
                let m = ((&chosen_logratios - &rejected_logratios)? * beta)?;
                let lr = (1.0 - sigmoid(&m)?)?;
                (lc + lr)?
            }
            Discopop => {
                let logits = (&delta_score * beta)?;
                let log_mod = log_sigmoid(&(&logits / cfg.discopop_tau)?)?;
                let modulation = log_mod.exp()?;
                let logistic = log_sigmoid(&logits)?.neg()?;
                // exp(−x)·σ(x/τ) as exp(−x + log σ(x/τ)): TRL's product is inf·0 = NaN in f32
                // for very negative x; the values agree wherever TRL's are finite.
                let exp_mod = (log_mod - &logits)?.exp()?;
                ((logistic * (1.0 - &modulation)?)? + exp_mod)?
            }
            Sft => {
                let nll = need(&extras.sft_nll, "sft_nll", lt)?;
                nll.reshape(())?.to_dtype(chosen_logps.dtype())?.broadcast_as(b)?.contiguous()?
            }
        };
        let per_seq = if cfg.use_weighting {
            let wpo = extras
                .wpo_weights
                .as_ref()
                .ok_or_else(|| TrainError::Input("use_weighting needs `wpo_weights` in DpoExtras".into()))?;
            (per_seq * wpo.detach())?
        } else {
            per_seq
        };
        let term = (per_seq * w)?;
        total = Some(match total {
            None => term,
            Some(t) => (t + term)?,
        });
    }
    let losses = total.expect("validated non-empty");
    let loss = losses.mean_all()?;
    Ok(DpoOutput {
        loss,
        losses,
        chosen_rewards: (chosen_logratios.detach() * beta)?,
        rejected_rewards: (rejected_logratios.detach() * beta)?,
    })
}

/// TRL's mean token NLL of the chosen completions, the `sft` loss:
/// `−mean_{b,t: mask=1} log π(y_w,t)`. Shapes: `[B, T]`, `[B, T]` → scalar.
pub fn chosen_sft_nll(chosen_per_token_logps: &Tensor, chosen_mask: &Tensor) -> Result<Tensor> {
    Ok(super::ops::masked_mean_all(chosen_per_token_logps, chosen_mask)?.neg()?)
}

/// LD-DPO log-probs (Liu et al., arXiv:2409.06411, Eq. 9; TRL `ld_alpha`): tokens up to the
/// shorter completion of the pair count fully, the longer one's tail is scaled by α:
/// `log π = Σ_{pos ≤ ℓ_s} log p_t + α Σ_{pos > ℓ_s} log p_t`, ℓ_s = min(|y_w|, |y_l|).
///
/// Shapes: `per_token_logps [2B, T]` (chosen rows then rejected rows, zero where masked, as
/// TRL's labels = −100 give) and the shifted completion mask `[2B, T]` → `[2B]`.
pub fn ld_alpha_logps(per_token_logps: &Tensor, completion_mask: &Tensor, ld_alpha: f64) -> Result<Tensor> {
    let (n, t) = completion_mask.dims2()?;
    if n % 2 != 0 {
        return Err(TrainError::Input(format!("ld_alpha_logps needs 2B rows, got {n}")));
    }
    let mask = completion_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let lens: Vec<f32> = mask.iter().map(|r| r.iter().sum()).collect();
    let b = n / 2;
    let mut shared = vec![0f32; n * t];
    let mut tail = vec![0f32; n * t];
    for i in 0..n {
        let shared_len = lens[i % b].min(lens[b + i % b]);
        let mut pos = 0f32;
        for j in 0..t {
            pos += mask[i][j];
            if pos > 0.0 && pos <= shared_len {
                shared[i * t + j] = 1.0;
            } else if pos > shared_len {
                tail[i * t + j] = 1.0;
            }
        }
    }
    let dev = per_token_logps.device();
    let dt = per_token_logps.dtype();
    let shared = Tensor::from_vec(shared, (n, t), dev)?.to_dtype(dt)?;
    let tail = Tensor::from_vec(tail, (n, t), dev)?.to_dtype(dt)?;
    let s = (per_token_logps * shared)?.sum(1)?;
    let tl = (per_token_logps * tail)?.sum(1)?;
    Ok((s + (tl * ld_alpha)?)?)
}

/// Per-token `log Σ_v p_v²` from logits `[N, T, V] -> [N, T]` (what TRL's fused head returns as
/// `log_sum_sq_probs`, for WPO).
pub fn log_sum_sq_probs(logits: &Tensor) -> Result<Tensor> {
    use candle_core::D;
    let logits = logits.to_dtype(DType::F32)?.detach();
    let max = logits.max_keepdim(D::Minus1)?;
    let sh = logits.broadcast_sub(&max)?;
    let lse = sh.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp2 = (sh.broadcast_sub(&lse)? * 2.0)?;
    let m2 = logp2.max_keepdim(D::Minus1)?;
    let out = (logp2.broadcast_sub(&m2)?.exp()?.sum_keepdim(D::Minus1)?.log()? + m2)?;
    Ok(out.squeeze(D::Minus1)?)
}

/// WPO weights (Zhou et al., arXiv:2406.11827, Eq. 2 with the aligned-probability variant TRL
/// uses): `w = exp(mean_t (log p_t − log Σ_v p_v²))` per sequence, `w_pair = w_w · w_l`, detached.
///
/// Shapes: `per_token_logps`, `log_sum_sq_probs`, `mask` `[2B, T]` (chosen rows then rejected)
/// → `[B]`.
pub fn wpo_weights(per_token_logps: &Tensor, log_sum_sq: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask.dims2()?.0;
    let mask = mask.to_dtype(per_token_logps.dtype())?;
    let aligned = ((per_token_logps.detach() - log_sum_sq.detach())? * &mask)?;
    let lens = mask.sum(1)?.clamp(1f64, f64::INFINITY)?;
    let w = (aligned.sum(1)? / lens)?.exp()?;
    let (c, r) = (w.narrow(0, 0, n / 2)?, w.narrow(0, n / 2, n / 2)?);
    Ok((c * r)?)
}

/// TRL's DPO metrics (batch means): `rewards/chosen`, `rewards/rejected`, `rewards/margins`,
/// `rewards/accuracies` (`r_w > r_l`, ties count as wrong), `logps/chosen`, `logps/rejected`,
/// and `loss`.
pub fn dpo_metrics(out: &DpoOutput, chosen_logps: &Tensor, rejected_logps: &Tensor) -> Result<BTreeMap<String, f64>> {
    let rc = to_vec_f64(&out.chosen_rewards)?;
    let rr = to_vec_f64(&out.rejected_rewards)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let margins: Vec<f64> = rc.iter().zip(&rr).map(|(a, b)| a - b).collect();
    let acc: Vec<f64> = rc.iter().zip(&rr).map(|(a, b)| f64::from(u8::from(a > b))).collect();
    let mut m = BTreeMap::new();
    m.insert("loss".into(), out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?);
    m.insert("rewards/chosen".into(), mean(&rc));
    m.insert("rewards/rejected".into(), mean(&rr));
    m.insert("rewards/margins".into(), mean(&margins));
    m.insert("rewards/accuracies".into(), mean(&acc));
    m.insert("logps/chosen".into(), mean(&to_vec_f64(chosen_logps)?));
    m.insert("logps/rejected".into(), mean(&to_vec_f64(rejected_logps)?));
    Ok(m)
}
