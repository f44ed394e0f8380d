//! E5, second half (Nath et al., arXiv:2402.15473: domain-knowledge features "plus a small
//! learned residual"): once labels are plentiful, a neural residual trained on top of the
//! feature reward model ranks held-out pairs by gold better than the features alone.
//!
//! Design, fixed before the full run:
//! - **Labels**: the annotators' labels of pairs of SFT samples on train prompts, the first
//!   200 and 1,000 of them (a reduced run has fewer: all it has).
//! - **Arms** at each budget: the *feature RM* of `feature_rm_beats_bt_at_few_labels` (its
//!   features, L2 1); *features + residual*: the lab's neural reward model (its steps and
//!   learning rate) trained with the feature RM's score difference as each pair's fixed offset
//!   in the Bradley–Terry logit (`reins reward --set residual_of_features`, margin `−Δr_f`),
//!   scored `r_f + s_θ`; beside them the plain *neural RM* on the same labels.
//! - **Metric**: accuracy against noiseless gold on pairs of SFT samples for test prompts (the
//!   E5 pairs). **Rule**: the paired gap features + residual − feature RM at 1,000 labels.

use reins_train::rewards::features::{feature_offsets, FeatureModel};

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{metrics, LabError, Split};

const FEATURE: &str = "feature RM";
const RESIDUAL: &str = "features + residual";
const NEURAL: &str = "neural RM";
/// Label budgets; the rule reads the last.
const BUDGETS: [usize; 2] = [200, 1000];

pub fn experiment() -> Experiment {
    Experiment {
        id: "feature_residual_beats_features",
        claim: "At 1,000 labels, a neural residual trained on top of a domain-knowledge feature reward model (the features' score difference as a fixed offset) ranks held-out pairs by gold more accurately than the feature reward model alone.",
        paper: Paper {
            title: "Leveraging Domain Knowledge for Efficient Reward Modelling in RLHF: A Case-Study in E-Commerce Opinion Summarization",
            arxiv: "2402.15473",
        },
        metric: "accuracy against noiseless gold on pairs of SFT samples for test prompts",
        split: "test",
        rule: Rule::PairedGap { better: RESIDUAL, baseline: FEATURE, direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let records = labelled.records;
    // Held-out pairs of SFT samples for test prompts, judged by noiseless gold.
    let (pairs, a, b) = super::sft_test_pairs(s, base)?;
    let gold = s.lab().gold.clone();
    let accuracy = |xa: &[f64], xb: &[f64]| metrics::gold_pair_accuracy(&gold, &pairs, xa, xb).0;
    let features = super::feature_rm_beats_bt_at_few_labels::lab_features();
    let mut extras = vec![("train pairs available".to_string(), records.len() as f64)];
    let mut arms = Vec::new();
    for budget in BUDGETS {
        let n = budget.min(records.len());
        let train = &records[..n];
        let texts: Vec<(String, String, String)> =
            train.iter().map(|r| (r.prompt.clone(), r.chosen.clone(), r.rejected.clone())).collect();
        let fm = FeatureModel::fit(&features, &texts).map_err(stage("feature reward model"))?;
        let (fa, fb) = (fm.score_texts(&a).map_err(stage("features"))?, fm.score_texts(&b).map_err(stage("features"))?);
        // The residual: each pair's margin is −Δr_f, its label hard.
        let targets: Vec<(f64, f64)> =
            feature_offsets(&fm, &texts).map_err(stage("features"))?.into_iter().map(|o| (-o, 1.0)).collect();
        s.announce(&format!("residual on {n} labels"));
        let residual = s.train_reward_model_with(&base.dir, train, 0, Some(&targets), &Default::default())?;
        let (ra, rb) = (s.member_scores(std::slice::from_ref(&residual), &a)?, s.member_scores(&[residual], &b)?);
        let plus = |f: &[f64], r: &[f64]| f.iter().zip(r).map(|(x, y)| x + y).collect::<Vec<f64>>();
        s.announce(&format!("neural RM on {n} labels"));
        let rm = s.train_reward_model(&base.dir, train, 0)?;
        let (na, nb) = (s.member_scores(std::slice::from_ref(&rm), &a)?, s.member_scores(&[rm], &b)?);
        let accs = [
            (FEATURE, accuracy(&fa, &fb)),
            (RESIDUAL, accuracy(&plus(&fa, &ra[0]), &plus(&fb, &rb[0]))),
            (NEURAL, accuracy(&na[0], &nb[0])),
        ];
        for (name, acc) in accs {
            extras.push((format!("{name}, {budget} labels"), acc));
        }
        extras.push((format!("residual alone, {budget} labels"), accuracy(&ra[0], &rb[0])));
        if budget == BUDGETS[BUDGETS.len() - 1] {
            arms = accs.iter().map(|(name, acc)| (name.to_string(), *acc)).collect();
        }
    }
    let statistic = arms[1].1 - arms[0].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
