//! Verdict rules as code: how a claim's statistic, measured once per seed, becomes
//! `reproduced`, `not shown` or `contradicted`.
//!
//! Each experiment names its rule in its registration, which is committed before its full run,
//! and `result.json` echoes the rule's text: the threshold is never chosen after seeing the
//! result. Every rule is the same test at heart — does the 95 % Student-t interval over seeds
//! of one statistic exclude a reference value, and on which side — but the statistic and the
//! reference differ, so each rule says in words what it compares.

use serde::{Deserialize, Serialize};

use crate::seeds::Interval;

/// The three outcomes a claim can have here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The interval excludes the reference in the paper's direction.
    #[serde(rename = "reproduced")]
    Reproduced,
    /// The interval contains the reference: this repository cannot tell.
    #[serde(rename = "not shown")]
    NotShown,
    /// The interval excludes the reference in the opposite direction.
    #[serde(rename = "contradicted")]
    Contradicted,
}

impl Verdict {
    /// The word written into `result.json` and the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotShown => "not shown",
            Verdict::Contradicted => "contradicted",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the reference the paper expects the statistic on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Higher,
    Lower,
    /// The statistic should equal a nominal value (a coverage rate): inside a band around it.
    Inside,
}

/// A decision rule over the per-seed values of one statistic.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The statistic is the paired gap `better − baseline` of one metric on the same seed; the
    /// claim is that `better` beats `baseline` in `direction`.
    PairedGap { better: &'static str, baseline: &'static str, direction: Direction },
    /// The statistic is a score whose chance level is `chance` (an AUROC: 0.5); the claim is
    /// that it is above chance.
    AboveChance { what: &'static str, chance: f64 },
    /// The statistic is the curvature `β` of a fitted Gao et al. form `d(α − β·d)` or
    /// `d(α − β·log d)`; the claim is that gold turns down (`β > 0`) as KL grows.
    Downturn { curve: &'static str },
    /// The statistic is a rate over `replicates` independent replicates per seed (an interval
    /// coverage); the claim is that it is the `nominal` rate. The seeds' mean is the rate over
    /// all `seeds × replicates` replicates, compared with the 99 % binomial band
    /// `nominal ± 2.576·√(nominal(1 − nominal)/(seeds·replicates))`.
    NominalRate { what: &'static str, nominal: f64, replicates: usize },
}

/// The two-sided 99 % normal quantile of [`Rule::NominalRate`]'s band.
const Z_995: f64 = 2.575_829_303_548_901;

/// The rule's inputs and its decision, as `result.json` records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rule in words.
    pub rule: String,
    /// The statistic's name.
    pub statistic: String,
    pub per_seed: Vec<f64>,
    pub interval: Interval,
    /// The value the interval must exclude.
    pub reference: f64,
    pub direction: Direction,
    pub verdict: Verdict,
}

impl Rule {
    /// The rule in one sentence (echoed in `result.json`).
    pub fn text(&self) -> String {
        let head = "the 95 % Student-t interval over seeds of";
        match self {
            Rule::PairedGap { better, baseline, direction } => format!(
                "{head} the paired gap ({better}) − ({baseline}) excludes 0 on the {} side → reproduced; excludes 0 on the other side → contradicted; contains 0 → not shown",
                side(*direction)
            ),
            Rule::AboveChance { what, chance } => format!(
                "{head} {what} lies above chance ({chance}) → reproduced; below it → contradicted; contains it → not shown"
            ),
            Rule::NominalRate { what, nominal, replicates } => format!(
                "{what} pooled over all seeds ({replicates} replicates each; the mean of the per-seed rates) lies inside the 99 % binomial band {nominal} ± 2.576·√({nominal}·(1 − {nominal})/(seeds·{replicates})) → reproduced; outside it → contradicted; no finite seed → not shown"
            ),
            Rule::Downturn { curve } => format!(
                "{head} the fitted curvature β of {curve} excludes 0 on the positive side (gold turns down as KL grows) → reproduced; on the negative side (gold keeps accelerating) → contradicted; contains 0 → not shown"
            ),
        }
    }

    /// What the rule measures, in a few words.
    pub fn statistic(&self) -> String {
        match self {
            Rule::PairedGap { better, baseline, .. } => format!("({better}) − ({baseline})"),
            Rule::AboveChance { what, .. } => what.to_string(),
            Rule::Downturn { curve } => format!("β of {curve}"),
            Rule::NominalRate { what, .. } => what.to_string(),
        }
    }

    /// The value the statistic's interval must exclude, and the side the paper expects.
    pub fn reference_and_direction(&self) -> (f64, Direction) {
        match self {
            Rule::PairedGap { direction, .. } => (0.0, *direction),
            Rule::AboveChance { chance, .. } => (*chance, Direction::Higher),
            Rule::Downturn { .. } => (0.0, Direction::Higher),
            Rule::NominalRate { nominal, .. } => (*nominal, Direction::Inside),
        }
    }

    /// Applies the rule to the statistic's value on each seed. Non-finite values are left out;
    /// fewer than two finite values can never exclude anything (not shown).
    pub fn decide(&self, per_seed: &[f64]) -> Decision {
        let finite: Vec<f64> = per_seed.iter().copied().filter(|x| x.is_finite()).collect();
        let interval = Interval::of(&finite);
        let (reference, direction) = self.reference_and_direction();
        let verdict = if let Some((lo, hi)) = self.band(finite.len()) {
            if finite.is_empty() {
                Verdict::NotShown
            } else if (lo..=hi).contains(&interval.mean) {
                Verdict::Reproduced
            } else {
                Verdict::Contradicted
            }
        } else if finite.len() < 2 || !(interval.lo.is_finite() && interval.hi.is_finite()) {
            Verdict::NotShown
        } else {
            let (above, below) = (interval.lo > reference, interval.hi < reference);
            match (direction, above, below) {
                (Direction::Higher, true, _) | (Direction::Lower, _, true) => Verdict::Reproduced,
                (Direction::Higher, _, true) | (Direction::Lower, true, _) => Verdict::Contradicted,
                _ => Verdict::NotShown,
            }
        };
        Decision {
            rule: self.text(),
            statistic: self.statistic(),
            per_seed: per_seed.to_vec(),
            interval,
            reference,
            direction,
            verdict,
        }
    }
}

impl Rule {
    /// [`Rule::NominalRate`]'s 99 % binomial band for `seeds` seeds; `None` for other rules.
    pub fn band(&self, seeds: usize) -> Option<(f64, f64)> {
        let Rule::NominalRate { nominal, replicates, .. } = self else { return None };
        let half = Z_995 * (nominal * (1.0 - nominal) / (seeds * replicates).max(1) as f64).sqrt();
        Some((nominal - half, nominal + half))
    }
}

fn side(d: Direction) -> &'static str {
    match d {
        Direction::Higher => "positive",
        Direction::Lower => "negative",
        Direction::Inside => "inside",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule reaches each of the three verdicts on constructed inputs.
    #[test]
    fn every_rule_reaches_each_verdict() {
        let rules = [
            Rule::PairedGap { better: "ensemble", baseline: "single", direction: Direction::Higher },
            Rule::PairedGap { better: "LiPO", baseline: "DPO", direction: Direction::Lower },
            Rule::AboveChance { what: "AUROC", chance: 0.5 },
            Rule::Downturn { curve: "best-of-n gold" },
        ];
        for rule in rules {
            let (r, d) = rule.reference_and_direction();
            let s = if d == Direction::Higher { 1.0 } else { -1.0 };
            let tight = |c: f64| vec![c - 0.01, c, c + 0.01];
            assert_eq!(rule.decide(&tight(r + s * 0.3)).verdict, Verdict::Reproduced, "{rule:?}");
            assert_eq!(rule.decide(&tight(r - s * 0.3)).verdict, Verdict::Contradicted, "{rule:?}");
            // Straddles the reference: the interval contains it.
            assert_eq!(rule.decide(&[r - 0.2, r + 0.1, r + 0.2]).verdict, Verdict::NotShown, "{rule:?}");
            assert!(!rule.text().is_empty() && rule.decide(&[r]).rule == rule.text());
        }
    }

    /// The band of 0.95 over 3 × 1,000 replicates is ±0.0102; inside reproduces, either side
    /// contradicts (too narrow and too wide intervals both miss the claim).
    #[test]
    fn nominal_rate_is_a_band() {
        let rule = Rule::NominalRate { what: "coverage", nominal: 0.95, replicates: 1000 };
        let (lo, hi) = rule.band(3).unwrap();
        assert!((hi - 0.95 - 0.010_25).abs() < 1e-4 && (0.95 - lo - (hi - 0.95)).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(rule.decide(&[0.95, 0.94, 0.955]).verdict, Verdict::Reproduced);
        assert_eq!(rule.decide(&[0.93, 0.935, 0.93]).verdict, Verdict::Contradicted);
        assert_eq!(rule.decide(&[0.97, 0.965, 0.975]).verdict, Verdict::Contradicted);
        assert_eq!(rule.decide(&[f64::NAN]).verdict, Verdict::NotShown);
        // One seed: the band of 1,000 replicates, 0.95 ± 0.0178.
        assert_eq!(rule.decide(&[0.935]).verdict, Verdict::Reproduced);
        let d = rule.decide(&[0.95]);
        assert_eq!((d.reference, d.direction), (0.95, Direction::Inside));
        assert!(d.rule.contains("99 % binomial band"));
    }

    #[test]
    fn too_few_or_non_finite_seeds_show_nothing() {
        let rule = Rule::AboveChance { what: "AUROC", chance: 0.5 };
        assert_eq!(rule.decide(&[0.9]).verdict, Verdict::NotShown);
        assert_eq!(rule.decide(&[0.9, f64::NAN]).verdict, Verdict::NotShown);
        assert_eq!(rule.decide(&[]).verdict, Verdict::NotShown);
        // A NaN seed is dropped, not propagated.
        assert_eq!(rule.decide(&[0.9, 0.91, f64::NAN, 0.92]).verdict, Verdict::Reproduced);
    }

    #[test]
    fn verdicts_serialize_as_the_three_words() {
        let words: Vec<String> = [Verdict::Reproduced, Verdict::NotShown, Verdict::Contradicted]
            .iter()
            .map(|v| serde_json::to_string(v).unwrap())
            .collect();
        assert_eq!(words, ["\"reproduced\"", "\"not shown\"", "\"contradicted\""]);
    }
}
