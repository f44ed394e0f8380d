//! Chatbot Arena conversations: `conversation_a`, `conversation_b` (message lists),
//! `winner` (`model_a`, `model_b`, `tie`, `tie (bothbad)`), `judge`, `question_id`.
//! The shared first user turn is the prompt; the rest of each conversation is the
//! completion. Ties are skipped unless `keep_ties`, which keeps them with `strength = 0.5`.

use super::{get, get_str, ConvertOptions, Out, Skip};
use crate::formats::trl::parse_text;
use crate::records::{Meta, Preference, Record, Text};
use serde_json::{Map, Value};

pub fn convert(row: &Map<String, Value>, opts: &ConvertOptions, out: &mut Out) -> Result<(), Skip> {
    let winner = get_str(row, "winner")?;
    let a = parse_text("conversation_a", get(row, "conversation_a")?)?;
    let b = parse_text("conversation_b", get(row, "conversation_b")?)?;
    let (Text::Chat(_), Text::Chat(_)) = (&a, &b) else {
        return Err(Skip::new("wrong type", "conversations should be message lists"));
    };
    let (prompt, ca, cb) = crate::formats::trl::extract_prompt(&a, &b);
    if matches!(&prompt, Text::Chat(p) if p.is_empty()) {
        return Err(Skip::new("no shared prompt", "the conversations differ from the first turn"));
    }
    let (chosen, rejected, strength) = match winner {
        "model_a" => (ca, cb, None),
        "model_b" => (cb, ca, None),
        "tie" | "tie (bothbad)" => {
            if !opts.keep_ties {
                return Err(Skip::new("tie", winner));
            }
            (ca, cb, Some(0.5))
        }
        other => return Err(Skip::new("unknown winner", other)),
    };
    if chosen == rejected {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt,
        chosen,
        rejected,
        margin: None,
        strength,
        reference: None,
        meta: Meta {
            id: super::opt_str(row, "question_id"),
            annotator_id: super::opt_str(row, "judge"),
            source: Some("arena".into()),
            category: super::opt_str(row, "category"),
        },
    }));
    Ok(())
}
