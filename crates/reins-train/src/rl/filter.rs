//! Policy filtration for PPO (PF-PPO; Shen et al., arXiv:2409.06957, "Policy Filtration in RLHF
//! to Fine-Tune LLM for Code Generation"). A reward model is reliable on its highest and lowest
//! scores and noisy in between, so PF-PPO samples several responses per prompt and trains only
//! on those whose rewards are trustworthy:
//!
//! - `best_of_n`: the best response of each group (BoN),
//! - `best_random`: the best and one other picked at random (BR),
//! - `best_worst`: the best and the worst (BW, the paper's best on code),
//! - `reward_band`: every response whose reward lies in one of the given `[lo, hi]` bands.
//!
//! The paper picks the filter whose kept responses have the highest R² between the proxy reward
//! and the actual score on held-out data ([`select_filter`]); `pf_filter = "auto"` asks for that
//! choice before training ([`PolicyFilter::Auto`], made by `PpoTrainer::choose_filter`).
//! Everything here is a pure function of rewards; groups are contiguous (`num_generations` rows
//! per prompt).

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Which responses of each group PPO trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFilter {
    /// Keep everything (plain PPO). Default.
    #[default]
    None,
    /// The highest reward of each group.
    BestOfN,
    /// The highest and one other response drawn uniformly.
    BestRandom,
    /// The highest and the lowest reward of each group.
    BestWorst,
    /// Responses whose reward lies in one of the bands.
    RewardBand,
    /// Chosen before training among [`auto_candidates`] by [`select_filter`] on held-out scores.
    Auto,
}

impl PolicyFilter {
    /// The config name (`best_worst`, …).
    pub fn name(self) -> &'static str {
        match self {
            PolicyFilter::None => "none",
            PolicyFilter::BestOfN => "best_of_n",
            PolicyFilter::BestRandom => "best_random",
            PolicyFilter::BestWorst => "best_worst",
            PolicyFilter::RewardBand => "reward_band",
            PolicyFilter::Auto => "auto",
        }
    }
}

/// The filters `auto` chooses among: no filter (PPO-M in the paper), BoN, BR, BW, and the reward
/// bands when some are given.
pub fn auto_candidates(bands: &[(f32, f32)]) -> Vec<PolicyFilter> {
    let mut c = vec![PolicyFilter::None, PolicyFilter::BestOfN, PolicyFilter::BestRandom, PolicyFilter::BestWorst];
    if !bands.is_empty() {
        c.push(PolicyFilter::RewardBand);
    }
    c
}

/// What `pf_filter = "auto"` chose, and the R² of every candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterChoice {
    pub chosen: PolicyFilter,
    /// `(candidate, R²)` in [`auto_candidates`] order.
    pub r2: Vec<(PolicyFilter, f64)>,
}

impl FilterChoice {
    /// `{"chosen": "best_worst", "r2": {"none": 0.8, …}}`, as saved in `trainer_state.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let r2: serde_json::Map<String, serde_json::Value> =
            self.r2.iter().map(|(f, v)| (f.name().to_string(), serde_json::json!(v))).collect();
        serde_json::json!({"chosen": self.chosen.name(), "r2": r2})
    }

    /// Reads what [`FilterChoice::to_json`] wrote.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let bad = || TrainError::State(format!("pf_choice: expected {{\"chosen\", \"r2\"}}, found {v}"));
        let parse = |name: &str| serde_json::from_value::<PolicyFilter>(serde_json::json!(name)).map_err(|_| bad());
        let chosen = parse(v["chosen"].as_str().ok_or_else(bad)?)?;
        let mut r2 = Vec::new();
        for (k, x) in v["r2"].as_object().ok_or_else(bad)? {
            r2.push((parse(k)?, x.as_f64().ok_or_else(bad)?));
        }
        r2.sort_by_key(|(f, _)| *f as u8); // declaration order, as auto_candidates
        Ok(FilterChoice { chosen, r2 })
    }
}

/// Row indices (ascending) that `filter` keeps among `rewards`, grouped in contiguous runs of
/// `group` rows. Ties go to the earlier row. `bands` are used by `reward_band` only (inclusive
/// `[lo, hi]`); `seed` drives `best_random`.
pub fn filter_rows(
    rewards: &[f32],
    group: usize,
    filter: PolicyFilter,
    bands: &[(f32, f32)],
    seed: u64,
) -> Result<Vec<usize>> {
    if group == 0 || !rewards.len().is_multiple_of(group) {
        return Err(TrainError::Input(format!(
            "{} rewards are not a multiple of the group size {group}",
            rewards.len()
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keep = Vec::new();
    for (gi, g) in rewards.chunks(group).enumerate() {
        let base = gi * group;
        let best = argbest(g, |a, b| a > b);
        let worst = argbest(g, |a, b| a < b);
        match filter {
            PolicyFilter::None => keep.extend(base..base + group),
            PolicyFilter::BestOfN => keep.push(base + best),
            PolicyFilter::BestWorst => {
                keep.push(base + best);
                if worst != best {
                    keep.push(base + worst);
                }
            }
            PolicyFilter::BestRandom => {
                keep.push(base + best);
                if group > 1 {
                    let mut other = rng.random_range(0..group - 1);
                    if other >= best {
                        other += 1;
                    }
                    keep.push(base + other);
                }
            }
            PolicyFilter::RewardBand => {
                for (j, r) in g.iter().enumerate() {
                    if bands.iter().any(|(lo, hi)| (*lo..=*hi).contains(r)) {
                        keep.push(base + j);
                    }
                }
            }
            PolicyFilter::Auto => return Err(TrainError::Config(
                "pf_filter = \"auto\" is resolved before training from held-out scores (PpoTrainer::choose_filter; \
                     the CLI needs pf_heldout_reward)"
                    .into(),
            )),
        }
    }
    keep.sort_unstable();
    Ok(keep)
}

fn argbest(g: &[f32], better: impl Fn(f32, f32) -> bool) -> usize {
    let mut best = 0;
    for (j, &r) in g.iter().enumerate() {
        if better(r, g[best]) {
            best = j;
        }
    }
    best
}

/// Coefficient of determination of the least-squares line of `y` on `x` (the squared Pearson
/// correlation). 0 when either side is constant or there are fewer than two points.
pub fn r_squared(x: &[f64], y: &[f64]) -> f64 {
    crate::statistics::pearson(x, y).powi(2)
}

/// PF-PPO's selection rule (arXiv:2409.06957 §4): for each candidate filter, the R² between the
/// proxy rewards and the held-out scores (e.g. unit-test pass rates) of the responses it keeps;
/// returns the index of the best candidate and every R². `proxy` and `heldout` are per response,
/// in groups of `group`.
pub fn select_filter(
    candidates: &[PolicyFilter],
    proxy: &[f32],
    heldout: &[f32],
    group: usize,
    bands: &[(f32, f32)],
    seed: u64,
) -> Result<(usize, Vec<f64>)> {
    if proxy.len() != heldout.len() {
        return Err(TrainError::Input(format!(
            "select_filter: {} proxy rewards for {} held-out scores",
            proxy.len(),
            heldout.len()
        )));
    }
    if candidates.is_empty() {
        return Err(TrainError::Input("select_filter: no candidate filters".into()));
    }
    let mut r2 = Vec::with_capacity(candidates.len());
    for &f in candidates {
        let rows = filter_rows(proxy, group, f, bands, seed)?;
        let x: Vec<f64> = rows.iter().map(|&i| proxy[i] as f64).collect();
        let y: Vec<f64> = rows.iter().map(|&i| heldout[i] as f64).collect();
        r2.push(r_squared(&x, &y));
    }
    let best = (0..r2.len()).fold(0, |b, i| if r2[i] > r2[b] { i } else { b });
    Ok((best, r2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: [f32; 8] = [0.1, 0.9, 0.5, 0.3, /* group 2 */ 2.0, -1.0, 0.0, 2.0];

    #[test]
    fn filters_keep_the_right_rows() {
        let f = |p| filter_rows(&R, 4, p, &[], 7).unwrap();
        assert_eq!(f(PolicyFilter::None), (0..8).collect::<Vec<_>>());
        assert_eq!(f(PolicyFilter::BestOfN), vec![1, 4]);
        assert_eq!(f(PolicyFilter::BestWorst), vec![0, 1, 4, 5]);
        let br = f(PolicyFilter::BestRandom);
        assert_eq!(br.len(), 4);
        assert!(br.contains(&1) && br.contains(&4));
        assert!(br.iter().filter(|&&i| i < 4).count() == 2 && br.iter().filter(|&&i| i >= 4).count() == 2);
        let bands = [(-5.0, 0.15), (0.8, 5.0)];
        assert_eq!(filter_rows(&R, 4, PolicyFilter::RewardBand, &bands, 0).unwrap(), vec![0, 1, 4, 5, 6, 7]);
        // Constant group: best and worst are the same row, kept once.
        assert_eq!(filter_rows(&[1.0; 3], 3, PolicyFilter::BestWorst, &[], 0).unwrap(), vec![0]);
        assert!(filter_rows(&R, 3, PolicyFilter::None, &[], 0).is_err());
    }

    #[test]
    fn best_random_never_repeats_the_best_and_covers_the_others() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let rows = filter_rows(&R[..4], 4, PolicyFilter::BestRandom, &[], seed).unwrap();
            assert_eq!(rows.len(), 2);
            assert!(rows.contains(&1));
            seen.extend(rows.into_iter().filter(|&i| i != 1));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 2, 3]);
    }

    #[test]
    fn r_squared_by_hand() {
        assert!((r_squared(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((r_squared(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) - 1.0).abs() < 1e-12);
        // x = (0, 1, 2, 3), y = (0, 1, 1, 0): no linear trend.
        assert!(r_squared(&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0, 1.0, 0.0]).abs() < 1e-12);
        // (1,1), (2,3), (3,2): r = 0.5, R² = 0.25
        assert!((r_squared(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 0.25).abs() < 1e-12);
        assert_eq!(r_squared(&[1.0, 1.0], &[0.0, 2.0]), 0.0);
    }

    #[test]
    fn auto_is_not_a_filter_until_chosen_and_its_choice_round_trips() {
        assert!(filter_rows(&R, 4, PolicyFilter::Auto, &[], 0).is_err());
        assert_eq!(auto_candidates(&[]).len(), 4);
        assert_eq!(auto_candidates(&[(0.0, 1.0)]).last(), Some(&PolicyFilter::RewardBand));
        let c = FilterChoice {
            chosen: PolicyFilter::BestWorst,
            r2: vec![(PolicyFilter::None, 0.5), (PolicyFilter::BestWorst, 0.75)],
        };
        assert_eq!(FilterChoice::from_json(&c.to_json()).unwrap(), c);
        assert!(FilterChoice::from_json(&serde_json::json!({"chosen": "bogus", "r2": {}})).is_err());
    }

    #[test]
    fn select_filter_prefers_the_reliable_extremes() {
        // The proxy tracks the held-out score at the extremes and is noise in the middle.
        let proxy = [0.0, 0.4, 0.5, 1.0, 0.0, 0.6, 0.45, 1.0];
        let heldout = [0.0, 0.9, 0.1, 1.0, 0.0, 0.0, 1.0, 1.0];
        let cands = [PolicyFilter::None, PolicyFilter::BestWorst];
        let (best, r2) = select_filter(&cands, &proxy, &heldout, 4, &[], 0).unwrap();
        assert_eq!(best, 1, "{r2:?}");
        assert!((r2[1] - 1.0).abs() < 1e-9 && r2[0] < 0.6, "{r2:?}");
        assert!(select_filter(&cands, &proxy, &heldout[..3], 4, &[], 0).is_err());
    }
}
