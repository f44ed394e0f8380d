//! The statistics the experiments need beyond means and intervals: AUROC, the unbiased
//! best-of-n estimator over a sample pool, and Gao et al.'s over-optimization fits.

use serde::{Deserialize, Serialize};

/// Area under the ROC curve of `scores` for separating `positive[i] == true` from the rest:
/// the Mann–Whitney probability that a random positive outscores a random negative (ties
/// count one half). NaN when either class is empty.
pub fn auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let pos: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| p).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| !p).map(|(s, _)| *s).collect();
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// The expected gold score of best-of-`n` under a proxy, estimated without bias from a pool of
/// `N ≥ n` samples of one prompt (Nakano et al., WebGPT, App. I; Gao et al., arXiv:2210.10760,
/// §2.2): sort the pool by proxy and weight the i-th smallest (1-based) by
/// `C(i−1, n−1) / C(N, n)`, the probability that it is the maximum of a random n-subset.
/// `proxy` and `gold` are the pool's scores; ties in proxy keep the pool's order.
pub fn best_of_n_unbiased(proxy: &[f64], gold: &[f64], n: usize) -> f64 {
    let big_n = proxy.len().min(gold.len());
    if n == 0 || n > big_n {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..big_n).collect();
    order.sort_by(|&a, &b| proxy[a].total_cmp(&proxy[b]));
    let ln_fact: Vec<f64> = std::iter::once(0.0)
        .chain((1..=big_n).scan(0.0, |acc, k| {
            *acc += (k as f64).ln();
            Some(*acc)
        }))
        .collect();
    let ln_choose = |a: usize, b: usize| ln_fact[a] - ln_fact[b] - ln_fact[a - b];
    let denom = ln_choose(big_n, n);
    (n..=big_n).map(|i| (ln_choose(i - 1, n - 1) - denom).exp() * gold[order[i - 1]]).sum()
}

/// Which of Gao et al.'s functional forms is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaoForm {
    /// Best-of-n: `R(d) = d(α − β·d)`.
    BestOfN,
    /// RL: `R(d) = d(α − β·ln d)`.
    Rl,
}

/// A least-squares fit of a Gao form to gold gains against `d = √KL`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaoFit {
    pub form: GaoForm,
    pub alpha: f64,
    pub beta: f64,
    /// Coefficient of determination of the fit (on the gains, around their mean).
    pub r2: f64,
}

/// Fits `gold − gold(KL = 0) ≈ d(α − β·f(d))` with `d = √KL` by least squares without an
/// intercept (Gao et al., arXiv:2210.10760, eq. 1–2): the features are `d` and `−d·f(d)`.
/// `points` are `(KL, gold)`; the first point with KL 0 (or the smallest KL) is the anchor.
/// NaN coefficients when the points cannot determine two parameters.
pub fn fit_gao(form: GaoForm, points: &[(f64, f64)]) -> GaoFit {
    let nan = GaoFit { form, alpha: f64::NAN, beta: f64::NAN, r2: f64::NAN };
    let Some(anchor) = points.iter().min_by(|a, b| a.0.total_cmp(&b.0)).map(|p| p.1) else {
        return nan;
    };
    let rows: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(kl, g)| kl.is_finite() && g.is_finite())
        .map(|&(kl, g)| {
            let d = kl.max(0.0).sqrt();
            let f = match form {
                GaoForm::BestOfN => d,
                GaoForm::Rl if d > 0.0 => d.ln(),
                GaoForm::Rl => 0.0,
            };
            (d, -d * f, g - anchor)
        })
        .collect();
    let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x1, x2, y) in &rows {
        s11 += x1 * x1;
        s12 += x1 * x2;
        s22 += x2 * x2;
        s1y += x1 * y;
        s2y += x2 * y;
    }
    let det = s11 * s22 - s12 * s12;
    if rows.len() < 3 || det.abs() < 1e-12 * (s11 * s22).max(1e-300) {
        return nan;
    }
    let alpha = (s1y * s22 - s2y * s12) / det;
    let beta = (s11 * s2y - s12 * s1y) / det;
    let mean_y = rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64;
    let ss_tot: f64 = rows.iter().map(|r| (r.2 - mean_y).powi(2)).sum();
    let ss_res: f64 = rows.iter().map(|&(x1, x2, y)| (y - alpha * x1 - beta * x2).powi(2)).sum();
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN };
    GaoFit { form, alpha, beta, r2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_perfect_random_and_reversed_scores() {
        let pos = [true, true, false, false];
        assert_eq!(auroc(&[0.9, 0.8, 0.1, 0.2], &pos), 1.0);
        assert_eq!(auroc(&[0.1, 0.2, 0.9, 0.8], &pos), 0.0);
        assert_eq!(auroc(&[0.5; 4], &pos), 0.5);
        assert!(auroc(&[0.5, 0.4], &[true, true]).is_nan());
    }

    #[test]
    fn unbiased_best_of_n_matches_enumeration() {
        // Pool of 4: the mean over all C(4, 2) subsets of the gold of the proxy's pick.
        let proxy = [0.3, 0.1, 0.4, 0.2];
        let gold = [1.0, 2.0, 3.0, 4.0];
        let mut sum = 0.0;
        let mut count = 0.0;
        for a in 0..4 {
            for b in a + 1..4 {
                sum += if proxy[a] > proxy[b] { gold[a] } else { gold[b] };
                count += 1.0;
            }
        }
        assert!((best_of_n_unbiased(&proxy, &gold, 2) - sum / count).abs() < 1e-12);
        // n = 1 is the pool mean; n = N is the proxy's argmax.
        assert!((best_of_n_unbiased(&proxy, &gold, 1) - 2.5).abs() < 1e-12);
        assert!((best_of_n_unbiased(&proxy, &gold, 4) - 3.0).abs() < 1e-12);
        assert!(best_of_n_unbiased(&proxy, &gold, 5).is_nan());
    }

    #[test]
    fn gao_fits_recover_their_coefficients() {
        for (form, f) in [(GaoForm::BestOfN, (|d: f64| d) as fn(f64) -> f64), (GaoForm::Rl, |d: f64| d.ln())] {
            let pts: Vec<(f64, f64)> = [0.0, 0.5, 1.0, 2.0, 4.0, 6.0, 9.0]
                .iter()
                .map(|&kl: &f64| {
                    let d = kl.sqrt();
                    (kl, 1.0 + if d > 0.0 { d * (0.8 - 0.3 * f(d)) } else { 0.0 })
                })
                .collect();
            let fit = fit_gao(form, &pts);
            assert!((fit.alpha - 0.8).abs() < 1e-9 && (fit.beta - 0.3).abs() < 1e-9, "{fit:?}");
            assert!((fit.r2 - 1.0).abs() < 1e-9, "{fit:?}");
        }
        assert!(fit_gao(GaoForm::BestOfN, &[(0.0, 1.0), (1.0, 2.0)]).beta.is_nan());
    }
}
