//! ConvexDA for `reins reward` (`convex_da = true`; Shen et al., arXiv:2309.16155): before
//! training, each pair's preferred response is perturbed `convex_da_variants` times, the
//! variants are embedded with the model about to be trained (its initial weights: the last
//! real token's hidden state, what the score head reads — standing in for the paper's SimCSE
//! encoder), and the variants on the convex hull of their 2-D PCA projection become new pairs
//! `variant ≻ original rejected`, appended after the original records.

use anyhow::{Context, Result};
use reins_data::tokenize::reward::tokenize_reward_response;
use reins_data::{HfTokenizer, Preference, Record, Text};
use reins_model::Model;
use reins_train::convex_da::{convex_da_variants, ConvexDaArgs};
use reins_train::statistics::features::pooled_features;

/// The training records plus the ConvexDA pairs, and how many were added.
pub fn augment(
    records: &[Record],
    args: &ConvexDaArgs,
    seed: u64,
    tok: &HfTokenizer,
    model: &Model,
    pad: u32,
) -> Result<(Vec<Record>, usize)> {
    let pairs: Vec<&Preference> = records
        .iter()
        .filter_map(|r| match r {
            Record::Preference(p) => Some(p),
            _ => None,
        })
        .collect();
    let chosen: Vec<String> = pairs.iter().map(|p| last_content(&p.chosen)).collect();
    let mut rng = reins_lab::rng::stream(seed, "convex_da");
    let new = convex_da_variants(&chosen, args, &mut rng, |i, variants| {
        let seqs = variants
            .iter()
            .map(|v| tokenize_reward_response(tok, &pairs[i].prompt, &with_last_content(&pairs[i].chosen, v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                reins_train::TrainError::Input(format!("convex_da: tokenizing a variant of pair {}: {e}", i + 1))
            })?;
        Ok(pooled_features(model, &seqs, pad, seqs.len())?.0)
    })
    .context("ConvexDA augmentation")?;
    let added = new.len();
    let mut out = records.to_vec();
    out.extend(new.into_iter().map(|(i, v)| {
        let mut p = pairs[i].clone();
        p.chosen = with_last_content(&p.chosen, &v);
        Record::Preference(p)
    }));
    Ok((out, added))
}

/// The text that gets perturbed: a plain response, or a chat response's last message.
fn last_content(t: &Text) -> String {
    match t {
        Text::Plain(s) => s.clone(),
        Text::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
    }
}

fn with_last_content(t: &Text, content: &str) -> Text {
    match t {
        Text::Plain(_) => Text::Plain(content.to_string()),
        Text::Chat(m) => {
            let mut m = m.clone();
            if let Some(last) = m.last_mut() {
                last.content = content.to_string();
            }
            Text::Chat(m)
        }
    }
}
