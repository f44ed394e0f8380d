//! HelpSteer2. Attribute rows (`prompt`, `response`, `helpfulness`, `correctness`,
//! `coherence`, `complexity`, `verbosity`, 0–4) become ranked lists scored by helpfulness,
//! merged by prompt (the data set has two responses per prompt on consecutive rows).
//! Preference rows (`prompt`, `response_1`, `response_2`, `preference_strength` in −3..3,
//! negative = response 1 better) become pairs with `margin = |strength|`; 0 is a tie;
//! their `split` (`train` / `val`) is kept in the record's meta.
//!
//! About 29% of the prompts are multi-turn: the earlier turns are in `prompt`, separated
//! by NeMo's `<extra_id_1>` (the card's layout: `{user turn 1}\n<extra_id_1>Assistant\n
//! {assistant turn 1}\n<extra_id_1>User\n{user turn 2}`), and the response is the last
//! assistant turn. They become conversations, not one user message holding the markers.

use super::{get_f64, get_str, Out, Skip};
use crate::records::{Message, Meta, Preference, Ranked, Record, Text};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// NeMo's turn separator in HelpSteer2's multi-turn prompts.
const TURN: &str = "<extra_id_1>";

/// A HelpSteer2 prompt as a conversation: one user message, or the turns of a multi-turn
/// prompt (see the module doc), which must end with a user turn.
pub fn parse_prompt(prompt: &str) -> Result<Text, Skip> {
    let bad = |why: String| Skip::new("unparsable multi-turn prompt", why);
    let pieces: Vec<&str> = prompt.split(TURN).collect();
    let last = pieces.len() - 1;
    let mut msgs = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        // The newline before a separator belongs to the layout, not to the turn.
        let piece = if i < last { piece.strip_suffix('\n').unwrap_or(piece) } else { piece };
        if i == 0 {
            msgs.push(Message::user(piece));
            continue;
        }
        let (role, rest) = if let Some(rest) = piece.strip_prefix("Assistant") {
            ("assistant", rest)
        } else if let Some(rest) = piece.strip_prefix("User") {
            ("user", rest)
        } else {
            ("", piece)
        };
        if role.is_empty() || !(rest.is_empty() || rest.starts_with('\n')) {
            let start: String = piece.chars().take(20).collect();
            return Err(bad(format!(
                "turn {} should start with `User` or `Assistant` after `{TURN}`, found {start:?}",
                i + 1
            )));
        }
        msgs.push(Message::new(role, rest.strip_prefix('\n').unwrap_or(rest)));
    }
    if msgs.last().is_some_and(|m| m.role != "user") {
        return Err(bad(format!(
            "the prompt should end with a user turn; its last of {} turns is the assistant's",
            msgs.len()
        )));
    }
    Ok(Text::Chat(msgs))
}

pub const ATTRIBUTES: [&str; 5] = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"];

pub fn convert_attributes(row: &Map<String, Value>, line: usize, out: &mut Out) -> Result<(), Skip> {
    let prompt = get_str(row, "prompt")?;
    let response = get_str(row, "response")?;
    let mut ratings = BTreeMap::new();
    for a in ATTRIBUTES {
        ratings.insert(a.to_string(), get_f64(row, a)?);
    }
    out.push(Record::RankedList {
        prompt: parse_prompt(prompt)?,
        responses: vec![Ranked {
            response: Text::Chat(vec![Message::assistant(response)]),
            rank: None,
            score: ratings.get("helpfulness").copied(),
            ratings,
            annotator_id: None,
        }],
        meta: Meta {
            id: Some(format!("line {line}")),
            annotator_id: None,
            source: Some("helpsteer2".into()),
            split: super::opt_str(row, "split"),
            ..Meta::default()
        },
    });
    Ok(())
}

/// Merge ranked lists that share a prompt, keeping first-seen order.
pub fn group_by_prompt(records: Vec<Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in records {
        match r {
            Record::RankedList { prompt, responses, meta } => {
                let key = serde_json::to_string(&prompt).unwrap_or_default();
                if let Some(&i) = index.get(&key) {
                    if let Record::RankedList { responses: rs, .. } = &mut out[i] {
                        rs.extend(responses);
                    }
                } else {
                    index.insert(key, out.len());
                    out.push(Record::RankedList { prompt, responses, meta });
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub fn convert_preference(row: &Map<String, Value>, out: &mut Out) -> Result<(), Skip> {
    let prompt = get_str(row, "prompt")?;
    let r1 = get_str(row, "response_1")?;
    let r2 = get_str(row, "response_2")?;
    let s = get_f64(row, "preference_strength")?;
    if s == 0.0 {
        return Err(Skip::new("tie", "preference_strength is 0"));
    }
    let (chosen, rejected) = if s < 0.0 { (r1, r2) } else { (r2, r1) };
    out.push(Record::Preference(Preference {
        prompt: parse_prompt(prompt)?,
        chosen: Text::Chat(vec![Message::assistant(chosen)]),
        rejected: Text::Chat(vec![Message::assistant(rejected)]),
        margin: Some(s.abs()),
        strength: None,
        reference: None,
        meta: Meta {
            source: Some("helpsteer2-preference".into()),
            split: super::opt_str(row, "split"),
            ..Meta::default()
        },
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_split_into_turns() {
        assert_eq!(parse_prompt("c#"), Ok(Text::Chat(vec![Message::user("c#")])));
        assert_eq!(
            parse_prompt("hi\n<extra_id_1>Assistant\nhello\n\n<extra_id_1>User\nbye\n"),
            Ok(Text::Chat(vec![Message::user("hi"), Message::assistant("hello\n"), Message::user("bye\n")]))
        );
        assert!(parse_prompt("hi\n<extra_id_1>Assistant\nhello").is_err(), "ends with the assistant");
        assert!(parse_prompt("hi\n<extra_id_1>Bot\nhello").is_err(), "unknown role");
    }
}
