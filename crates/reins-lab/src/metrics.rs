//! The evaluation arithmetic of the lab, model-independent: win rates, the proxy-versus-gold
//! gap, reward-model accuracy against noiseless gold, best-of-n KL.

use std::cmp::Ordering;

use crate::annotators::Outcome;
use crate::gold::{compare_scores, GoldReward};

/// Arithmetic mean (0 for an empty slice).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Population standard deviation.
pub fn std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len().max(1) as f64).sqrt()
}

/// Gold win rate of a policy against a reference policy on the same prompts: `policy[i]` and
/// `reference[i]` are the gold scores of their responses to prompt i; a tie counts one half.
pub fn win_rate(policy: &[f64], reference: &[f64]) -> f64 {
    let n = policy.len().min(reference.len());
    if n == 0 {
        return 0.0;
    }
    let wins: f64 = policy
        .iter()
        .zip(reference)
        .map(|(p, r)| match compare_scores(*p, *r) {
            Ordering::Greater => 1.0,
            Ordering::Equal => 0.5,
            Ordering::Less => 0.0,
        })
        .sum();
    wins / n as f64
}

/// KL(best-of-n ‖ base) = log n − (n−1)/n (Stiennon et al., 2020, App. G.3; an upper bound).
pub fn best_of_n_kl(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.ln() - (n - 1.0) / n
}

/// Maps proxy rewards onto the gold scale by the affine map that matches mean and standard
/// deviation on reference samples (the SFT policy's): a reward model's scale is arbitrary.
pub fn calibrate(proxy: &[f64], ref_proxy: &[f64], ref_gold: &[f64]) -> Vec<f64> {
    let (mp, sp) = (mean(ref_proxy), std(ref_proxy).max(1e-12));
    let (mg, sg) = (mean(ref_gold), std(ref_gold));
    proxy.iter().map(|x| mg + (x - mp) / sp * sg).collect()
}

/// Proxy − gold gap: mean calibrated proxy reward minus mean gold score of the same responses.
/// 0 on the reference samples by construction; it grows as a policy exploits its reward model.
pub fn proxy_gold_gap(proxy: &[f64], gold: &[f64], ref_proxy: &[f64], ref_gold: &[f64]) -> f64 {
    mean(&calibrate(proxy, ref_proxy, ref_gold)) - mean(gold)
}

/// Accuracy of a reward model against noiseless gold preferences: pairs `(prompt, a, b)` with
/// the model's rewards `rm_a[i]`, `rm_b[i]`. Pairs gold ties are left out; a reward-model tie
/// counts one half. Returns (accuracy, pairs counted).
pub fn gold_pair_accuracy(
    gold: &GoldReward,
    pairs: &[(String, String, String)],
    rm_a: &[f64],
    rm_b: &[f64],
) -> (f64, usize) {
    let wanted = pairs.iter().map(|(p, a, b)| Some(gold.gold_prefers(p, a, b)).filter(|o| o.is_ne()));
    order_accuracy(wanted, rm_a, rm_b)
}

/// Accuracy of reward-model scores against annotators' labels of the same pairs: what a
/// practitioner without gold would measure. Ties and skips are not counted; an RM tie counts
/// half. Returns (accuracy, labels counted).
pub fn label_pair_accuracy(labels: &[Outcome], rm_a: &[f64], rm_b: &[f64]) -> (f64, usize) {
    let wanted = labels.iter().map(|l| match l {
        Outcome::A => Some(Ordering::Greater),
        Outcome::B => Some(Ordering::Less),
        Outcome::Tie | Outcome::Skip => None,
    });
    order_accuracy(wanted, rm_a, rm_b)
}

/// How often `rm_a[i]` vs `rm_b[i]` orders as `wanted[i]` (`None`: not counted); an RM tie
/// counts one half. Returns (accuracy, pairs counted).
fn order_accuracy(wanted: impl Iterator<Item = Option<Ordering>>, rm_a: &[f64], rm_b: &[f64]) -> (f64, usize) {
    let mut right = 0.0;
    let mut n = 0;
    for ((want, ra), rb) in wanted.zip(rm_a).zip(rm_b) {
        let Some(want) = want else { continue };
        n += 1;
        right += match ra.total_cmp(rb) {
            Ordering::Equal => 0.5,
            o if o == want => 1.0,
            _ => 0.0,
        };
    }
    (right / n.max(1) as f64, n)
}

/// How far gold reward falls from its peak by the end of an optimization curve (points in
/// order of optimization): `max(gold) − gold(last)`, 0 when the last point is the peak.
/// Over-optimization shows as a positive value (Gao et al., arXiv:2210.10760).
pub fn gold_collapse(gold_along_curve: &[f64]) -> f64 {
    match gold_along_curve.last() {
        Some(&last) => gold_along_curve.iter().copied().fold(f64::NEG_INFINITY, f64::max) - last,
        None => 0.0,
    }
}

/// Gold collapse below this is noise: the verdict's and the report target's tolerance.
pub const COLLAPSE_TOLERANCE: f64 = 0.05;

/// One sentence comparing the gold collapse ([`gold_collapse`]) of a policy optimized against
/// the single reward model, `single`, with one optimized against the ensemble, `ensemble`. Says
/// plainly when neither collapses, so the ensemble's benefit is not shown.
pub fn collapse_verdict(what: &str, single: f64, ensemble: f64) -> String {
    let (s, e, tol) = (single, ensemble, COLLAPSE_TOLERANCE);
    if s < tol && e < tol {
        format!(
            "{what}: gold reward did not fall from its peak under either reward model (drop {s:.3} single, \
             {e:.3} ensemble), so this run does not show the ensemble resisting over-optimization at this scale."
        )
    } else if e + tol <= s {
        format!("{what}: the ensemble's gold reward fell less from its peak than the single RM's ({e:.3} vs {s:.3}).")
    } else {
        format!(
            "{what}: the ensemble's gold reward did not fall less from its peak than the single RM's \
             ({e:.3} vs {s:.3})."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_behave() {
        assert_eq!(win_rate(&[1.0, 2.0, 3.0, 0.0], &[0.0, 2.0, 4.0, -1.0]), 0.625);
        assert_eq!(best_of_n_kl(1), 0.0);
        assert!((best_of_n_kl(16) - (16f64.ln() - 15.0 / 16.0)).abs() < 1e-12);
        let rp = [10.0, 20.0, 30.0];
        let rg = [0.0, 1.0, 2.0];
        assert!(proxy_gold_gap(&rp, &rg, &rp, &rg).abs() < 1e-12);
        assert!((proxy_gold_gap(&[40.0], &[2.0], &rp, &rg) - 1.0).abs() < 1e-12);
        let g = GoldReward::default();
        let p = "What is 7 + 5?".to_string();
        let pairs = vec![
            (p.clone(), "It is 12.".to_string(), "It is 13.".to_string()),
            (p.clone(), "It is 13.".to_string(), "It is 12.".to_string()),
            (p.clone(), "It is 12.".to_string(), "It is 12.".to_string()),
        ];
        assert_eq!(gold_pair_accuracy(&g, &pairs, &[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]), (0.5, 2));
        let labels = [Outcome::A, Outcome::B, Outcome::Tie, Outcome::Skip, Outcome::A];
        let acc = label_pair_accuracy(&labels, &[1.0, 1.0, 5.0, 5.0, 0.0], &[0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(acc, (0.5, 3));
    }

    #[test]
    fn collapse_is_the_fall_from_the_peak() {
        assert_eq!(gold_collapse(&[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(gold_collapse(&[1.0, 3.0, 2.5]), 0.5);
        assert_eq!(gold_collapse(&[]), 0.0);
        let verdict =
            |single: &[f64], ensemble: &[f64]| collapse_verdict("GRPO", gold_collapse(single), gold_collapse(ensemble));
        let v = verdict(&[1.0, 3.0, 2.0], &[1.0, 2.0, 2.0]);
        assert!(v.contains("fell less") && v.contains("0.000 vs 1.000"), "{v}");
        assert!(verdict(&[1.0, 2.0], &[1.0, 2.0]).contains("does not show"));
        assert!(verdict(&[1.0, 2.0], &[2.0, 1.0]).contains("did not fall less"));
    }
}
