//! Judge-format data (research note §0): examples shaped `(x, y_1, y_2) → "1" | "2"` from the
//! annotators' labels, so one tiny model can be both the generator and the judge of its own
//! samples (OSP's self-preferring). The question is one user turn of the lab's chat format; the
//! verdict is the assistant's reply, so [`reins_train::judges::SelfJudge`] reads it as the first
//! token after `<|assistant|>` — the same text, rendered by the same chat template.
//!
//! Each labelled pair gives two examples, one per order, so the verdict carries no position
//! prior.

use rand::{Rng, RngCore};
use reins_train::judges::{JudgeTemplate, Judgment, PairwiseJudge};

use crate::{chat, Population, PreferenceRecord};

/// The judge question; `{prompt}`, `{a}` and `{b}` are the world's texts.
pub const TEMPLATE: &str = "Which answer is better? Question: {prompt} Answer 1: {a} Answer 2: {b}";
/// The verdicts, as the assistant writes them (a space first, as every lab completion).
pub const CHOICES: [&str; 2] = [" 1", " 2"];

/// The lab's judge template for [`reins_train::judges::SelfJudge`].
pub fn template() -> JudgeTemplate {
    JudgeTemplate {
        template: TEMPLATE.into(),
        choices: CHOICES.iter().map(|c| c.to_string()).collect(),
        batch_size: 64,
    }
}

/// `(prompt text, completion text)` training examples in the lab's chat format: for each
/// record, the chosen response first (verdict `1`) and second (verdict `2`).
pub fn examples(records: &[PreferenceRecord]) -> Vec<(String, String)> {
    let t = template();
    let mut out = Vec::with_capacity(2 * records.len());
    for r in records {
        out.push((chat::prompt(&t.fill(&r.prompt, &r.chosen, &r.rejected)), chat::completion(CHOICES[0].trim())));
        out.push((chat::prompt(&t.fill(&r.prompt, &r.rejected, &r.chosen)), chat::completion(CHOICES[1].trim())));
    }
    out
}

/// The population's exact preference probability as a judge of text: `P(a ≻ b)` averaged over
/// its annotators, a tie or a skip counting half (the gold-oracle strength of OSP's upper-bound
/// arm). Deterministic: it samples nothing.
pub struct PopulationStrength(pub Population);

impl PopulationStrength {
    pub fn p_a(&self, prompt: &str, a: &str, b: &str) -> f64 {
        let n = self.0.annotators.len().max(1) as f64;
        self.0
            .annotators
            .iter()
            .map(|ann| {
                let p = ann.probabilities(prompt, a, b);
                p.a + 0.5 * (p.tie + p.skip)
            })
            .sum::<f64>()
            / n
    }
}

impl PairwiseJudge<str> for PopulationStrength {
    fn judge(&self, prompt: &str, a: &str, b: &str, _rng: &mut dyn RngCore) -> reins_train::Result<Judgment> {
        Ok(Judgment::from_probability(self.p_a(prompt, a, b)))
    }

    fn name(&self) -> &str {
        "population strength"
    }
}

/// `n` examples drawn with replacement from `pool` (for mixing generation data into the judge's
/// fine-tuning).
pub fn draw<T: Clone>(pool: &[T], n: usize, rng: &mut impl Rng) -> Vec<T> {
    if pool.is_empty() {
        return Vec::new();
    }
    (0..n).map(|_| pool[rng.random_range(0..pool.len())].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_gives_both_orders_with_the_verdict_following_the_chosen_response() {
        let r = PreferenceRecord {
            prompt: "Say hello to Anna.".into(),
            chosen: "Hello, Anna!".into(),
            rejected: "Goodbye Bob!".into(),
            annotator_id: "sim-00".into(),
            margin: None,
        };
        let ex = examples(std::slice::from_ref(&r));
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex[0].0,
            "<|user|> Which answer is better? Question: Say hello to Anna. Answer 1: Hello, Anna! Answer 2: Goodbye Bob! <|assistant|>"
        );
        assert_eq!(ex[0].1, " 1<|end|>");
        assert!(ex[1].0.contains("Answer 1: Goodbye Bob! Answer 2: Hello, Anna!"));
        assert_eq!(ex[1].1, " 2<|end|>");
        // What the self-judge renders with the lab's chat template is the example's prompt.
        let mut env = minijinja::Environment::new();
        env.add_template("chat", chat::JINJA_TEMPLATE).unwrap();
        let user = template().fill(&r.prompt, &r.chosen, &r.rejected);
        let rendered = env
            .get_template("chat")
            .unwrap()
            .render(minijinja::context! { messages => vec![minijinja::context! { role => "user", content => user }], add_generation_prompt => true })
            .unwrap();
        assert_eq!(rendered, ex[0].0);
        assert!(template().validate().is_ok());
    }
}
