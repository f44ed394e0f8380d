//! A language model as a pairwise judge: the policy judging its own samples (Online
//! Self-Preferring LMs, Zhai et al., arXiv:2405.14103), or any causal LM prompted to compare.
//!
//! The judge fills a text template with the prompt and the two responses, renders it as one
//! user turn with the tokenizer's chat template (or uses it as is when the tokenizer has none),
//! and reads the model's next-token logits of the two verdict choices (`"A"` / `"B"` by
//! default): `P(first) = σ(z_A − z_B)`, the probability restricted to the two choices. The
//! verdict is averaged over both orders to cancel position bias:
//!
//! `p(a ≻ b) = ½ · (P(first | a, b) + 1 − P(first | b, a))`.
//!
//! The OSP paper's exact judge prompt and its use of the verdict probability as "preference
//! strength" are not verified against its code (research note §10, tagged [recalled]); the
//! template and choices are therefore the user's to set.
//!
//! Token ids in, token ids out, as the trainers hold their rollouts: the prompt and the responses
//! are decoded without special tokens (chat markup and end tokens drop out) before filling the
//! template, so the judge sees the text, not the policy's prompt formatting.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, D};
use rand::RngCore;
use reins_data::{HfTokenizer, Message};
use reins_model::{Batch, Model};
use serde::{Deserialize, Serialize};

use super::{Judgment, PairwiseJudge};
use crate::{Result, TrainError};

/// The judge prompt and the two verdict strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeTemplate {
    /// The user turn, with `{prompt}`, `{a}` and `{b}` each exactly once.
    pub template: String,
    /// What the model writes first for "the first response is better" and for the second
    /// (default `["A", "B"]`); only their first tokens are read, and those must differ.
    pub choices: Vec<String>,
    /// Judge inputs per forward pass (default 32).
    pub batch_size: usize,
}

impl Default for JudgeTemplate {
    fn default() -> Self {
        JudgeTemplate {
            template: "Which response answers the prompt better?\n\nPrompt: {prompt}\n\nResponse A: {a}\n\n\
                       Response B: {b}\n\nAnswer with a single letter, A or B."
                .into(),
            choices: vec!["A".into(), "B".into()],
            batch_size: 32,
        }
    }
}

impl JudgeTemplate {
    pub fn validate(&self) -> Result<()> {
        for slot in ["{prompt}", "{a}", "{b}"] {
            if self.template.matches(slot).count() != 1 {
                return Err(TrainError::Config(format!(
                    "judge_template must contain {slot} exactly once (it has {}); e.g. \"Prompt: {{prompt}} \
                     Response A: {{a}} Response B: {{b}} Which is better?\"",
                    self.template.matches(slot).count()
                )));
            }
        }
        if self.choices.len() != 2 {
            return Err(TrainError::Config(format!(
                "judge_choices needs exactly two strings (first better, second better), got {}",
                self.choices.len()
            )));
        }
        if self.batch_size == 0 {
            return Err(TrainError::Config("judge_batch_size must be at least 1".into()));
        }
        Ok(())
    }

    /// The template with its slots filled in one pass (a `{a}` inside the prompt stays text).
    pub fn fill(&self, prompt: &str, a: &str, b: &str) -> String {
        let mut out = String::with_capacity(self.template.len() + prompt.len() + a.len() + b.len());
        let mut rest = self.template.as_str();
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let (value, len) = if tail.starts_with("{prompt}") {
                (prompt, 8)
            } else if tail.starts_with("{a}") {
                (a, 3)
            } else if tail.starts_with("{b}") {
                (b, 3)
            } else {
                ("{", 1)
            };
            out.push_str(value);
            rest = &tail[len..];
        }
        out.push_str(rest);
        out
    }
}

/// Who judges an online run's samples (the `judge` key of `reins online-dpo`, `iterative-dpo`,
/// `inpo`, `nash-md` and `osp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeSource {
    /// The run's `reward`: the higher score wins, `σ(r(a) − r(b))` where a probability is needed.
    /// Default, except for OSP.
    #[default]
    Reward,
    /// The policy itself, through `judge_template` ([`SelfJudge`] on the live weights).
    #[serde(rename = "self")]
    Policy,
}

/// The judge keys of the online commands: who judges, and the self-judge's prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeArgs {
    /// `reward` (default) or `self`.
    pub judge: JudgeSource,
    /// The self-judge's user turn, with `{prompt}`, `{a}` and `{b}` ([`JudgeTemplate::template`]).
    pub judge_template: String,
    /// What the model writes first for "A is better" and "B is better" (default `["A", "B"]`).
    pub judge_choices: Vec<String>,
    /// Judge inputs per forward pass (default 32).
    pub judge_batch_size: usize,
}

impl Default for JudgeArgs {
    fn default() -> Self {
        let t = JudgeTemplate::default();
        JudgeArgs {
            judge: JudgeSource::default(),
            judge_template: t.template,
            judge_choices: t.choices,
            judge_batch_size: t.batch_size,
        }
    }
}

impl JudgeArgs {
    pub fn template(&self) -> JudgeTemplate {
        JudgeTemplate {
            template: self.judge_template.clone(),
            choices: self.judge_choices.clone(),
            batch_size: self.judge_batch_size,
        }
    }
}

/// A causal LM judging pairs by its verdict-token probabilities, swap-averaged.
pub struct SelfJudge {
    pub model: Model,
    tok: Arc<HfTokenizer>,
    template: JudgeTemplate,
    /// The first token of each choice.
    choice_ids: [u32; 2],
}

impl SelfJudge {
    /// `model` is used as given: `policy.detached()` shares the policy's storage, so the judge
    /// follows every optimizer step without building a graph.
    pub fn new(model: Model, tok: Arc<HfTokenizer>, template: JudgeTemplate) -> Result<Self> {
        template.validate()?;
        let first = |s: &str| -> Result<u32> {
            tok.encode(s, false)?.first().copied().ok_or_else(|| {
                TrainError::Config(format!("judge choice {s:?} encodes to no token; use e.g. \"A\" and \"B\""))
            })
        };
        let choice_ids = [first(&template.choices[0])?, first(&template.choices[1])?];
        if choice_ids[0] == choice_ids[1] {
            return Err(TrainError::Config(format!(
                "judge choices {:?} and {:?} start with the same token ({}), so the judge cannot tell them apart; \
                 pick choices whose first tokens differ",
                template.choices[0], template.choices[1], choice_ids[0]
            )));
        }
        if choice_ids.iter().any(|&id| id as usize >= model.config.vocab_size) {
            return Err(TrainError::Config("a judge choice's token is outside the model's vocabulary".into()));
        }
        Ok(SelfJudge { model, tok, template, choice_ids })
    }

    /// The judge's input ids for (prompt, a, b).
    pub fn input_ids(&self, prompt: &[u32], a: &[u32], b: &[u32]) -> Result<Vec<u32>> {
        self.input_ids_of(&self.text(prompt)?, &self.text(a)?, &self.text(b)?)
    }

    /// Token ids as the text the template receives: special tokens dropped, trimmed.
    fn text(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tok.decode(ids, true)?.trim().to_string())
    }

    /// The judge's input ids for texts already decoded.
    fn input_ids_of(&self, prompt: &str, a: &str, b: &str) -> Result<Vec<u32>> {
        let question = self.template.fill(prompt, a, b);
        Ok(if self.tok.has_chat_template() {
            self.tok.encode_chat(&[Message::user(question)], true)?
        } else {
            self.tok.encode(&question, true)?
        })
    }

    /// `P(first choice)` after each input, restricted to the two choices: `σ(z_first − z_second)`
    /// at the input's last token. Batches of `batch_size`, right-padded.
    pub fn p_first(&self, inputs: &[Vec<u32>]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.template.batch_size) {
            if chunk.iter().any(Vec::is_empty) {
                return Err(TrainError::Input("a judge input is empty".into()));
            }
            let batch = Batch::right_padded(chunk, 0);
            let logits = self.model.lm_logits(&self.model.pooled(&batch)?)?.to_dtype(DType::F32)?; // [B, V]
            let first = logits.narrow(D::Minus1, self.choice_ids[0] as usize, 1)?;
            let second = logits.narrow(D::Minus1, self.choice_ids[1] as usize, 1)?;
            let gap: Vec<f32> = (first - second)?.flatten_all()?.to_vec1()?;
            out.extend(gap.into_iter().map(|d| 1.0 / (1.0 + (-f64::from(d)).exp())));
        }
        Ok(out)
    }
}

impl PairwiseJudge<[u32]> for SelfJudge {
    fn judge(&self, prompt: &[u32], a: &[u32], b: &[u32], rng: &mut dyn RngCore) -> Result<Judgment> {
        Ok(self.judge_many(&[(prompt, a, b)], rng)?.remove(0))
    }

    /// Both orders of every triple in batched passes; `p_a` is the swap average, the verdict
    /// the side it favours (a tie at exactly ½).
    fn judge_many(&self, items: &[(&[u32], &[u32], &[u32])], _rng: &mut dyn RngCore) -> Result<Vec<Judgment>> {
        // A group's prompt and responses recur in many pairs: each is decoded once.
        let mut texts: HashMap<&[u32], String> = HashMap::new();
        let mut inputs = Vec::with_capacity(2 * items.len());
        for &(p, a, b) in items {
            for ids in [p, a, b] {
                if !texts.contains_key(ids) {
                    texts.insert(ids, self.text(ids)?);
                }
            }
            let (p, a, b) = (&texts[p], &texts[a], &texts[b]);
            inputs.push(self.input_ids_of(p, a, b)?);
            inputs.push(self.input_ids_of(p, b, a)?);
        }
        let p = self.p_first(&inputs)?;
        Ok(p.chunks(2).map(|ab| Judgment::from_probability(0.5 * (ab[0] + 1.0 - ab[1]))).collect())
    }

    fn name(&self) -> &str {
        "self"
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::Device;
    use rand::SeedableRng;

    use super::*;
    use crate::judges::Preference;

    /// The judge's batched, padded, swap-averaged probabilities against one unpadded forward
    /// per order, reading the full logits' last row and a two-way softmax over the choices.
    #[test]
    fn the_self_judge_reads_the_choices_probability_at_the_end_averaged_over_both_orders() -> Result<()> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama");
        let model = Model::load(&dir, &Device::Cpu, &reins_model::LoadOptions::default())?;
        let tok = Arc::new(HfTokenizer::from_dir(&dir)?);
        let template = JudgeTemplate { batch_size: 3, ..Default::default() };
        let judge = SelfJudge::new(model.clone(), tok.clone(), template.clone())?;
        let enc = |s: &str| tok.encode(s, false);
        let (p1, a1, b1) = (enc("What is two plus two?")?, enc("Four.")?, enc("It is five, I think, or six.")?);
        let (p2, a2, b2) = (enc("Name a colour.")?, enc("Blue")?, enc("Red.")?);
        let items: Vec<(&[u32], &[u32], &[u32])> = vec![(&p1, &a1, &b1), (&p2, &a2, &b2), (&p1, &b1, &a1)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let got = judge.judge_many(&items, &mut rng)?;

        let ids = |s: &str| tok.encode(s, false).map(|v| v[0]);
        let (ca, cb) = (ids("A")?, ids("B")?);
        let p_first = |p: &str, a: &str, b: &str| -> Result<f64> {
            let text = tok.apply_chat_template(&[Message::user(template.fill(p, a, b))], true)?;
            let row = tok.encode(&text, false)?;
            let n = row.len();
            let logits = model.logits(&Batch::new(vec![row], vec![vec![1; n]])?)?;
            let last: Vec<f32> = logits.get(0)?.get(n - 1)?.to_vec1()?;
            let (za, zb) = (f64::from(last[ca as usize]), f64::from(last[cb as usize]));
            Ok(za.exp() / (za.exp() + zb.exp()))
        };
        let texts = [
            ("What is two plus two?", "Four.", "It is five, I think, or six."),
            ("Name a colour.", "Blue", "Red."),
            ("What is two plus two?", "It is five, I think, or six.", "Four."),
        ];
        for (k, (p, a, b)) in texts.iter().enumerate() {
            let want = 0.5 * (p_first(p, a, b)? + 1.0 - p_first(p, b, a)?);
            assert!((got[k].p_a - want).abs() < 1e-5, "item {k}: judge {} vs direct {want}", got[k].p_a);
            assert_eq!(got[k].preference, if want > 0.5 { Preference::A } else { Preference::B });
        }
        assert!((got[0].p_a + got[2].p_a - 1.0).abs() < 1e-6, "swapping a and b mirrors the probability");
        let one = judge.judge(&p2, &a2, &b2, &mut rng)?;
        assert!((one.p_a - got[1].p_a).abs() < 1e-6, "one pair alone, unpadded, agrees with the batch");
        let same = JudgeTemplate { choices: vec!["A".into(), "A and B".into()], ..Default::default() };
        let err = SelfJudge::new(model, tok, same).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("start with the same token"), "{err}");
        Ok(())
    }

    #[test]
    fn the_template_fills_each_slot_once_and_leaves_braces_in_the_texts_alone() {
        let t = JudgeTemplate { template: "Q: {prompt} | 1: {a} | 2: {b} {x}".into(), ..Default::default() };
        assert_eq!(t.fill("why {a}?", "yes", "{b}"), "Q: why {a}? | 1: yes | 2: {b} {x}");
        assert!(t.validate().is_ok());
        let twice = JudgeTemplate { template: "{prompt} {a} {a} {b}".into(), ..Default::default() };
        assert!(twice.validate().unwrap_err().to_string().contains("{a} exactly once"));
        let one = JudgeTemplate { choices: vec!["A".into()], ..Default::default() };
        assert!(one.validate().is_err());
    }
}
