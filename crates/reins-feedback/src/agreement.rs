//! Inter-annotator agreement: Krippendorff's alpha (nominal and interval) and Fleiss' kappa.
use std::collections::{BTreeMap, BTreeSet};

/// Krippendorff's alpha over units (items), each a list of the values the coders gave
/// (missing values simply absent). Units with fewer than two values are not pairable and
/// are dropped. `delta2` is the squared difference metric.
///
/// alpha = 1 − D_o / D_e with the coincidence matrix o_ck = Σ_u Σ_{i≠j} [c,k] / (m_u − 1)
/// (Krippendorff 2011, "Computing Krippendorff's alpha-reliability", eq. for o_ck).
fn alpha_with(units: &[Vec<f64>], delta2: impl Fn(f64, f64) -> f64) -> Option<f64> {
    let units: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let n: f64 = units.iter().map(|u| u.len() as f64).sum();
    if n <= 1.0 {
        return None;
    }
    let mut d_o = 0.0;
    for u in &units {
        let m = u.len() as f64;
        let mut s = 0.0;
        for (i, a) in u.iter().enumerate() {
            for (j, b) in u.iter().enumerate() {
                if i != j {
                    s += delta2(*a, *b);
                }
            }
        }
        d_o += s / (m - 1.0);
    }
    d_o /= n;
    let all: Vec<f64> = units.iter().flat_map(|u| u.iter().copied()).collect();
    let mut d_e = 0.0;
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            if i != j {
                d_e += delta2(*a, *b);
            }
        }
    }
    d_e /= n * (n - 1.0);
    if d_e == 0.0 {
        return Some(1.0);
    }
    Some(1.0 - d_o / d_e)
}

/// Krippendorff's alpha for nominal labels (any hashable label mapped to a category).
pub fn krippendorff_alpha_nominal<T: Ord + Clone>(units: &[Vec<T>]) -> Option<f64> {
    let cats: BTreeSet<T> = units.iter().flatten().cloned().collect();
    let index: BTreeMap<T, f64> = cats.into_iter().enumerate().map(|(i, c)| (c, i as f64)).collect();
    let coded: Vec<Vec<f64>> = units.iter().map(|u| u.iter().map(|v| index[v]).collect()).collect();
    alpha_with(&coded, |a, b| if a == b { 0.0 } else { 1.0 })
}

/// Krippendorff's alpha for interval values (e.g. Likert ratings).
pub fn krippendorff_alpha_interval(units: &[Vec<f64>]) -> Option<f64> {
    alpha_with(units, |a, b| (a - b) * (a - b))
}

/// Fleiss' kappa from a subjects × categories count table. Subjects may have different
/// numbers of raters (≥ 2); with equal counts this is Fleiss (1971) exactly.
pub fn fleiss_kappa(table: &[Vec<usize>]) -> Option<f64> {
    let rows: Vec<&Vec<usize>> = table.iter().filter(|r| r.iter().sum::<usize>() >= 2).collect();
    if rows.is_empty() {
        return None;
    }
    let k = rows[0].len();
    let total: f64 = rows.iter().map(|r| r.iter().sum::<usize>() as f64).sum();
    let p_j: Vec<f64> = (0..k).map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / total).collect();
    let p_bar = rows
        .iter()
        .map(|r| {
            let n = r.iter().sum::<usize>() as f64;
            r.iter().map(|&c| (c as f64) * (c as f64 - 1.0)).sum::<f64>() / (n * (n - 1.0))
        })
        .sum::<f64>()
        / rows.len() as f64;
    let p_e: f64 = p_j.iter().map(|p| p * p).sum();
    if (1.0 - p_e).abs() < 1e-12 {
        return Some(1.0);
    }
    Some((p_bar - p_e) / (1.0 - p_e))
}

/// Count table for Fleiss' kappa from per-item label lists.
pub fn count_table<T: Ord + Clone>(units: &[Vec<T>]) -> Vec<Vec<usize>> {
    let cats: Vec<T> = units.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    units.iter().map(|u| cats.iter().map(|c| u.iter().filter(|v| *v == c).count()).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C:
    /// 4 observers × 12 units with missing values; nominal α = 0.743, interval α = 0.849.
    fn krippendorff_example() -> Vec<Vec<f64>> {
        let nan = f64::NAN;
        let a = [1., 2., 3., 3., 2., 1., 4., 1., 2., nan, nan, nan];
        let b = [1., 2., 3., 3., 2., 2., 4., 1., 2., 5., nan, 3.];
        let c = [nan, 3., 3., 3., 2., 3., 4., 2., 2., 5., 1., nan];
        let d = [1., 2., 3., 3., 2., 4., 4., 1., 2., 5., 1., nan];
        (0..12).map(|u| [a[u], b[u], c[u], d[u]].into_iter().filter(|v| !v.is_nan()).collect()).collect()
    }

    #[test]
    fn krippendorff_textbook_values() {
        let units = krippendorff_example();
        let nominal: Vec<Vec<i64>> = units.iter().map(|u| u.iter().map(|v| *v as i64).collect()).collect();
        let a = krippendorff_alpha_nominal(&nominal).unwrap();
        assert!((a - 0.743).abs() < 5e-4, "nominal alpha {a}");
        let a = krippendorff_alpha_interval(&units).unwrap();
        assert!((a - 0.849).abs() < 5e-4, "interval alpha {a}");
    }

    /// Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, κ = 0.210.
    #[test]
    fn fleiss_textbook_value() {
        let t = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        let k = fleiss_kappa(&t).unwrap();
        assert!((k - 0.210).abs() < 5e-4, "kappa {k}");
    }

    #[test]
    fn perfect_agreement_is_one() {
        let units = vec![vec!["a", "a"], vec!["b", "b", "b"]];
        assert_eq!(krippendorff_alpha_nominal(&units), Some(1.0));
        assert!((fleiss_kappa(&count_table(&units)).unwrap() - 1.0).abs() < 1e-12);
    }
}
