//! Typed records: the TRL dataset types (standard and conversational) plus ranked lists,
//! multi-aspect ratings and span-level labels.
//!
//! Every record can be written back as a TRL-style JSON object ([`Record::to_json`]), and
//! [`crate::formats::trl`] reads that shape again, so `convert` round-trips.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod message;
pub use message::Message;

/// A text field in TRL's two forms: standard (a string) or conversational (messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Chat(Vec<Message>),
}

impl Text {
    pub fn is_chat(&self) -> bool {
        matches!(self, Text::Chat(_))
    }
    /// Total characters of content (for length statistics).
    pub fn char_len(&self) -> usize {
        match self {
            Text::Plain(s) => s.chars().count(),
            Text::Chat(m) => m.iter().map(|m| m.content.chars().count()).sum(),
        }
    }
    /// True when there is no content at all (a tool call or reasoning counts as content).
    pub fn is_empty(&self) -> bool {
        match self {
            Text::Plain(s) => s.trim().is_empty(),
            Text::Chat(m) => m.iter().all(Message::is_empty),
        }
    }
    /// Concatenation in TRL's sense: strings are appended, message lists are chained.
    /// Mixed forms turn the plain part into one assistant message.
    pub fn concat(&self, other: &Text) -> Text {
        match (self, other) {
            (Text::Plain(a), Text::Plain(b)) => Text::Plain(format!("{a}{b}")),
            (Text::Chat(a), Text::Chat(b)) => Text::Chat(a.iter().chain(b).cloned().collect()),
            (Text::Chat(a), Text::Plain(b)) => {
                let mut m = a.clone();
                m.push(Message::assistant(b.clone()));
                Text::Chat(m)
            }
            (Text::Plain(a), Text::Chat(b)) => {
                let mut m = vec![Message::user(a.clone())];
                m.extend(b.iter().cloned());
                Text::Chat(m)
            }
        }
    }
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Provenance and the optional per-record fields that later methods need
/// (personalized rewards need an annotator id).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Identifier in the source data set (e.g. OASST `message_id`, SHP `post_id`).
    pub id: Option<String>,
    /// Who gave the judgment (annotator, worker or user id), when the source says.
    pub annotator_id: Option<String>,
    /// Source format name, e.g. `"hh"`, `"oasst"`.
    pub source: Option<String>,
    /// A subset name for per-category evaluation (RewardBench `subset`, e.g. `"safety"`).
    #[serde(default)]
    pub category: Option<String>,
    /// The source's own split (HelpSteer2 preference rows' `split`, `train` or `val`), kept
    /// so a written file still says which rows the publisher held out.
    #[serde(default)]
    pub split: Option<String>,
}

/// A pairwise preference: `chosen` is preferred to `rejected` after `prompt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preference {
    pub prompt: Text,
    pub chosen: Text,
    pub rejected: Text,
    /// TRL's optional reward-model `margin`.
    pub margin: Option<f64>,
    /// Soft label: probability in [0, 1] that `chosen` is preferred (1.0 = certain);
    /// `None` means a hard label.
    pub strength: Option<f64>,
    /// A reference (gold) response, for quality-gap methods.
    pub reference: Option<Text>,
    pub meta: Meta,
}

/// One response in a ranked list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub response: Text,
    /// 0 = best. Ties share a rank.
    pub rank: Option<u32>,
    /// Higher is better.
    pub score: Option<f64>,
    /// Multi-aspect ratings, e.g. `helpfulness -> 4.0`.
    pub ratings: BTreeMap<String, f64>,
    pub annotator_id: Option<String>,
}

/// A labelled span of a response: character offsets `[start, end)` into `response`, counted
/// in Unicode scalar values (Rust `char`s, Python `str` indices, as the feedback app and Label
/// Studio count them), so Python's `response[start:end]` is the span. Read from
/// `{"start", "end", "tag"}` (the feedback app's `spans` export) or `"label"`; other keys,
/// such as the span's `text`, are ignored here (the reader checks `text`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// e.g. `"wrong"`, `"irrelevant"`, `"incomplete"`.
    #[serde(alias = "tag")]
    pub label: String,
}

impl Span {
    /// The covered text: characters `start..end` of `response`, or `None` when the span
    /// does not lie within it.
    pub fn text(&self, response: &str) -> Option<String> {
        if self.start > self.end {
            return None;
        }
        let mut chars = response.chars().skip(self.start);
        let text: String = chars.by_ref().take(self.end - self.start).collect();
        (text.chars().count() == self.end - self.start).then_some(text)
    }
}

/// A typed record. Readers produce these; tokenizers consume them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// Language modeling: `text` or `messages`.
    LanguageModeling { text: Text, meta: Meta },
    /// Prompt-only: `prompt`.
    PromptOnly { prompt: Text, meta: Meta },
    /// Prompt-completion: `prompt`, `completion`.
    PromptCompletion { prompt: Text, completion: Text, meta: Meta },
    /// Preference: `prompt`, `chosen`, `rejected` (+ optional `margin`, strength, reference).
    Preference(Preference),
    /// Unpaired preference: `prompt`, `completion`, `label` (true = desirable).
    Unpaired { prompt: Text, completion: Text, label: bool, meta: Meta },
    /// Stepwise supervision: `prompt`, `completions` (steps), `labels` (one per step).
    Stepwise { prompt: String, completions: Vec<String>, labels: Vec<bool>, meta: Meta },
    /// One prompt, k responses with ranks and/or scores and optional per-aspect ratings.
    RankedList { prompt: Text, responses: Vec<Ranked>, meta: Meta },
    /// Span-level labels on one response (fine-grained feedback).
    Spans { prompt: Text, response: String, spans: Vec<Span>, meta: Meta },
    /// Binary principle checks on one response (RLBFF): does the response satisfy each
    /// principle, yes or no. The feedback app's `principles` export.
    Principles { prompt: Text, response: String, principles: BTreeMap<String, bool>, meta: Meta },
}

/// The kind of a record, for counts and `--to` targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    LanguageModeling,
    PromptOnly,
    PromptCompletion,
    Preference,
    Unpaired,
    Stepwise,
    RankedList,
    Spans,
    Principles,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::LanguageModeling => "language_modeling",
            Kind::PromptOnly => "prompt_only",
            Kind::PromptCompletion => "prompt_completion",
            Kind::Preference => "preference",
            Kind::Unpaired => "unpaired_preference",
            Kind::Stepwise => "stepwise_supervision",
            Kind::RankedList => "ranked_list",
            Kind::Spans => "spans",
            Kind::Principles => "principles",
        }
    }
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::LanguageModeling { .. } => Kind::LanguageModeling,
            Record::PromptOnly { .. } => Kind::PromptOnly,
            Record::PromptCompletion { .. } => Kind::PromptCompletion,
            Record::Preference(_) => Kind::Preference,
            Record::Unpaired { .. } => Kind::Unpaired,
            Record::Stepwise { .. } => Kind::Stepwise,
            Record::RankedList { .. } => Kind::RankedList,
            Record::Spans { .. } => Kind::Spans,
            Record::Principles { .. } => Kind::Principles,
        }
    }

    pub fn meta(&self) -> &Meta {
        match self {
            Record::Preference(p) => &p.meta,
            Record::LanguageModeling { meta, .. }
            | Record::PromptOnly { meta, .. }
            | Record::PromptCompletion { meta, .. }
            | Record::Unpaired { meta, .. }
            | Record::Stepwise { meta, .. }
            | Record::RankedList { meta, .. }
            | Record::Spans { meta, .. }
            | Record::Principles { meta, .. } => meta,
        }
    }

    /// Whether the record is conversational (TRL's `is_conversational`).
    pub fn is_conversational(&self) -> bool {
        match self {
            Record::LanguageModeling { text, .. } => text.is_chat(),
            Record::PromptOnly { prompt, .. }
            | Record::PromptCompletion { prompt, .. }
            | Record::Unpaired { prompt, .. }
            | Record::RankedList { prompt, .. }
            | Record::Spans { prompt, .. }
            | Record::Principles { prompt, .. } => prompt.is_chat(),
            Record::Preference(p) => p.prompt.is_chat() || p.chosen.is_chat(),
            Record::Stepwise { .. } => false,
        }
    }

    /// The TRL-style JSON object for this record (the columns TRL's trainers read, plus
    /// reins' extra fields where set). [`crate::formats::trl`] reads it back.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        match self {
            Record::LanguageModeling { text, .. } => match text {
                Text::Plain(s) => {
                    o.insert("text".into(), json!(s));
                }
                Text::Chat(_) => {
                    o.insert("messages".into(), text.to_json());
                }
            },
            Record::PromptOnly { prompt, .. } => {
                o.insert("prompt".into(), prompt.to_json());
            }
            Record::PromptCompletion { prompt, completion, .. } => {
                o.insert("prompt".into(), prompt.to_json());
                o.insert("completion".into(), completion.to_json());
            }
            Record::Preference(p) => {
                o.insert("prompt".into(), p.prompt.to_json());
                o.insert("chosen".into(), p.chosen.to_json());
                o.insert("rejected".into(), p.rejected.to_json());
                if let Some(m) = p.margin {
                    o.insert("margin".into(), json!(m));
                }
                if let Some(s) = p.strength {
                    o.insert("strength".into(), json!(s));
                }
                if let Some(r) = &p.reference {
                    o.insert("reference".into(), r.to_json());
                }
            }
            Record::Unpaired { prompt, completion, label, .. } => {
                o.insert("prompt".into(), prompt.to_json());
                o.insert("completion".into(), completion.to_json());
                o.insert("label".into(), json!(label));
            }
            Record::Stepwise { prompt, completions, labels, .. } => {
                o.insert("prompt".into(), json!(prompt));
                o.insert("completions".into(), json!(completions));
                o.insert("labels".into(), json!(labels));
            }
            Record::RankedList { prompt, responses, .. } => {
                o.insert("prompt".into(), prompt.to_json());
                let rs: Vec<Value> = responses
                    .iter()
                    .map(|r| {
                        let mut m = Map::new();
                        m.insert("response".into(), r.response.to_json());
                        if let Some(k) = r.rank {
                            m.insert("rank".into(), json!(k));
                        }
                        if let Some(s) = r.score {
                            m.insert("score".into(), json!(s));
                        }
                        if !r.ratings.is_empty() {
                            m.insert("ratings".into(), json!(r.ratings));
                        }
                        if let Some(a) = &r.annotator_id {
                            m.insert("annotator_id".into(), json!(a));
                        }
                        Value::Object(m)
                    })
                    .collect();
                o.insert("responses".into(), Value::Array(rs));
            }
            Record::Spans { prompt, response, spans, .. } => {
                // The feedback app's `spans` export layout, covered text included.
                o.insert("prompt".into(), prompt.to_json());
                o.insert("completion".into(), json!(response));
                let spans: Vec<Value> = spans
                    .iter()
                    .map(|s| json!({"start": s.start, "end": s.end, "tag": s.label, "text": s.text(response)}))
                    .collect();
                o.insert("spans".into(), Value::Array(spans));
            }
            Record::Principles { prompt, response, principles, .. } => {
                // The feedback app's `principles` export layout.
                o.insert("prompt".into(), prompt.to_json());
                o.insert("completion".into(), json!(response));
                o.insert("principles".into(), json!(principles));
            }
        }
        let meta = self.meta();
        if let Some(id) = &meta.id {
            o.insert("id".into(), json!(id));
        }
        if let Some(a) = &meta.annotator_id {
            o.insert("annotator_id".into(), json!(a));
        }
        if let Some(s) = &meta.source {
            o.insert("source".into(), json!(s));
        }
        if let Some(c) = &meta.category {
            o.insert("category".into(), json!(c));
        }
        if let Some(s) = &meta.split {
            o.insert("split".into(), json!(s));
        }
        Value::Object(o)
    }
}

/// A plain-text or chat prompt with one response appended, as TRL does for
/// prompt + completion (used by converters).
pub fn reply(prompt: &Text, response: &str) -> Text {
    match prompt {
        Text::Plain(_) => Text::Plain(response.to_string()),
        Text::Chat(_) => Text::Chat(vec![Message::assistant(response)]),
    }
}
