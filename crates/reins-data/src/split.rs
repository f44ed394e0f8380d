//! Train/test splits that keep all records of one prompt on the same side (no prompt
//! leaks from train into test), deterministic for a seed.

use crate::convert::splitmix;
use crate::records::{Record, Text};
use std::collections::HashMap;

/// The prompt a record is grouped by (its text as JSON); records without one stand alone.
fn group_key(r: &Record, i: usize) -> String {
    let p: Option<&Text> = match r {
        Record::Preference(p) => Some(&p.prompt),
        Record::PromptOnly { prompt, .. }
        | Record::PromptCompletion { prompt, .. }
        | Record::Unpaired { prompt, .. }
        | Record::RankedList { prompt, .. }
        | Record::Spans { prompt, .. }
        | Record::Principles { prompt, .. } => Some(prompt),
        Record::Stepwise { prompt, .. } => return format!("s:{prompt}"),
        Record::LanguageModeling { .. } => None,
    };
    match p {
        Some(t) => serde_json::to_string(t).unwrap_or_default(),
        None => format!("#{i}"),
    }
}

/// Split into `(train, test)`: prompts are shuffled with `seed` and the first
/// `round(test_fraction * prompts)` of them go to test (at least one when `test_fraction > 0`
/// and there are two or more prompts). Order within each side follows the input.
pub fn split(records: Vec<Record>, test_fraction: f64, seed: u64) -> (Vec<Record>, Vec<Record>) {
    let mut group_of = Vec::with_capacity(records.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let k = group_key(r, i);
        let n = ids.len();
        group_of.push(*ids.entry(k).or_insert(n));
    }
    let groups = ids.len();
    let mut order: Vec<usize> = (0..groups).collect();
    let mut state = seed;
    for i in (1..groups).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let f = if test_fraction.is_finite() { test_fraction.clamp(0.0, 1.0) } else { 0.0 };
    let mut n_test = (f * groups as f64).round() as usize;
    if f > 0.0 && n_test == 0 && groups >= 2 {
        n_test = 1;
    }
    let mut is_test = vec![false; groups];
    for &g in &order[..n_test.min(groups)] {
        is_test[g] = true;
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (r, g) in records.into_iter().zip(group_of) {
        if is_test[g] {
            test.push(r)
        } else {
            train.push(r)
        }
    }
    (train, test)
}
