//! Principles from free-text feedback by a rule file — the stand-in for RLBFF's LLM extractor
//! (Wang et al., "RLBFF: Binary Flexible Feedback to bridge between Human Feedback &
//! Verifiable Rewards", arXiv:2509.21319). The paper asks an LLM which principles a written
//! review says a response satisfies ("accuracy of information: yes", "code readability: no"),
//! keeping only clear yes/no answers. Here each principle lists the phrases that say yes and
//! the phrases that say no, as case-insensitive regular expressions:
//!
//! ```toml
//! [[principle]]
//! name = "The answer is correct"
//! yes = ['\bcorrect\b', '\bright\b']
//! no = ['\bwrong\b', '\bnot (correct|right)\b']
//! ```
//!
//! The feedback is cut into clauses (at `.`, `;`, `,`, `!`, `?`, newlines and " but "). In one
//! clause a `no` phrase wins over a `yes` one, so a negation ("not correct") is written as a
//! `no` pattern. A principle whose clauses disagree is ambiguous and left out, as the paper
//! drops "partially" answers; a principle no clause mentions is not checked.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::{Result, TrainError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    principle: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    yes: Vec<String>,
    #[serde(default)]
    no: Vec<String>,
}

struct Rule {
    name: String,
    yes: Vec<Regex>,
    no: Vec<Regex>,
}

/// A compiled rule file: one yes/no phrase list per principle.
pub struct PrincipleRules {
    rules: Vec<Rule>,
}

/// What one piece of feedback says: the principles it answers clearly, and those it answers
/// both ways (left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    pub checks: BTreeMap<String, bool>,
    pub ambiguous: Vec<String>,
}

impl PrincipleRules {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Input(format!("principle rules {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| TrainError::Input(format!("principle rules {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let file: RuleFile = toml::from_str(text).map_err(|e| {
            TrainError::Input(format!(
                "{e}(expected [[principle]] tables with `name`, `yes` and `no` lists of regular expressions)"
            ))
        })?;
        let compile = |name: &str, side: &str, patterns: &[String]| -> Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(&format!("(?i){p}"))
                        .map_err(|e| TrainError::Input(format!("principle `{name}`: `{side}` pattern {p:?}: {e}")))
                })
                .collect()
        };
        let mut rules = Vec::with_capacity(file.principle.len());
        for r in file.principle {
            if r.name.trim().is_empty() {
                return Err(TrainError::Input("a [[principle]] has an empty `name`".into()));
            }
            if r.yes.is_empty() && r.no.is_empty() {
                return Err(TrainError::Input(format!("principle `{}` has no `yes` or `no` pattern", r.name)));
            }
            if rules.iter().any(|x: &Rule| x.name == r.name) {
                return Err(TrainError::Input(format!("principle `{}` is listed twice", r.name)));
            }
            let yes = compile(&r.name, "yes", &r.yes)?;
            let no = compile(&r.name, "no", &r.no)?;
            rules.push(Rule { name: r.name, yes, no });
        }
        if rules.is_empty() {
            return Err(TrainError::Input("the rule file lists no [[principle]]".into()));
        }
        Ok(PrincipleRules { rules })
    }

    /// The principles' names, in the file's order.
    pub fn principles(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The yes/no checks `feedback` states clearly.
    pub fn extract(&self, feedback: &str) -> Extraction {
        let clauses = clauses(feedback);
        let mut out = Extraction::default();
        for rule in &self.rules {
            let (mut yes, mut no) = (false, false);
            for c in &clauses {
                if rule.no.iter().any(|r| r.is_match(c)) {
                    no = true;
                } else if rule.yes.iter().any(|r| r.is_match(c)) {
                    yes = true;
                }
            }
            match (yes, no) {
                (true, true) => out.ambiguous.push(rule.name.clone()),
                (true, false) | (false, true) => {
                    out.checks.insert(rule.name.clone(), yes);
                }
                (false, false) => {}
            }
        }
        out
    }
}

/// The clauses of a piece of feedback.
fn clauses(text: &str) -> Vec<String> {
    let lower = text.to_lowercase().replace(" but ", ";");
    lower.split(['.', ';', ',', '!', '?', '\n']).map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[principle]]
name = "correct"
yes = ['\bcorrect\b', '\bright\b']
no = ['\bwrong\b', '\bnot (correct|right)\b']

[[principle]]
name = "concise"
yes = ['\b(short|concise|brief)\b']
no = ['too long', 'rambl']
"#;

    fn checks(e: &Extraction) -> Vec<(&str, bool)> {
        e.checks.iter().map(|(p, &y)| (p.as_str(), y)).collect()
    }

    #[test]
    fn clear_answers_become_checks_and_negations_are_no() {
        let r = PrincipleRules::parse(RULES).unwrap();
        assert_eq!(r.principles(), ["correct", "concise"]);
        assert_eq!(
            checks(&r.extract("The arithmetic is right; short and sweet.")),
            [("concise", true), ("correct", true)]
        );
        assert_eq!(checks(&r.extract("Not correct. Too long!")), [("concise", false), ("correct", false)]);
        assert_eq!(checks(&r.extract("Polite.")), [], "nothing mentioned, nothing checked");
        let e = r.extract("Right answer, but wrong units");
        assert_eq!((checks(&e), e.ambiguous.clone()), (vec![], vec!["correct".to_string()]), "both ways: left out");
        assert_eq!(checks(&r.extract("CORRECT")), [("correct", true)], "case-insensitive");
    }

    #[test]
    fn bad_rule_files_say_what_is_wrong() {
        let err = |t: &str| PrincipleRules::parse(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err("[[principle]]\nname = \"x\"\nyes = ['(']").contains("`yes` pattern"),
            "{}",
            err("[[principle]]\nname = \"x\"\nyes = ['(']")
        );
        assert!(err("[[principle]]\nname = \"x\"").contains("no `yes` or `no` pattern"));
        assert!(err("[[principle]]\nname = \"x\"\nyes = ['a']\nmaybe = ['b']").contains("unknown field"));
        assert!(err("").contains("principle"));
        assert!(
            err("[[principle]]\nname = \"x\"\nyes = ['a']\n[[principle]]\nname = \"x\"\nno = ['b']").contains("twice")
        );
    }
}
