//! Dense symmetric positive-definite `D × D` matrices, row-major `Vec<f64>`: the precision and
//! covariance of the score head. `D` is a model's hidden size, so `O(D³)` Cholesky once per
//! fit is cheap next to the forward passes that produce the features.

use crate::{Result, TrainError};

/// The lower Cholesky factor `L` of `a = L Lᵀ` (`n × n`), or an error when `a` is not positive
/// definite (a prior precision > 0 always makes the posterior precision so).
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    if a.len() != n * n {
        return Err(TrainError::Input(format!("cholesky: expected a {n}×{n} matrix, got {} entries", a.len())));
    }
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let v = a[i * n + i] - s;
                if !(v > 0.0 && v.is_finite()) {
                    return Err(TrainError::Input(format!(
                        "the posterior precision is not positive definite (pivot {i} is {v}); raise \
                         `prior_precision` above 0"
                    )));
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// `a⁻¹` of a symmetric positive-definite `a` through its Cholesky factor.
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let l = cholesky(a, n)?;
    // Columns of L⁻¹ by forward substitution, then a⁻¹ = L⁻ᵀ L⁻¹.
    let mut linv = vec![0.0; n * n];
    for c in 0..n {
        for i in c..n {
            let s: f64 = (c..i).map(|k| l[i * n + k] * linv[k * n + c]).sum();
            let e = if i == c { 1.0 } else { 0.0 };
            linv[i * n + c] = (e - s) / l[i * n + i];
        }
    }
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = (i.max(j)..n).map(|k| linv[k * n + i] * linv[k * n + j]).sum();
            inv[i * n + j] = v;
            inv[j * n + i] = v;
        }
    }
    Ok(inv)
}

/// `gᵀ M g` for an `n × n` `m`.
pub fn quad_form(m: &[f64], g: &[f64]) -> f64 {
    let n = g.len();
    (0..n).map(|i| g[i] * (0..n).map(|j| m[i * n + j] * g[j]).sum::<f64>()).sum()
}

/// `M g`.
pub fn mat_vec(m: &[f64], g: &[f64]) -> Vec<f64> {
    let n = g.len();
    (0..n).map(|i| (0..n).map(|j| m[i * n + j] * g[j]).sum()).collect()
}

/// `Σ_i w_i z_i z_iᵀ + τ I`: a weighted Gram matrix plus a ridge.
pub fn weighted_gram(z: &[Vec<f64>], w: &[f64], ridge: f64, n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for (zi, &wi) in z.iter().zip(w) {
        for r in 0..n {
            let s = wi * zi[r];
            if s == 0.0 {
                continue;
            }
            for c in 0..=r {
                a[r * n + c] += s * zi[c];
            }
        }
    }
    for r in 0..n {
        a[r * n + r] += ridge;
        for c in 0..r {
            a[c * n + r] = a[r * n + c];
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_a_hand_worked_2x2_and_a_3x3() {
        // [[4, 2], [2, 3]]⁻¹ = [[3, −2], [−2, 4]] / 8
        let inv = spd_inverse(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        for (a, b) in inv.iter().zip([0.375, -0.25, -0.25, 0.5]) {
            assert!((a - b).abs() < 1e-15);
        }
        let a = [6.0, 2.0, 1.0, 2.0, 5.0, 2.0, 1.0, 2.0, 4.0];
        let inv = spd_inverse(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-14);
            }
        }
        assert!((quad_form(&a, &[1.0, -1.0, 0.0]) - 7.0).abs() < 1e-15);
        let err = cholesky(&[1.0, 2.0, 2.0, 1.0], 2).unwrap_err().to_string();
        assert!(err.contains("prior_precision"), "{err}");
        let g = weighted_gram(&[vec![1.0, 2.0]], &[0.5], 1.0, 2);
        assert_eq!(g, vec![1.5, 1.0, 1.0, 3.0]);
    }
}
