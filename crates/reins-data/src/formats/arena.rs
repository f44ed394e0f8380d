//! Chatbot Arena conversations: `conversation_a`, `conversation_b` (message lists),
//! `winner` (`model_a`, `model_b`, `tie`, `tie (bothbad)`), `judge`, `question_id`.
//! The shared first user turn is the prompt; the rest of each conversation is the
//! completion. Ties are skipped unless `keep_ties`, which keeps them with `strength = 0.5`.
//!
//! `turn` says which turn was judged. MT-bench human judgments (lmsys/mt_bench_human_judgments)
//! carry both turns in every conversation and judge turn 1 or turn 2, so the conversations are
//! cut after the `turn`-th assistant reply; a turn-1 verdict says nothing about the second
//! answers. In Chatbot Arena conversations `turn` counts the turns, so nothing is cut.

use super::{get, get_str, ConvertOptions, Out, Skip};
use crate::formats::trl::parse_text;
use crate::records::{Message, Meta, Preference, Record, Text};
use serde_json::{Map, Value};

pub fn convert(row: &Map<String, Value>, opts: &ConvertOptions, out: &mut Out) -> Result<(), Skip> {
    let winner = get_str(row, "winner")?;
    let a = parse_text("conversation_a", get(row, "conversation_a")?)?;
    let b = parse_text("conversation_b", get(row, "conversation_b")?)?;
    let (Text::Chat(_), Text::Chat(_)) = (&a, &b) else {
        return Err(Skip::new("wrong type", "conversations should be message lists"));
    };
    let (a, b) = match judged_turn(row)? {
        Some(turn) => (up_to_turn(a, turn, "conversation_a")?, up_to_turn(b, turn, "conversation_b")?),
        None => (a, b),
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
            ..Meta::default()
        },
    }));
    Ok(())
}

/// The judged turn (1-based), when the row says.
fn judged_turn(row: &Map<String, Value>) -> Result<Option<usize>, Skip> {
    match row.get("turn") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(t) if t >= 1 => Ok(Some(t as usize)),
            _ => Err(Skip::wrong_type("turn", "a turn number from 1", v)),
        },
    }
}

/// The conversation up to and including its `turn`-th assistant message.
fn up_to_turn(conversation: Text, turn: usize, key: &str) -> Result<Text, Skip> {
    let mut msgs = match conversation {
        Text::Chat(msgs) => msgs,
        plain => return Ok(plain),
    };
    let is_reply = |m: &Message| m.role == "assistant";
    let Some((end, _)) = msgs.iter().enumerate().filter(|(_, m)| is_reply(m)).nth(turn - 1) else {
        let n = msgs.iter().filter(|m| is_reply(m)).count();
        return Err(Skip::new("turn out of range", format!("`turn` is {turn} but `{key}` has {n} assistant turns")));
    };
    msgs.truncate(end + 1);
    Ok(Text::Chat(msgs))
}
