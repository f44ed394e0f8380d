//! Link functions of a pairwise preference model: the probability that `a` is preferred to
//! `b` given the reward difference `d = r(a) − r(b)` (Liu, Shi & Sun, "Reinforcement Learning
//! from Human Feedback: A Statistical Perspective", arXiv:2604.02507, on BTL and Thurstone models):
//!
//! - Bradley–Terry (logit): `P = σ(d)` (Bradley & Terry 1952).
//! - Thurstone (probit): `P = Φ(d / (√2 s))` (Thurstone 1927, case V): each response's utility
//!   carries independent `N(0, s²)` noise, so the difference has standard deviation `√2 s`.
//!   The reward's own scale is learned, so `s` cannot be told apart from it; reins fixes
//!   `s = 1`, i.e. `P = Φ(d / √2)`.
//!
//! Everything here is scalar `f64` math (log-probabilities, their derivatives and the Fisher
//! weight), shared by the reward loss and by the Laplace/Fisher statistics of [`super`].

use serde::{Deserialize, Serialize};

/// `1/√2`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `½ ln(2π)`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Which link turns a reward difference into a preference probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `P(a ≻ b) = σ(r_a − r_b)` (TRL's reward loss).
    #[default]
    BradleyTerry,
    /// `P(a ≻ b) = Φ((r_a − r_b) / √2)`.
    Thurstone,
}

impl Link {
    /// The config spelling (`bradley_terry`, `thurstone`).
    pub fn name(self) -> &'static str {
        match self {
            Link::BradleyTerry => "bradley_terry",
            Link::Thurstone => "thurstone",
        }
    }

    /// `P(a ≻ b)` for `d = r_a − r_b`.
    pub fn prob(self, d: f64) -> f64 {
        self.log_prob(d).exp()
    }

    /// `log P(a ≻ b)`, accurate for large `|d|`.
    pub fn log_prob(self, d: f64) -> f64 {
        match self {
            Link::BradleyTerry => log_sigmoid(d),
            Link::Thurstone => log_ndtr(d * FRAC_1_SQRT_2),
        }
    }

    /// `∂/∂d log P(a ≻ b)` (positive): `σ(−d)`, or `λ(d/√2)/√2` with the inverse Mills ratio
    /// `λ(z) = φ(z)/Φ(z)`.
    pub fn dlog_prob(self, d: f64) -> f64 {
        match self {
            Link::BradleyTerry => log_sigmoid(-d).exp(),
            Link::Thurstone => mills(d * FRAC_1_SQRT_2) * FRAC_1_SQRT_2,
        }
    }

    /// `−∂²/∂d² log P(a ≻ b)` (≥ 0, so the negative log-likelihood is convex in `d`):
    /// `σ(d)σ(−d)`, or `½ λ(z)(z + λ(z))` at `z = d/√2`.
    pub fn neg_d2log_prob(self, d: f64) -> f64 {
        match self {
            Link::BradleyTerry => (log_sigmoid(d) + log_sigmoid(-d)).exp(),
            Link::Thurstone => {
                let z = d * FRAC_1_SQRT_2;
                let l = mills(z);
                0.5 * l * (z + l)
            }
        }
    }

    /// Negative log-likelihood of one comparison with target `p = P(a ≻ b)` (1 for a hard
    /// label, a soft label or smoothed target otherwise): `−[p log P(d) + (1 − p) log P(−d)]`.
    pub fn nll(self, d: f64, p: f64) -> f64 {
        let pos = if p > 0.0 { p * self.log_prob(d) } else { 0.0 };
        let neg = if p < 1.0 { (1.0 - p) * self.log_prob(-d) } else { 0.0 };
        -(pos + neg)
    }

    /// `∂/∂d` of [`Link::nll`].
    pub fn dnll(self, d: f64, p: f64) -> f64 {
        -(p * self.dlog_prob(d) - (1.0 - p) * self.dlog_prob(-d))
    }

    /// `∂²/∂d²` of [`Link::nll`] (the observed information of one comparison; ≥ 0).
    pub fn d2nll(self, d: f64, p: f64) -> f64 {
        p * self.neg_d2log_prob(d) + (1.0 - p) * self.neg_d2log_prob(-d)
    }

    /// Expected (Fisher) information of one comparison at `d`: `P′(d)² / (P(d) P(−d))`. Equal
    /// to the observed information for Bradley–Terry (the canonical link), `σ(d)σ(−d)`.
    pub fn fisher(self, d: f64) -> f64 {
        match self {
            Link::BradleyTerry => self.neg_d2log_prob(d),
            Link::Thurstone => {
                let z = d * FRAC_1_SQRT_2;
                // P′ = φ(z)/√2; log of P′² / (Φ(z)Φ(−z)).
                (2.0 * (-0.5 * z * z - HALF_LN_2PI) - std::f64::consts::LN_2 - log_ndtr(z) - log_ndtr(-z)).exp()
            }
        }
    }
}

/// `log σ(x)`, stable on both half-lines.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// `log Φ(x)` of the standard normal CDF, to near machine precision on the whole line: `erfc`
/// where it does not underflow, the asymptotic series
/// `−x²/2 − ln(−x) − ½ ln 2π + ln(1 − 1/x² + 3/x⁴ − 15/x⁶ + 105/x⁸)` below −30 (next term
/// ≈ 1e−12 relative there).
pub fn log_ndtr(x: f64) -> f64 {
    if x > 0.0 {
        (-0.5 * libm::erfc(x * FRAC_1_SQRT_2)).ln_1p()
    } else if x > -30.0 {
        (0.5 * libm::erfc(-x * FRAC_1_SQRT_2)).ln()
    } else {
        let r = 1.0 / (x * x);
        let series = 1.0 - r * (1.0 - r * (3.0 - r * (15.0 - 105.0 * r)));
        -0.5 * x * x - (-x).ln() - HALF_LN_2PI + series.ln()
    }
}

/// The inverse Mills ratio `λ(x) = φ(x) / Φ(x)`, computed in logs (≈ `−x` for very negative `x`).
pub fn mills(x: f64) -> f64 {
    (-0.5 * x * x - HALF_LN_2PI - log_ndtr(x)).exp()
}

/// The standard normal quantile `Φ⁻¹(p)` for `p ∈ (0, 1)` (NaN outside): Acklam's rational
/// approximation (relative error 1.15e−9) refined by one Halley step on `Φ(x) − p`, which
/// brings it to near machine precision.
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    const A: [f64; 6] = [
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.357751867269,
        -30.66479806614716,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
    const C: [f64; 6] = [
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
    const LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let mut x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    let e = 0.5 * libm::erfc(-x * FRAC_1_SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x -= u / (1.0 + 0.5 * x * u);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// Reference values: `torch.special.log_ndtr` in float64 and its autograd gradient
    /// (PyTorch 2, `x.requires_grad_(); log_ndtr(x).backward()`).
    #[test]
    fn log_ndtr_and_mills_match_torch() {
        let cases = [
            (0.0, -std::f64::consts::LN_2, 0.7978845608028654),
            (1.0, -0.17275377902344985, 0.2875999709391784),
            (-1.0, -1.841021645009264, 1.525135276160982),
            (3.0, -0.0013508099647481923, 0.004437839042125664),
            (-5.0, -15.064998393988727, 5.18650396712585),
            (-40.0, -804.6084420137539, 40.024968847212364),
            (-29.5, -439.4294746091503, f64::NAN),
            (-30.0, -454.32124395634327, f64::NAN),
            (-31.0, -484.8539636271794, f64::NAN),
            (8.0, -6.220960574271758e-16, 5.052271083536893e-15),
        ];
        for (x, lp, grad) in cases {
            assert!(close(log_ndtr(x), lp, 1e-12), "log_ndtr({x}) = {} vs {lp}", log_ndtr(x));
            assert!(grad.is_nan() || close(mills(x), grad, 1e-11), "mills({x}) = {} vs {grad}", mills(x));
        }
        // torch.special.ndtri (float64)
        for (p, q) in [(0.975, 1.959963984540054), (0.5, 0.0), (0.005, -2.575829303548901), (1e-10, -6.361340902404056)]
        {
            assert!((normal_quantile(p) - q).abs() < 1e-12, "{p}: {}", normal_quantile(p));
        }
        assert!(normal_quantile(1.0).is_nan() && normal_quantile(0.0).is_nan());
        // Continuous across the switch to the asymptotic series at −30 (the slope is ≈ 30).
        assert!((log_ndtr(-30.0 + 1e-9) - log_ndtr(-30.0 - 1e-9) - 6e-8).abs() < 1e-9);
    }

    #[test]
    fn links_are_symmetric_and_derivatives_match_finite_differences() {
        for link in [Link::BradleyTerry, Link::Thurstone] {
            for &d in &[-7.0, -1.3, 0.0, 0.4, 2.5, 9.0] {
                // P(a ≻ b) + P(b ≻ a) = 1
                assert!((link.prob(d) + link.prob(-d) - 1.0).abs() < 1e-14, "{link:?} {d}");
                let h = 1e-5;
                for p in [1.0, 0.7, 0.0] {
                    let fd1 = (link.nll(d + h, p) - link.nll(d - h, p)) / (2.0 * h);
                    assert!((fd1 - link.dnll(d, p)).abs() < 1e-8, "{link:?} dnll at {d}, {p}");
                    let fd2 = (link.dnll(d + h, p) - link.dnll(d - h, p)) / (2.0 * h);
                    assert!((fd2 - link.d2nll(d, p)).abs() < 1e-7, "{link:?} d2nll at {d}, {p}");
                    assert!(link.d2nll(d, p) >= 0.0);
                    // Swapping the pair and the target leaves the likelihood unchanged.
                    assert!((link.nll(d, p) - link.nll(-d, 1.0 - p)).abs() < 1e-14);
                }
            }
        }
        // At d = 0 both links say ½: nll = ln 2; BT's Fisher weight ¼, probit's φ(0)²/(2·¼) = 1/π.
        for link in [Link::BradleyTerry, Link::Thurstone] {
            assert!((link.nll(0.0, 1.0) - std::f64::consts::LN_2).abs() < 1e-15);
        }
        assert!((Link::BradleyTerry.fisher(0.0) - 0.25).abs() < 1e-15);
        assert!((Link::Thurstone.fisher(0.0) - 1.0 / std::f64::consts::PI).abs() < 1e-14);
        // For a hard label the probit Fisher weight is not the observed one (non-canonical link).
        assert!((Link::Thurstone.fisher(1.0) - Link::Thurstone.d2nll(1.0, 1.0)).abs() > 1e-3);
    }
}
