//! Anthropic HH-RLHF: `{"chosen": transcript, "rejected": transcript}`, turns marked by
//! `"\n\nHuman: "` and `"\n\nAssistant: "`. Becomes a conversational preference whose
//! prompt is the shared history and whose chosen/rejected are the final assistant turns.
//!
//! Rows that don't split cleanly (histories that differ before the last turn, a last turn
//! that isn't the assistant's, an empty reply unless `keep_empty`) are skipped with a reason.

use super::{get_str, ConvertOptions, Out, Skip};
use crate::records::{Message, Meta, Preference, Record, Text};
use serde_json::{Map, Value};

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// Split a transcript into messages (`user` / `assistant`), contents trimmed.
/// Errors when text precedes the first marker or there is no marker at all.
pub fn parse_transcript(t: &str) -> Result<Vec<Message>, String> {
    let mut msgs = Vec::new();
    let mut rest = t;
    // Some transcripts omit the leading blank line.
    let starts = |s: &str, m: &str| s.starts_with(m) || s.starts_with(&m[2..]);
    if !starts(rest, HUMAN) && !starts(rest, ASSISTANT) {
        return Err(if rest.contains(HUMAN) || rest.contains(ASSISTANT) {
            "text before the first Human/Assistant turn".into()
        } else {
            "no Human/Assistant turns".into()
        });
    }
    while !rest.is_empty() {
        let (role, marker) = if starts(rest, HUMAN) {
            ("user", if rest.starts_with(HUMAN) { HUMAN } else { &HUMAN[2..] })
        } else {
            ("assistant", if rest.starts_with(ASSISTANT) { ASSISTANT } else { &ASSISTANT[2..] })
        };
        let body = &rest[marker.len()..];
        let next = [body.find(HUMAN), body.find(ASSISTANT)].into_iter().flatten().min().unwrap_or(body.len());
        msgs.push(Message::new(role, body[..next].trim()));
        rest = &body[next..];
    }
    Ok(msgs)
}

pub fn convert(row: &Map<String, Value>, opts: &ConvertOptions, out: &mut Out) -> Result<(), Skip> {
    let chosen = get_str(row, "chosen")?;
    let rejected = get_str(row, "rejected")?;
    let c = parse_transcript(chosen).map_err(|e| Skip::new("unparsable transcript", format!("chosen: {e}")))?;
    let r = parse_transcript(rejected).map_err(|e| Skip::new("unparsable transcript", format!("rejected: {e}")))?;
    let (Some(c_last), Some(r_last)) = (c.last(), r.last()) else {
        return Err(Skip::new("unparsable transcript", "no turns"));
    };
    if c_last.role != "assistant" || r_last.role != "assistant" {
        return Err(Skip::new("last turn is not the assistant's", ""));
    }
    let (c_hist, r_hist) = (&c[..c.len() - 1], &r[..r.len() - 1]);
    if c_hist != r_hist {
        let at = c_hist.iter().zip(r_hist).position(|(a, b)| a != b).unwrap_or(c_hist.len().min(r_hist.len()));
        return Err(Skip::new(
            "histories differ",
            format!("chosen has {} turns, rejected {}; they first differ at turn {}", c.len(), r.len(), at + 1),
        ));
    }
    if c_hist.is_empty() {
        return Err(Skip::new("no prompt", "the transcript starts with the assistant"));
    }
    if !opts.keep_empty {
        if c_last.content.is_empty() {
            return Err(Skip::new("empty chosen reply", ""));
        }
        if r_last.content.is_empty() {
            return Err(Skip::new("empty rejected reply", ""));
        }
    }
    if c_last == r_last {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt: Text::Chat(c_hist.to_vec()),
        chosen: Text::Chat(vec![c_last.clone()]),
        rejected: Text::Chat(vec![r_last.clone()]),
        margin: None,
        strength: None,
        reference: None,
        meta: Meta { source: Some("hh".into()), ..Meta::default() },
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_turns_and_trims() {
        let m = parse_transcript("\n\nHuman: hi there\n\nAssistant:  hello\n\nHuman: bye\n\nAssistant:").unwrap();
        assert_eq!(
            m,
            vec![Message::user("hi there"), Message::assistant("hello"), Message::user("bye"), Message::assistant("")]
        );
        assert!(parse_transcript("plain text").is_err());
        assert!(parse_transcript("junk\n\nHuman: x").is_err());
    }
}
