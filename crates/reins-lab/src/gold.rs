//! The gold reward: re-derives the hidden quality factors from any text, so it scores the
//! world's responses and the policy's new generations alike.
//!
//! The parser turns a response into *evidence*: items `(factor, value, sentence)`. The gold score
//! is Σ w_factor · value. Simulated annotators reuse the same evidence with their own weights and
//! a myopic discount on the sentence index (see `annotators`), so with their weights equal to
//! gold's and γ = 1 they compute exactly the gold score.
//!
//! Evidence, by factor:
//! - relevance: 1 when the response addresses the asked subject (the asked number / country /
//!   word / animal / category items / greeting), else 0;
//! - correctness: 1 when it states the right answer and no competing one (only when relevant);
//! - politeness: +0.5 per polite sentence (the first two count), −1 per rude sentence;
//! - brevity: −1 per filler sentence, −0.1 per word beyond `length_budget`;
//! - repetition: −1 per sentence repeating an earlier one, −0.5 per word repeated in a row;
//! - well_formed: −1 when the response is empty, contains a special token, or does not end
//!   with `.`, `!` or `?`.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

use crate::config::FactorWeights;
use crate::tasks::{parse_prompt, Category, Task, CAPITALS, NAMES, OPPOSITES, SOUNDS};

const POLITE_WORDS: &[&str] =
    &["sure", "course", "happy", "glad", "hope", "helps", "nice", "thank", "thanks", "please", "welcome", "pleasure"];
const RUDE_WORDS: &[&str] =
    &["ugh", "silly", "stop", "bothering", "yourself", "whatever", "stupid", "annoying", "obviously"];
const FILLER_WORDS: &[&str] =
    &["think", "common", "many", "people", "well", "basically", "explain", "detail", "honestly", "actually", "know"];

/// Scores closer than this are equal: evidence values are multiples of 0.1, so a smaller gap
/// is floating-point summation order, not a preference.
pub const SCORE_EPS: f64 = 1e-9;

/// Orders two scores, treating gaps under [`SCORE_EPS`] as equal.
pub fn compare_scores(a: f64, b: f64) -> Ordering {
    if (a - b).abs() < SCORE_EPS {
        Ordering::Equal
    } else {
        a.total_cmp(&b)
    }
}

/// A quality factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Relevance,
    Correctness,
    Politeness,
    Brevity,
    Repetition,
    WellFormed,
}

impl Factor {
    pub const ALL: [Factor; 6] = [
        Factor::Relevance,
        Factor::Correctness,
        Factor::Politeness,
        Factor::Brevity,
        Factor::Repetition,
        Factor::WellFormed,
    ];
    /// This factor's weight.
    pub fn weight(self, w: &FactorWeights) -> f64 {
        match self {
            Factor::Relevance => w.relevance,
            Factor::Correctness => w.correctness,
            Factor::Politeness => w.politeness,
            Factor::Brevity => w.brevity,
            Factor::Repetition => w.repetition,
            Factor::WellFormed => w.well_formed,
        }
    }
}

/// One piece of evidence found in a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub factor: Factor,
    pub value: f64,
    /// Index of the sentence it was found in (0-based).
    pub sentence: usize,
}

/// A parsed response: its evidence and its number of sentences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parsed {
    pub evidence: Vec<Evidence>,
    pub sentences: usize,
}

impl Parsed {
    /// Σ w · value · γ^(sentences−1−sentence): the gold score at γ = 1 with gold weights.
    pub fn utility(&self, w: &FactorWeights, gamma: f64) -> f64 {
        let last = self.sentences.saturating_sub(1);
        self.evidence
            .iter()
            .map(|e| e.factor.weight(w) * e.value * gamma.powi((last - e.sentence.min(last)) as i32))
            .sum()
    }
    /// The summed evidence of one factor (unweighted).
    pub fn factor(&self, f: Factor) -> f64 {
        self.evidence.iter().filter(|e| e.factor == f).map(|e| e.value).sum()
    }
}

/// Per-factor summed evidence, for reports and per-factor analyses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FactorScores {
    pub relevance: f64,
    pub correctness: f64,
    pub politeness: f64,
    pub brevity: f64,
    pub repetition: f64,
    pub well_formed: f64,
}

/// The hidden gold reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldReward {
    pub weights: FactorWeights,
}

impl Default for GoldReward {
    fn default() -> Self {
        GoldReward::new(FactorWeights::default())
    }
}

impl GoldReward {
    pub fn new(weights: FactorWeights) -> Self {
        GoldReward { weights }
    }

    /// The gold score of `response` (plain text, or a generated completion: it is cut at the
    /// first `<|end|>`) to `prompt` (the user's text, not chat-formatted).
    pub fn score(&self, prompt: &str, response: &str) -> f64 {
        self.parse(prompt, response).utility(&self.weights, 1.0)
    }

    /// Scores a batch (e.g. a PPO rollout).
    pub fn score_batch(&self, prompts: &[&str], responses: &[&str]) -> Vec<f64> {
        prompts.iter().zip(responses).map(|(p, r)| self.score(p, r)).collect()
    }

    /// Noiseless gold preference: `Greater` when `a` is better than `b`; `Equal` when the
    /// scores differ by less than [`SCORE_EPS`] (summation order only).
    pub fn gold_prefers(&self, prompt: &str, a: &str, b: &str) -> Ordering {
        compare_scores(self.score(prompt, a), self.score(prompt, b))
    }

    /// Per-factor evidence sums.
    pub fn factors(&self, prompt: &str, response: &str) -> FactorScores {
        let p = self.parse(prompt, response);
        FactorScores {
            relevance: p.factor(Factor::Relevance),
            correctness: p.factor(Factor::Correctness),
            politeness: p.factor(Factor::Politeness),
            brevity: p.factor(Factor::Brevity),
            repetition: p.factor(Factor::Repetition),
            well_formed: p.factor(Factor::WellFormed),
        }
    }

    /// The evidence in `response`.
    pub fn parse(&self, prompt: &str, response: &str) -> Parsed {
        parse(parse_prompt(prompt), response, self.weights.length_budget)
    }
}

/// Lower-cased word with surrounding punctuation removed; a pure symbol (`+`) is kept.
fn norm_word(raw: &str) -> String {
    let t: String = raw.chars().filter(|c| c.is_alphanumeric() || *c == '-').collect();
    let t = t.trim_matches('-');
    if t.is_empty() {
        raw.to_lowercase()
    } else {
        t.to_lowercase()
    }
}

fn split_sentences(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        cur.push(*c);
        let boundary = matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if boundary {
            out.push(std::mem::take(&mut cur));
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.split_whitespace().map(norm_word).collect::<Vec<_>>()).filter(|w| !w.is_empty()).collect()
}

fn lower(xs: impl Iterator<Item = &'static str>) -> Vec<String> {
    xs.map(|x| x.to_lowercase()).collect()
}

/// Finds (relevance sentence, correctness sentence) for a task.
fn check_task(task: &Task, sents: &[Vec<String>]) -> (Option<usize>, Option<usize>) {
    let first = |pred: &dyn Fn(&str) -> bool| sents.iter().position(|s| s.iter().any(|w| pred(w)));
    let last = |pred: &dyn Fn(&str) -> bool| sents.iter().rposition(|s| s.iter().any(|w| pred(w)));
    let any = |pred: &dyn Fn(&str) -> bool| sents.iter().flatten().filter(|w| pred(w)).count();
    match task {
        Task::Arithmetic { .. } => {
            let is_num = |w: &str| w.parse::<i64>().is_ok();
            let rel = first(&is_num);
            let last_num = sents.iter().flatten().rfind(|w| is_num(w));
            let ok = last_num.and_then(|w| w.parse::<i64>().ok()) == task.value();
            (rel, if ok { last(&is_num) } else { None })
        }
        Task::Capital { country } => {
            let caps = lower(CAPITALS.iter().map(|p| p.1));
            let right = task.answer_word().unwrap_or("").to_lowercase();
            let country = country.to_lowercase();
            let rel = first(&|w| w == country || caps.iter().any(|c| c == w));
            let wrong = any(&|w| w != right && caps.iter().any(|c| c == w));
            let cor = if wrong == 0 { first(&|w| w == right) } else { None };
            (rel, cor)
        }
        Task::Opposite { word } => {
            let all = lower(OPPOSITES.iter().flat_map(|(x, y)| [*x, *y]));
            let right = task.answer_word().unwrap_or("");
            let rel = first(&|w| all.iter().any(|c| c == w));
            let wrong = any(&|w| w != right && w != word && all.iter().any(|c| c == w));
            let cor = if wrong == 0 { first(&|w| w == right) } else { None };
            (rel, cor)
        }
        Task::AnimalSound { animal } => {
            let sounds = lower(SOUNDS.iter().map(|p| p.1));
            let right = task.answer_word().unwrap_or("");
            let rel = first(&|w| w == animal || sounds.iter().any(|c| c == w));
            let wrong = any(&|w| w != right && sounds.iter().any(|c| c == w));
            let cor = if wrong == 0 { first(&|w| w == right) } else { None };
            (rel, cor)
        }
        Task::List { category, n } => {
            let mine = lower(category.items().iter().copied());
            let others: Vec<String> = Category::ALL
                .iter()
                .filter(|c| *c != category)
                .flat_map(|c| lower(c.items().iter().copied()))
                .collect();
            let rel = first(&|w| mine.iter().any(|c| c == w));
            let mut distinct: Vec<&String> = sents.iter().flatten().filter(|w| mine.contains(w)).collect();
            distinct.sort();
            distinct.dedup();
            let foreign = any(&|w| others.iter().any(|c| c == w));
            let cor = if distinct.len() == *n && foreign == 0 { last(&|w| mine.iter().any(|c| c == w)) } else { None };
            (rel, cor)
        }
        Task::Greeting { hello, name } => {
            let names = lower(NAMES.iter().copied());
            let name = name.to_lowercase();
            let (asked, other) = if *hello { ("hello", "goodbye") } else { ("goodbye", "hello") };
            let rel = first(&|w| w == asked || w == other || names.iter().any(|c| c == w));
            let bad = any(&|w| w == other || (w != name && names.iter().any(|c| c == w)));
            let has_word = any(&|w| w == asked) > 0;
            let cor = if bad == 0 && has_word { first(&|w| w == name) } else { None };
            (rel, cor)
        }
    }
}

/// The evidence in `response` for `task` (`None`: an unknown prompt, only the task-independent
/// factors are scored).
pub fn parse(task: Option<&Task>, response: &str, length_budget: usize) -> Parsed {
    let (text, _) = crate::chat::extract_response(response);
    let sents = split_sentences(&text);
    let n = sents.len().max(1);
    let last = n - 1;
    let mut ev = Vec::new();
    let mut push = |factor, value, sentence| ev.push(Evidence { factor, value, sentence });

    if let Some(task) = task {
        let (rel, cor) = check_task(task, &sents);
        if let Some(i) = rel {
            push(Factor::Relevance, 1.0, i);
            if let Some(j) = cor {
                push(Factor::Correctness, 1.0, j);
            }
        }
    }
    let mut polite_seen = 0;
    for (i, s) in sents.iter().enumerate() {
        let has = |lex: &[&str]| s.iter().any(|w| lex.contains(&w.as_str()));
        if has(RUDE_WORDS) {
            push(Factor::Politeness, -1.0, i);
        } else if has(POLITE_WORDS) && polite_seen < 2 {
            polite_seen += 1;
            push(Factor::Politeness, 0.5, i);
        }
        if has(FILLER_WORDS) {
            push(Factor::Brevity, -1.0, i);
        }
        if sents[..i].contains(s) {
            push(Factor::Repetition, -1.0, i);
        }
        let stutters = s.windows(2).filter(|w| w[0] == w[1]).count();
        if stutters > 0 {
            push(Factor::Repetition, -0.5 * stutters as f64, i);
        }
    }
    let words = text.split_whitespace().count();
    if words > length_budget {
        push(Factor::Brevity, -0.1 * (words - length_budget) as f64, last);
    }
    let well_formed = !text.is_empty() && !text.contains("<|") && text.ends_with(['.', '!', '?']);
    if !well_formed {
        push(Factor::WellFormed, -1.0, last);
    }
    Parsed { evidence: ev, sentences: n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{QualityMix, WorldConfig};
    use crate::world::{Factors, Politeness, Split, World};

    fn setup() -> (World, GoldReward) {
        (World::new(3, &WorldConfig::default()).unwrap(), GoldReward::default())
    }

    #[test]
    fn parser_recovers_the_hidden_factors_of_world_responses() {
        let (w, g) = setup();
        let mut rng = w.rng("gold-test");
        for p in w.prompts(Split::Train, 1500) {
            let r = w.sample_response(&p, &mut rng, &QualityMix::default());
            let f = g.factors(&p.text, &r.text);
            let t = &r.factors;
            let ctx = format!("{:?} / {} / {:?}", p.text, r.text, f);
            assert_eq!(f.relevance, if t.relevant { 1.0 } else { 0.0 }, "{ctx}");
            assert_eq!(f.correctness, if t.correct { 1.0 } else { 0.0 }, "{ctx}");
            let pol = match t.politeness {
                Politeness::Rude => -1.0,
                Politeness::Neutral => 0.0,
                Politeness::Polite => 0.5 * t.polite_sentences as f64,
            };
            assert_eq!(f.politeness, pol, "{ctx}");
            let words = r.text.split_whitespace().count();
            let excess = -0.1 * words.saturating_sub(16) as f64;
            assert!((f.brevity - (excess - t.padding as f64)).abs() < 1e-9, "{ctx}");
            assert_eq!(f.repetition, -(t.repeats as f64), "{ctx}");
            assert_eq!(f.well_formed, 0.0, "{ctx}");
        }
    }

    #[test]
    fn gold_ranks_good_above_bad_for_each_factor() {
        let (w, g) = setup();
        let mut rng = w.rng("gold-rank");
        let base = Factors {
            relevant: true,
            correct: true,
            politeness: Politeness::Neutral,
            polite_sentences: 0,
            padding: 0,
            repeats: 0,
        };
        let worse: Vec<(&str, Factors)> = vec![
            ("irrelevant", Factors { relevant: false, correct: false, ..base.clone() }),
            ("wrong", Factors { correct: false, ..base.clone() }),
            ("rude", Factors { politeness: Politeness::Rude, ..base.clone() }),
            ("padded", Factors { padding: 2, ..base.clone() }),
            ("repeated", Factors { repeats: 1, ..base.clone() }),
        ];
        let polite = Factors { politeness: Politeness::Polite, polite_sentences: 1, ..base.clone() };
        for p in w.prompts(Split::Dev, 120) {
            let good = w.response_with(&p, &base, &mut rng).text;
            for (name, f) in &worse {
                let bad = w.response_with(&p, f, &mut rng).text;
                assert_eq!(g.gold_prefers(&p.text, &good, &bad), Ordering::Greater, "{name}: {good} vs {bad}");
            }
            let nicer = w.response_with(&p, &polite, &mut rng).text;
            assert_eq!(g.gold_prefers(&p.text, &nicer, &good), Ordering::Greater, "{nicer} vs {good}");
        }
    }

    #[test]
    fn gold_reads_generated_text_not_labels() {
        let g = GoldReward::default();
        let p = "What is 7 + 5?";
        let s = |r: &str| g.score(p, r);
        assert!(s("7 + 5 is 12.") > s("7 + 5 is 13."));
        assert!(s("The answer is 12.<|end|> garbage") == s("The answer is 12."));
        assert!(s("7 + 5 is 12.") > s("7 + 5 is 12"), "unfinished");
        assert!(s("12.") > s("12 12 12."), "stutter");
        assert!(s("Sure! 12.") > s("Sure! Sure! Sure! Sure! 12."), "polite spam does not pay");
        assert!(s("12.") > s(""));
        assert!(s("12.") > s("The capital of Peru is Lima."));
        assert_eq!(g.factors("Tell me a joke.", "Sure! Ha.").relevance, 0.0);
        let c = "What is the capital of Peru?";
        assert!(g.score(c, "Lima.") > g.score(c, "Lima or Oslo."));
        let l = "List three colors.";
        assert!(g.score(l, "Red, blue and green.") > g.score(l, "Red and blue."));
        assert!(g.score(l, "Red, blue and green.") > g.score(l, "Red, blue and apple."));
        let h = "Say hello to Anna.";
        assert!(g.score(h, "Hello, Anna!") > g.score(h, "Goodbye, Anna!"));
        assert!(g.score(h, "Hello, Anna!") > g.score(h, "Hello, Tom!"));
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        use rand::{Rng, SeedableRng};
        let g = GoldReward::default();
        let alphabet: Vec<char> = "ab 12.!?,<|>end ü東\n\t-+".chars().collect();
        let mut rng = crate::rng::LabRng::seed_from_u64(0);
        let prompts: Vec<&str> = crate::tasks::all_prompts().iter().step_by(97).map(|(p, _)| p.as_str()).collect();
        for i in 0..2000 {
            let len = rng.random_range(0..60);
            let text: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            let s = g.score(prompts[i % prompts.len()], &text);
            assert!(s.is_finite(), "{text:?}");
        }
    }
}
