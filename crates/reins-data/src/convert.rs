//! Converters between record kinds: `--to preference | sft | ranked | unpaired`.

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

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Preference => "preference",
            Target::Sft => "sft",
            Target::Ranked => "ranked",
            Target::Unpaired => "unpaired",
        }
    }
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

/// Convert a whole list (see [`Converter`] for one record at a time).
pub fn convert(records: Vec<Record>, to: Target, opts: &ConvertOptions) -> Converted {
    let mut c = Converter::new(to, opts);
    let mut out = Vec::new();
    for r in records {
        c.push(r, &mut out);
    }
    c.finish(&mut out);
    Converted { records: out, dropped: c.dropped }
}

/// Convert every record of `stream`, handing each result to `emit` as soon as it is made,
/// so the output is written while the input is read. Returns what was not converted.
pub fn convert_stream(
    stream: &mut crate::stream::RecordStream,
    to: Target,
    opts: &ConvertOptions,
    emit: &mut dyn FnMut(Record) -> crate::Result<()>,
) -> crate::Result<BTreeMap<String, usize>> {
    let mut c = Converter::new(to, opts);
    let mut out = Vec::new();
    while let Some(r) = stream.next_record()? {
        c.push(r, &mut out);
        out.drain(..).try_for_each(&mut *emit)?;
    }
    c.finish(&mut out);
    out.drain(..).try_for_each(&mut *emit)?;
    Ok(c.dropped)
}

/// Converts records one at a time, so a file is converted as it is read. Every record kind
/// either becomes records of the target kind or is counted in `dropped` with the reason;
/// nothing passes through unconverted.
pub struct Converter {
    to: Target,
    opts: ConvertOptions,
    /// State of best-vs-random pairing, carried across records.
    rng: u64,
    /// Pairs waiting to be unpaired (TRL unpairs by batches of 1000).
    pending: Vec<Preference>,
    /// Records (or parts) not converted, by reason.
    pub dropped: BTreeMap<String, usize>,
}

impl Converter {
    pub fn new(to: Target, opts: &ConvertOptions) -> Self {
        Self { to, opts: opts.clone(), rng: opts.seed, pending: Vec::new(), dropped: BTreeMap::new() }
    }

    /// Append what `r` becomes to `out` (nothing while an unpairing batch fills).
    pub fn push(&mut self, r: Record, out: &mut Vec<Record>) {
        match self.to {
            Target::Preference => self.preference(r, out),
            Target::Sft => self.sft(r, out),
            Target::Ranked => self.ranked(r, out),
            Target::Unpaired => self.unpaired(r, out),
        }
    }

    /// Append what is still held back (the last unpairing batch).
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        flush_unpaired(&mut self.pending, out);
    }

    fn drop(&mut self, why: &str) {
        *self.dropped.entry(why.to_string()).or_default() += 1;
    }

    fn preference(&mut self, r: Record, out: &mut Vec<Record>) {
        match r {
            Record::Preference(p) => out.push(Record::Preference(p)),
            Record::RankedList { prompt, responses, meta } => {
                let usable = responses.iter().filter(|r| quality(r).is_some()).count();
                if usable < 2 {
                    self.drop("ranked list with fewer than 2 ranked responses");
                    return;
                }
                let strategy = self.opts.pair_strategy;
                let (pairs, ties) = pairs_from_list(&prompt, &responses, &meta, strategy, &mut self.rng);
                for _ in 0..ties {
                    self.drop("tied pair");
                }
                out.extend(pairs.into_iter().map(Record::Preference));
            }
            other => self.drop(&format!("{} has no pair", other.kind().name())),
        }
    }

    fn sft(&mut self, r: Record, out: &mut Vec<Record>) {
        match r {
            Record::Preference(p) => {
                out.push(Record::PromptCompletion { prompt: p.prompt, completion: p.chosen, meta: p.meta })
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
                    Some(b) => out.push(Record::PromptCompletion { prompt, completion: b.response, meta }),
                    None => self.drop("ranked list without a ranked response"),
                }
            }
            Record::Unpaired { prompt, completion, label, meta } => {
                if label {
                    out.push(Record::PromptCompletion { prompt, completion, meta })
                } else {
                    self.drop("undesirable completion");
                }
            }
            r @ (Record::PromptCompletion { .. } | Record::LanguageModeling { .. }) => out.push(r),
            // Its response is there to have its faults marked, not to be imitated.
            Record::Spans { .. } => self.drop("spans record (a response with labelled spans is not an SFT target)"),
            // Checked against principles, not chosen as a target (a `yes` on one principle is
            // not a `yes` on the others).
            Record::Principles { .. } => self.drop("principles record (a checked response is not an SFT target)"),
            other => self.drop(&format!("{} has no completion", other.kind().name())),
        }
    }

    fn ranked(&mut self, r: Record, out: &mut Vec<Record>) {
        let one = |response: Text, rank: u32| Ranked {
            response,
            rank: Some(rank),
            score: None,
            ratings: BTreeMap::new(),
            annotator_id: None,
        };
        match r {
            Record::Preference(p) => {
                // A tie (strength 0.5) ranks both replies equal.
                let rejected_rank = if p.strength == Some(0.5) { 0 } else { 1 };
                out.push(Record::RankedList {
                    prompt: p.prompt,
                    responses: vec![one(p.chosen, 0), one(p.rejected, rejected_rank)],
                    meta: p.meta,
                });
            }
            r @ Record::RankedList { .. } => out.push(r),
            other => self.drop(&format!("{} has no ranking", other.kind().name())),
        }
    }

    fn unpaired(&mut self, r: Record, out: &mut Vec<Record>) {
        match r {
            Record::Preference(p) => {
                self.pending.push(p);
                if self.pending.len() == crate::tokenize::pack::TRL_MAP_BATCH {
                    flush_unpaired(&mut self.pending, out);
                }
            }
            r @ Record::Unpaired { .. } => {
                flush_unpaired(&mut self.pending, out);
                out.push(r);
            }
            Record::RankedList { .. } => {
                self.drop("ranked list has no pair to unpair (convert it --to preference first)")
            }
            other => self.drop(&format!("{} has no desirable/undesirable label", other.kind().name())),
        }
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

/// Pairs: preferences as they are, ranked lists paired by `opts.pair_strategy`.
pub fn to_preference(records: Vec<Record>, opts: &ConvertOptions) -> Converted {
    convert(records, Target::Preference, opts)
}

/// Prompt/completion pairs: the chosen or best reply, desirable unpaired completions.
pub fn to_sft(records: Vec<Record>) -> Converted {
    convert(records, Target::Sft, &ConvertOptions::default())
}

/// Ranked lists: a pair becomes a list of two.
pub fn to_ranked(records: Vec<Record>) -> Converted {
    convert(records, Target::Ranked, &ConvertOptions::default())
}

/// TRL's `unpair_preference_dataset`: per batch of 1000 pairs (`Dataset.map`'s default),
/// all chosen as desirable examples, then all rejected as undesirable ones. Other records
/// pass through (the KTO trainer reports them); `convert --to unpaired` uses [`Converter`],
/// which counts them as not converted instead.
pub fn unpair(records: Vec<Record>) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut pending: Vec<Preference> = Vec::new();
    for r in records {
        match r {
            Record::Preference(p) => {
                pending.push(p);
                if pending.len() == crate::tokenize::pack::TRL_MAP_BATCH {
                    flush_unpaired(&mut pending, &mut out);
                }
            }
            other => {
                flush_unpaired(&mut pending, &mut out);
                out.push(other);
            }
        }
    }
    flush_unpaired(&mut pending, &mut out);
    out
}

/// One unpairing batch: every chosen reply as desirable, then every rejected one as not.
fn flush_unpaired(pending: &mut Vec<Preference>, out: &mut Vec<Record>) {
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
}
