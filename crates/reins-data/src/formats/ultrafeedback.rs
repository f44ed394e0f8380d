//! UltraFeedback: `instruction`, `completions[]` each with `response`, per-aspect
//! `annotations` (`{"helpfulness": {"Rating": "4", ...}, ...}`; ratings may be strings or
//! `"N/A"`) and `overall_score`. Becomes a [`Record::RankedList`] scored by `overall_score`
//! (or the mean aspect rating); [`crate::convert::to_preference`] builds the pairs by the
//! chosen strategy and drops ties.

use super::{as_f64, get, get_str, user_prompt, ConvertOptions, Out, Skip};
use crate::records::{Message, Meta, Ranked, Record, Text};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub fn convert(row: &Map<String, Value>, opts: &ConvertOptions, out: &mut Out) -> Result<(), Skip> {
    let instruction = get_str(row, "instruction")?;
    let Value::Array(completions) = get(row, "completions")? else {
        return Err(Skip::wrong_type("completions", "a list", get(row, "completions")?));
    };
    let mut responses = Vec::new();
    for c in completions {
        let Some(c) = c.as_object() else {
            out.drop_part("completion that is not an object");
            continue;
        };
        let Some(response) = c.get("response").and_then(Value::as_str) else {
            out.drop_part("completion without a response");
            continue;
        };
        let ratings = aspect_ratings(c);
        let mean = (!ratings.is_empty()).then(|| ratings.values().sum::<f64>() / ratings.len() as f64);
        let overall = c.get("overall_score").and_then(as_f64);
        let score = if opts.ultrafeedback_mean_rating { mean } else { overall.or(mean) };
        if score.is_none() {
            out.drop_part("completion without a score");
            continue;
        }
        responses.push(Ranked {
            response: Text::Chat(vec![Message::assistant(response)]),
            rank: None,
            score,
            ratings,
            annotator_id: None,
        });
    }
    if responses.is_empty() {
        return Err(Skip::new("no scored completions", ""));
    }
    out.push(Record::RankedList {
        prompt: user_prompt(instruction),
        responses,
        meta: Meta {
            id: super::opt_str(row, "id"),
            annotator_id: None,
            source: Some(
                super::opt_str(row, "source")
                    .map(|s| format!("ultrafeedback/{s}"))
                    .unwrap_or_else(|| "ultrafeedback".into()),
            ),
            // UltraFeedback's `source` is the prompt's origin (evol_instruct, sharegpt, …).
            category: super::opt_str(row, "source"),
            ..Meta::default()
        },
    });
    Ok(())
}

/// `annotations.<aspect>.Rating` (object, or a one-element list in older dumps); `"N/A"` and
/// unparsable ratings are left out.
fn aspect_ratings(c: &Map<String, Value>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(a)) = c.get("annotations") {
        for (aspect, v) in a {
            let v = match v {
                Value::Array(items) => items.first().unwrap_or(&Value::Null),
                v => v,
            };
            let rating = v.get("Rating").or_else(|| v.get("rating")).unwrap_or(v);
            if let Some(x) = as_f64(rating) {
                out.insert(aspect.clone(), x);
            }
        }
    }
    out
}
