//! ORPO: Monolithic Preference Optimization without Reference Model (Hong et al.,
//! arXiv:2403.07691), as TRL 1.16 `ORPOTrainer.odds_ratio_loss`.

use candle_core::Tensor;

use super::ops::log_sigmoid;
use crate::Result;

/// Output of [`orpo_loss`].
#[derive(Debug, Clone)]
pub struct OrpoOutput {
    /// Scalar `nll − mean(β log σ(log odds))` (TRL's `loss`, Eq. 6 with λ = β).
    pub loss: Tensor,
    /// `β log σ(log odds)` per pair `[B]` (TRL's `losses`; subtracted).
    pub ratio_losses: Tensor,
    /// `β · log π(y_w)` (average log-prob), detached `[B]`.
    pub chosen_rewards: Tensor,
    /// `β · log π(y_l)` (average log-prob), detached `[B]`.
    pub rejected_rewards: Tensor,
    /// Metric `log_odds_ratio`: mean of `log σ(log odds)` (detached scalar).
    pub log_odds_ratio: Tensor,
    /// Metric `log_odds_chosen`: mean log odds (detached scalar).
    pub log_odds_chosen: Tensor,
}

/// `log(1 − exp(x))` for `x < 0` (TRL `log1mexp`, Mächler 2012): `log1p(−eˣ)` below −ln 2,
/// `log(−expm1 x)` above, with `expm1` from its series near 0. Each branch sees an input
/// clamped to its own range so neither produces NaN gradients. Any shape.
pub fn log1mexp(x: &Tensor) -> Result<Tensor> {
    const LN2: f64 = std::f64::consts::LN_2;
    let xa = x.clamp(f64::NEG_INFINITY, -LN2)?;
    let a = (1.0 - xa.exp()?)?.log()?;
    let xb = x.clamp(-LN2, -1e-30)?;
    // −expm1(x): series −x(1 + x/2 + x²/6 + x³/24) for |x| < 1e-2, else 1 − eˣ.
    let xs = xb.clamp(-1e-2, -1e-30)?;
    let poly = ((((&xs * (1.0 / 24.0))? + (1.0 / 6.0))? * &xs)? + 0.5)?;
    let series = (xs.neg()? * ((poly * &xs)? + 1.0)?)?;
    let neg_expm1 = xb.lt(-1e-2)?.where_cond(&(1.0 - xb.exp()?)?, &series)?;
    let b = neg_expm1.log()?;
    Ok(x.lt(-LN2)?.where_cond(&a, &b)?)
}

/// ORPO loss (arXiv:2403.07691 Eqs. 4, 6, 7): with average per-token log-probs `ℓ_w`, `ℓ_l`,
/// `log odds = (ℓ_w − ℓ_l) − (log(1 − e^{ℓ_w}) − log(1 − e^{ℓ_l}))`,
/// `loss = nll_chosen − mean(β log σ(log odds))`.
///
/// Shapes: `chosen_avg_logps`, `rejected_avg_logps` `[B]` (mean over completion tokens, < 0),
/// `chosen_nll` scalar (mean token cross-entropy of the chosen completions).
pub fn orpo_loss(
    chosen_avg_logps: &Tensor,
    rejected_avg_logps: &Tensor,
    chosen_nll: &Tensor,
    beta: f64,
) -> Result<OrpoOutput> {
    let log_odds =
        ((chosen_avg_logps - rejected_avg_logps)? - (log1mexp(chosen_avg_logps)? - log1mexp(rejected_avg_logps)?)?)?;
    let ratio = log_sigmoid(&log_odds)?;
    let ratio_losses = (&ratio * beta)?;
    let loss = (chosen_nll.reshape(())? - ratio_losses.mean_all()?)?;
    Ok(OrpoOutput {
        loss,
        chosen_rewards: (chosen_avg_logps.detach() * beta)?,
        rejected_rewards: (rejected_avg_logps.detach() * beta)?,
        log_odds_ratio: ratio.mean_all()?.detach(),
        log_odds_chosen: log_odds.mean_all()?.detach(),
        ratio_losses,
    })
}
