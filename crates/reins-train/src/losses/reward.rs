//! Reward-model losses: Bradley–Terry (TRL `RewardTrainer`) and Thurstone (probit) pairwise,
//! Plackett–Luce listwise, and ensemble aggregation.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use super::ops::{log_sigmoid, to_vec_f64};
use crate::statistics::Link;
use crate::{Result, TrainError};

/// Loss options of TRL's `RewardConfig` plus label-noise handling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RewardLossConfig {
    /// TRL `center_rewards_coefficient` (Eisenstein et al., arXiv:2312.09244): adds
    /// `coef · mean((r_w + r_l)²)`. Default `None`.
    #[serde(default)]
    pub center_rewards_coefficient: Option<f64>,
    /// Assumed label flip rate ε (conservative/soft targets, cf. rDPO arXiv:2403.00409): the
    /// target probability that `y_w ≻ y_l` becomes `1 − ε`. Default 0.0 (TRL).
    #[serde(default)]
    pub label_smoothing: f64,
    /// The pairwise link: `"bradley_terry"` (`σ(d)`, TRL) or `"thurstone"` (probit,
    /// `Φ(d/√2)`; see [`thurstone_loss`]). Default `"bradley_terry"`.
    #[serde(default)]
    pub link: Link,
}

/// The pairwise reward loss of `cfg.link`: [`bradley_terry_loss`] or [`thurstone_loss`].
pub fn pairwise_reward_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_labels: Option<&Tensor>,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    match cfg.link {
        Link::BradleyTerry => bradley_terry_loss(chosen, rejected, margin, soft_labels, cfg),
        Link::Thurstone => thurstone_loss(chosen, rejected, margin, soft_labels, cfg),
    }
}

/// Checks the label-smoothing rate and the soft labels shared by both pairwise links.
fn check_targets(soft_labels: Option<&Tensor>, cfg: &RewardLossConfig) -> Result<()> {
    let eps = cfg.label_smoothing;
    if !(0.0..0.5).contains(&eps) {
        return Err(TrainError::Config(format!("`label_smoothing` must lie in [0, 0.5) (got {eps})")));
    }
    if let Some(p) = soft_labels {
        let v = to_vec_f64(&p.to_dtype(DType::F64)?)?;
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
            return Err(TrainError::Input(format!(
                "soft label (`strength`) {x} of pair {i} is outside [0, 1]: it is the probability that chosen is preferred"
            )));
        }
    }
    Ok(())
}

/// Bradley–Terry reward loss (Bradley & Terry 1952; Ouyang et al., arXiv:2203.02155, Eq. 1;
/// TRL `RewardTrainer.compute_loss`):
///
/// `d = r_w − r_l − margin`, `ℓ = −[p log σ(d) + (1 − p) log σ(−d)]`, averaged over the batch,
/// with target `p = 1` (TRL), or a per-pair soft label / preference strength `p ∈ [0, 1]`,
/// then label smoothing `p ← (1 − ε) p + ε (1 − p)`. Plus the centring term when configured.
///
/// Shapes: `chosen`, `rejected`, `margin`, `soft_labels` `[B]` → scalar.
pub fn bradley_terry_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_labels: Option<&Tensor>,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    check_targets(soft_labels, cfg)?;
    let eps = cfg.label_smoothing;
    let d = reward_gap(chosen, rejected, margin)?;
    let pos = log_sigmoid(&d)?;
    let per_pair = match (soft_labels, eps) {
        (None, 0.0) => pos.neg()?,
        _ => {
            let p = match soft_labels {
                Some(p) => p.to_dtype(d.dtype())?,
                None => d.ones_like()?,
            };
            let p = ((&p * (1.0 - eps))? + ((1.0 - &p)? * eps)?)?;
            let neg = log_sigmoid(&d.neg()?)?;
            ((&p * pos)? + ((1.0 - &p)? * neg)?)?.neg()?
        }
    };
    with_centring(per_pair.mean_all()?, chosen, rejected, cfg)
}

/// The pairwise reward loss with per-annotator rationality (Liu, Shi & Sun, arXiv:2604.02507;
/// arXiv:2512.03208, heterogeneous rationality): pair i was labelled by an annotator of
/// rationality `β_i`, so `P(y_w ≻ y_l) = P(β_i d_i)` with `d = r_w − r_l − margin` and `P` the
/// link of `cfg` (Bradley–Terry: `σ(β_i d_i)`),
///
/// `ℓ = mean_i −[p_i log P(β_i d_i) + (1 − p_i) log P(−β_i d_i)]`,
///
/// with soft labels and label smoothing as in [`bradley_terry_loss`], and the centring term on
/// the unscaled rewards. `beta` is a constant here (the caller detaches it; the β's are
/// estimated in their own step, [`crate::statistics::rationality_step`]). At `β = 1` it is
/// [`pairwise_reward_loss`].
///
/// Shapes: `chosen`, `rejected`, `margin`, `soft_labels`, `beta` `[B]` → scalar.
pub fn rationality_reward_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_labels: Option<&Tensor>,
    beta: &Tensor,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    let d = reward_gap(chosen, rejected, margin)?;
    let scaled = (d * beta.to_dtype(chosen.dtype())?.detach())?;
    let unscaled = RewardLossConfig { center_rewards_coefficient: None, ..*cfg };
    let loss = pairwise_reward_loss(&scaled, &scaled.zeros_like()?, None, soft_labels, &unscaled)?;
    with_centring(loss, chosen, rejected, cfg)
}

/// `d = r_w − r_l − margin`, the gap both links read.
fn reward_gap(chosen: &Tensor, rejected: &Tensor, margin: Option<&Tensor>) -> Result<Tensor> {
    let d = (chosen - rejected)?;
    Ok(match margin {
        Some(m) => (&d - m.to_dtype(d.dtype())?)?,
        None => d,
    })
}

/// `loss + coef · mean((r_w + r_l)²)` when `center_rewards_coefficient` is set.
fn with_centring(loss: Tensor, chosen: &Tensor, rejected: &Tensor, cfg: &RewardLossConfig) -> Result<Tensor> {
    Ok(match cfg.center_rewards_coefficient {
        Some(c) => (loss + ((chosen + rejected)?.sqr()?.mean_all()? * c)?)?,
        None => loss,
    })
}

/// Thurstone (probit) reward loss (Thurstone 1927, case V; Liu, Shi & Sun, arXiv:2604.02507,
/// on Thurstone models): `P(y_w ≻ y_l) = Φ(d / (√2 s))` with `s = 1` (see [`Link`]),
///
/// `d = r_w − r_l − margin`, `ℓ = −[p log Φ(d/√2) + (1 − p) log Φ(−d/√2)]`, averaged over the
/// batch, with the target `p`, soft labels, label smoothing and centring exactly as in
/// [`bradley_terry_loss`].
///
/// `log Φ` has no differentiable tensor op in candle that stays accurate in its tails, so each
/// pair's value `ℓ_i` and slope `∂ℓ_i/∂d_i` are computed in f64 on the host
/// ([`Link::nll`], [`Link::dnll`]) and joined to the graph as `ℓ_i + g_i·(d_i − detach(d_i))`:
/// the value is exactly `ℓ_i` and the backward pass gives exactly `g_i`.
///
/// Shapes: `chosen`, `rejected`, `margin`, `soft_labels` `[B]` → scalar.
pub fn thurstone_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_labels: Option<&Tensor>,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    check_targets(soft_labels, cfg)?;
    let eps = cfg.label_smoothing;
    let d = reward_gap(chosen, rejected, margin)?;
    let dv = to_vec_f64(&d)?;
    let p: Vec<f64> = match soft_labels {
        Some(p) => to_vec_f64(p)?,
        None => vec![1.0; dv.len()],
    };
    let (mut value, mut slope) = (Vec::with_capacity(dv.len()), Vec::with_capacity(dv.len()));
    for (&d, &p) in dv.iter().zip(&p) {
        let p = (1.0 - eps) * p + eps * (1.0 - p);
        value.push(Link::Thurstone.nll(d, p));
        slope.push(Link::Thurstone.dnll(d, p));
    }
    let host = |v: Vec<f64>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, d.dims().to_vec(), d.device())?.to_dtype(d.dtype())?)
    };
    let per_pair = (host(value)? + (host(slope)? * (&d - d.detach())?)?)?;
    with_centring(per_pair.mean_all()?, chosen, rejected, cfg)
}

/// Plackett–Luce listwise loss (Plackett 1975; Zhu et al., arXiv:2301.11270, Eq. 4.2 K-wise
/// MLE) over graded lists, with ties handled by Efron's approximation.
///
/// Without ties (a strict order, best first) it is the exact PL negative log-likelihood
/// `ℓ = −Σ_i [s_i − log Σ_{j ≥ i} exp s_j]`. Items of equal grade have no order between
/// them, so instead of a strict order in file order each tie group `G` (of size `d`, with
/// `W` the strictly worse items) contributes, as tied event times do in Cox's partial
/// likelihood (Efron, "The efficiency of Cox's likelihood function for censored data",
/// JASA 72(359), 1977, Eq. 3.2):
///
/// `Σ_{i∈G} s_i − Σ_{r=0}^{d−1} log(Σ_{j∈W} e^{s_j} + (1 − r/d) Σ_{j∈G} e^{s_j})`
///
/// which is symmetric in the members of `G` and approximates the exact marginal likelihood
/// of "G fills the next d places in some order" (a sum over d! orders) far better than
/// Breslow's `d · log Σ_{j∈G∪W} e^{s_j}` (Breslow 1974). A tie group of one is the PL term;
/// a trailing tie group keeps a term (the exact one would be 0) that is largest when the
/// tied scores are equal. Mean over lists; at K = 2 without a tie it equals Bradley–Terry.
///
/// Shapes: `scores [B, K]` in any order, `grades [B, K]` (higher is better; equal = tied),
/// `mask [B, K]` 1 for present items (padding at any position) → scalar.
pub fn plackett_luce_loss(scores: &Tensor, grades: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, k) = scores.dims2()?;
    let g = grades.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let m = mask.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    if g.len() != b || m.len() != b || g.iter().chain(&m).any(|r| r.len() != k) {
        return Err(TrainError::Input(format!("plackett_luce_loss: grades and mask must be [{b}, {k}] as the scores")));
    }
    const NEG: f64 = -1e9;
    // log_w[b, i, j]: log of item j's weight in the denominator of item i's term.
    let mut log_w = vec![NEG; b * k * k];
    for (row, (g, m)) in g.iter().zip(&m).enumerate() {
        let present: Vec<usize> = (0..k).filter(|&j| m[j] > 0.5).collect();
        for &i in &present {
            let group: Vec<usize> = present.iter().copied().filter(|&j| g[j] == g[i]).collect();
            let d = group.len() as f64;
            // Item i takes the r-th Efron term of its group (which one does not change the sum).
            let r = group.iter().position(|&j| j == i).unwrap_or(0) as f64;
            for &j in &present {
                let w = if g[j] < g[i] {
                    1.0
                } else if g[j] == g[i] {
                    1.0 - r / d
                } else {
                    continue;
                };
                log_w[(row * k + i) * k + j] = w.ln();
            }
        }
    }
    let dt = scores.dtype();
    let log_w = Tensor::from_vec(log_w, (b, k, k), scores.device())?.to_dtype(dt)?;
    let mask = mask.to_dtype(dt)?;
    let expanded = scores.unsqueeze(1)?.broadcast_add(&log_w)?; // [B, K(i), K(j)]
    let max = expanded.max_keepdim(D::Minus1)?.detach();
    let lse = (expanded.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?.squeeze(D::Minus1)?;
    let terms = ((scores - lse)? * &mask)?; // [B, K]
    Ok((terms.sum_all()?.neg()? / b as f64)?)
}

/// How an ensemble of reward models is reduced (Coste et al., arXiv:2310.02743, §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnsembleAggregation {
    /// Mean of the members.
    Mean,
    /// Worst-case optimisation (WCO): the minimum over members.
    Min,
    /// Uncertainty-weighted optimisation (UWO): `mean − λ · var` (population variance).
    MeanMinusVar {
        /// λ, the uncertainty penalty.
        lambda: f64,
    },
}

/// Reduces member rewards `[M, B]` to `[B]` (Coste et al., arXiv:2310.02743, Eqs. 3–5).
pub fn ensemble_aggregate(scores: &Tensor, how: EnsembleAggregation) -> Result<Tensor> {
    Ok(match how {
        EnsembleAggregation::Mean => scores.mean(0)?,
        EnsembleAggregation::Min => scores.min(0)?,
        EnsembleAggregation::MeanMinusVar { lambda } => {
            let mean = scores.mean_keepdim(0)?;
            let var = scores.broadcast_sub(&mean)?.sqr()?.mean(0)?;
            (mean.squeeze(0)? - (var * lambda)?)?
        }
    })
}

/// Preference strength per pair across an ensemble (Wang et al., "Secrets of RLHF II",
/// arXiv:2401.06080, Eq. 3): `d_m = r_m(y_w) − r_m(y_l)`, returns `(mean_m d, std_m d)` with the
/// unbiased std (torch default; 0 when M = 1). Shapes: `[M, B]`, `[M, B]` → `[B]`, `[B]`.
pub fn preference_strength(chosen: &Tensor, rejected: &Tensor) -> Result<(Tensor, Tensor)> {
    let m = chosen.dims2()?.0;
    let d = (chosen - rejected)?;
    let mean = d.mean_keepdim(0)?;
    let ss = d.broadcast_sub(&mean)?.sqr()?.sum(0)?;
    let std = if m > 1 { (ss / (m - 1) as f64)?.sqrt()? } else { ss.zeros_like()? };
    Ok((mean.squeeze(0)?, std))
}

/// TRL `RewardTrainer` logged metrics: `accuracy` (`r_w > r_l`; ties count as wrong),
/// `margin` (mean `r_w − r_l`), `min_reward`, `mean_reward`, `max_reward` (over chosen and
/// rejected together). Shapes `[B]`, `[B]`.
pub fn reward_metrics(chosen: &Tensor, rejected: &Tensor) -> Result<BTreeMap<String, f64>> {
    let c = to_vec_f64(&chosen.to_dtype(DType::F64)?)?;
    let r = to_vec_f64(&rejected.to_dtype(DType::F64)?)?;
    let n = c.len().max(1) as f64;
    let all: Vec<f64> = c.iter().chain(&r).copied().collect();
    let mut m = BTreeMap::new();
    m.insert("accuracy".into(), c.iter().zip(&r).filter(|(a, b)| a > b).count() as f64 / n);
    m.insert("margin".into(), c.iter().zip(&r).map(|(a, b)| a - b).sum::<f64>() / n);
    m.insert("min_reward".into(), all.iter().copied().fold(f64::INFINITY, f64::min));
    m.insert("max_reward".into(), all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    m.insert("mean_reward".into(), all.iter().sum::<f64>() / all.len().max(1) as f64);
    Ok(m)
}

#[cfg(test)]
mod rationality_tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    /// Two pairs, gaps 1 and −0.5, rationalities 2 and 4 (β·d = 2 and −2), hard labels:
    /// `ℓ = (−log σ(2) − log σ(−2)) / 2 = (0.126928011042972 + 2.126928011042972) / 2`, and
    /// `∂ℓ/∂r_w,i = −β_i σ(−β_i d_i) / 2`: `−2·σ(−2)/2 = −0.119202922022118` and
    /// `−4·σ(2)/2 = −1.761594155955765`.
    #[test]
    fn rationality_loss_and_gradient_by_hand() -> Result<()> {
        let chosen = Var::from_tensor(&t(&[1.0, 0.0]))?;
        let rejected = t(&[0.0, 0.5]);
        let beta = t(&[2.0, 4.0]);
        let cfg = RewardLossConfig::default();
        let loss = rationality_reward_loss(chosen.as_tensor(), &rejected, None, None, &beta, &cfg)?;
        let want = (0.126_928_011_042_972_1 + 2.126_928_011_042_972) / 2.0;
        assert!((loss.to_scalar::<f64>()? - want).abs() < 1e-12, "{}", loss.to_scalar::<f64>()?);
        let g: Vec<f64> = loss.backward()?.get(chosen.as_tensor()).expect("gradient").to_vec1()?;
        assert!((g[0] + 0.119_202_922_022_118).abs() < 1e-12 && (g[1] + 1.761_594_155_955_765).abs() < 1e-12, "{g:?}");
        // β = 1 is the plain loss, for both links, with a margin, soft labels and centring.
        let (c, r, m, p) = (t(&[0.3, -1.0, 2.0]), t(&[0.1, 0.4, -1.0]), t(&[0.1, 0.0, 0.5]), t(&[1.0, 0.7, 0.2]));
        for link in [Link::BradleyTerry, Link::Thurstone] {
            let cfg = RewardLossConfig { link, center_rewards_coefficient: Some(0.01), label_smoothing: 0.1 };
            let ones = t(&[1.0, 1.0, 1.0]);
            let a = rationality_reward_loss(&c, &r, Some(&m), Some(&p), &ones, &cfg)?.to_scalar::<f64>()?;
            let b = pairwise_reward_loss(&c, &r, Some(&m), Some(&p), &cfg)?.to_scalar::<f64>()?;
            assert!((a - b).abs() < 1e-12, "{link:?}: {a} vs {b}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod thurstone_tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }
    fn scalar(x: &Tensor) -> f64 {
        x.to_scalar::<f64>().unwrap()
    }
    const SQRT_2: f64 = std::f64::consts::SQRT_2;
    // torch.special.log_ndtr(±1.0) and the inverse Mills ratios φ/Φ at 0, 1 and −1 (float64).
    const NEG_LOG_PHI_1: f64 = 0.17275377902344985;
    const NEG_LOG_PHI_M1: f64 = 1.841021645009264;
    const MILLS: [f64; 3] = [0.7978845608028654, 0.2875999709391784, 1.525135276160982];

    /// Three pairs with `d = 0, √2, −√2`, i.e. `z = d/√2 = 0, 1, −1`: the loss is the mean of
    /// `ln 2, −log Φ(1), −log Φ(−1)` and `∂ℓ/∂r_w = −λ(z)/(√2·B)`.
    #[test]
    fn thurstone_loss_and_gradient_by_hand() -> Result<()> {
        let chosen = Var::from_tensor(&t(&[0.5, 1.0 + SQRT_2, -1.0]))?;
        let rejected = t(&[0.5, 1.0, -1.0 + SQRT_2]);
        let cfg = RewardLossConfig { link: Link::Thurstone, ..Default::default() };
        let loss = pairwise_reward_loss(chosen.as_tensor(), &rejected, None, None, &cfg)?;
        let want = (std::f64::consts::LN_2 + NEG_LOG_PHI_1 + NEG_LOG_PHI_M1) / 3.0;
        assert!((scalar(&loss) - want).abs() < 1e-13, "{} vs {want}", scalar(&loss));
        let grads = loss.backward()?;
        let g: Vec<f64> = grads.get(chosen.as_tensor()).expect("gradient").to_vec1()?;
        for (gi, l) in g.iter().zip(MILLS) {
            assert!((gi + l / (SQRT_2 * 3.0)).abs() < 1e-13, "{gi} vs {}", -l / (SQRT_2 * 3.0));
        }
        // The margin is subtracted inside the link: a margin of 1 equals lowering r_w by 1.
        let m = t(&[0.0, 1.0, 0.0]);
        let with_m = scalar(&thurstone_loss(chosen.as_tensor(), &rejected, Some(&m), None, &cfg)?);
        let shifted = scalar(&thurstone_loss(&t(&[0.5, SQRT_2, -1.0]), &rejected, None, None, &cfg)?);
        assert!((with_m - shifted).abs() < 1e-14);
        Ok(())
    }

    /// A soft label ½ at z = 1 averages the two directions; label smoothing ε equals the soft
    /// label 1 − ε; swapping chosen and rejected with p → 1 − p leaves the loss unchanged; and
    /// the centring term is the Bradley–Terry one.
    #[test]
    fn thurstone_soft_labels_smoothing_symmetry_and_centring() -> Result<()> {
        let cfg = RewardLossConfig { link: Link::Thurstone, ..Default::default() };
        let (c, r) = (t(&[SQRT_2]), t(&[0.0]));
        let half = scalar(&thurstone_loss(&c, &r, None, Some(&t(&[0.5])), &cfg)?);
        assert!((half - 0.5 * (NEG_LOG_PHI_1 + NEG_LOG_PHI_M1)).abs() < 1e-13);
        let smoothed = RewardLossConfig { label_smoothing: 0.1, ..cfg };
        let a = scalar(&thurstone_loss(&c, &r, None, None, &smoothed)?);
        let b = scalar(&thurstone_loss(&c, &r, None, Some(&t(&[0.9])), &cfg)?);
        assert!((a - b).abs() < 1e-14);
        assert!((b - (0.9 * NEG_LOG_PHI_1 + 0.1 * NEG_LOG_PHI_M1)).abs() < 1e-13);
        let (cs, rs, p) = (t(&[0.3, -2.0, 4.0]), t(&[1.1, 0.5, -3.0]), t(&[1.0, 0.8, 0.25]));
        let fwd = scalar(&thurstone_loss(&cs, &rs, None, Some(&p), &cfg)?);
        let back = scalar(&thurstone_loss(&rs, &cs, None, Some(&(1.0 - &p)?), &cfg)?);
        assert!((fwd - back).abs() < 1e-14, "{fwd} vs {back}");
        let centred = RewardLossConfig { center_rewards_coefficient: Some(0.01), ..cfg };
        let plain = scalar(&thurstone_loss(&cs, &rs, None, None, &cfg)?);
        let with_c = scalar(&thurstone_loss(&cs, &rs, None, None, &centred)?);
        let bt = |cfg: &RewardLossConfig| bradley_terry_loss(&cs, &rs, None, None, cfg).map(|x| scalar(&x));
        let bt_plain = bt(&RewardLossConfig::default())?;
        let bt_c = bt(&RewardLossConfig { center_rewards_coefficient: Some(0.01), ..Default::default() })?;
        assert!(((with_c - plain) - (bt_c - bt_plain)).abs() < 1e-14);
        // Bad targets are refused as for Bradley–Terry.
        assert!(thurstone_loss(&c, &r, None, Some(&t(&[1.5])), &cfg).is_err());
        assert!(thurstone_loss(&c, &r, None, None, &RewardLossConfig { label_smoothing: 0.5, ..cfg }).is_err());
        Ok(())
    }

    #[test]
    fn link_reads_from_toml_and_rejects_typos() {
        let cfg: RewardLossConfig = toml::from_str("link = \"thurstone\"").unwrap();
        assert_eq!(cfg.link, Link::Thurstone);
        assert_eq!(RewardLossConfig::default().link, Link::BradleyTerry);
        let err = toml::from_str::<RewardLossConfig>("link = \"probitt\"").unwrap_err().to_string();
        assert!(err.contains("bradley_terry") && err.contains("thurstone"), "{err}");
    }
}
