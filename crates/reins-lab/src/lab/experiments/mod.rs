//! One file per registered experiment, named for its claim; each reads as its design.

pub mod active_labels_beat_random_labels;
pub mod annotator_rationality_beats_pooled_bt;
pub mod consistency_tricks_raise_rm_consistency;
pub mod contrastive_rm_generalises_ood;
pub mod cpl_matches_dpo_without_a_reference;
pub mod denoised_rm_beats_bt;
pub mod ensembles_beat_a_single_rm;
pub mod feature_residual_beats_features;
pub mod feature_rm_beats_bt_at_few_labels;
pub mod fine_grained_beats_holistic;
pub mod fine_grained_penalties_beat_holistic;
pub mod inpo_beats_iterative_dpo;
pub mod iterative_dpo_beats_offline;
pub mod lipo_beats_dpo_on_lists;
pub mod ma_ppo_beats_ppo;
pub mod metarm_tracks_the_shifted_policy;
pub mod nash_md_beats_rlhf;
pub mod nash_md_in_a_cyclic_world;
pub mod osp_soft_labels_beat_hard_labels;
pub mod pessimism_beats_plain_best_of_n;
pub mod pf_ppo_beats_ppo;
pub mod pit_keeps_improving;
mod ppo_arms;
pub mod ppo_max_stays_stable;
pub mod preference_strength_finds_flips;
pub mod principle_rm_matches_bt;
pub mod quickstart;
pub mod reward_overoptimization;
pub mod seq2seq_rm_beats_scalar_rm;
pub mod swav_rm_generalises_ood;
pub mod t_reg_beats_dpo;
mod token_text;
pub mod wald_intervals_cover_reward_differences;

use crate::lab::{Knobs, RunConfig};
use crate::LabConfig;

/// The quickstart's settings (full or reduced) with `knobs`: experiments share its world,
/// annotators and cached base model unless they say otherwise.
pub(crate) fn quickstart_settings(reduced: bool, knobs: Knobs) -> RunConfig {
    RunConfig { lab: if reduced { LabConfig::reduced() } else { LabConfig::default() }, knobs }
}

/// Aggregations of an ensemble's member scores `[M][N]` (Coste et al., arXiv:2310.02743, §3):
/// member 0 alone, the mean, the worst case (min), and the uncertainty-weighted mean − λ·var.
pub(crate) fn aggregations(members: &[Vec<f64>], lambda: f64) -> Vec<(&'static str, Vec<f64>)> {
    let n = members.first().map(Vec::len).unwrap_or(0);
    let col = |j: usize| members.iter().map(|m| m[j]).collect::<Vec<f64>>();
    let by = |f: &dyn Fn(&[f64]) -> f64| (0..n).map(|j| f(&col(j))).collect::<Vec<f64>>();
    vec![
        ("single RM", members.first().cloned().unwrap_or_default()),
        ("ensemble mean", by(&|xs| crate::metrics::mean(xs))),
        ("ensemble worst case (min)", by(&|xs| xs.iter().copied().fold(f64::INFINITY, f64::min))),
        ("ensemble mean − λ·var", by(&|xs| crate::metrics::mean(xs) - lambda * crate::metrics::std(xs).powi(2))),
    ]
}

/// A linear-in-factors reward model's features of response pairs written by the world: each
/// response's six gold factor scores ([`crate::Factor::ALL`] order), so that the gold reward is
/// exactly `θ*ᵀφ` with `θ*` the gold weights ([`factor_weights`]). Returns the differences
/// `φ(a) − φ(b)` of each `(prompt, a, b)`.
pub(crate) fn factor_differences(gold: &crate::GoldReward, pairs: &[(String, String, String)]) -> Vec<Vec<f64>> {
    let phi = |p: &str, r: &str| {
        let parsed = gold.parse(p, r);
        crate::Factor::ALL.iter().map(|&f| parsed.factor(f)).collect::<Vec<f64>>()
    };
    pairs.iter().map(|(p, a, b)| phi(p, a).iter().zip(phi(p, b)).map(|(x, y)| x - y).collect()).collect()
}

/// The gold weights `θ*` in [`crate::Factor::ALL`] order.
pub(crate) fn factor_weights(gold: &crate::GoldReward) -> Vec<f64> {
    crate::Factor::ALL.iter().map(|f| f.weight(&gold.weights)).collect()
}

/// The factors that differ within at least one pair of `diffs`: a factor the world never
/// varies carries no information and would leave the Fisher information singular.
pub(crate) fn varying_factors(diffs: &[Vec<f64>]) -> Vec<usize> {
    let dim = diffs.first().map_or(0, Vec::len);
    (0..dim).filter(|&j| diffs.iter().any(|z| z[j] != 0.0)).collect()
}

/// `z` restricted to the coordinates `keep`.
pub(crate) fn restrict(z: &[f64], keep: &[usize]) -> Vec<f64> {
    keep.iter().map(|&j| z[j]).collect()
}

/// Pairs of consecutive answers to each prompt (answers 0 and 1, 2 and 3, …) ordered by gold,
/// `(prompt, better, worse)`; pairs gold ties are left out.
pub(crate) fn gold_ordered_pairs(
    gold: &crate::GoldReward,
    prompts: &[crate::Prompt],
    answers: &[Vec<String>],
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (p, ys) in prompts.iter().zip(answers) {
        for ab in ys.chunks_exact(2) {
            let (a, b) = (&ab[0], &ab[1]);
            match crate::gold::compare_scores(gold.score(&p.text, a), gold.score(&p.text, b)) {
                std::cmp::Ordering::Greater => out.push((p.text.clone(), a.clone(), b.clone())),
                std::cmp::Ordering::Less => out.push((p.text.clone(), b.clone(), a.clone())),
                std::cmp::Ordering::Equal => {}
            }
        }
    }
    out
}

/// The reward-model experiments' held-out pairs: two SFT samples for each of
/// `reward_model.n_eval_pairs` test prompts (salt 2), as `(prompt, a, b)` and the two sides as
/// `(prompt, answer)` items for scoring.
pub(crate) type HeldOutPairs = (Vec<(String, String, String)>, Vec<(String, String)>, Vec<(String, String)>);

pub(crate) fn sft_test_pairs(
    s: &mut crate::experiment::Session,
    base: &crate::experiment::stages::Base,
) -> Result<HeldOutPairs, crate::LabError> {
    let held = s.lab().world.prompts(crate::Split::Test, s.cfg().reward_model.n_eval_pairs);
    s.announce("test pairs");
    let samples = s.sample_eval(&base.sft, &held, 2, 2)?;
    let pairs: Vec<(String, String, String)> =
        held.iter().zip(&samples).map(|(p, x)| (p.text.clone(), x[0].clone(), x[1].clone())).collect();
    let a = pairs.iter().map(|(p, x, _)| (p.clone(), x.clone())).collect();
    let b = pairs.iter().map(|(p, _, y)| (p.clone(), y.clone())).collect();
    Ok((pairs, a, b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gold_orders_consecutive_answers_and_leaves_ties_out() {
        let w = crate::World::new(3, &crate::WorldConfig::default()).unwrap();
        let p = w.prompts(crate::Split::Test, 1);
        let gold = crate::GoldReward::default();
        let (good, bad) = {
            let mut rng = w.rng("gold-pairs");
            let f = crate::Factors {
                relevant: true,
                correct: true,
                politeness: crate::world::Politeness::Neutral,
                polite_sentences: 0,
                padding: 0,
                repeats: 0,
            };
            let good = w.response_with(&p[0], &f, &mut rng).text;
            let bad = w.response_with(&p[0], &crate::Factors { padding: 2, ..f }, &mut rng).text;
            (good, bad)
        };
        let answers = vec![vec![bad.clone(), good.clone(), good.clone(), good.clone(), bad.clone()]];
        let pairs = super::gold_ordered_pairs(&gold, &p, &answers);
        assert_eq!(pairs, vec![(p[0].text.clone(), good, bad)], "the tie and the odd answer are left out");
    }

    #[test]
    fn aggregations_of_two_members() {
        let a = super::aggregations(&[vec![1.0, 0.0], vec![3.0, 0.0]], 0.5);
        let get = |n: &str| a.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get("single RM"), vec![1.0, 0.0]);
        assert_eq!(get("ensemble mean"), vec![2.0, 0.0]);
        assert_eq!(get("ensemble worst case (min)"), vec![1.0, 0.0]);
        // population variance of {1, 3} is 1.
        assert_eq!(get("ensemble mean − λ·var"), vec![1.5, 0.0]);
    }
}
