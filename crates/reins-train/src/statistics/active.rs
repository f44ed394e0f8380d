//! Uncertainty-driven selection of the next pairs to label (Liu, Shi & Sun, arXiv:2604.02507,
//! active learning and experimental design): from an unlabelled pool of pairs, each a
//! feature difference `g = φ(a) − φ(b)`, pick the `k` whose label would teach the head most.
//!
//! - [`Acquisition::Variance`]: the `k` largest predictive variances `gᵀΣg` of the reward
//!   difference (uncertainty sampling).
//! - [`Acquisition::DOptimal`]: greedy D-optimal design: each pick maximises the information
//!   gain `log det(Σ⁻¹ + c g gᵀ) − log det Σ⁻¹ = log(1 + c·gᵀΣg)`, `c` the link's Fisher
//!   weight at the predicted difference, and then updates `Σ` by Sherman–Morrison as if the
//!   pair were labelled, so a batch does not spend labels on near-duplicates.

use serde::{Deserialize, Serialize};

use super::laplace::HeadPosterior;
use crate::{Result, TrainError};

/// How a pool pair's value is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acquisition {
    /// Largest `Var(r(a) − r(b)) = gᵀΣg`. Default.
    #[default]
    Variance,
    /// Greedy D-optimal: largest `log(1 + c gᵀΣg)` with `Σ` updated after each pick.
    DOptimal,
}

impl Acquisition {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "variance" => Ok(Acquisition::Variance),
            "d_optimal" => Ok(Acquisition::DOptimal),
            other => Err(TrainError::Config(format!("acquisition `{other}`: use variance or d_optimal"))),
        }
    }
}

/// One selected pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selected {
    /// Position in the pool.
    pub index: usize,
    /// Predicted `r(a) − r(b)`.
    pub mean: f64,
    /// Its posterior standard deviation before any pick (`√(gᵀΣg)`).
    pub std: f64,
    /// The acquisition value when picked.
    pub score: f64,
}

/// The `k` pool pairs (fewer when the pool is smaller) with the highest acquisition, in the
/// order picked (best first).
pub fn select_pairs(post: &HeadPosterior, pool: &[Vec<f64>], k: usize, how: Acquisition) -> Result<Vec<Selected>> {
    let zeros = vec![0.0; post.dim];
    let diffs = pool.iter().map(|g| post.difference(g, &zeros)).collect::<Result<Vec<_>>>()?;
    let mut var: Vec<f64> = diffs.iter().map(|d| d.std * d.std).collect();
    let weight: Vec<f64> = match how {
        Acquisition::Variance => vec![1.0; pool.len()],
        Acquisition::DOptimal => diffs.iter().map(|d| post.link.fisher(d.mean)).collect(),
    };
    let mut taken = vec![false; pool.len()];
    // Rank-one updates so far, `(u_t, c_t / (1 + c_t g_tᵀu_t))` with `u_t = Σ_t g_t`:
    // `Σ_{t+1} = Σ_t − coef_t u_t u_tᵀ` (Sherman–Morrison), so `Σ_t g` needs `Σ_0 g` once and
    // one dot product per earlier pick, never a `D × D` update.
    let mut updates: Vec<(Vec<f64>, f64)> = Vec::new();
    let mut out = Vec::with_capacity(k.min(pool.len()));
    while out.len() < k.min(pool.len()) {
        let score = |i: usize| match how {
            Acquisition::Variance => var[i],
            Acquisition::DOptimal => (weight[i] * var[i]).ln_1p(),
        };
        let Some(best) = (0..pool.len()).filter(|&i| !taken[i]).reduce(|b, i| if score(i) > score(b) { i } else { b })
        else {
            break;
        };
        taken[best] = true;
        out.push(Selected { index: best, mean: diffs[best].mean, std: diffs[best].std, score: score(best) });
        if how == Acquisition::DOptimal {
            let g = &pool[best];
            let mut u = post.covariance_times(g);
            for (ui, coef) in &updates {
                let proj = dot(ui, g);
                for (x, y) in u.iter_mut().zip(ui) {
                    *x -= coef * y * proj;
                }
            }
            // var[best] is gᵀΣ_t g = gᵀu; every candidate's variance drops by coef·(g_iᵀu)².
            let coef = weight[best] / (1.0 + weight[best] * var[best]);
            for (i, gi) in pool.iter().enumerate() {
                let gu = dot(gi, &u);
                var[i] = (var[i] - coef * gu * gu).max(0.0);
            }
            updates.push((u, coef));
        }
    }
    Ok(out)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::{Curvature, Link};

    fn identity_posterior() -> HeadPosterior {
        HeadPosterior {
            link: Link::BradleyTerry,
            curvature: Curvature::Hessian,
            prior_precision: 1.0,
            num_pairs: 0,
            dim: 2,
            weight: vec![0.0, 0.0],
            covariance: vec![1.0, 0.0, 0.0, 1.0],
        }
    }

    /// Σ = I, head 0 (every c = ¼): pool g = (1, 0), (1, 0), (0, 0.9), (0.1, 0.1).
    /// Variance picks the two copies (variance 1 each). D-optimal picks one copy
    /// (gain ln 1.25), after which the copy's variance is 1 − ¼/1.25 = 0.8 (gain ln 1.2) and
    /// (0, 0.9)'s is still 0.81 (gain ln 1.2025), so it picks (0, 0.9) second.
    #[test]
    fn hand_worked_picks() -> Result<()> {
        let post = identity_posterior();
        let pool = vec![vec![1.0, 0.0], vec![1.0, 0.0], vec![0.0, 0.9], vec![0.1, 0.1]];
        let v = select_pairs(&post, &pool, 2, Acquisition::Variance)?;
        assert_eq!(v.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(v[0].score, 1.0);
        let d = select_pairs(&post, &pool, 3, Acquisition::DOptimal)?;
        assert_eq!(d.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!((d[0].score - 1.25f64.ln()).abs() < 1e-15);
        assert!((d[1].score - 1.2025f64.ln()).abs() < 1e-15);
        // After both: the copy's variance is 0.8 (unchanged by the orthogonal pick).
        assert!((d[2].score - 1.2f64.ln()).abs() < 1e-15);
        // k larger than the pool returns the pool; a wrong size is an error.
        assert_eq!(select_pairs(&post, &pool, 10, Acquisition::Variance)?.len(), 4);
        assert!(select_pairs(&post, &[vec![1.0]], 1, Acquisition::Variance).is_err());
        assert!(Acquisition::parse("dopt").unwrap_err().to_string().contains("d_optimal"));
        Ok(())
    }

    /// The greedy update equals refitting: after picking g with weight c, the variance of
    /// every candidate equals `hᵀ (Σ⁻¹ + c g gᵀ)⁻¹ h` computed directly.
    #[test]
    fn sherman_morrison_update_matches_a_direct_inverse() -> Result<()> {
        let mut post = identity_posterior();
        post.covariance = vec![2.0, 0.5, 0.5, 1.0];
        post.weight = vec![0.3, -0.2];
        let pool = vec![vec![1.0, 2.0], vec![-0.5, 1.0], vec![2.0, 0.1]];
        let picks = select_pairs(&post, &pool, 3, Acquisition::DOptimal)?;
        // Direct: precision after the first two picks, then the third's variance.
        let prec = crate::statistics::linalg::spd_inverse(&post.covariance, 2)?;
        let mut prec = prec;
        for p in &picks[..2] {
            let g = &pool[p.index];
            let c = Link::BradleyTerry.fisher(p.mean);
            for r in 0..2 {
                for s in 0..2 {
                    prec[r * 2 + s] += c * g[r] * g[s];
                }
            }
        }
        let cov = crate::statistics::linalg::spd_inverse(&prec, 2)?;
        let last = picks[2];
        let v = crate::statistics::linalg::quad_form(&cov, &pool[last.index]);
        let c = Link::BradleyTerry.fisher(last.mean);
        assert!((last.score - (c * v).ln_1p()).abs() < 1e-12, "{} vs {}", last.score, (c * v).ln_1p());
        Ok(())
    }
}
