//! PIT (Wang et al., "Enable Language Models to Implicitly Learn Self-Improvement From Data",
//! ICLR 2024, arXiv:2310.00898): instead of maximizing a response's quality, learn to maximize
//! its quality *gap* over a reference response, so the model learns "improve this" from ordinary
//! preference data, and can then improve its own answers round after round.
//!
//! PIT reuses reins' trainers on transformed data; this module holds the transforms and the
//! inference loop:
//! 1. **PIT SFT**: `(x ⊕ y_l) → y_w` — rewrite the worse response into the better
//!    ([`PitTemplate::conditional`] puts the reference into the prompt).
//! 2. **Gap reward model** `r(x, y_ref, y)`: a reward model on conditional prompts, trained on the
//!    four comparisons of each labelled pair ([`gap_comparisons`]):
//!    `r(y_w | y_l) > r(y_w | y_w)`, `r(y_w | y_w) > r(y_l | y_w)`, `r(y_w | y_l) > r(y_l | y_l)`,
//!    `r(y_l | y_l) > r(y_l | y_w)` — the sum of their Bradley–Terry losses.
//! 3. **RL** on conditional prompts `x ⊕ y_ref` with the gap reward model as the reward (any
//!    online trainer; stage 1: `y_ref` from the data; stage 2: `y_ref` sampled from the policy).
//! 4. **Inference** ([`improve`]): `y_0 ~ π(·|x)`, then `y_{k+1} ~ π_PIT(·|x ⊕ y_k)`.
//!
//! The four-relation ordering and the curriculum are from the ICLR reviews and recalled forms
//! (research note §11, tagged [recalled]); the template is the user's. No parity is claimed.

use reins_data::{Message, Text};
use reins_model::{Model, SamplingConfig};
use serde::{Deserialize, Serialize};

use crate::trainers::rollout::rollout;
use crate::{Result, TrainError};

/// How the reference response enters the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PitTemplate {
    /// The user's turn with `{prompt}` and `{reference}`, each exactly once.
    pub pit_template: String,
}

impl Default for PitTemplate {
    fn default() -> Self {
        PitTemplate {
            pit_template: "{prompt}\n\nHere is an answer to improve:\n{reference}\n\nWrite a better answer.".into(),
        }
    }
}

impl PitTemplate {
    pub fn validate(&self) -> Result<()> {
        for slot in ["{prompt}", "{reference}"] {
            let n = self.pit_template.matches(slot).count();
            if n != 1 {
                return Err(TrainError::Config(format!(
                    "pit_template must contain {slot} exactly once (it has {n}), e.g. \"{{prompt}} Improve this answer: \
                     {{reference}}\""
                )));
            }
        }
        Ok(())
    }

    /// The template with both slots filled in one pass (braces inside the texts stay as they are).
    pub fn fill(&self, prompt: &str, reference: &str) -> String {
        let t = &self.pit_template;
        let (i, j) = (t.find("{prompt}").unwrap_or(t.len()), t.find("{reference}").unwrap_or(t.len()));
        let mut parts = [(i, "{prompt}", prompt), (j, "{reference}", reference)];
        parts.sort_by_key(|p| p.0);
        let mut out = String::new();
        let mut at = 0;
        for (pos, slot, value) in parts {
            if pos >= t.len() {
                continue;
            }
            out.push_str(&t[at..pos]);
            out.push_str(value);
            at = pos + slot.len();
        }
        out.push_str(&t[at..]);
        out
    }

    /// `prompt` with `reference` put in: a plain prompt is filled in whole; a chat prompt has its
    /// last user message filled in.
    pub fn conditional(&self, prompt: &Text, reference: &str) -> Result<Text> {
        Ok(match prompt {
            Text::Plain(s) => Text::Plain(self.fill(s, reference)),
            Text::Chat(messages) => {
                let mut m: Vec<Message> = messages.clone();
                let last = m.iter_mut().rev().find(|x| x.role == "user").ok_or_else(|| {
                    TrainError::Input("a chat prompt without a user message has no place for the reference".into())
                })?;
                last.content = self.fill(&last.content, reference);
                Text::Chat(m)
            }
        })
    }
}

/// One side of a gap comparison: `(reference, response)`.
pub type GapSide<T> = (T, T);

/// The gap reward model's four comparisons of a pair `y_w ≻ y_l` (texts, ids, or anything that
/// stands for the two responses), each as `(preferred, not)` sides `(reference, response)`, in
/// the order of the module's documentation.
pub fn gap_comparisons<T: Copy>(chosen: T, rejected: T) -> [(GapSide<T>, GapSide<T>); 4] {
    let (w, l) = (chosen, rejected);
    [((l, w), (w, w)), ((w, w), (w, l)), ((l, w), (l, l)), ((l, l), (w, l))]
}

/// Builds the conditional prompt ids of prompt `i` with a previous answer's ids as the reference.
pub type Condition<'a> = dyn FnMut(usize, &[u32]) -> Result<Vec<u32>> + 'a;

/// Iterated improvement: `y_0` from `policy` on `prompts`, then `rounds` times `y_{k+1}` from
/// `pit` on `condition(i, y_k)` (the conditional prompt ids of prompt `i` with its last response
/// as the reference). Returns `[round][prompt]` completion ids, round 0 being `policy`'s; round
/// `k` samples with seed `sampling.seed + k`.
pub fn improve(
    policy: &Model,
    pit: &Model,
    prompts: &[Vec<u32>],
    condition: &mut Condition<'_>,
    rounds: usize,
    sampling: &SamplingConfig,
) -> Result<Vec<Vec<Vec<u32>>>> {
    let mut out = vec![rollout(policy, prompts, 1, sampling, false)?.completions];
    for k in 1..=rounds {
        let last = &out[k - 1];
        let conditional: Vec<Vec<u32>> =
            last.iter().enumerate().map(|(i, y)| condition(i, y)).collect::<Result<_>>()?;
        let s = SamplingConfig { seed: sampling.seed.wrapping_add(k as u64), ..sampling.clone() };
        out.push(rollout(pit, &conditional, 1, &s, false)?.completions);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_fills_both_slots_once_in_either_order() {
        let t = PitTemplate { pit_template: "Improve {reference} for: {prompt}!".into() };
        assert_eq!(t.fill("Q {reference}", "A"), "Improve A for: Q {reference}!");
        assert!(t.validate().is_ok());
        assert!(PitTemplate { pit_template: "{prompt}".into() }.validate().is_err());
        let chat = Text::Chat(vec![Message::new("system", "be brief"), Message::user("Hi?")]);
        let Text::Chat(m) = PitTemplate::default().conditional(&chat, "Hello.").unwrap() else { panic!() };
        assert_eq!(m[0].content, "be brief");
        assert!(m[1].content.starts_with("Hi?") && m[1].content.contains("Hello."), "{}", m[1].content);
    }

    /// Each round conditions on the previous round's answer to the same prompt, and the first
    /// answer is the policy's own sample.
    #[test]
    fn improve_feeds_each_answer_back_as_the_next_reference() -> Result<()> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama");
        let model = Model::load(&dir, &candle_core::Device::Cpu, &reins_model::LoadOptions::default())?;
        let prompts = vec![vec![5u32, 6, 7], vec![9u32, 10]];
        let sampling = SamplingConfig { max_new_tokens: 4, do_sample: true, seed: 3, ..Default::default() };
        let mut seen: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut condition = |i: usize, y: &[u32]| -> Result<Vec<u32>> {
            seen.push((i, y.to_vec()));
            // The conditional prompt: the prompt, a separator token, the previous answer.
            Ok(prompts[i].iter().chain(&[1]).chain(y).copied().collect())
        };
        let out = improve(&model, &model, &prompts, &mut condition, 2, &sampling)?;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], rollout(&model, &prompts, 1, &sampling, false)?.completions);
        assert_eq!(seen.len(), 4);
        for (n, (i, y)) in seen.iter().enumerate() {
            let round = n / 2;
            assert_eq!((*i, y), (n % 2, &out[round][n % 2]), "round {} got another answer", round + 1);
        }
        Ok(())
    }

    #[test]
    fn the_four_comparisons_order_the_gaps() {
        // The scores the four relations ask for, r(response | reference): a gap-monotone ranking.
        let r = |reference: &str, response: &str| -> i32 {
            match (response, reference) {
                ("w", "l") => 3,
                ("w", "w") | ("l", "l") => 2,
                _ => 1,
            }
        };
        for (good, bad) in gap_comparisons("w", "l") {
            assert!(r(good.0, good.1) > r(bad.0, bad.1), "{good:?} vs {bad:?}");
        }
        // Each side is (reference, response): the first comparison holds y_w fixed and swaps the reference.
        assert_eq!(gap_comparisons("w", "l")[0], (("l", "w"), ("w", "w")));
    }
}
