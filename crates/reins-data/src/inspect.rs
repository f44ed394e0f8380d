//! `reins data inspect`: detected format, counts, length histograms, problems found.

use crate::error::Result;
use crate::formats::{load, ConvertOptions, Format};
use crate::io::Report;
use crate::records::{Record, Text};
use crate::tokenizer::HfTokenizer;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

/// Lengths bucketed by powers of two, with min/median/max.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Histogram {
    pub values: Vec<usize>,
}

impl Histogram {
    pub fn add(&mut self, v: usize) {
        self.values.push(v);
    }
    /// `(lower bound, count)` per power-of-two bucket: `[0,1), [1,2), [2,4), [4,8), ...`.
    pub fn buckets(&self) -> Vec<(usize, usize)> {
        let mut b: BTreeMap<usize, usize> = BTreeMap::new();
        for &v in &self.values {
            let lo = if v == 0 { 0 } else { 1usize << (usize::BITS - 1 - v.leading_zeros()) };
            *b.entry(lo).or_default() += 1;
        }
        b.into_iter().collect()
    }
    fn summary(&self) -> Option<(usize, usize, usize)> {
        let mut v = self.values.clone();
        v.sort_unstable();
        Some((*v.first()?, v[v.len() / 2], *v.last()?))
    }
}

impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((min, med, max)) = self.summary() else {
            return write!(f, "    (none)");
        };
        writeln!(f, "    n={} min={min} median={med} max={max}", self.values.len())?;
        let total = self.values.len().max(1);
        for (lo, n) in self.buckets() {
            let hi = if lo == 0 { 0 } else { 2 * lo - 1 };
            let bar = "#".repeat((n * 40).div_ceil(total));
            writeln!(f, "    {lo:>7}..{hi:<7} {n:>7} {bar}")?;
        }
        Ok(())
    }
}

/// What `inspect` found.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub format: String,
    pub report: Report,
    pub kinds: BTreeMap<String, usize>,
    pub conversational: usize,
    /// `"prompt"`, `"chosen"`, `"rejected"`, `"completion"`, `"response"` → lengths
    /// (tokens when a tokenizer is given, else characters).
    pub lengths: BTreeMap<String, Histogram>,
    pub unit: &'static str,
    /// Record-level findings (empty prompts, identical pairs, duplicates), by kind.
    pub findings: BTreeMap<String, usize>,
}

fn len_of(t: &Text, tok: Option<&HfTokenizer>) -> usize {
    match tok {
        Some(tok) => {
            let s = match t {
                Text::Plain(s) => s.clone(),
                Text::Chat(m) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
            };
            tok.encode(&s, false).map(|v| v.len()).unwrap_or(0)
        }
        None => t.char_len(),
    }
}

/// Load `path` and summarise it.
pub fn inspect(
    path: &Path,
    format: Option<Format>,
    opts: &ConvertOptions,
    tok: Option<&HfTokenizer>,
) -> Result<Inspection> {
    let loaded = load(path, format, opts)?;
    let mut kinds = BTreeMap::new();
    let mut lengths: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut findings: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut conversational = 0;
    let mut add = |k: &str, t: &Text| lengths.entry(k.to_string()).or_default().add(len_of(t, tok));
    let mut find = |k: &str| *findings.entry(k.to_string()).or_default() += 1;
    for r in &loaded.records {
        *kinds.entry(r.kind().name().to_string()).or_default() += 1;
        if r.is_conversational() {
            conversational += 1;
        }
        if !seen.insert(serde_json::to_string(&r.to_json()).unwrap_or_default()) {
            find("duplicate record");
        }
        match r {
            Record::Preference(p) => {
                add("prompt", &p.prompt);
                add("chosen", &p.chosen);
                add("rejected", &p.rejected);
                if p.prompt.is_empty() {
                    find("empty prompt");
                }
                if p.chosen.is_empty() || p.rejected.is_empty() {
                    find("empty chosen or rejected");
                }
                if p.chosen == p.rejected {
                    find("chosen equals rejected");
                }
            }
            Record::PromptCompletion { prompt, completion, .. } | Record::Unpaired { prompt, completion, .. } => {
                add("prompt", prompt);
                add("completion", completion);
                if completion.is_empty() {
                    find("empty completion");
                }
            }
            Record::RankedList { prompt, responses, .. } => {
                add("prompt", prompt);
                for x in responses {
                    add("response", &x.response);
                }
                if responses.len() < 2 {
                    find("ranked list with one response");
                }
            }
            Record::LanguageModeling { text, .. } => add("text", text),
            Record::PromptOnly { prompt, .. } => add("prompt", prompt),
            Record::Stepwise { prompt, completions, .. } => {
                add("prompt", &Text::Plain(prompt.clone()));
                add("completion", &Text::Plain(completions.concat()));
            }
            Record::Spans { prompt, response, .. } | Record::Principles { prompt, response, .. } => {
                add("prompt", prompt);
                add("response", &Text::Plain(response.clone()));
            }
        }
    }
    Ok(Inspection {
        format: loaded.format.name().to_string(),
        report: loaded.report,
        kinds,
        conversational,
        lengths,
        unit: if tok.is_some() { "tokens" } else { "characters" },
        findings,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format: {}", self.format)?;
        writeln!(f, "{}", self.report)?;
        writeln!(f, "records by kind:")?;
        for (k, n) in &self.kinds {
            writeln!(f, "  {k}: {n}")?;
        }
        writeln!(f, "conversational: {}", self.conversational)?;
        for (k, h) in &self.lengths {
            writeln!(f, "{k} length ({}):", self.unit)?;
            write!(f, "{h}")?;
        }
        if !self.findings.is_empty() {
            writeln!(f, "findings:")?;
            for (k, n) in &self.findings {
                writeln!(f, "  {k}: {n}")?;
            }
        }
        if !self.report.problems.is_empty() {
            writeln!(f, "problems (first {}):", self.report.problems.len().min(20))?;
            for p in self.report.problems.iter().take(20) {
                writeln!(f, "  {p}")?;
            }
        }
        Ok(())
    }
}
