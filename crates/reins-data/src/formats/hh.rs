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
    parse_counted(t, &mut 0)
}

/// The role of a turn marker at the start of `s` (`"Human:"` or `"Assistant:"`) and its length.
fn marker_at(s: &[u8]) -> Option<(&'static str, usize)> {
    if s.starts_with(b"Human:") {
        Some(("user", "Human:".len()))
    } else if s.starts_with(b"Assistant:") {
        Some(("assistant", "Assistant:".len()))
    } else {
        None
    }
}

/// The first turn marker (a blank line, then `Human:` or `Assistant:`) at or after `from`,
/// or `t.len()`. Looks at each byte once, plus the few after each blank line: the turns of
/// a transcript are found in one pass, however many there are. (Searching for each marker
/// separately from every turn rescans the rest of the transcript whenever one of them is
/// rare, which made a 160k-turn line take minutes.) `scanned` counts the bytes examined.
fn next_marker(t: &[u8], from: usize, scanned: &mut usize) -> usize {
    let mut i = from;
    while i + 1 < t.len() {
        *scanned += 1;
        if t[i] == b'\n' && t[i + 1] == b'\n' {
            *scanned += 1;
            let after = &t[i + 2..t.len().min(i + 2 + "Assistant:".len())];
            *scanned += after.len();
            if marker_at(after).is_some() {
                return i;
            }
        }
        i += 1;
    }
    *scanned += t.len().saturating_sub(i);
    t.len()
}

fn parse_counted(t: &str, scanned: &mut usize) -> Result<Vec<Message>, String> {
    let bytes = t.as_bytes();
    // Some transcripts omit the leading blank line.
    let first = if t.starts_with("\n\n") { 2 } else { 0 };
    if marker_at(&bytes[first..]).is_none() {
        return Err(if next_marker(bytes, 0, scanned) < t.len() {
            "text before the first Human/Assistant turn".into()
        } else {
            "no Human/Assistant turns".into()
        });
    }
    let mut msgs = Vec::new();
    let mut at = first;
    // Invariant: a marker starts at `at`; the text up to the next blank-line marker is its turn.
    while at < t.len() {
        let Some((role, len)) = marker_at(&bytes[at..]) else { break };
        let body = at + len;
        let next = next_marker(bytes, body, scanned);
        msgs.push(Message::new(role, t[body..next].trim()));
        at = if next < t.len() { next + 2 } else { next };
    }
    Ok(msgs)
}

/// Whether a `chosen` string looks like an HH transcript: a human turn (after a blank line,
/// or at the very start: single-turn rows often lack the leading blank line) and an
/// assistant turn after a blank line.
pub fn looks_like_transcript(t: &str) -> bool {
    (t.starts_with("Human:") || t.contains(HUMAN)) && t.contains(ASSISTANT)
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

    /// The straightforward search (each marker looked for from every turn), which the
    /// one-pass parser must agree with.
    fn parse_naive(t: &str) -> Result<Vec<Message>, String> {
        let starts = |s: &str, m: &str| s.starts_with(m) || s.starts_with(&m[2..]);
        if !starts(t, HUMAN) && !starts(t, ASSISTANT) {
            return Err(if t.contains(HUMAN) || t.contains(ASSISTANT) {
                "text before the first Human/Assistant turn".into()
            } else {
                "no Human/Assistant turns".into()
            });
        }
        let (mut msgs, mut rest) = (Vec::new(), t);
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

    proptest::proptest! {
        #[test]
        fn one_pass_parse_equals_the_naive_search(t in "(\n|\n\n|Human:|Assistant:|Human|\nAssistant:| |x|é){0,24}") {
            proptest::prop_assert_eq!(parse_transcript(&t), parse_naive(&t));
        }
    }

    /// Bytes examined per input byte, on transcripts of `n` turns of a given shape.
    fn scan_ratio(turns: usize, shape: fn(usize) -> String) -> f64 {
        let t = shape(turns);
        let mut scanned = 0;
        parse_counted(&t, &mut scanned).unwrap();
        scanned as f64 / t.len() as f64
    }

    #[test]
    fn parsing_scans_each_byte_a_bounded_number_of_times() {
        // Many Human turns and one Assistant turn at the end (a runaway paste), the
        // alternating shape, and Assistant turns only after a short first line.
        let shapes: [fn(usize) -> String; 3] = [
            |n| format!("{}\n\nAssistant: ok", "\n\nHuman: a line of text".repeat(n)),
            |n| "\n\nHuman: question\n\nAssistant: answer".repeat(n),
            |n| format!("Human: hi{}", "\n\nAssistant: more\n\nsome text".repeat(n)),
        ];
        for (i, shape) in shapes.into_iter().enumerate() {
            for turns in [100, 1_000, 10_000] {
                let ratio = scan_ratio(turns, shape);
                assert!(ratio <= 4.0, "shape {i}, {turns} turns: {ratio:.1} bytes scanned per input byte");
            }
        }
    }
}
