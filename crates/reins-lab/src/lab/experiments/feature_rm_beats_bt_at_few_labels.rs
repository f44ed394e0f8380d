//! E5 (Nath et al., "Leveraging Domain Knowledge for Efficient Reward Modelling in RLHF: A
//! Case-Study in E-Commerce Opinion Summarization", arXiv:2402.15473): a reward model that is a
//! Bradley–Terry combination of a few domain-knowledge features needs far fewer preference
//! labels than a neural reward model (paper: about 21× fewer).
//!
//! Design: the annotators label pairs of SFT samples on train prompts, as in the quickstart.
//! For each budget in `knobs.label_budgets`, the first that many labelled pairs train a feature
//! RM ([`reins_train::rewards::features`]: L2 1, features below) and a neural RM (the lab's
//! reward-model stage, its usual steps). Both are scored by accuracy against noiseless gold on
//! pairs of SFT samples for test prompts. The rule reads feature − neural at
//! `knobs.rule_budget` (200 labels); the other budgets are reported as a label-efficiency curve.
//!
//! The features are the lab's "domain knowledge" as imperfect detectors of the world's hidden
//! factors, written here as an experimenter would (not read from the gold code): answer length
//! in words, polite and rude word counts, final punctuation, repeated word pairs, and word
//! overlap with the prompt (a relevance proxy). Nothing detects correctness.

use reins_train::rewards::features::{FeatureConfig, FeatureModel, FeatureSpec};

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{metrics, LabError, Split};

const FEATURE: &str = "feature RM";
const NEURAL: &str = "neural RM";

pub fn experiment() -> Experiment {
    Experiment {
        id: "feature_rm_beats_bt_at_few_labels",
        claim: "At 200 labels, a Bradley–Terry reward model over a few domain-knowledge features ranks held-out pairs by gold more accurately than a neural reward model trained on the same labels.",
        paper: Paper {
            title: "Leveraging Domain Knowledge for Efficient Reward Modelling in RLHF: A Case-Study in E-Commerce Opinion Summarization",
            arxiv: "2402.15473",
        },
        metric: "accuracy against noiseless gold on pairs of SFT samples for test prompts",
        split: "test",
        rule: Rule::PairedGap { better: FEATURE, baseline: NEURAL, direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { label_budgets: vec![10, 30], rule_budget: 30, ..Knobs::default() }
            } else {
                Knobs::default()
            };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

/// The lab's domain knowledge as feature extractors.
pub(crate) fn lab_features() -> FeatureConfig {
    let regex = |name: &str, pattern: &str| FeatureSpec::RegexCount { name: name.into(), pattern: pattern.into() };
    FeatureConfig {
        l2: 1.0,
        nonnegative: false,
        feature: vec![
            FeatureSpec::Words,
            regex("polite", r"(?i)\b(sure|of course|happy|glad|hope|thanks?|please|welcome|pleasure)\b"),
            regex("rude", r"(?i)\b(ugh|silly|stop|whatever|stupid|annoying|obviously)\b"),
            FeatureSpec::RegexMatch { name: "ends_with_punctuation".into(), pattern: r"[.!?]\s*$".into() },
            FeatureSpec::RepeatedNgrams { n: 2 },
            FeatureSpec::PromptOverlap,
        ],
    }
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let records = labelled.records;
    // Held-out pairs of SFT samples for test prompts, judged by noiseless gold.
    let (pairs, a, b) = super::sft_test_pairs(s, base)?;
    let features = lab_features();
    let mut extras = vec![("train pairs available".to_string(), records.len() as f64)];
    let mut arms = Vec::new();
    for &budget in &knobs.label_budgets {
        let n = budget.min(records.len());
        let train = &records[..n];
        let texts: Vec<(String, String, String)> =
            train.iter().map(|r| (r.prompt.clone(), r.chosen.clone(), r.rejected.clone())).collect();
        let fm = FeatureModel::fit(&features, &texts).map_err(stage("feature reward model"))?;
        let (fa, fb) = (fm.score_texts(&a).map_err(stage("features"))?, fm.score_texts(&b).map_err(stage("features"))?);
        let feature_acc = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &fa, &fb).0;
        s.announce(&format!("neural RM on {n} labels"));
        let rm = s.reward_models(base, train, 1)?;
        let (sa, sb) = (s.member_scores(&rm, &a)?, s.member_scores(&rm, &b)?);
        let neural_acc = metrics::gold_pair_accuracy(&s.lab().gold, &pairs, &sa[0], &sb[0]).0;
        extras.push((format!("{FEATURE}, {n} labels"), feature_acc));
        extras.push((format!("{NEURAL}, {n} labels"), neural_acc));
        if budget == knobs.rule_budget {
            arms = vec![(FEATURE.to_string(), feature_acc), (NEURAL.to_string(), neural_acc)];
            for (name, w) in fm.names.iter().zip(&fm.weights) {
                extras.push((format!("feature weight, {name} ({n} labels)"), *w));
            }
        }
    }
    let statistic = arms[0].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
