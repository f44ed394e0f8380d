//! Principle reward models (RLBFF, Wang et al., "RLBFF: Binary Flexible Feedback to bridge
//! between Human Feedback & Verifiable Rewards", arXiv:2509.21319): a reward model that reads
//! a principle beside the response and says whether the response satisfies it — the paper's
//! scalar RM trained as entailment with binary cross-entropy,
//! `−[z log σ(s) + (1 − z) log σ(−s)]`, on single responses, one example per
//! (response, principle, yes/no) check.
//!
//! The principle follows the response: the input is `prompt ++ response ++ EOS ++
//! template(principle)` and the score head is read at its last token, so one response is
//! judged against any principle written the same way — the principles a user chooses at
//! inference ([`crate::rewards::principles`]). The loss and the trainer are the segment reward
//! model's ([`crate::losses::segment_loss`], [`SegmentRewardTrainer`]) with one segment: the
//! whole sequence.
//!
//! Every checkpoint carries `principle_reward.json`: the template and the principles it was
//! trained on (the default set a reward averages).
//!
//! [`SegmentRewardTrainer`]: super::segment_reward::SegmentRewardTrainer

use std::path::Path;

use reins_data::tokenize::{tokenize_prompt, Stats};
use reins_data::{HfTokenizer, Record};
use serde::{Deserialize, Serialize};

use super::segment_reward::SegmentExample;
use crate::{Result, TrainError};

/// How a principle is written after the response, and the principles a reward averages by
/// default. Saved as `principle_reward.json` beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipleRewardSpec {
    /// Text after the response's EOS; `{principle}` is replaced by the principle.
    pub template: String,
    /// The default principle set of a reward from this model. Empty in a config: every
    /// principle of the training data (the checkpoint lists them).
    pub principles: Vec<String>,
}

impl Default for PrincipleRewardSpec {
    fn default() -> Self {
        PrincipleRewardSpec { template: "\nPrinciple: {principle}\nSatisfied:".into(), principles: Vec::new() }
    }
}

impl PrincipleRewardSpec {
    pub const FILE: &'static str = "principle_reward.json";

    pub fn validate(&self) -> Result<()> {
        if !self.template.contains("{principle}") {
            return Err(TrainError::Config(format!(
                "principle reward: `template` {:?} has no `{{principle}}` to write the principle into",
                self.template
            )));
        }
        Ok(())
    }

    /// The text written after a response to ask about `principle`.
    pub fn suffix(&self, principle: &str) -> String {
        self.template.replace("{principle}", principle)
    }

    /// The file a checkpoint carries: `(name, contents)`.
    pub fn to_file(&self) -> Result<(String, String)> {
        super::spec_file(Self::FILE, self)
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let spec: Self = super::read_spec(dir, Self::FILE, "reins principle-reward")?;
        spec.validate()?;
        Ok(spec)
    }
}

/// Each principle of a dataset with its (yes, no) counts.
pub type PrincipleCounts = std::collections::BTreeMap<String, (usize, usize)>;

/// Principle records (`Record::Principles`) into examples, one per check: the prompt as the
/// policy sees it ([`tokenize_prompt`]), the response's tokens plus EOS, the principle's
/// suffix; the target is the last token, label 1 for yes. Other records are dropped and
/// counted. Also returns the principles seen with their (yes, no) counts.
pub fn tokenize_principle_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    spec: &PrincipleRewardSpec,
    max_length: Option<usize>,
) -> Result<(Vec<SegmentExample>, Stats, PrincipleCounts)> {
    spec.validate()?;
    let eos = tok.eos_id().ok_or_else(|| {
        TrainError::Config("principle reward: the tokenizer has no EOS token to end each response with".into())
    })?;
    let mut stats = Stats::default();
    let mut seen = PrincipleCounts::new();
    let mut out = Vec::new();
    for r in records {
        let Record::Principles { prompt, response, principles, .. } = r else {
            stats.drop(&format!("{} is not a principle-checked response", r.kind().name()));
            continue;
        };
        let mut head = tokenize_prompt(tok, prompt)?;
        head.extend(tok.encode(response, false)?);
        head.push(eos);
        for (principle, &yes) in principles {
            let ids = [head.as_slice(), &tok.encode(&spec.suffix(principle), false)?].concat();
            if max_length.is_some_and(|m| ids.len() > m) {
                stats.drop("longer than max_length");
                continue;
            }
            let count = seen.entry(principle.clone()).or_default();
            if yes {
                count.0 += 1;
            } else {
                count.1 += 1;
            }
            stats.kept += 1;
            out.push(SegmentExample { targets: vec![(ids.len() - 1, if yes { 1.0 } else { 0.0 })], ids });
        }
    }
    Ok((out, stats, seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reins_data::{Meta, Text};

    #[test]
    fn each_check_is_one_example_labelled_at_its_last_token() -> Result<()> {
        let tok = HfTokenizer::from_dir(reins_data::testing::fixtures_dir().join("models/llama"))?;
        let eos = tok.eos_id().unwrap();
        let spec = PrincipleRewardSpec::default();
        let principles = [("Is short".to_string(), true), ("Is kind".to_string(), false)].into();
        let records = vec![
            Record::Principles {
                prompt: Text::Plain("Hi?".into()),
                response: " Hello.".into(),
                principles,
                meta: Meta::default(),
            },
            Record::PromptOnly { prompt: Text::Plain("Hi?".into()), meta: Meta::default() },
        ];
        let (ex, stats, seen) = tokenize_principle_dataset(&tok, &records, &spec, None)?;
        assert_eq!((stats.kept, stats.dropped.len()), (2, 1));
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [("Is kind".to_string(), (0, 1)), ("Is short".to_string(), (1, 0))]
        );
        let head =
            [tokenize_prompt(&tok, &Text::Plain("Hi?".into()))?, tok.encode(" Hello.", false)?, vec![eos]].concat();
        for (e, (p, y)) in ex.iter().zip([("Is kind", 0.0), ("Is short", 1.0)]) {
            let want = [head.as_slice(), &tok.encode(&spec.suffix(p), false)?].concat();
            assert_eq!(e.ids, want, "{p}");
            assert_eq!(e.targets, [(want.len() - 1, y)], "{p}");
        }
        let (_, short, _) = tokenize_principle_dataset(&tok, &records, &spec, Some(head.len()))?;
        assert_eq!((short.kept, short.dropped.get("longer than max_length")), (0, Some(&2)));
        let bad = PrincipleRewardSpec { template: "no placeholder".into(), ..Default::default() };
        assert!(tokenize_principle_dataset(&tok, &records, &bad, None).is_err());
        Ok(())
    }
}
