//! Stanford Human Preferences (SHP): `history`, `human_ref_A`, `human_ref_B`, `labels`
//! (1 when A is preferred), `score_A`/`score_B`, `post_id`.

use super::{get, get_str, user_prompt, Out, Skip};
use crate::records::{Message, Meta, Preference, Record, Text};
use serde_json::{Map, Value};

pub fn convert(row: &Map<String, Value>, out: &mut Out) -> Result<(), Skip> {
    let history = get_str(row, "history")?;
    let a = get_str(row, "human_ref_A")?;
    let b = get_str(row, "human_ref_B")?;
    let label = get(row, "labels")?;
    let a_wins = super::as_01(label).ok_or_else(|| Skip::wrong_type("labels", "0 or 1", label))? == 1;
    let (chosen, rejected) = if a_wins { (a, b) } else { (b, a) };
    if chosen == rejected {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt: user_prompt(history),
        chosen: Text::Chat(vec![Message::assistant(chosen)]),
        rejected: Text::Chat(vec![Message::assistant(rejected)]),
        margin: None,
        strength: None,
        reference: None,
        meta: Meta {
            id: super::opt_str(row, "post_id"),
            annotator_id: None,
            source: Some("shp".into()),
            ..Meta::default()
        },
    }));
    Ok(())
}
