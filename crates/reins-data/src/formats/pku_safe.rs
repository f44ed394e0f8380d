//! PKU-SafeRLHF: `prompt`, `response_0`, `response_1`, `better_response_id`,
//! `safer_response_id` (0 or 1). [`super::PkuTarget`] picks which label makes the pair.

use super::{get, get_str, user_prompt, ConvertOptions, Out, PkuTarget, Skip};
use crate::records::{Message, Meta, Preference, Record, Text};
use serde_json::{Map, Value};

pub fn convert(row: &Map<String, Value>, opts: &ConvertOptions, out: &mut Out) -> Result<(), Skip> {
    let prompt = get_str(row, "prompt")?;
    let r = [get_str(row, "response_0")?, get_str(row, "response_1")?];
    let key = match opts.pku_target {
        PkuTarget::Better => "better_response_id",
        PkuTarget::Safer => "safer_response_id",
    };
    let id = get(row, key)?;
    let c = super::as_01(id).ok_or_else(|| Skip::wrong_type(key, "0 or 1", id))?;
    if r[0] == r[1] {
        return Err(Skip::new("chosen equals rejected", ""));
    }
    out.push(Record::Preference(Preference {
        prompt: user_prompt(prompt),
        chosen: Text::Chat(vec![Message::assistant(r[c])]),
        rejected: Text::Chat(vec![Message::assistant(r[1 - c])]),
        margin: None,
        strength: None,
        reference: None,
        meta: Meta { source: Some("pku-safe".into()), ..Meta::default() },
    }));
    Ok(())
}
