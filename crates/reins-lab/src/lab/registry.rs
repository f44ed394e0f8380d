//! Every registered experiment, cheapest first. A later issue adds its experiment here, with its
//! verdict rule, before its first full run.

use super::experiments;
use super::Experiment;

/// All experiments, in the order `reins lab run all` runs them.
pub fn registry() -> Vec<Experiment> {
    vec![
        experiments::preference_strength_finds_flips::experiment(),
        experiments::denoised_rm_beats_bt::experiment(),
        experiments::contrastive_rm_generalises_ood::experiment(),
        experiments::swav_rm_generalises_ood::experiment(),
        experiments::metarm_tracks_the_shifted_policy::experiment(),
        experiments::consistency_tricks_raise_rm_consistency::experiment(),
        experiments::feature_rm_beats_bt_at_few_labels::experiment(),
        experiments::feature_residual_beats_features::experiment(),
        experiments::ensembles_beat_a_single_rm::experiment(),
        experiments::reward_overoptimization::experiment(),
        experiments::pessimism_beats_plain_best_of_n::experiment(),
        experiments::active_labels_beat_random_labels::experiment(),
        experiments::principle_rm_matches_bt::experiment(),
        experiments::wald_intervals_cover_reward_differences::experiment(),
        experiments::annotator_rationality_beats_pooled_bt::experiment(),
        experiments::lipo_beats_dpo_on_lists::experiment(),
        experiments::cpl_matches_dpo_without_a_reference::experiment(),
        experiments::iterative_dpo_beats_offline::experiment(),
        experiments::inpo_beats_iterative_dpo::experiment(),
        experiments::nash_md_beats_rlhf::experiment(),
        experiments::nash_md_in_a_cyclic_world::experiment(),
        experiments::osp_soft_labels_beat_hard_labels::experiment(),
        experiments::t_reg_beats_dpo::experiment(),
        experiments::pit_keeps_improving::experiment(),
        experiments::pf_ppo_beats_ppo::experiment(),
        experiments::ppo_max_stays_stable::experiment(),
        experiments::ma_ppo_beats_ppo::experiment(),
        experiments::fine_grained_beats_holistic::experiment(),
        experiments::fine_grained_penalties_beat_holistic::experiment(),
        experiments::seq2seq_rm_beats_scalar_rm::experiment(),
        experiments::quickstart::experiment(),
    ]
}

/// The experiment with this id, or an error listing the ids there are.
pub fn find(id: &str) -> Result<Experiment, crate::LabError> {
    let all = registry();
    let ids: Vec<&str> = all.iter().map(|e| e.id).collect();
    let known = ids.join(", ");
    all.into_iter().find(|e| e.id == id).ok_or_else(|| {
        crate::LabError::config(
            "experiment id",
            format!("`{id}` is not registered; known: {known} (see `reins lab list`)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_registration_is_complete() {
        let all = registry();
        let mut ids: Vec<&str> = all.iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "duplicate experiment id");
        for e in &all {
            assert!(!e.claim.is_empty() && !e.metric.is_empty() && !e.paper.title.is_empty(), "{}", e.id);
            assert!(e.paper.arxiv.contains('.'), "{}: arXiv id {}", e.id, e.paper.arxiv);
            for reduced in [true, false] {
                let cfg = (e.config)(reduced);
                cfg.lab.validate().unwrap();
                cfg.knobs.validate().unwrap();
            }
        }
        assert!(find("no-such").err().is_some_and(|e| e.to_string().contains("reins lab list")));
    }
}
