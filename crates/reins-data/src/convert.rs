//! Converters between record kinds: `--to preference | sft | ranked`.

use crate::formats::{ConvertOptions, PairStrategy};
use crate::records::{Meta, Preference, Ranked, Record, Text};
use std::collections::BTreeMap;

/// Target of `reins data convert --to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Preference,
    Sft,
    Ranked,
    /// KTO's unpaired examples (TRL's `unpair_preference_dataset`).
    Unpaired,
}

impl std::str::FromStr for Target {
    type Err = crate::DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "preference" => Ok(Target::Preference),
            "sft" => Ok(Target::Sft),
            "ranked" => Ok(Target::Ranked),
            "unpaired" => Ok(Target::Unpaired),
            _ => {
                Err(crate::DataError::Invalid(format!("unknown target `{s}`; use preference, sft, ranked or unpaired")))
            }
        }
    }
}

/// Result of a conversion: the records and what was left out, by reason.
#[derive(Debug, Default)]
pub struct Converted {
    pub records: Vec<Record>,
    pub dropped: BTreeMap<String, usize>,
}

impl Converted {
    fn drop(&mut self, why: &str) {
        *self.dropped.entry(why.to_string()).or_default() += 1;
    }
}

pub fn convert(records: Vec<Record>, to: Target, opts: &ConvertOptions) -> Converted {
    match to {
        Target::Preference => to_preference(records, opts),
        Target::Sft => to_sft(records),
        Target::Ranked => to_ranked(records),
        Target::Unpaired => Converted { records: unpair(records), dropped: BTreeMap::new() },
    }
}

/// A response's sort key: rank (lower is better) first, else score (higher is better).
fn quality(r: &Ranked) -> Option<f64> {
    match (r.rank, r.score) {
        (Some(k), _) => Some(-(k as f64)),
        (None, Some(s)) => Some(s),
        _ => None,
    }
}

/// SplitMix64: a tiny deterministic generator, so splits and pairings don't change with a
/// dependency's version.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pairs from a ranked list by `strategy`; ties (equal quality) are never paired.
/// Returns the pairs and the number of candidate pairs dropped as ties.
pub fn pairs_from_list(
    prompt: &Text,
    responses: &[Ranked],
    meta: &Meta,
    strategy: PairStrategy,
    rng: &mut u64,
) -> (Vec<Preference>, usize) {
    let scored: Vec<(f64, &Ranked)> = responses.iter().filter_map(|r| quality(r).map(|q| (q, r))).collect();
    let mut ties = 0;
    let mk = |c: &Ranked, r: &Ranked| Preference {
        prompt: prompt.clone(),
        chosen: c.response.clone(),
        rejected: r.response.clone(),
        margin: None,
        strength: None,
        reference: None,
        meta: meta.clone(),
    };
    if scored.len() < 2 {
        return (Vec::new(), 0);
    }
    // First best (stable: earliest among equals).
    let best = scored.iter().enumerate().fold(0, |b, (i, s)| if s.0 > scored[b].0 { i } else { b });
    let (bq, br) = scored[best];
    let mut out = Vec::new();
    match strategy {
        PairStrategy::BestVsWorst => {
            let worst = scored.iter().enumerate().fold(0, |w, (i, s)| if s.0 < scored[w].0 { i } else { w });
            if scored[worst].0 < bq {
                out.push(mk(br, scored[worst].1));
            } else {
                ties += 1;
            }
        }
        PairStrategy::BestVsRandom => {
            let others: Vec<usize> = (0..scored.len()).filter(|&i| i != best).collect();
            let pick = others[(splitmix(rng) % others.len() as u64) as usize];
            if scored[pick].0 < bq {
                out.push(mk(br, scored[pick].1));
            } else {
                ties += 1;
            }
        }
        PairStrategy::BestVsEach => {
            for (i, &(q, r)) in scored.iter().enumerate() {
                if i == best {
                    continue;
                }
                if q < bq {
                    out.push(mk(br, r));
                } else {
                    ties += 1;
                }
            }
        }
        PairStrategy::AllPairs => {
            for (i, &(qi, ri)) in scored.iter().enumerate() {
                for &(qj, rj) in &scored[i + 1..] {
                    if qi > qj {
                        out.push(mk(ri, rj));
                    } else if qj > qi {
                        out.push(mk(rj, ri));
                    } else {
                        ties += 1;
                    }
                }
            }
        }
    }
    (out, ties)
}

pub fn to_preference(records: Vec<Record>, opts: &ConvertOptions) -> Converted {
    let mut c = Converted::default();
    let mut rng = opts.seed;
    for r in records {
        match r {
            Record::Preference(p) => c.records.push(Record::Preference(p)),
            Record::RankedList { prompt, responses, meta } => {
                let usable = responses.iter().filter(|r| quality(r).is_some()).count();
                if usable < 2 {
                    c.drop("ranked list with fewer than 2 ranked responses");
                    continue;
                }
                let (pairs, ties) = pairs_from_list(&prompt, &responses, &meta, opts.pair_strategy, &mut rng);
                for _ in 0..ties {
                    c.drop("tied pair");
                }
                c.records.extend(pairs.into_iter().map(Record::Preference));
            }
            other => c.drop(&format!("{} has no pair", other.kind().name())),
        }
    }
    c
}

pub fn to_sft(records: Vec<Record>) -> Converted {
    let mut c = Converted::default();
    for r in records {
        match r {
            Record::Preference(p) => {
                c.records.push(Record::PromptCompletion { prompt: p.prompt, completion: p.chosen, meta: p.meta })
            }
            Record::RankedList { prompt, responses, meta } => {
                // The best response; a lone unranked reply counts as best.
                let best = if responses.len() == 1 {
                    responses.into_iter().next()
                } else {
                    responses.into_iter().filter(|r| quality(r).is_some()).fold(None, |b: Option<Ranked>, r| match b {
                        Some(b) if quality(&b) >= quality(&r) => Some(b),
                        _ => Some(r),
                    })
                };
                match best {
                    Some(b) => c.records.push(Record::PromptCompletion { prompt, completion: b.response, meta }),
                    None => c.drop("ranked list without a ranked response"),
                }
            }
            Record::Unpaired { prompt, completion, label, meta } => {
                if label {
                    c.records.push(Record::PromptCompletion { prompt, completion, meta })
                } else {
                    c.drop("undesirable completion");
                }
            }
            r @ (Record::PromptCompletion { .. } | Record::LanguageModeling { .. }) => c.records.push(r),
            other => c.drop(&format!("{} has no completion", other.kind().name())),
        }
    }
    c
}

pub fn to_ranked(records: Vec<Record>) -> Converted {
    let mut c = Converted::default();
    let one = |response: Text, rank: u32| Ranked {
        response,
        rank: Some(rank),
        score: None,
        ratings: BTreeMap::new(),
        annotator_id: None,
    };
    for r in records {
        match r {
            Record::Preference(p) => {
                if p.strength == Some(0.5) {
                    c.records.push(Record::RankedList {
                        prompt: p.prompt,
                        responses: vec![one(p.chosen, 0), one(p.rejected, 0)],
                        meta: p.meta,
                    });
                } else {
                    c.records.push(Record::RankedList {
                        prompt: p.prompt,
                        responses: vec![one(p.chosen, 0), one(p.rejected, 1)],
                        meta: p.meta,
                    });
                }
            }
            r @ Record::RankedList { .. } => c.records.push(r),
            other => c.drop(&format!("{} has no ranking", other.kind().name())),
        }
    }
    c
}

/// TRL's `unpair_preference_dataset`: per batch of 1000 pairs (`Dataset.map`'s default),
/// all chosen as desirable examples, then all rejected as undesirable ones. Other records
/// pass through.
pub fn unpair(records: Vec<Record>) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut pending: Vec<Preference> = Vec::new();
    let flush = |pending: &mut Vec<Preference>, out: &mut Vec<Record>| {
        for (take_chosen, label) in [(true, true), (false, false)] {
            for p in pending.iter() {
                out.push(Record::Unpaired {
                    prompt: p.prompt.clone(),
                    completion: if take_chosen { p.chosen.clone() } else { p.rejected.clone() },
                    label,
                    meta: p.meta.clone(),
                });
            }
        }
        pending.clear();
    };
    for r in records {
        match r {
            Record::Preference(p) => {
                pending.push(p);
                if pending.len() == crate::tokenize::pack::TRL_MAP_BATCH {
                    flush(&mut pending, &mut out);
                }
            }
            other => {
                flush(&mut pending, &mut out);
                out.push(other);
            }
        }
    }
    flush(&mut pending, &mut out);
    out
}
