//! Simulated annotators that compare two responses, with the failure modes of B-Pref
//! (Lee, Smith, Abbeel, 2021, "B-Pref: Benchmarking Preference-Based Reinforcement Learning",
//! §3.2, the `SimTeacher`):
//!
//! 1. utilities U_A, U_B: the annotator's own factor weights on the gold evidence;
//! 2. skip (δ_skip): both bad, max(U_A, U_B) < δ_skip → `Skip`;
//! 3. equal (δ_equal): |U_A − U_B| < δ_equal → `Tie` (decided after the steps below, as B-Pref);
//! 4. myopic (γ): the choice uses discounted utilities, evidence in sentence k of K weighted
//!    γ^(K−1−k), so the end of a response weighs more;
//! 5. stochastic (β): P(A) = σ(β (U^γ_A − U^γ_B)) (Bradley–Terry); β = 0 → rational;
//! 6. mistake (ε): the choice is flipped with probability ε.
//!
//! A population of annotators has per-annotator weights (log-normal jitter around gold's), so
//! annotators really disagree; every label keeps its annotator id.

use rand::{Rng, RngCore};
use reins_train::judges::{Judgment, PairwiseJudge, Preference};
use reins_train::Result as TrainResult;
use serde::{Deserialize, Serialize};

use crate::config::{AnnotatorConfig, FactorWeights, PopulationConfig};
use crate::gold::{GoldReward, Parsed};
use crate::rng::stream;
use crate::tasks::parse_prompt;

/// What an annotator answered for (A, B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A is better.
    A,
    /// B is better.
    B,
    /// Equally good (δ_equal).
    Tie,
    /// Both bad, no answer (δ_skip).
    Skip,
}

/// One label, with who gave it and what they perceived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub annotator_id: String,
    pub outcome: Outcome,
    /// The annotator's (non-myopic) utilities of A and B.
    pub utility_a: f64,
    pub utility_b: f64,
    /// The probability it chose A before mistakes (1/0 for a rational annotator).
    pub p_a: f64,
}

impl Label {
    /// The label as a [`Judgment`] of the shared judge interface.
    pub fn judgment(&self) -> Judgment {
        let preference = match self.outcome {
            Outcome::A => Preference::A,
            Outcome::B => Preference::B,
            Outcome::Tie => Preference::Tie,
            Outcome::Skip => Preference::Skip,
        };
        Judgment { preference, p_a: self.p_a }
    }

    /// The TRL preference record for this label; `None` for ties and skips. `margin` (when asked
    /// for) is the annotator's perceived utility gap, ≥ 0.
    pub fn to_record(&self, prompt: &str, a: &str, b: &str, with_margin: bool) -> Option<PreferenceRecord> {
        let (chosen, rejected) = match self.outcome {
            Outcome::A => (a, b),
            Outcome::B => (b, a),
            Outcome::Tie | Outcome::Skip => return None,
        };
        Some(PreferenceRecord {
            prompt: prompt.to_string(),
            chosen: chosen.to_string(),
            rejected: rejected.to_string(),
            annotator_id: self.annotator_id.clone(),
            margin: with_margin.then(|| (self.utility_a - self.utility_b).abs()),
        })
    }
}

/// TRL's preference JSONL shape (`prompt`, `chosen`, `rejected`) plus the annotator id and an
/// optional margin. Texts are plain (the user's prompt, the bare responses); `to_chat` gives
/// TRL's "standard" form whose `prompt + chosen` is the exact training text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceRecord {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub annotator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

impl PreferenceRecord {
    /// The record with the lab's chat format applied (`chat::prompt`, `chat::completion`).
    pub fn to_chat(&self) -> PreferenceRecord {
        PreferenceRecord {
            prompt: crate::chat::prompt(&self.prompt),
            chosen: crate::chat::completion(&self.chosen),
            rejected: crate::chat::completion(&self.rejected),
            ..self.clone()
        }
    }
    /// One JSONL line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("strings and floats always serialize")
    }
}

/// Probabilities of each outcome for one query (exact, from the model above).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutcomeProbs {
    pub a: f64,
    pub b: f64,
    pub tie: f64,
    pub skip: f64,
}

/// One simulated annotator (the B-Pref knob names are in [`AnnotatorConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedAnnotator {
    /// Stable id, e.g. `sim-03`; kept on every label.
    pub id: String,
    /// This annotator's weights on the gold evidence.
    pub factor_weights: FactorWeights,
    /// Stochastic β (0 = rational).
    pub beta: f64,
    /// Mistake ε.
    pub p_mistake: f64,
    /// δ_skip (`-inf`: never skips).
    pub skip_threshold: f64,
    /// δ_equal (0: never equal).
    pub equal_threshold: f64,
    /// Myopic γ (1: not myopic).
    pub gamma: f64,
    /// Utility per word of the answer, whatever its quality (0: none).
    pub length_bias: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl SimulatedAnnotator {
    pub fn new(id: impl Into<String>, factor_weights: FactorWeights, cfg: &AnnotatorConfig) -> Self {
        SimulatedAnnotator {
            id: id.into(),
            factor_weights,
            beta: cfg.beta,
            p_mistake: cfg.p_mistake,
            skip_threshold: cfg.skip_threshold,
            equal_threshold: cfg.equal_threshold,
            gamma: cfg.gamma,
            length_bias: cfg.length_bias,
        }
    }

    /// B-Pref's Oracle with these weights: always the higher utility.
    pub fn oracle(id: impl Into<String>, factor_weights: FactorWeights) -> Self {
        Self::new(id, factor_weights, &AnnotatorConfig::oracle())
    }

    fn parse(&self, prompt: &str, response: &str) -> Parsed {
        crate::gold::parse(parse_prompt(prompt), response, self.factor_weights.length_budget)
    }

    /// (U, U^γ): the annotator's utility and its myopic version, each plus the spurious
    /// `length_bias · words`.
    pub fn utilities(&self, prompt: &str, response: &str) -> (f64, f64) {
        let p = self.parse(prompt, response);
        let bias =
            if self.length_bias == 0.0 { 0.0 } else { self.length_bias * crate::chat::answer_words(response) as f64 };
        (p.utility(&self.factor_weights, 1.0) + bias, p.utility(&self.factor_weights, self.gamma) + bias)
    }

    /// Exact outcome probabilities for this query.
    pub fn probabilities(&self, prompt: &str, a: &str, b: &str) -> OutcomeProbs {
        let (ua, ma) = self.utilities(prompt, a);
        let (ub, mb) = self.utilities(prompt, b);
        if ua.max(ub) < self.skip_threshold {
            return OutcomeProbs { a: 0.0, b: 0.0, tie: 0.0, skip: 1.0 };
        }
        if (ua - ub).abs() < self.equal_threshold {
            return OutcomeProbs { a: 0.0, b: 0.0, tie: 1.0, skip: 0.0 };
        }
        let p = self.p_choose_a(ma, mb);
        let pa = p * (1.0 - self.p_mistake) + (1.0 - p) * self.p_mistake;
        OutcomeProbs { a: pa, b: 1.0 - pa, tie: 0.0, skip: 0.0 }
    }

    fn p_choose_a(&self, ma: f64, mb: f64) -> f64 {
        if self.beta > 0.0 {
            sigmoid(self.beta * (ma - mb))
        } else {
            match crate::gold::compare_scores(ma, mb) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Less => 0.0,
                std::cmp::Ordering::Equal => 0.5,
            }
        }
    }

    /// Labels (A, B) for `prompt`. Deterministic given the stream.
    pub fn label<R: Rng + ?Sized>(&self, prompt: &str, a: &str, b: &str, rng: &mut R) -> Label {
        let (ua, ma) = self.utilities(prompt, a);
        let (ub, mb) = self.utilities(prompt, b);
        let mut label =
            Label { annotator_id: self.id.clone(), outcome: Outcome::Skip, utility_a: ua, utility_b: ub, p_a: 0.5 };
        if ua.max(ub) < self.skip_threshold {
            return label;
        }
        let equal = (ua - ub).abs() < self.equal_threshold;
        label.p_a = self.p_choose_a(ma, mb);
        let mut choose_a = rng.random::<f64>() < label.p_a;
        if rng.random::<f64>() < self.p_mistake {
            choose_a = !choose_a;
        }
        label.outcome = if equal {
            Outcome::Tie
        } else if choose_a {
            Outcome::A
        } else {
            Outcome::B
        };
        label
    }
}

/// A simulated annotator as a judge of text (reins-train's interface, shared with reward-model
/// and pairwise-model judges).
impl PairwiseJudge<str> for SimulatedAnnotator {
    fn judge(&self, prompt: &str, a: &str, b: &str, rng: &mut dyn RngCore) -> TrainResult<Judgment> {
        Ok(self.label(prompt, a, b, rng).judgment())
    }

    fn name(&self) -> &str {
        &self.id
    }
}

impl GoldReward {
    /// A noiseless label: `A`/`B` by gold score, `Tie` when equal; annotator id `gold`.
    pub fn label(&self, prompt: &str, a: &str, b: &str) -> Label {
        let (ua, ub) = (self.score(prompt, a), self.score(prompt, b));
        let outcome = match crate::gold::compare_scores(ua, ub) {
            std::cmp::Ordering::Greater => Outcome::A,
            std::cmp::Ordering::Less => Outcome::B,
            std::cmp::Ordering::Equal => Outcome::Tie,
        };
        Label {
            annotator_id: "gold".into(),
            outcome,
            utility_a: ua,
            utility_b: ub,
            p_a: if outcome == Outcome::A {
                1.0
            } else if outcome == Outcome::B {
                0.0
            } else {
                0.5
            },
        }
    }
}

/// A standard normal draw (Box–Muller), so no extra dependency is needed.
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal multiplier with mean 1.
fn jitter<R: Rng + ?Sized>(sigma: f64, rng: &mut R) -> f64 {
    (sigma * normal(rng) - sigma * sigma / 2.0).exp()
}

/// The annotator population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Population {
    pub annotators: Vec<SimulatedAnnotator>,
}

impl Population {
    /// `cfg.n_annotators` annotators `sim-00`, `sim-01`, …, around the gold weights. Annotator
    /// i depends only on (seed, i): growing the population keeps the existing annotators.
    pub fn new(cfg: &PopulationConfig, gold: &FactorWeights, seed: u64) -> Self {
        let annotators = (0..cfg.n_annotators)
            .map(|i| {
                let id = format!("sim-{i:02}");
                let mut rng = stream(seed, &format!("annotators/{id}"));
                let mut w = gold.clone();
                for x in [
                    &mut w.relevance,
                    &mut w.correctness,
                    &mut w.politeness,
                    &mut w.brevity,
                    &mut w.repetition,
                    &mut w.well_formed,
                ] {
                    *x *= jitter(cfg.weight_jitter, &mut rng);
                }
                let mut a = SimulatedAnnotator::new(id, w, &cfg.base);
                a.beta *= jitter(cfg.beta_jitter, &mut rng);
                a
            })
            .collect();
        Population { annotators }
    }

    /// The annotator with this id.
    pub fn get(&self, id: &str) -> Option<&SimulatedAnnotator> {
        self.annotators.iter().find(|a| a.id == id)
    }

    /// A label from an annotator drawn uniformly from the population.
    pub fn label<R: Rng + ?Sized>(&self, prompt: &str, a: &str, b: &str, rng: &mut R) -> Label {
        let i = rng.random_range(0..self.annotators.len());
        self.annotators[i].label(prompt, a, b, rng)
    }
}

impl Population {
    /// Labels every `(prompt, a, b)` pair (one annotator drawn per pair), in order.
    pub fn label_pairs<R: Rng + ?Sized>(&self, pairs: &[(String, String, String)], rng: &mut R) -> Vec<Label> {
        pairs.iter().map(|(p, a, b)| self.label(p, a, b, rng)).collect()
    }

    /// Per-annotator agreement with noiseless gold of `labels` (given for `pairs`, in order),
    /// plus a last row `all`: the report's annotator table.
    pub fn agreement_rows(
        &self,
        gold: &GoldReward,
        pairs: &[(String, String, String)],
        labels: &[Label],
    ) -> Vec<crate::report::AnnotatorRow> {
        let ids = self.annotators.iter().map(|a| a.id.as_str()).chain(["all"]);
        ids.map(|id| {
            let mut agr = Agreement::default();
            for ((p, a, b), l) in pairs.iter().zip(labels) {
                if id == "all" || l.annotator_id == id {
                    agr.add(gold, p, a, b, l);
                }
            }
            let n = agr.n.max(1) as f64;
            crate::report::AnnotatorRow {
                id: id.to_string(),
                n_labels: agr.n,
                agreement_with_gold: agr.rate(),
                tie_rate: agr.ties as f64 / n,
                skip_rate: agr.skips as f64 / n,
            }
        })
        .collect()
    }
}

/// Writes records as JSONL (one `PreferenceRecord` per line).
pub fn write_jsonl(path: &std::path::Path, records: &[PreferenceRecord]) -> Result<(), crate::LabError> {
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_json_line());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| crate::LabError::io("writing", path, e))
}

/// The gold reward as a (noiseless) judge.
impl PairwiseJudge<str> for GoldReward {
    fn judge(&self, prompt: &str, a: &str, b: &str, _rng: &mut dyn RngCore) -> TrainResult<Judgment> {
        Ok(self.label(prompt, a, b).judgment())
    }

    fn name(&self) -> &str {
        "gold"
    }
}

/// The population as a judge: each pair goes to one of its annotators.
impl PairwiseJudge<str> for Population {
    fn judge(&self, prompt: &str, a: &str, b: &str, rng: &mut dyn RngCore) -> TrainResult<Judgment> {
        Ok(self.label(prompt, a, b, rng).judgment())
    }

    fn name(&self) -> &str {
        "population"
    }
}

/// How a set of labels compares with noiseless gold preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Labels counted.
    pub n: usize,
    /// A/B labels on pairs gold does not tie, and how many of those match gold.
    pub decided: usize,
    pub agree: usize,
    pub ties: usize,
    pub skips: usize,
}

impl Agreement {
    /// Adds one label of (a, b).
    pub fn add(&mut self, gold: &GoldReward, prompt: &str, a: &str, b: &str, label: &Label) {
        self.n += 1;
        match label.outcome {
            Outcome::Tie => self.ties += 1,
            Outcome::Skip => self.skips += 1,
            o => {
                let g = gold.gold_prefers(prompt, a, b);
                if g != std::cmp::Ordering::Equal {
                    self.decided += 1;
                    if (o == Outcome::A) == (g == std::cmp::Ordering::Greater) {
                        self.agree += 1;
                    }
                }
            }
        }
    }
    /// Fraction of decided labels that match gold.
    pub fn rate(&self) -> f64 {
        self.agree as f64 / self.decided.max(1) as f64
    }
}

#[cfg(test)]
#[path = "annotators_tests.rs"]
mod tests;
