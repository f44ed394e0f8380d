//! HelpSteer2. Attribute rows (`prompt`, `response`, `helpfulness`, `correctness`,
//! `coherence`, `complexity`, `verbosity`, 0–4) become ranked lists scored by helpfulness,
//! merged by prompt (the data set has two responses per prompt on consecutive rows).
//! Preference rows (`prompt`, `response_1`, `response_2`, `preference_strength` in −3..3,
//! negative = response 1 better) become pairs with `margin = |strength|`; 0 is a tie.

use super::{get_f64, get_str, user_prompt, Out, Skip};
use crate::records::{Message, Meta, Preference, Ranked, Record, Text};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

pub const ATTRIBUTES: [&str; 5] = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"];

pub fn convert_attributes(row: &Map<String, Value>, line: usize, out: &mut Out) -> Result<(), Skip> {
    let prompt = get_str(row, "prompt")?;
    let response = get_str(row, "response")?;
    let mut ratings = BTreeMap::new();
    for a in ATTRIBUTES {
        ratings.insert(a.to_string(), get_f64(row, a)?);
    }
    out.push(Record::RankedList {
        prompt: user_prompt(prompt),
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
            category: None,
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
        prompt: user_prompt(prompt),
        chosen: Text::Chat(vec![Message::assistant(chosen)]),
        rejected: Text::Chat(vec![Message::assistant(rejected)]),
        margin: Some(s.abs()),
        strength: None,
        reference: None,
        meta: Meta { id: None, annotator_id: None, source: Some("helpsteer2-preference".into()), category: None },
    }));
    Ok(())
}
