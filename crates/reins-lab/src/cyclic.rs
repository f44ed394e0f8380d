//! An intransitive annotator population, for testing Nash-style methods (Munos et al., "Nash
//! Learning from Human Feedback", arXiv:2312.00886; the research note's §8(e) world): groups of
//! annotators who rank responses lexicographically by the world's quality factors, each group in
//! its own order of priority, and a population that prefers what most groups prefer.
//!
//! With the orders relevance > politeness > brevity, politeness > brevity > relevance and
//! brevity > relevance > politeness (the default), majority preference can cycle: X ≻ Y ≻ Z ≻ X
//! (Condorcet's paradox), so no reward function — and no Bradley–Terry model — represents it,
//! while a Nash equilibrium of the preference game still exists.
//!
//! The judge is noiseless: `P(a ≻ b)` is the share of groups preferring `a` (a group's tie
//! counts half).

use rand::RngCore;
use reins_train::judges::{Judgment, PairwiseJudge, Preference};
use reins_train::Result as TrainResult;

use crate::gold::{Factor, FactorScores, GoldReward};

/// Groups with cyclic factor priorities; each compares two responses by its factors in order,
/// the first difference deciding.
#[derive(Debug, Clone, PartialEq)]
pub struct CyclicPopulation {
    pub groups: Vec<Vec<Factor>>,
    /// Parses responses into factor evidence (its weights are not used).
    pub gold: GoldReward,
}

/// A factor's summed evidence.
fn value(s: &FactorScores, f: Factor) -> f64 {
    match f {
        Factor::Relevance => s.relevance,
        Factor::Correctness => s.correctness,
        Factor::Politeness => s.politeness,
        Factor::Brevity => s.brevity,
        Factor::Repetition => s.repetition,
        Factor::WellFormed => s.well_formed,
    }
}

impl CyclicPopulation {
    /// The three cyclic groups over relevance, politeness and brevity.
    pub fn new(gold: GoldReward) -> Self {
        use Factor::*;
        CyclicPopulation {
            groups: vec![
                vec![Relevance, Politeness, Brevity],
                vec![Politeness, Brevity, Relevance],
                vec![Brevity, Relevance, Politeness],
            ],
            gold,
        }
    }

    /// The share of groups preferring `a` to `b` (ties half).
    pub fn p_prefers(&self, a: &FactorScores, b: &FactorScores) -> f64 {
        let votes: f64 = self
            .groups
            .iter()
            .map(|order| {
                for &f in order {
                    let (x, y) = (value(a, f), value(b, f));
                    if (x - y).abs() > 1e-9 {
                        return if x > y { 1.0 } else { 0.0 };
                    }
                }
                0.5
            })
            .sum();
        votes / self.groups.len().max(1) as f64
    }
}

impl PairwiseJudge<str> for CyclicPopulation {
    fn judge(&self, prompt: &str, a: &str, b: &str, _rng: &mut dyn RngCore) -> TrainResult<Judgment> {
        let p = self.p_prefers(&self.gold.factors(prompt, a), &self.gold.factors(prompt, b));
        let preference = if p > 0.5 {
            Preference::A
        } else if p < 0.5 {
            Preference::B
        } else {
            Preference::Tie
        };
        Ok(Judgment { preference, p_a: p })
    }

    fn name(&self) -> &str {
        "cyclic population"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(relevance: f64, politeness: f64, brevity: f64) -> FactorScores {
        FactorScores { relevance, correctness: 0.0, politeness, brevity, repetition: 0.0, well_formed: 0.0 }
    }

    /// A Latin square of factor levels makes the majority cycle: Y ≻ X, Z ≻ Y, X ≻ Z, each by
    /// two groups of three.
    #[test]
    fn the_majority_cycles_on_a_latin_square() {
        let pop = CyclicPopulation::new(GoldReward::default());
        let (x, y, z) = (scores(1.0, 0.5, -2.0), scores(0.0, 1.0, -1.0), scores(0.5, 0.0, 0.0));
        let third = 1.0 / 3.0;
        assert!((pop.p_prefers(&y, &x) - 2.0 * third).abs() < 1e-12);
        assert!((pop.p_prefers(&z, &y) - 2.0 * third).abs() < 1e-12);
        assert!((pop.p_prefers(&x, &z) - 2.0 * third).abs() < 1e-12);
        // symmetric, and ½ against itself
        assert!((pop.p_prefers(&x, &y) + pop.p_prefers(&y, &x) - 1.0).abs() < 1e-12);
        assert_eq!(pop.p_prefers(&x, &x), 0.5);
    }

    #[test]
    fn as_a_judge_it_reads_texts_through_the_world_parser() {
        let pop = CyclicPopulation::new(GoldReward::default());
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let p = "What is the capital of France?";
        let j = pop.judge(p, "The capital of France is Paris.", "The capital of France is Paris.", &mut rng).unwrap();
        assert_eq!((j.preference, j.p_a), (Preference::Tie, 0.5));
        let polite = "Sure, happy to help! The capital of France is Paris.";
        // As relevant, more polite: the politeness-first group and at least one other prefer it.
        let j = pop.judge(p, polite, "The capital of France is Paris.", &mut rng).unwrap();
        assert!(j.p_a >= 2.0 / 3.0 - 1e-12 && j.preference == Preference::A, "{j:?}");
    }
}
