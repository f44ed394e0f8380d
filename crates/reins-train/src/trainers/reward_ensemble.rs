//! Reward-model ensembles: k reward models trained on bootstrap resamples of the data with
//! different seeds (Coste et al., "Reward Model Ensembles Help Mitigate Overoptimization",
//! arXiv:2310.02743), scored together by mean, worst case (min) or uncertainty-weighted
//! `mean − λ·var`; and the per-pair *preference strength* — the members' mean and spread of
//! `r(chosen) − r(rejected)` (Wang et al., "Secrets of RLHF II", arXiv:2401.06080, §2.1) —
//! that flags likely mislabeled and ambiguous pairs.
//!
//! Training a member is an ordinary [`super::reward::RewardTrainer`] run; this file holds what
//! is specific to the ensemble: the resampling, the verdict per pair, the ensemble's accuracy,
//! and the `ensemble.json` manifest that lets a reward source load the members back.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::losses::{ensemble_aggregate, preference_strength, EnsembleAggregation};
use crate::{Result, TrainError};

/// Ensemble settings of `reins reward` (flat keys beside TRL's `RewardConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleArgs {
    /// Number of reward models (1 = a single model, the default).
    pub ensemble_size: usize,
    /// Train each member on a bootstrap resample (n draws with replacement) of the training
    /// set (default true; false trains every member on the full set, differing by seed only).
    pub ensemble_bootstrap: bool,
    /// How the members' scores are reduced when the ensemble is used as a reward:
    /// `"mean"`, `"min"` (worst case) or `"mean_minus_var"` (uncertainty-weighted).
    pub ensemble_aggregation: AggregationName,
    /// λ of `mean − λ·var` (default 1.0).
    pub ensemble_uncertainty_penalty: f64,
}

impl Default for EnsembleArgs {
    fn default() -> Self {
        EnsembleArgs {
            ensemble_size: 1,
            ensemble_bootstrap: true,
            ensemble_aggregation: AggregationName::Mean,
            ensemble_uncertainty_penalty: 1.0,
        }
    }
}

/// The flat-config spelling of [`EnsembleAggregation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationName {
    Mean,
    Min,
    MeanMinusVar,
}

impl EnsembleArgs {
    pub fn aggregation(&self) -> EnsembleAggregation {
        match self.ensemble_aggregation {
            AggregationName::Mean => EnsembleAggregation::Mean,
            AggregationName::Min => EnsembleAggregation::Min,
            AggregationName::MeanMinusVar => {
                EnsembleAggregation::MeanMinusVar { lambda: self.ensemble_uncertainty_penalty }
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.ensemble_size == 0 {
            return Err(TrainError::Config("`ensemble_size` must be at least 1".into()));
        }
        if self.ensemble_uncertainty_penalty < 0.0 || !self.ensemble_uncertainty_penalty.is_finite() {
            return Err(TrainError::Config("`ensemble_uncertainty_penalty` must be a finite λ ≥ 0".into()));
        }
        Ok(())
    }
}

/// `n` indices drawn with replacement from `0..n`, reproducibly from `seed`.
pub fn bootstrap_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// What the ensemble says about one labelled pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The members agree with the label: mean difference above one standard deviation.
    Clear,
    /// The members cannot tell: `|mean| ≤ std` (or all differences exactly zero).
    Ambiguous,
    /// The members agree *against* the label: mean difference below minus one std.
    LikelyMislabeled,
}

/// The preference strength of one pair across the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStrength {
    /// Position of the pair in the scored set.
    pub index: usize,
    /// Mean over members of `r(chosen) − r(rejected)`.
    pub mean: f64,
    /// Unbiased standard deviation over members.
    pub std: f64,
    pub verdict: Verdict,
    /// Each member's difference.
    pub members: Vec<f64>,
}

/// Per-pair strength from member scores `chosen[m][i]`, `rejected[m][i]` (M ≥ 2 members).
/// The verdict compares the mean with the spread: a pair is clear when `mean > std`, likely
/// mislabeled when `mean < −std`, ambiguous otherwise (the z = ±1 split of Secrets of RLHF II's
/// strength histogram, where the negative tail is dominated by wrong labels).
pub fn strengths(chosen: &[Vec<f64>], rejected: &[Vec<f64>]) -> Result<Vec<PairStrength>> {
    let m = chosen.len();
    if m < 2 || rejected.len() != m {
        return Err(TrainError::Input(format!("preference strength needs ≥ 2 members' scores (got {m})")));
    }
    let b = chosen[0].len();
    if chosen.iter().chain(rejected).any(|r| r.len() != b) {
        return Err(TrainError::Input("every member must score the same pairs".into()));
    }
    let flat = |rows: &[Vec<f64>]| -> Result<Tensor> { Ok(Tensor::from_vec(rows.concat(), (m, b), &Device::Cpu)?) };
    let (mean, std) = preference_strength(&flat(chosen)?, &flat(rejected)?)?;
    let (mean, std): (Vec<f64>, Vec<f64>) = (mean.to_vec1()?, std.to_vec1()?);
    Ok((0..b)
        .map(|i| {
            let verdict = if mean[i] > std[i] && mean[i] > 0.0 {
                Verdict::Clear
            } else if mean[i] < -std[i] {
                Verdict::LikelyMislabeled
            } else {
                Verdict::Ambiguous
            };
            PairStrength {
                index: i,
                mean: mean[i],
                std: std[i],
                verdict,
                members: (0..m).map(|k| chosen[k][i] - rejected[k][i]).collect(),
            }
        })
        .collect())
}

/// Accuracy of the aggregated ensemble score (ties count as wrong, as in RewardBench).
pub fn ensemble_accuracy(chosen: &[Vec<f64>], rejected: &[Vec<f64>], how: EnsembleAggregation) -> Result<f64> {
    let m = chosen.len();
    let b = chosen.first().map_or(0, Vec::len);
    if b == 0 {
        return Ok(0.0);
    }
    let agg = |rows: &[Vec<f64>]| -> Result<Vec<f64>> {
        let t = Tensor::from_vec(rows.concat(), (m, b), &Device::Cpu)?;
        Ok(ensemble_aggregate(&t, how)?.to_vec1()?)
    };
    let (c, r) = (agg(chosen)?, agg(rejected)?);
    Ok(c.iter().zip(&r).filter(|(a, b)| a > b).count() as f64 / b as f64)
}

/// `ensemble.json`: the members' checkpoint folders (relative to the manifest) and how to
/// reduce their scores. Written by `reins reward` with `ensemble_size > 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleManifest {
    pub members: Vec<PathBuf>,
    pub aggregation: EnsembleAggregation,
}

impl EnsembleManifest {
    pub const FILE: &'static str = "ensemble.json";

    pub fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join(Self::FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| TrainError::State(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| TrainError::State(format!("{}: {e}", p.display())))
    }

    /// Reads `dir/ensemble.json`; member paths come back joined onto `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))?;
        let mut m: EnsembleManifest = serde_json::from_str(&text)
            .map_err(|e| TrainError::Input(format!("{}: not an ensemble manifest: {e}", p.display())))?;
        for member in &mut m.members {
            *member = dir.join(&member);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_draws_with_replacement_reproducibly() {
        let a = bootstrap_indices(200, 7);
        assert_eq!(a, bootstrap_indices(200, 7));
        assert_ne!(a, bootstrap_indices(200, 8));
        assert!(a.iter().all(|&i| i < 200));
        let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
        // E[distinct] = n(1 − (1 − 1/n)^n) ≈ 0.634 n.
        assert!((100..150).contains(&distinct), "{distinct} distinct of 200");
    }

    #[test]
    fn verdicts_follow_the_sign_and_spread_of_member_differences() {
        // Pair 0: all members prefer chosen; pair 1: all prefer rejected; pair 2: split.
        let chosen = vec![vec![2.0, 0.0, 1.0], vec![2.5, 0.1, -1.0], vec![1.5, -0.2, 0.5]];
        let rejected = vec![vec![0.0, 2.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 2.0, 0.0]];
        let s = strengths(&chosen, &rejected).unwrap();
        assert_eq!(
            s.iter().map(|p| p.verdict).collect::<Vec<_>>(),
            [Verdict::Clear, Verdict::LikelyMislabeled, Verdict::Ambiguous]
        );
        assert!((s[0].mean - 2.0).abs() < 1e-12 && (s[0].std - 0.5).abs() < 1e-12);
        assert_eq!(s[2].members, vec![1.0, -1.0, 0.5]);
        assert!(strengths(&chosen[..1], &rejected[..1]).is_err());
    }

    #[test]
    fn ensemble_accuracy_counts_ties_as_wrong_and_depends_on_aggregation() {
        let chosen = vec![vec![1.0, 1.0], vec![1.0, 5.0]];
        let rejected = vec![vec![0.0, 2.0], vec![1.0, 2.0]];
        // Mean: pair 0 chosen 1.0 vs rejected 0.5, pair 1 3.0 vs 2.0 → both right.
        assert_eq!(ensemble_accuracy(&chosen, &rejected, EnsembleAggregation::Mean).unwrap(), 1.0);
        // Min: pair 1 chosen min 1.0 < rejected min 2.0 → wrong.
        assert_eq!(ensemble_accuracy(&chosen, &rejected, EnsembleAggregation::Min).unwrap(), 0.5);
        let tie = vec![vec![1.0]];
        assert_eq!(ensemble_accuracy(&tie, &tie, EnsembleAggregation::Mean).unwrap(), 0.0);
    }

    #[test]
    fn manifest_round_trips_with_paths_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let m = EnsembleManifest {
            members: vec!["member-0/checkpoint-4".into(), "member-1/checkpoint-4".into()],
            aggregation: EnsembleAggregation::MeanMinusVar { lambda: 0.5 },
        };
        m.write(dir.path()).unwrap();
        let back = EnsembleManifest::read(dir.path()).unwrap();
        assert_eq!(back.members[1], dir.path().join("member-1/checkpoint-4"));
        assert_eq!(back.aggregation, m.aggregation);
        assert!(EnsembleManifest::read(&dir.path().join("missing")).is_err());
    }
}
